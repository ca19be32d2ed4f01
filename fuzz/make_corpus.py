#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora into OUT/<target>/ (default build-fuzz/corpus).

- fuzz_import: small hand-built models (fuzz/tiny_models.py, needs python3-onnx) and the
  bundled exports (examples/*.onnx, validation/models/*.onnx) up to --max-onnx bytes (128 KiB:
  bigger ones run under 100 times a second), deduplicated.
- fuzz_shapes: the same behind the 8-byte dim prefix (4 little-endian uint16 values, bound in
  order to the sorted symbolic input dims): batch=2 seq=8 style values and a few others.
- fuzz_simulate: the fuzz_shapes prefix plus one option byte (fuzz/fuzz_simulate.cc).
- fuzz_remat_json: ../shared/remat-graphs/*.json up to --max-json bytes as they are; bigger
  ones as valid samples (the first nodes and the links among them), plus a few tiny graphs.

Nothing binary is committed: run it again after a checkout (scripts/fuzz.sh does).
"""
import argparse
import glob
import hashlib
import json
import os
import struct
import sys


def write(dir_, data):
    os.makedirs(dir_, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(dir_, name), "wb") as f:
        f.write(data)


def dim_prefix(values):
    return struct.pack("<4H", *values)


def sample_graph(doc, keep):
    """The first `keep` nodes (in file order) and the links among them."""
    nodes = doc["nodes"][:keep]
    key = "id" if nodes and "id" in nodes[0] else "name"
    ids = {json.dumps(n.get(key)) for n in nodes}
    links = []
    for link in doc.get("links", []):
        s, t = ("source", "target") if "source" in link else ("0", "1")
        if json.dumps(link.get(s)) in ids and json.dumps(link.get(t)) in ids:
            links.append(link)
    out = dict(doc)
    out["nodes"] = nodes
    out["links"] = links
    graph = dict(doc.get("graph", {}))
    graph.pop("pos", None)
    if "order" in graph:
        graph["order"] = [o for o in graph["order"] if json.dumps(o) in ids]
    out["graph"] = graph
    return out


def main():
    try:
        import onnx  # noqa: F401
    except ImportError:
        # python3-onnx is Debian's; another python3 first on PATH (pyenv, a venv) lacks it.
        if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3":
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(root, "build-fuzz", "corpus"))
    ap.add_argument("--max-onnx", type=int, default=128 * 1024)
    ap.add_argument("--max-json", type=int, default=16 * 1024)
    ap.add_argument("--remat-dir", default=os.path.join(root, "..", "shared", "remat-graphs"))
    args = ap.parse_args()

    onnx_files = sorted(glob.glob(os.path.join(root, "examples", "*.onnx")) +
                        glob.glob(os.path.join(root, "validation", "models", "*.onnx")))
    seen = set()
    models = []
    for p in onnx_files:
        data = open(p, "rb").read()
        h = hashlib.sha1(data).digest()
        if len(data) > args.max_onnx or h in seen:
            continue
        seen.add(h)
        models.append(data)

    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import tiny_models

        tiny = tiny_models.models()
    except ImportError:  # python3-onnx missing: only the bundled exports
        print("corpus: no onnx module, no tiny models", file=sys.stderr)
        tiny = []
    for data in tiny + models:
        write(os.path.join(args.out, "fuzz_import"), data)
        for values in ((2, 8, 2, 8), (1, 1, 1, 1)):
            write(os.path.join(args.out, "fuzz_shapes"), dim_prefix(values) + data)
        for values, opt in (((2, 8, 2, 8), 0), ((4, 16, 4, 16), 0b11011)):
            write(os.path.join(args.out, "fuzz_simulate"),
                  dim_prefix(values) + bytes([opt]) + data)

    remat = os.path.join(args.out, "fuzz_remat_json")
    for p in sorted(glob.glob(os.path.join(args.remat_dir, "*.json"))):
        text = open(p, "rb").read()
        if len(text) <= args.max_json:
            write(remat, text)
            continue
        doc = json.loads(text)
        for keep in (8, 40):
            write(remat, json.dumps(sample_graph(doc, keep)).encode())
    tiny = [
        {"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 4}, {"id": 1, "cost_cpu": 2,
                   "cost_ram": 8, "backward": True}], "links": [{"source": 0, "target": 1}]},
        {"graph": {"order": [1, 0]}, "nodes": [{"name": 0, "duration": 1, "out_cost": 3,
         "param_cost": 2}, {"name": 1, "duration": 1, "out_cost": 5}], "links": [{"0": 1, "1": 0}]},
        {"nodes": [{"name": "a", "duration": 0.5, "out_cost": 1}], "edges": []},
    ]
    for doc in tiny:
        write(remat, json.dumps(doc).encode())

    for t in ("fuzz_import", "fuzz_shapes", "fuzz_simulate", "fuzz_remat_json"):
        n = len(os.listdir(os.path.join(args.out, t)))
        print(f"corpus: {t}: {n} seeds")


if __name__ == "__main__":
    main()

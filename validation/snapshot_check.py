#!/usr/bin/env python3
"""Holds PyTorch's own snapshot readers against the snapshots vramsim writes.

For each bundled example (examples/*.onnx) the test-only tool snapshot_writer (tests/
snapshot.cmake) writes the predicted training step as a torch.cuda.memory._dump_snapshot()
pickle and prints the allocator model's figures. This script then
- loads the file with Python's pickle (the way torch and MemoryViz's users load it),
- runs torch.cuda._memory_viz.stats() on its segments (Debian's torch 1.13 has stats(),
  segments(), memory(), compare(); it asserts that each segment's blocks add up to its
  total_size) and checks the total against the model's reserved bytes at the end of the step
  and active_allocated against its allocated bytes,
- runs _memory_viz.memory() with a pass-through flame-graph formatter (no download) and checks
  the bytes it attributes add up to the same total,
- replays device_traces (its own replay, not vramsim's reader): allocations alive before the
  recording are the final segments' active blocks that no recorded alloc made, plus the frees
  of addresses never allocated in the trace; the peak of the requests rounded to 512 B must
  equal the model's max_requested (its max_allocated counts whole unsplit blocks, at most
  1 MiB more per block, and is >= it).
Exit 0 when every check holds, 1 when one fails, 77 (CTest's skip) when torch is missing.
    /usr/bin/python3 validation/snapshot_check.py --writer build/tests/snapshot_writer \\
        --examples examples [--keep DIR]
"""
import argparse
import glob
import json
import os
import pickle
import subprocess
import sys
import tempfile

SKIP = 77
MiB = 1 << 20

# Dims per example (the bundled exports' symbolic dims); others get batch alone.
DIMS = {
    "gpt": ["batch=2", "seq=64"],
    "gpt48": ["batch=2", "seq=64"],
    "gpt_lora": ["batch=2", "seq=64"],
}


def rounded(n):
    return 0 if n == 0 else (n + 511) // 512 * 512


def replay(snapshot, device=0):
    """Peak allocated (requests rounded to 512 B) and peak reserved over device_traces."""
    trace = snapshot["device_traces"][device] if len(snapshot["device_traces"]) > device else []
    segments = [s for s in snapshot["segments"] if s["device"] == device]
    final_active = {b["address"]: b["requested_size"] for s in segments for b in s["blocks"]
                    if b["state"] == "active_allocated"}
    # Addresses allocated in the trace and still live at its end.
    live = {}
    for e in trace:
        if e["action"] == "alloc":
            live[e["addr"]] = e["size"]
        elif e["action"] == "free_requested":
            live.pop(e["addr"], None)
    start = {a: r for a, r in final_active.items() if a not in live}
    current = {}
    cur = sum(rounded(r) for r in start.values())
    seen = set()
    for e in trace:  # frees of allocations made before the recording add to the start
        if e["action"] == "alloc":
            seen.add(e["addr"])
        elif e["action"] == "free_requested" and e["addr"] not in seen:
            cur += rounded(e["size"])
        if e["action"] == "free_requested":
            seen.discard(e["addr"])
    peak = cur
    seg_in = sum(e["size"] for e in trace if e["action"] in ("segment_alloc", "segment_map"))
    seg_out = sum(e["size"] for e in trace if e["action"] in ("segment_free", "segment_unmap"))
    reserved = sum(s["total_size"] for s in segments) - seg_in + seg_out
    peak_reserved = reserved
    for e in trace:
        a = e["action"]
        if a == "alloc":
            current[e["addr"]] = rounded(e["size"])
            cur += current[e["addr"]]
            peak = max(peak, cur)
        elif a == "free_requested":
            cur -= current.pop(e["addr"], rounded(e["size"]))
        elif a in ("segment_alloc", "segment_map"):
            reserved += e["size"]
            peak_reserved = max(peak_reserved, reserved)
        elif a in ("segment_free", "segment_unmap"):
            reserved -= e["size"]
    return peak, peak_reserved, len(trace)


def check(writer, model, out_dir):
    name = os.path.splitext(os.path.basename(model))[0]
    path = os.path.join(out_dir, name + ".pickle")
    dims = DIMS.get(name, ["batch=2"])
    cmd = [writer, model, path]
    for d in dims:
        cmd += ["--dim", d]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        print(f"{name}: snapshot_writer failed: {run.stderr.strip()}")
        return False
    model_figures = json.loads(run.stdout)

    from torch.cuda import _memory_viz

    with open(path, "rb") as f:
        snapshot = pickle.load(f)
    stats = _memory_viz.stats(snapshot["segments"])
    total = stats["total_size"].value
    active = stats["active_allocated"].value if "active_allocated" in stats else 0
    lines = _memory_viz.memory(snapshot["segments"], format_flamegraph=lambda text: text)
    flame_total = sum(int(line.rsplit(" ", 1)[1]) for line in lines.splitlines() if line)
    peak, peak_reserved, entries = replay(snapshot)

    failures = []
    if total != model_figures["final_reserved"]:
        failures.append(f"total_size {total} != final reserved {model_figures['final_reserved']}")
    if active != model_figures["final_allocated"]:
        failures.append(
            f"active_allocated {active} != final allocated {model_figures['final_allocated']}")
    if flame_total != total:
        failures.append(f"memory() attributes {flame_total} bytes, not {total}")
    if stats["segments"] != model_figures["segments"]:
        failures.append(f"{stats['segments']} segments, not {model_figures['segments']}")
    if peak != model_figures["max_requested"]:
        failures.append(f"replayed peak {peak} != max_requested {model_figures['max_requested']}")
    if not model_figures["max_requested"] <= model_figures["max_allocated"]:
        failures.append("max_requested > max_allocated")
    if peak_reserved > model_figures["max_reserved"]:
        failures.append(f"replayed reserved peak {peak_reserved} > max_reserved "
                        f"{model_figures['max_reserved']}")
    if entries != model_figures["trace_entries"]:
        failures.append(f"{entries} trace entries, not {model_figures['trace_entries']}")

    mib = lambda n: f"{n / MiB:.2f} MiB"
    print(f"{name} ({' '.join(dims)}; warm-up {model_figures['warmup_applied']}, "
          f"{entries} entries, {stats['segments']} segments): "
          f"torch stats total_size {mib(total)} vs vramsim final reserved "
          f"{mib(model_figures['final_reserved'])}; active_allocated {mib(active)} vs "
          f"final allocated {mib(model_figures['final_allocated'])}; replayed peak "
          f"{mib(peak)} vs max_requested {mib(model_figures['max_requested'])} "
          f"(max_allocated {mib(model_figures['max_allocated'])}); replayed reserved peak "
          f"{mib(peak_reserved)} vs max_reserved {mib(model_figures['max_reserved'])}"
          + ("" if not failures else " -- FAILED: " + "; ".join(failures)))
    return not failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writer", required=True, help="the snapshot_writer executable")
    ap.add_argument("--examples", required=True, help="folder of *.onnx examples")
    ap.add_argument("--keep", help="write the snapshots here (default: a temporary folder)")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        from torch.cuda import _memory_viz  # noqa: F401
    except ImportError as e:
        print(f"snapshot_check: skipped: torch is not importable ({e})")
        return SKIP
    models = sorted(glob.glob(os.path.join(args.examples, "*.onnx")))
    if not models:
        print(f"snapshot_check: no *.onnx in {args.examples}")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or tmp
        os.makedirs(out, exist_ok=True)
        ok = [check(args.writer, m, out) for m in models]
    print(f"snapshot_check: {sum(ok)} of {len(ok)} examples agree with torch's readers")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())

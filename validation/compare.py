#!/usr/bin/env python3
"""Compare vramsim's predictions with the measured peaks of a cases file.

For every case in a cases JSON (validation/cases.json, holdout.json, torchvision.json, ... as
written by measure.py) this runs

  build/cli/vramsim estimate MODEL --dim K=V ... --optimizer OPT --target torch-cpu --json
                    [--loss L] [--precision P] [--accum K] [--checkpoint A,B] ...

and prints one row per case (measured and predicted peak, error = (predicted - measured) /
measured, the op at the predicted peak), then the median and largest |error| overall and per
family.  A case that fails to import or estimate is listed with vramsim's message.

  python3 validation/compare.py validation/torchvision.json
  python3 validation/compare.py validation/cases.json --only resnet18 --markdown
  python3 validation/compare.py validation/torchvision.json --json /tmp/pred.json

Exits 1 when a case failed, or when --max-median / --max-largest (fractions) are exceeded.
Plain Python 3, no torch needed.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# torchvision model name prefix -> family (issue 11's grouping); longest prefix wins.
TV_FAMILIES = [
    ("wide_resnet", "resnext/wide_resnet"), ("resnext", "resnext/wide_resnet"),
    ("resnet", "resnet"), ("vgg", "vgg"), ("densenet", "densenet"),
    ("efficientnet_v2", "efficientnet_v2"), ("efficientnet", "efficientnet"),
    ("mobilenet", "mobilenet"), ("mnasnet", "mnasnet"), ("regnet", "regnet"),
    ("shufflenet", "shufflenet"), ("squeezenet", "squeezenet"), ("convnext", "convnext"),
    ("swin", "swin"), ("vit", "vit"), ("maxvit", "maxvit"), ("googlenet", "googlenet/inception"),
    ("inception", "googlenet/inception"), ("alexnet", "alexnet"),
]


def family(case):
    """torchvision set: the family of the model name; elsewhere the model file's stem."""
    stem = os.path.splitext(os.path.basename(case["model"]))[0]
    if "/tv/" in case["model"].replace(os.sep, "/"):
        best = max((p for p, _ in TV_FAMILIES if stem.startswith(p)), key=len, default=None)
        if best is not None:
            return dict(TV_FAMILIES)[best]
    return stem


def command(binary, case):
    cmd = [binary, "estimate", os.path.join(REPO_ROOT, case["model"])]
    for k, v in case["dims"].items():
        cmd += ["--dim", f"{k}={v}"]
    # measure.py's NUM_THREADS: every case ran with 2 threads (oneDNN's scratch is per thread)
    cmd += ["--optimizer", case["optimizer"], "--target", "torch-cpu", "--cpu-threads", "2",
            "--json"]
    if case.get("loss", "cross-entropy") != "cross-entropy":
        cmd += ["--loss", case["loss"]]
    if "precision" in case:
        cmd += ["--precision", case["precision"]]
    if "loss_precision" in case:
        cmd += ["--loss-precision", case["loss_precision"]]
    # The release the case was measured with (autocast's lists differ between releases).
    cmd += ["--torch-version", "1.13" if case.get("torch", "").startswith("1.13") else "2"]
    if "accum" in case:
        cmd += ["--accum", str(case["accum"])]
    if "checkpoint" in case:
        cmd += ["--checkpoint", ",".join(case["checkpoint"])]
    if "optimizer_impl" in case:
        cmd += ["--optimizer-impl", case["optimizer_impl"]]
    for key in ("freeze", "trainable"):
        for pattern in case.get(key, []):
            cmd += [f"--{key}", pattern]
    return cmd


def estimate(binary, case, retries=3):
    """(peak_bytes, peak_op, seconds) or raises RuntimeError with vramsim's message."""
    for attempt in range(retries):
        if os.path.exists(binary):
            break
        time.sleep(30)  # the binary is being rebuilt
    t0 = time.time()
    r = subprocess.run(command(binary, case), capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise RuntimeError(f"exit {r.returncode}: {' | '.join(msg[-3:])}")
    d = json.loads(r.stdout)
    op = d.get("peak_op") or {}
    if isinstance(op, dict):  # {"name", "phase", "scope", "type"}
        op = f"{op.get('type', '?')} {op.get('name', '')}".strip()
    return d["peak_bytes"], op, time.time() - t0


def summarize(errors):
    a = sorted(abs(e) for e in errors)
    return statistics.median(a), a[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", help="cases JSON written by measure.py")
    ap.add_argument("--binary", default=os.path.join(REPO_ROOT, "build", "cli", "vramsim"))
    ap.add_argument("--only", default=None, help="only cases whose name contains this")
    ap.add_argument("--markdown", action="store_true", help="tables as Markdown")
    ap.add_argument("--json", default=None, help="also write per-case results here")
    ap.add_argument("--worst", type=int, default=10, help="list this many worst cases")
    ap.add_argument("--max-median", type=float, default=None)
    ap.add_argument("--max-largest", type=float, default=None)
    a = ap.parse_args()

    with open(a.cases) as f:
        cases = [c for c in json.load(f) if a.only is None or a.only in c["name"]]
    rows, failures = [], []
    md = a.markdown
    if md:
        print("| case | family | measured B | predicted B | error | peak op (predicted) |")
        print("|---|---|---:|---:|---:|---|")
    else:
        print(f"{'case':32s} {'family':20s} {'measured':>13s} {'predicted':>13s} {'error':>8s}  peak op")
    for c in cases:
        fam = family(c)
        try:
            pred, op, secs = estimate(a.binary, c)
        except (RuntimeError, ValueError, KeyError) as e:
            failures.append((c["name"], str(e)))
            print(f"| {c['name']} | {fam} | {c['measured_peak_bytes']} | FAILED | | {e} |" if md else
                  f"{c['name']:32s} {fam:20s} {c['measured_peak_bytes']:13d} {'FAILED':>13s}  {e}",
                  flush=True)
            continue
        m = c["measured_peak_bytes"]
        err = (pred - m) / m
        rows.append({"name": c["name"], "family": fam, "measured": m, "predicted": pred,
                     "error": err, "peak_op": op, "estimate_s": round(secs, 2)})
        print(f"| {c['name']} | {fam} | {m} | {pred} | {100 * err:+.2f}% | `{op}` |" if md else
              f"{c['name']:32s} {fam:20s} {m:13d} {pred:13d} {100 * err:+7.2f}%  {op}", flush=True)

    ok = not failures
    if rows:
        med, big = summarize(r["error"] for r in rows)
        print()
        fams = {}
        for r in rows:
            fams.setdefault(r["family"], []).append(r)
        if md:
            print("| family | cases | median \\|error\\| | largest \\|error\\| | largest case |")
            print("|---|---:|---:|---:|---|")
        else:
            print(f"{'family':20s} {'cases':>5s} {'median':>8s} {'largest':>8s}  largest case")
        for fam in sorted(fams, key=lambda k: -summarize(r["error"] for r in fams[k])[1]):
            fr = fams[fam]
            fmed, fbig = summarize(r["error"] for r in fr)
            worst = max(fr, key=lambda r: abs(r["error"]))
            if md:
                print(f"| {fam} | {len(fr)} | {100 * fmed:.2f}% | {100 * fbig:.2f}% | "
                      f"{worst['name']} ({100 * worst['error']:+.2f}%) |")
            else:
                print(f"{fam:20s} {len(fr):5d} {100 * fmed:7.2f}% {100 * fbig:7.2f}%  "
                      f"{worst['name']} ({100 * worst['error']:+.2f}%)")
        if md:
            print(f"| **all** | {len(rows)} | {100 * med:.2f}% | {100 * big:.2f}% | |")
        else:
            print(f"{'all':20s} {len(rows):5d} {100 * med:7.2f}% {100 * big:7.2f}%")
        print(f"\nworst {min(a.worst, len(rows))}:")
        for r in sorted(rows, key=lambda r: -abs(r["error"]))[:a.worst]:
            print(f"  {r['name']:32s} {100 * r['error']:+7.2f}%  at {r['peak_op']}")
        print(f"\n{a.cases}: {len(rows)} cases estimated, {len(failures)} failed; "
              f"median |error| {100 * med:.2f}%, largest {100 * big:.2f}%")
        if a.max_median is not None and med > a.max_median:
            ok = False
        if a.max_largest is not None and big > a.max_largest:
            ok = False
    for name, msg in failures:
        print(f"FAILED {name}: {msg}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cases": rows, "failures": [{"name": n, "error": e} for n, e in failures]},
                      f, indent=1)
            f.write("\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The README's "Choosing checkpoints" comparison: every strategy (block and op-level) on the
example exports at 0.8 / 0.65 / 0.5 of each model's no-checkpoint peak, as `vramsim strategies`
reports it (every peak is the simulator's replay of the plan).

    python3 scripts/checkpoint_table.py [build/cli/vramsim] > table.md

A cell is "peak/baseline, recompute overhead, solve ms" for a plan that fits, "no fit
(lowest peak/baseline)" otherwise. The floor column is the least any plan can peak at
(simulator/peak.h RecomputeFloor: a step's own tensors plus what no plan changes); a budget
below it is "proven infeasible". torch-cuda, Adam (foreach), fp32."""
import json
import subprocess
import sys

VRAMSIM = sys.argv[1] if len(sys.argv) > 1 else "build/cli/vramsim"
MODELS = [
    ("resnet18", ["--dim", "batch=64"]),
    ("mobilenet_v2", ["--dim", "batch=64"]),
    ("vit_b_16", ["--dim", "batch=32"]),
    ("gpt", ["--dim", "batch=16", "--dim", "seq=256"]),
    ("gpt48", ["--dim", "batch=16", "--dim", "seq=256"]),
]
FRACTIONS = [0.8, 0.65, 0.5]


def run(args):
    out = subprocess.run([VRAMSIM] + args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    strategies = None
    lines = []
    for model, dims in MODELS:
        path = f"examples/{model}.onnx"
        peak = run(["estimate", path, "--json"] + dims)["peak_bytes"]
        budgets = [int(peak * f) for f in FRACTIONS]
        report = run(["strategies", path, "--json", "--budgets", ",".join(map(str, budgets))] + dims)
        rows = report["rows"]
        if strategies is None:
            strategies = list(dict.fromkeys(r["strategy"] for r in rows))
            lines.append("| model | budget | floor | " + " | ".join(strategies) + " |")
            lines.append("|---|---|---|" + "---|" * len(strategies))
        floor = report["floor_bytes"] / peak
        for f, b in zip(FRACTIONS, budgets):
            cells = []
            for s in strategies:
                r = next(x for x in rows if x["strategy"] == s and x["budget_bytes"] == b)
                ratio = r["peak_bytes"] / peak
                if r["fits"]:
                    cells.append(f"{ratio:.2f} {r['overhead_pct']:.1f}% {r['solve_ms']:.0f}ms")
                else:
                    cells.append(f"no fit ({ratio:.2f})")
            below = " proven infeasible" if b < report["floor_bytes"] else ""
            lines.append(f"| {model} | {f:g} | {floor:.2f}{below} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

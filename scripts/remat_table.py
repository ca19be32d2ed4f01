#!/usr/bin/env python3
"""Markdown rows from scripts/remat_table.sh's runs (OUTDIR/runs.txt, runN.{json,err,rc,time,check})."""
import json
import os
import re
import sys

out = sys.argv[1]
print("| graph | nodes | budget | method | cost increase % | lower bound % (from) | gap % |"
      " wall s | max RSS MB | checker |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for line in open(os.path.join(out, "runs.txt")):
    n, g, f = line.split()
    base = os.path.join(out, "run" + n)
    name = os.path.basename(g).replace(".json", "")
    name = re.sub(r"_(\d+)_.*_train_nx$", "", name)
    name = re.sub(r"_w0.*$", "", name)
    t = open(base + ".time").read()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", t)
    secs = (int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    rc = int(open(base + ".rc").read())
    try:
        d = json.load(open(base + ".json"))
    except (ValueError, OSError):
        d = {}
    if rc == 0:
        check = "yes" if int(open(base + ".checkrc").read()) == 0 else "FAILED"
        print(f"| {name} | {d['nodes']} | {f} | {d['method']} | {d['cost_increase_pct']:.3f} |"
              f" {d['lower_bound_increase_pct']:.3f} ({d['lower_bound_source']}) |"
              f" {d['gap_pct']:.3f} | {secs:.1f} | {rss:.0f} | {check} |")
    else:
        why = "proven infeasible" if d.get("proven_infeasible") else "none found"
        lb = d.get("lower_bound_increase_pct")
        lb = "—" if lb is None else f"{lb:.3f} ({d['lower_bound_source']})"
        print(f"| {name} | {d.get('nodes', '')} | {f} | {why} (exit {rc}) | — | {lb} | — |"
              f" {secs:.1f} | {rss:.0f} | — |")

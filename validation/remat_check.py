#!/usr/bin/env python3
"""Independent replay of a rematerialization schedule against its graph file.

usage: remat_check.py GRAPH.json PLAN.json

GRAPH.json: a networkx node-link remat graph (Checkmate: nodes {id, cost_cpu, cost_ram},
links {source, target}; Moccasin: nodes {name, duration, out_cost, param_cost}, links {"0", "1"}).
PLAN.json: `vramsim plan --json` output with a "schedule" object (RematScheduleJson,
planners/planner_remat.h), or the schedule object itself: {"steps": [["compute", ID],
["free", ID], ...], "peak_bytes", "cost", ...}, nodes named by their ids in GRAPH.json.

Replays the steps with nothing but the graph: a node is computed only while every input is
alive and its own output is not, a free drops an alive output, every node runs at least once;
memory is the parameters plus every alive output, its peak taken after each computation. The
replayed peak and cost must equal the ones the plan reports (the schedule's, and the plan's
"peak" / "cost" when present), and the peak must be within "budget" when the plan has one.
Prints a one-line summary; exit 0 when all holds, 1 when not, 2 on bad input. Plain python3.
"""
import json
import sys


def load_graph(path):
    with open(path) as f:
        doc = json.load(f)
    nodes, deps = {}, {}
    static = 0
    for jn in doc["nodes"]:
        key = jn["id"] if "id" in jn else jn["name"]
        key = json.dumps(key)
        checkmate = "cost_cpu" in jn or "cost_ram" in jn
        cost = float(jn["cost_cpu" if checkmate else "duration"])
        mem = int(jn["cost_ram" if checkmate else "out_cost"])
        static += int(jn.get("param_cost", 0))
        nodes[key] = (cost, mem)
        deps[key] = []
    links = doc.get("links", doc.get("edges"))
    for jl in links:
        if "source" in jl:
            s, t = jl["source"], jl["target"]
        else:
            s, t = jl["0"], jl["1"]
        deps[json.dumps(t)].append(json.dumps(s))
    return nodes, deps, static


def replay(nodes, deps, static, steps):
    live, ran = set(), set()
    cur = peak = static
    cost = 0.0
    computations = 0
    for k, step in enumerate(steps):
        op, node = step[0], json.dumps(step[1])
        if node not in nodes:
            raise ValueError(f"step {k} names no node of the graph: {step[1]!r}")
        if op == "compute":
            if node in live:
                raise ValueError(f"step {k} computes {step[1]} while its output is alive")
            for d in deps[node]:
                if d not in live:
                    raise ValueError(f"step {k} computes {step[1]} but its input {d} is not alive")
            live.add(node)
            ran.add(node)
            cur += nodes[node][1]
            peak = max(peak, cur)
            cost += nodes[node][0]
            computations += 1
        elif op == "free":
            if node not in live:
                raise ValueError(f"step {k} frees {step[1]} which is not alive")
            live.remove(node)
            cur -= nodes[node][1]
        else:
            raise ValueError(f"step {k}: unknown operation {op!r}")
    missing = [k for k in nodes if k not in ran]
    if missing:
        raise ValueError(f"the schedule never computes {missing[0]} ({len(missing)} nodes)")
    return peak, cost, computations


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    try:
        nodes, deps, static = load_graph(argv[1])
        with open(argv[2]) as f:
            plan = json.load(f)
        sched = plan.get("schedule", plan)
        steps = sched["steps"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.stderr.write(f"remat_check: bad input: {e}\n")
        return 2
    try:
        peak, cost, computations = replay(nodes, deps, static, steps)
    except ValueError as e:
        print(f"FAIL: {e}")
        return 1
    problems = []
    for where, obj in (("schedule", sched), ("plan", plan)):
        if "peak_bytes" in obj and int(obj["peak_bytes"]) != peak:
            problems.append(f"{where} reports peak {obj['peak_bytes']}, replayed {peak}")
        if "peak" in obj and int(obj["peak"]) != peak:
            problems.append(f"{where} reports peak {obj['peak']}, replayed {peak}")
        if "cost" in obj and abs(float(obj["cost"]) - cost) > 1e-9 * max(1.0, abs(cost)):
            problems.append(f"{where} reports cost {obj['cost']}, replayed {cost}")
    if "budget" in plan and peak > int(plan["budget"]):
        problems.append(f"peak {peak} over the budget {plan['budget']}")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    base = sum(c for c, _ in nodes.values())
    inc = 100.0 * (cost - base) / base if base else 0.0
    print(f"OK: {len(steps)} steps, {computations} computations for {len(nodes)} nodes, "
          f"peak {peak}, cost {cost:g} (+{inc:.3f}% over the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Random layered DAGs in the form of Moccasin's published ones (Gagrani et al. 2022, appendix A).

usage: random_layered.py N SEED OUT.json [--w W] [--nlv NLV] [--ed ED] [--scd SCD]

Writes a networkx node-link JSON that importer/remat_graph.h reads, shaped like
../shared/remat-graphs/random_layered_n*_w*_nlv*_ed*_scd*.json; the parameters carry the same
names and defaults to those of the n250 file (w 0.43, nlv 0.75, ed 0.2, scd 0.14):

- node 0 is the source, node 1 the sink (duration 0); nodes 2.. are the layers, in order.
- mean layer width sqrt(w * N) (n100 at w 0.27: 5.2 measured, 5.2 here; n250 at w 0.43: 11.3
  measured, 10.4 here); each layer's width uniform in mean * [1 - nlv, 1 + nlv], at least 1.
- consecutive layers: each pair of nodes linked with probability 1.5 * ed, then every node is
  given one predecessor in the layer above and one successor in the layer below where it has
  none (1.5: the published n250 links 0.24 to 0.4 of the pairs of consecutive layers at ed 0.2,
  944 edges; this gives about as many).
- skip connections (from a layer to one at least two below) are a fraction scd of all edges
  (33/236 and 129/944 in the published files), endpoints uniform.
- duration uniform 0..999; out_cost a multiple of 10 from an exponential of mean 2000
  (published: median 1310-1560, mean 2040, 90th percentile 4370-4540), 10 to 8200 (the
  published maximum);
  param_cost 0.
- graph.order: a random topological order (Kahn's, picking uniformly among the ready nodes),
  the baseline order the importer uses.

Plain python3, no dependencies; the same N, SEED and parameters give the same file.
"""
import json
import math
import random
import sys


def generate(n, seed, w=0.43, nlv=0.75, ed=0.2, scd=0.14):
    if n < 3:
        raise ValueError("N must be at least 3 (source, sink and one node)")
    rng = random.Random(seed)
    inner = n - 2
    mean = max(1.0, math.sqrt(w * n))
    widths = []
    while sum(widths) < inner:
        lo, hi = mean * (1 - nlv), mean * (1 + nlv)
        widths.append(max(1, int(round(rng.uniform(lo, hi)))))
    widths[-1] -= sum(widths) - inner
    if widths[-1] <= 0:
        widths.pop()
        widths[-1] += inner - sum(widths)
    layers, next_id = [[0]], 2
    for width in widths:
        layers.append(list(range(next_id, next_id + width)))
        next_id += width
    layers.append([1])
    layer_of = {v: l for l, nodes in enumerate(layers) for v in nodes}
    edges = set()
    for l in range(len(layers) - 1):
        up, down = layers[l], layers[l + 1]
        for a in up:
            for b in down:
                if rng.random() < 1.5 * ed or len(up) == 1 or len(down) == 1:
                    edges.add((a, b))
        for b in down:
            if not any((a, b) in edges for a in up):
                edges.add((rng.choice(up), b))
        for a in up:
            if not any((a, b) in edges for b in down):
                edges.add((a, rng.choice(down)))
    # Skip connections: scd of the total, so scd / (1 - scd) times the consecutive edges.
    want = int(round(len(edges) * scd / (1 - scd)))
    if len(layers) > 3:
        tries = 0
        while want > 0 and tries < 100 * (want + 1):
            tries += 1
            la = rng.randrange(1, len(layers) - 2)
            lb = rng.randrange(la + 2, len(layers) - 1) if la + 2 < len(layers) - 1 else None
            if lb is None:
                continue
            e = (rng.choice(layers[la]), rng.choice(layers[lb]))
            if e in edges:
                continue
            edges.add(e)
            want -= 1
    edges = sorted(edges)
    nodes = []
    for v in range(n):
        source_or_sink = v in (0, 1)
        out = min(8200, max(10, 10 * int(round(rng.expovariate(1 / 200.0)))))
        nodes.append({"out_cost": out, "param_cost": 0,
                      "duration": 0 if source_or_sink else rng.randint(0, 999), "name": v})
    succ = {v: [] for v in range(n)}
    indeg = {v: 0 for v in range(n)}
    for a, b in edges:
        succ[a].append(b)
        indeg[b] += 1
    ready, order = [v for v in range(n) if indeg[v] == 0], []
    while ready:
        v = ready.pop(rng.randrange(len(ready)))
        order.append(v)
        for s in succ[v]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    assert len(order) == n, "not a DAG"
    pos = {}
    for l, layer in enumerate(layers):
        for k, v in enumerate(layer):
            pos[str(v)] = [k - len(layer) // 2, -l]
    name = f"random_layered_n{n}_w{w:g}_nlv{nlv:g}_ed{ed:g}_scd{scd:g}_seed{seed}"
    graph = {"name": name, "pos": pos, "source_node": 0, "target_node": 1,
             "node_output_cost_tag": "out_cost", "node_param_cost_tag": "param_cost",
             "node_duration_tag": "duration", "order": order}
    return {"directed": True, "multigraph": False, "graph": graph, "nodes": nodes,
            "links": [{"0": a, "1": b} for a, b in edges]}


def main(argv):
    args, opts = [], {}
    it = iter(argv[1:])
    for a in it:
        if a.startswith("--") and a[2:] in ("w", "nlv", "ed", "scd"):
            opts[a[2:]] = float(next(it))
        else:
            args.append(a)
    if len(args) != 3:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    g = generate(int(args[0]), int(args[1]), **opts)
    with open(args[2], "w") as f:
        json.dump(g, f, separators=(",", ":"))
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/python3
"""Per-rank ground truth for data parallelism: real torch.distributed runs on CPU (gloo).

Each case starts WORLD processes (subprocesses of this script, MASTER_ADDR=127.0.0.1, a free
port), every one with its own LD_PRELOAD allocation counter (validation/alloc_counter.c, the
same exact count of c10 tensor storage as measure.py).  Each rank builds the same model
(torch.manual_seed(0)), its own batch of the per-rank size, wraps the model and runs training
steps as measure.py does; its peak and steady bytes are written per rank to
validation/distributed.json.

Strategies:
  single  one process, no torch.distributed (the reference: equals measure.py's figure)
  ddp     DistributedDataParallel with its defaults (bucket_cap_mb=25,
          gradient_as_bucket_view=False, broadcast_buffers=True,
          find_unused_parameters=False) and a plain optimizer
  zero1   the same DDP model, its optimizer a
          torch.distributed.optim.ZeroRedundancyOptimizer(optimizer_class=...) with defaults
          (parameters_as_bucket_view=False, overlap_with_ddp=False)
FSDP is probed too (import and construction on CPU); on torch 1.13 / Python 3.11 it fails and
the error is recorded under "unsupported".

The step: zero_grad(set_to_none=True); out = model(x); loss = cross_entropy; backward; step
(measure.train_step).  Steps 1 and 2 run first (DDP rebuilds its buckets in the order the
gradients arrived at the start of step 2's forward), then steady_bytes is the live total and
the peak of step 3 is measured_peak_bytes.  Step 2's own peak is kept as step2_peak_bytes.

Run (the Debian interpreter):
    /usr/bin/python3 validation/measure_distributed.py            # all cases
    /usr/bin/python3 validation/measure_distributed.py --only mlp # matching cases, merged
"""
import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "distributed.json")
NUM_THREADS = 2  # per rank, as measure.py

# (arch, dims per rank, optimizer); arch as in measure.ARCHS.
MODELS = [
    ("mlp", {"batch": 64}, "adam"),
    ("gpt_l2_e384", {"batch": 4, "seq": 64}, "adam"),
    ("resnet18", {"batch": 4}, "adam"),
]
WORLDS = [2, 4]


def cases():
    out = []
    for arch, dims, opt in MODELS:
        tag = "_".join(f"{k[0]}{v}" for k, v in dims.items())
        out.append({"name": f"{arch}_{tag}_{opt}_single", "arch": arch, "dims": dims,
                    "optimizer": opt, "strategy": "single", "world_size": 1})
        for n in WORLDS:
            for strategy in ("ddp", "zero1"):
                out.append({"name": f"{arch}_{tag}_{opt}_{strategy}_w{n}", "arch": arch,
                            "dims": dims, "optimizer": opt, "strategy": strategy,
                            "world_size": n})
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# one rank (runs under LD_PRELOAD)

def run_rank(case, rank, out_path):
    import torch
    import torch.distributed as dist
    sys.path.insert(0, HERE)
    import measure  # build_model, make_batch, make_optimizer, train_step, Counter

    torch.set_num_threads(NUM_THREADS)
    counter = measure.Counter()
    counter.register_libraries()
    world = case["world_size"]
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    gc.collect()
    base = counter.live()
    rec = {"rank": rank}

    model = measure.build_model(case["arch"])
    torch.manual_seed(1000 + rank)  # each rank its own batch
    x, y = measure.make_batch(case["arch"], case["dims"], model)
    params = list(model.parameters())
    rec["param_bytes"] = measure.tensor_bytes(params)
    rec["buffer_bytes"] = measure.tensor_bytes(model.buffers())
    rec["input_bytes"] = measure.tensor_bytes((x, y))
    net = model
    if case["strategy"] in ("ddp", "zero1"):
        from torch.nn.parallel import DistributedDataParallel as DDP
        # gloo cannot broadcast bool tensors ("Invalid scalar type"): GPT's causal-mask
        # buffers (identical on every rank anyway) are left out of DDP's buffer syncs.
        ignore = [n for n, b in model.named_buffers() if b.dtype == torch.bool]
        if ignore:
            DDP._set_params_and_buffers_to_ignore_for_model(model, ignore)
            rec["ddp_ignored_buffers"] = ignore
        before = counter.live()
        net = DDP(model)  # bucket_cap_mb=25, gradient_as_bucket_view=False
        gc.collect()
        rec["ddp_construct_bytes"] = counter.live() - before
    if case["strategy"] == "zero1":
        from torch.distributed.optim import ZeroRedundancyOptimizer
        cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[case["optimizer"]]
        kw = {"lr": 1e-3} if case["optimizer"] == "adam" else {"lr": 0.01}
        opt = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=cls, **kw)
        owned = opt._partition_parameters()[rank]
        rec["owned_param_bytes"] = sum(measure.tensor_bytes(g["params"]) for g in owned)
        rec["owned_params"] = sum(len(g["params"]) for g in owned)
    else:
        opt = measure.make_optimizer(case["optimizer"], net.parameters())

    def step():
        measure.train_step(net, opt, x, y)
        opt.zero_grad(set_to_none=True)

    step()
    gc.collect()
    rec["step1_after_bytes"] = counter.live() - base
    counter.reset_peak()
    t0 = time.time()
    step()
    rec["step2_peak_bytes"] = counter.peak() - base
    gc.collect()
    rec["steady_bytes"] = counter.live() - base
    counter.reset_peak()
    step()
    rec["measured_peak_bytes"] = counter.peak() - base
    rec["step_s"] = round((time.time() - t0) / 2, 2)
    gc.collect()
    rec["after_bytes"] = counter.live() - base
    inner = opt.optim if case["strategy"] == "zero1" else opt
    rec["optimizer_state_bytes"] = sum(
        measure.tensor_bytes(v for v in st.values() if torch.is_tensor(v))
        for st in inner.state.values())
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    with open(out_path, "w") as f:
        json.dump(rec, f)


def probe_fsdp():
    """Tries FSDP on CPU with gloo (one rank).  Returns what stopped it, or None if it ran.

    torch 1.13's FSDP package does not import on Python 3.11 (a dataclass with a mutable
    default); with that worked around (the default turned into a default_factory), the
    constructor is tried on a Linear."""
    import copy
    import dataclasses
    import torch
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    errors = []
    try:
        import torch.distributed.fsdp  # noqa: F401
    except Exception as e:  # noqa: BLE001 -- the error is the finding
        errors.append(f"import: {type(e).__name__}: {e}")
        for m in [m for m in sys.modules if m.startswith("torch.distributed.fsdp")
                  or m.startswith("torch.distributed._shard")]:
            del sys.modules[m]
        orig = dataclasses._get_field

        def get_field(cls, name, *rest):
            d = cls.__dict__.get(name, dataclasses.MISSING)
            if isinstance(d, dataclasses.Field) and d.default is not dataclasses.MISSING \
                    and type(d.default).__hash__ is None:
                d.default_factory, d.default = (lambda v=d.default: copy.deepcopy(v)), \
                    dataclasses.MISSING
            return orig(cls, name, *rest)
        dataclasses._get_field = get_field
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        model = FSDP(torch.nn.Linear(8, 8))
        model(torch.randn(2, 8)).sum().backward()
    except Exception as e:  # noqa: BLE001
        errors.append(f"with the import worked around, FSDP(nn.Linear(8, 8)): "
                      f"{type(e).__name__}: {e}")
    finally:
        dist.destroy_process_group()
    return "; ".join(errors) or None


# --------------------------------------------------------------------------------------------
# the driver

def run_case(case, so, tmp):
    port = free_port()
    procs, outs = [], []
    for rank in range(case["world_size"]):
        env = dict(os.environ)
        env.update(LD_PRELOAD=so, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS=str(NUM_THREADS))
        out = os.path.join(tmp, f"{case['name']}.{rank}.json")
        outs.append(out)
        procs.append(subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--rank", str(rank), "--case",
             json.dumps(case), "--rank-out", out], env=env))
    codes = [p.wait(timeout=900) for p in procs]
    if any(codes):
        raise SystemExit(f"{case['name']}: ranks exited with {codes}")
    ranks = []
    for out in outs:
        with open(out) as f:
            ranks.append(json.load(f))
    return ranks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only", default="", help="substring of the case names to (re)measure")
    ap.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--rank-out", help=argparse.SUPPRESS)
    ap.add_argument("--probe-fsdp", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank is not None:
        run_rank(json.loads(args.case), args.rank, args.rank_out)
        return
    if args.probe_fsdp:
        print(json.dumps({"error": probe_fsdp()}))
        return

    import torch
    tmp = tempfile.mkdtemp(prefix="vramsim_dist_")
    try:
        so = os.path.join(tmp, "alloc_counter.so")
        subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", so,
                        os.path.join(HERE, "alloc_counter.c"), "-ldl", "-lpthread"], check=True)
        old = {}
        if os.path.exists(args.out):
            with open(args.out) as f:
                old = json.load(f)
        results = {c["name"]: c for c in old.get("cases", [])}
        todo = [c for c in cases() if args.only in c["name"]]
        print(f"{'case':40} {'rank':>4} {'peak':>14} {'steady':>14} {'step2 peak':>14} {'s':>6}")
        for case in todo:
            ranks = run_case(case, so, tmp)
            for r in ranks:
                print(f"{case['name']:40} {r['rank']:4} {r['measured_peak_bytes']:14,} "
                      f"{r['steady_bytes']:14,} {r['step2_peak_bytes']:14,} {r['step_s']:6}",
                      flush=True)
            arch = case["arch"]
            entry = {"name": case["name"], "model": f"validation/models/{arch}.onnx",
                     "dims": case["dims"], "optimizer": case["optimizer"],
                     "loss": "cross-entropy", "strategy": case["strategy"],
                     "world_size": case["world_size"],
                     "zero": 1 if case["strategy"] == "zero1" else 0,
                     "measured_peak_bytes": max(r["measured_peak_bytes"] for r in ranks),
                     "torch": torch.__version__, "ranks": ranks}
            results[case["name"]] = entry
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe-fsdp"],
                           capture_output=True, text=True)
        fsdp = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {
            "error": (r.stderr.strip().splitlines() or ["exit " + str(r.returncode)])[-1]}
        order = [c["name"] for c in cases()]
        doc = {
            "settings": {
                "backend": "gloo", "device": "cpu", "master_addr": "127.0.0.1",
                "threads_per_rank": NUM_THREADS, "torch": torch.__version__,
                "python": sys.version.split()[0],
                "ddp": {"bucket_cap_mb": 25, "gradient_as_bucket_view": False,
                        "broadcast_buffers": True, "find_unused_parameters": False,
                        "bool_buffers": "left out of DDP's syncs with "
                                        "DDP._set_params_and_buffers_to_ignore_for_model "
                                        "(gloo cannot broadcast bool: 'Invalid scalar type')"},
                "zero1": "ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=Adam, "
                         "lr=1e-3), parameters_as_bucket_view=False, overlap_with_ddp=False",
                "optimizers": {"adam": "torch.optim.Adam(lr=1e-3), foreach=None"},
                "step": "steps 1 and 2 warm up; steady_bytes before step 3, "
                        "measured_peak_bytes is step 3's peak (per rank)",
            },
            "unsupported": {"fsdp": fsdp.get("error") or "none: FSDP ran"},
            "cases": [results[n] for n in order if n in results],
        }
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"wrote {os.path.relpath(args.out, REPO_ROOT)}; fsdp: {doc['unsupported']['fsdp']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

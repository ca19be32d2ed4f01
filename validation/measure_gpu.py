#!/usr/bin/env python3
"""Measure CUDA memory of one steady-state PyTorch training step (ground truth for vramsim fit).

For every case this reuses validation/measure.py: the same architectures, case records
(measure._case), models (measure.build_model), batches, optimizers, checkpointing and training
step (measure.train_step, with its autocast pointed at CUDA), and the same exports
(export_models.export_module, weightless, dynamic batch). On the GPU it records, for step 2
(step 1 has created the optimizer state and the cuBLAS workspaces; the allocator keeps what
step 1 left cached, as in a real run):

  measured_peak_bytes      torch.cuda.max_memory_allocated() during step 2
  measured_reserved_bytes  torch.cuda.max_memory_reserved() during step 2 (= the largest
                           reserved so far: nothing calls empty_cache)
  steady_bytes             torch.cuda.memory_allocated() just before step 2
  requested_peak_bytes     memory_stats()["requested_bytes.all.peak"]: the peak of the
                           unrounded request sizes
  param_bytes

Nothing is subtracted: the numbers include the cuBLAS / cuBLASLt workspaces, which PyTorch
allocates through the caching allocator on the first matmul of each thread (vramsim fit adds
them too). Before each case the script clears the cuBLAS workspaces
(torch._C._cuda_clearCublasWorkspaces) and empties the cache, so every case starts from
memory_reserved() == 0. Optimizers are PyTorch 2's defaults: foreach=None, which is the
foreach implementation when every parameter is on the GPU.

Cases: --cases gpu (default: GPU-sized batches, below), main / holdout (measure.py's CPU case
lists, same names), all. Output: validation/cases_gpu.json (cases_gpu_expandable.json with
--expandable-segments, which re-runs this script with
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True).

--dry-run needs no GPU: it checks the case list (unique names, known architectures,
checkpointed submodules that exist, accumulation that divides the batch), exports every
architecture it needs into a temporary directory and checks the files, and runs the whole
measuring path on the CPU at batch 2 (or the accumulation count) with the CUDA statistics
replaced by None. It writes nothing under validation/ unless --out says so.

  python3 validation/measure_gpu.py                          # on a CUDA machine
  python3 validation/measure_gpu.py --only resnet18 --repeat 1
  python3 validation/measure_gpu.py --expandable-segments
  /usr/bin/python3 validation/measure_gpu.py --dry-run --only gpt   # here (CPU torch)
"""

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import measure  # noqa: E402  (cases, models, batches, optimizers, step, exports)

REPO_ROOT = measure.REPO_ROOT
DEFAULT_OUT = os.path.join(HERE, "cases_gpu.json")
DEFAULT_OUT_EXPANDABLE = os.path.join(HERE, "cases_gpu_expandable.json")
EXPANDABLE_CONF = "expandable_segments:True"

_case = measure._case

# GPU-sized batches: the allocator's rounding, segment sizes and fragmentation matter at these
# sizes (all of them fit a 16 GB T4 with fp32 Adam, except where noted).
GPU_CASES = (
    [_case("resnet18", o, b) for b in (64, 256) for o in ("sgd", "adam")]
    + [_case("resnet18", "adam", 256, precision="amp-bf16"),
       _case("resnet18", "adam", 128, accum=4),
       _case("resnet18", "adam", 128, ckpt="resnet18:blocks"),
       _case("mobilenet_v2", "adam", 128),
       _case("densenet121", "sgd", 64),
       _case("vit_b_16", "adam", 32),
       _case("vit_b_16", "adam", 64, precision="amp-bf16"),
       _case("vit_b_16", "adam", 64, ckpt="vit_b_16:layers"),
       _case("gpt", "adam", 32, 128),
       _case("gpt", "adam", 128, 128, precision="amp-bf16"),
       _case("gpt", "adam", 128, 128, precision="bf16"),
       _case("gpt", "adam", 128, 128, ckpt="gpt:blocks"),
       _case("gpt_l2_e384", "adamw", 64, 64),
       _case("mlp", "adam", 1024),
       _case("resnet50", "momentum", 64)])
CASE_SETS = {"gpu": GPU_CASES, "main": measure.CASE_SETS["main"],
             "holdout": measure.CASE_SETS["holdout"]}

# torch.cuda.get_device_name() -> vramsim's --gpu profile.
GPU_PROFILES = [("H200", "h200"), ("H100", "h100-80gb"), ("A100-SXM4-80GB", "a100-80gb"),
                ("A100 80GB", "a100-80gb"), ("A100", "a100-40gb"), ("L4", "l4"), ("T4", "t4"),
                ("RTX 4090", "rtx4090")]


def vramsim_profile(device_name):
    for key, profile in GPU_PROFILES:
        if key in device_name:
            return profile
    return None


# --------------------------------------------------------------------------------------------
# the case list

def check_cases(cases):
    """Problems with the case list, as strings (empty when it is fine)."""
    problems, seen = [], set()
    for c in cases:
        name = c["name"]
        if name in seen:
            problems.append(f"{name}: duplicate name")
        seen.add(name)
        if c["arch"] not in measure.ARCHS:
            problems.append(f"{name}: unknown architecture {c['arch']}")
            continue
        family = measure.ARCHS[c["arch"]][0]
        if (family == "gpt") != ("seq" in c["dims"]):
            problems.append(f"{name}: GPT cases need a seq dim, others none")
        if c["dims"]["batch"] % c.get("accum", 1):
            problems.append(f"{name}: accum {c['accum']} does not divide the batch")
        if c.get("precision") not in (None,) + measure.PRECISIONS:
            problems.append(f"{name}: unknown precision {c['precision']}")
        if c["optimizer"] not in ("sgd", "momentum", "adam", "adamw"):
            problems.append(f"{name}: unknown optimizer {c['optimizer']}")
    return problems


def check_submodules(cases):
    """Checkpointed module paths exist in the built models."""
    problems = []
    for arch in sorted({c["arch"] for c in cases if c.get("checkpoint")}):
        model = measure.build_model(arch)
        for c in cases:
            if c["arch"] != arch:
                continue
            for path in c.get("checkpoint", []):
                try:
                    model.get_submodule(path)
                except AttributeError:
                    problems.append(f"{c['name']}: no submodule {path}")
    return problems


# --------------------------------------------------------------------------------------------
# exports (child processes, as measure.run_exports does)

def export_to(arch, models_dir):
    measure.MODELS_DIR = models_dir
    measure.export_arch(arch)


def run_exports(archs, models_dir):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for arch in archs:
        t0 = time.time()
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--export-arch", arch,
                            "--models-dir", models_dir], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise SystemExit(f"export of {arch} failed")
        print(f"exported {arch} to {models_dir} ({time.time() - t0:.1f} s)", flush=True)


def check_export(arch, models_dir):
    import onnx
    path = os.path.join(models_dir, arch + ".onnx")
    if not os.path.exists(path):
        return [f"{arch}: {path} was not written"]
    m = onnx.load(path, load_external_data=False)
    inputs = [i.name for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    outputs = [o.name for o in m.graph.output]
    want = ["idx"] if measure.ARCHS[arch][0] == "gpt" else ["input"]
    problems = []
    if inputs != want:
        problems.append(f"{arch}: inputs {inputs}, expected {want}")
    if outputs != ["logits"]:
        problems.append(f"{arch}: outputs {outputs}, expected ['logits']")
    return problems


# --------------------------------------------------------------------------------------------
# measuring

@contextlib.contextmanager
def autocast_on(device_type):
    """measure.train_step enters torch.autocast("cpu", ...); run it on `device_type`."""
    import torch
    original = torch.autocast

    def redirected(dev, *args, **kwargs):
        return original(device_type if dev == "cpu" else dev, *args, **kwargs)

    torch.autocast = redirected
    try:
        yield
    finally:
        torch.autocast = original


class CudaStats:
    def __init__(self):
        import torch
        self.torch = torch

    def sync(self):
        self.torch.cuda.synchronize()

    def reset_all(self):
        """Frees everything the allocator caches, the cuBLAS workspaces included."""
        clear = getattr(self.torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear is not None:
            clear()
        self.torch.cuda.empty_cache()
        self.torch.cuda.reset_peak_memory_stats()

    def allocated(self):
        return self.torch.cuda.memory_allocated()

    def reserved(self):
        return self.torch.cuda.memory_reserved()

    def reset_peak(self):
        self.torch.cuda.reset_peak_memory_stats()

    def peaks(self):
        s = self.torch.cuda.memory_stats()
        return {"measured_peak_bytes": self.torch.cuda.max_memory_allocated(),
                "measured_reserved_bytes": self.torch.cuda.max_memory_reserved(),
                "requested_peak_bytes": s.get("requested_bytes.all.peak"),
                "_segments": s.get("segment.all.peak"),
                "_alloc_retries": s.get("num_alloc_retries"),
                "_ooms": s.get("num_ooms")}


class NoStats:
    """--dry-run on the CPU: the same calls, no numbers."""

    def sync(self):
        pass

    def reset_all(self):
        pass

    def allocated(self):
        return None

    def reserved(self):
        return None

    def reset_peak(self):
        pass

    def peaks(self):
        return {"measured_peak_bytes": None, "measured_reserved_bytes": None,
                "requested_peak_bytes": None, "_segments": None, "_alloc_retries": None,
                "_ooms": None}


def prepare_case(case, device):
    """measure.py's model, batch and optimizer for the case, on `device`; the optimizer is made
    after the move, as training scripts do."""
    import torch
    model = measure.build_model(case["arch"])
    x, y = measure.make_batch(case["arch"], case["dims"], model)
    if case.get("precision") == "bf16":
        model.to(torch.bfloat16)
        if x.is_floating_point():
            x = x.to(torch.bfloat16)
    model.to(device)
    x, y = x.to(device), y.to(device)
    if case.get("checkpoint"):
        measure.apply_checkpointing(model, case["checkpoint"])
    opt = measure.make_optimizer(case["optimizer"], model.parameters())
    return model, x, y, opt


def measure_case(case, stats, device):
    gc.collect()
    stats.sync()
    stats.reset_all()
    base_allocated, base_reserved = stats.allocated(), stats.reserved()
    if base_allocated:
        print(f"  note: {base_allocated} B allocated before {case['name']}", flush=True)
    t0 = time.time()
    model, x, y, opt = prepare_case(case, device)
    param_bytes = measure.tensor_bytes(model.parameters())
    step_kw = {"precision": case.get("precision"), "accum": case.get("accum", 1)}
    with autocast_on(device):
        measure.train_step(model, opt, x, y, **step_kw)
        opt.zero_grad(set_to_none=True)
        gc.collect()
        stats.sync()
        steady = stats.allocated()
        stats.reset_peak()
        t1 = time.time()
        measure.train_step(model, opt, x, y, **step_kw)
        opt.zero_grad(set_to_none=True)
        stats.sync()
    t2 = time.time()
    r = stats.peaks()
    r.update({"steady_bytes": steady, "param_bytes": param_bytes,
              "_base_allocated": base_allocated, "_base_reserved": base_reserved,
              "_step2_s": t2 - t1, "_case_s": t2 - t0})
    del model, x, y, opt
    gc.collect()
    return r


def dry_run_case(case):
    """The case at batch 2 (or its accumulation count), for the CPU."""
    c = dict(case)
    c["dims"] = dict(case["dims"])
    c["dims"]["batch"] = max(2, case.get("accum", 1))
    return c


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", choices=["gpu", "main", "holdout", "all"], default="gpu")
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    ap.add_argument("--out", default=None, help="output JSON (default validation/cases_gpu.json)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="measure every case this many times and check the numbers agree")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX exports")
    ap.add_argument("--expandable-segments", action="store_true",
                    help=f"measure with PYTORCH_CUDA_ALLOC_CONF={EXPANDABLE_CONF}")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: check the cases, exports and plumbing on the CPU")
    ap.add_argument("--export-arch", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--models-dir", default=measure.MODELS_DIR, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.export_arch:
        export_to(a.export_arch, a.models_dir)
        return

    if a.expandable_segments and os.environ.get("PYTORCH_CUDA_ALLOC_CONF") != EXPANDABLE_CONF:
        # The allocator reads its configuration once, before the first CUDA allocation.
        env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF=EXPANDABLE_CONF)
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)

    sets = ["gpu", "main", "holdout"] if a.cases == "all" else [a.cases]
    selected = [c for s in sets for c in CASE_SETS[s] if a.only is None or a.only in c["name"]]
    if not selected:
        ap.error("no case matches")
    problems = check_cases([c for s in sets for c in CASE_SETS[s]])
    problems += check_submodules(selected)
    if problems:
        raise SystemExit("case list problems:\n  " + "\n  ".join(problems))
    print(f"{len(selected)} cases, the list checks out", flush=True)

    archs = sorted({c["arch"] for c in selected})
    tmp = None
    if a.dry_run:
        tmp = tempfile.mkdtemp(prefix="vramsim_gpu_dry_")
        models_dir = tmp
    else:
        models_dir = a.models_dir
    if not a.no_export:
        run_exports(archs, models_dir)
        bad = [p for arch in archs for p in check_export(arch, models_dir)]
        if bad:
            raise SystemExit("export problems:\n  " + "\n  ".join(bad))

    import torch
    if a.dry_run:
        device, stats = "cpu", NoStats()
        torch.set_num_threads(measure.NUM_THREADS)
        runs = [dry_run_case(c) for c in selected]
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device (use --dry-run to check the script without one)")
        device, stats = "cuda", CudaStats()
        runs = selected
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    props = torch.cuda.get_device_properties(0) if device == "cuda" else None
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    print(f"torch {torch.__version__}, device {device_name}, "
          f"PYTORCH_CUDA_ALLOC_CONF={conf!r}", flush=True)

    hdr = f"{'case':48s} {'allocated MiB':>13s} {'reserved MiB':>12s} {'steady MiB':>10s}  repeat"
    print(hdr)
    print("-" * len(hdr), flush=True)
    records, t_start = [], time.time()

    def mib(v, width):
        return f"{v / 2**20:{width}.2f}" if v is not None else "-".rjust(width)

    for c in runs:
        results = [measure_case(c, stats, device) for _ in range(max(1, a.repeat))]
        r = results[0]
        keys = ("measured_peak_bytes", "measured_reserved_bytes", "steady_bytes")
        same = all(all(x[k] == r[k] for k in keys) for x in results)
        rec = {"name": c["name"],
               "model": os.path.relpath(os.path.join(measure.MODELS_DIR, c["arch"] + ".onnx"),
                                        REPO_ROOT),
               "dims": c["dims"], "optimizer": c["optimizer"], "loss": "cross-entropy",
               **{k: c[k] for k in ("precision", "accum", "checkpoint") if k in c},
               "measured_peak_bytes": r["measured_peak_bytes"],
               "measured_reserved_bytes": r["measured_reserved_bytes"],
               "requested_peak_bytes": r["requested_peak_bytes"],
               "steady_bytes": r["steady_bytes"], "param_bytes": r["param_bytes"],
               "torch": torch.__version__,
               "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
               "gpu": device_name, "vramsim_gpu": vramsim_profile(device_name),
               "gpu_total_bytes": props.total_memory if props else None,
               "allocator_conf": conf,
               "detail": {"segments": r["_segments"], "alloc_retries": r["_alloc_retries"],
                          "ooms": r["_ooms"], "base_allocated": r["_base_allocated"],
                          "base_reserved": r["_base_reserved"]}}
        records.append(rec)
        rep = "n/a" if len(results) == 1 else ("same" if same else "DIFFER")
        print(f"{c['name']:48s} {mib(r['measured_peak_bytes'], 13)} "
              f"{mib(r['measured_reserved_bytes'], 12)} {mib(r['steady_bytes'], 10)}  {rep}"
              f"  ({r['_step2_s']:.2f} s)", flush=True)
    print(f"measuring took {time.time() - t_start:.1f} s", flush=True)

    out = a.out
    if out is None and not a.dry_run:
        out = DEFAULT_OUT_EXPANDABLE if conf == EXPANDABLE_CONF else DEFAULT_OUT
    if out is None:
        out = os.path.join(tmp, "cases_gpu.json")
    if a.only is not None and os.path.exists(out) and not a.dry_run:
        with open(out) as f:
            old = {r["name"]: r for r in json.load(f)}
        old.update({r["name"]: r for r in records})
        records = list(old.values())
    with open(out, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    print(f"wrote {len(records)} cases to {out}")


if __name__ == "__main__":
    main()

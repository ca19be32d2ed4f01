#!/usr/bin/env python3
"""One real-PyTorch check of an op-level checkpoint plan (planners/op_level.h), on CPU.

The model: x -> [pre: h = x + B] -> [blk: a = h @ W1; b = tanh(a); c = tanh(b); y = c @ W2],
cross-entropy on y, SGD; x [N, D] float32, W1 [D, H], W2 [H, D] (a, b, c [N, H]). Three ways to run blk:
  none        plain autograd
  block       torch.utils.checkpoint(blk, h, use_reentrant=False)   (vramsim --checkpoint blk)
  save-matmul a = h @ W1 kept from the forward, the backward recomputes b and c from it (not y)
              and runs blk's backward: what vramsim --checkpoint 'blk:save=MatMul' simulates
              (torch 1.13 has no selective checkpointing, so it is a custom autograd.Function:
              the MatMul output is held as SAC's MUST_SAVE holds it, dropped once the
              recompute has read it).
Each is measured as validation/measure.py measures (alloc_counter.c: c10's tensor storage,
the second step's peak) and compared with `vramsim estimate` on the exported ONNX model.

    /usr/bin/python3 validation/op_level_check.py [build/cli/vramsim]

Measured (torch 1.13.1, CPU, N=1024 D=1024 H=4096), bytes:
    mode           measured     vramsim   diff
    none          130035720   130035716     -4
    block         130040776   130040772     -4
    save-matmul   134230024   130040772  -4189252
none and block agree. save-matmul measures 4 MiB more: 4194304 = one [N, D] float32 tensor,
less the 5056-byte RNG state the custom Function does not keep. The Function runs blk's whole
backward as one autograd node, so the engine holds its incoming gradient (the logits' gradient,
[N, D]) until all of it returns, where autograd (and vramsim) free it after MatMul_1's
backward: an artifact of emulating SAC without torch 2.x, not a check of the saved set. A
torch 2.x run with create_selective_checkpoint_contexts is the check this lacks.
"""
import ctypes
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
N, D, H = 1024, 1024, 4096
MODES = {"none": "", "block": "blk", "save-matmul": "blk:save=MatMul"}


def build():
    import torch
    from torch import nn

    class Pre(nn.Module):
        def __init__(self):
            super().__init__()
            self.B = nn.Parameter(torch.randn(D))

        def forward(self, x):
            return x + self.B

    class Blk(nn.Module):
        def __init__(self):
            super().__init__()
            self.W1 = nn.Parameter(torch.randn(D, H) / D ** 0.5)
            self.W2 = nn.Parameter(torch.randn(H, D) / H ** 0.5)

        def forward(self, h):
            return torch.tanh(torch.tanh(h @ self.W1)) @ self.W2

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = Pre()
            self.blk = Blk()

        def forward(self, x):
            return self.blk(self.pre(x))

    torch.manual_seed(0)
    return Tiny()


def save_matmul(model):
    """blk with its MatMul output kept and b, c recomputed in the backward."""
    import torch

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, W1, W2):
            a = h @ W1
            y = torch.tanh(torch.tanh(a)) @ W2  # b, c: temporaries of the forward
            ctx.save_for_backward(h, W1, W2)
            ctx.a = a  # kept (MUST_SAVE); not a saved variable, so it can go early
            return y

        @staticmethod
        def backward(ctx, gy):
            h, W1, W2 = ctx.saved_tensors
            a = ctx.a
            del ctx.a
            b = torch.tanh(a)  # the recompute: Tanh, Tanh_1 (not MatMul_1: y is not needed)
            del a
            c = torch.tanh(b)
            gc_ = gy.mm(W2.t())  # MatMul_1's backward
            gW2 = c.t().mm(gy)
            gb = torch.ops.aten.tanh_backward(gc_, c)
            del gc_, c
            ga = torch.ops.aten.tanh_backward(gb, b)
            del gb, b
            gh = ga.mm(W1.t())
            gW1 = h.t().mm(ga)
            return gh, gW1, gW2

    blk = model.blk
    blk.forward = lambda h: Fn.apply(h, blk.W1, blk.W2)


def block(model):
    import torch.utils.checkpoint
    orig = model.blk.forward
    model.blk.forward = lambda h: torch.utils.checkpoint.checkpoint(orig, h, use_reentrant=False)


def simulate(vramsim, onnx_path):
    out = {}
    for mode, ck in MODES.items():
        args = [vramsim, "estimate", onnx_path, "--dim", f"batch={N}", "--optimizer", "sgd",
                "--target", "torch-cpu", "--json"]
        if ck:
            args += ["--checkpoint", ck]
        out[mode] = json.loads(subprocess.run(args, check=True, capture_output=True,
                                              text=True).stdout)["peak_bytes"]
    return out


def export(path):
    import torch
    model = build()
    model.train()
    torch.onnx.export(model, torch.randn(2, D), path, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}},
                      opset_version=17, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.TRAINING)


def measure(mode):
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from measure import Counter
    counter = Counter()
    counter.register_libraries()
    gc.collect()
    base = counter.live()
    model = build()
    {"none": lambda m: None, "block": block, "save-matmul": save_matmul}[mode](model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(N, D)
    y = torch.randint(0, D, (N,))

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()

    step()
    opt.zero_grad(set_to_none=True)
    gc.collect()
    counter.reset_peak()
    step()
    opt.zero_grad(set_to_none=True)
    return counter.peak() - base


def main():
    if os.environ.get("VRAMSIM_OPLEVEL_SIMS"):  # the re-executed, preloaded process
        sims = json.loads(os.environ["VRAMSIM_OPLEVEL_SIMS"])
        shutil.rmtree(os.environ.pop("VRAMSIM_ALLOC_TMPDIR"), ignore_errors=True)
        print(f"{'mode':12s} {'measured':>12s} {'vramsim':>12s} {'diff':>8s}")
        for mode in MODES:
            m = measure(mode)
            print(f"{mode:12s} {m:12d} {sims[mode]:12d} {sims[mode] - m:8d}")
        return
    vramsim = sys.argv[1] if len(sys.argv) > 1 else "build/cli/vramsim"
    tmp = tempfile.mkdtemp(prefix="vramsim_oplevel_")
    onnx_path = os.path.join(tmp, "tiny.onnx")
    subprocess.run([sys.executable, "-c",
                    f"import sys; sys.path.insert(0, {HERE!r}); import op_level_check as m; "
                    f"m.export({onnx_path!r})"], check=True, capture_output=True)
    sims = simulate(vramsim, onnx_path)
    so = os.path.join(tmp, "alloc_counter.so")
    subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", so,
                    os.path.join(HERE, "alloc_counter.c"), "-ldl", "-lpthread"], check=True)
    env = dict(os.environ, LD_PRELOAD=so, VRAMSIM_ALLOC_TMPDIR=tmp,
               VRAMSIM_OPLEVEL_SIMS=json.dumps(sims))
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What one nn.LSTM / nn.GRU / nn.RNN allocates and saves in a training step on the CPU, counted
exactly (validation/alloc_counter.c, as measure.py counts), in units of u = batch * hidden * 4
bytes (one [B, H] float tensor).  The measurements behind simulator/recurrent_rules.cc.

For each configuration (cell, T, B, I, H, layers, directions, batch_first) it builds the module
(seed 0), an input that requires grad, runs the forward and then backward(ones_like(output)) and
prints, relative to the live bytes before each phase:
  fwd_peak_u   peak during the forward
  after_fwd_u  alive after it (saved tensors + output; h_n/c_n dropped)
  bwd_peak_u   peak during the backward (the output and its gradient stay alive)
  peak_op      the aten op at the backward's peak (TorchDispatchMode), with --trace

  /usr/bin/python3 validation/recurrent_probe.py                 # the default configurations
  /usr/bin/python3 validation/recurrent_probe.py --trace '[["GRU", 8, 4, 16, 32, 1, 2, 0]]'
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import measure  # noqa: E402  (Counter, counter_loaded, ALLOC_SRC)

DEFAULT = [[cell, t, b, 16, h, layers, d, bf]
           for cell in ("LSTM", "GRU", "RNN")
           for (t, b, h, layers, d, bf) in ((8, 4, 32, 1, 1, 0), (16, 4, 64, 1, 1, 0),
                                            (8, 8, 32, 1, 1, 0), (32, 16, 32, 1, 1, 0),
                                            (8, 4, 32, 1, 2, 0), (8, 4, 32, 2, 2, 0),
                                            (8, 4, 32, 1, 2, 1))]


def preload():
    """Re-executes this script with the counter preloaded (as measure.ensure_preloaded does)."""
    if measure.counter_loaded():
        return
    tmp = tempfile.mkdtemp(prefix="vramsim_probe_")
    so = os.path.join(tmp, "alloc_counter.so")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", so, measure.ALLOC_SRC, "-ldl",
                    "-lpthread"], check=True)
    env = dict(os.environ, LD_PRELOAD=so)
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


def run(counter, cell, T, B, I, H, layers, directions, batch_first, trace=False):
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    log = []

    class Mode(TorchDispatchMode):  # per aten op: live before, peak within
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            before = counter.live()
            counter.reset_peak()
            out = func(*args, **(kwargs or {}))
            log.append((str(func), before, counter.peak()))
            return out

    torch.manual_seed(0)
    m = getattr(torch.nn, cell)(I, H, num_layers=layers, bidirectional=directions == 2,
                                batch_first=bool(batch_first))
    x = torch.randn(*((B, T, I) if batch_first else (T, B, I)), requires_grad=True)
    gc.collect()
    b0 = counter.live()
    counter.reset_peak()
    out, hidden = m(x)
    fwd_peak = counter.peak() - b0
    del hidden
    after = counter.live() - b0
    g = torch.ones_like(out)
    b1 = counter.live()
    counter.reset_peak()
    if trace:
        with Mode():
            out.backward(g)
        top = max(log, key=lambda e: e[2])
        bwd_peak, peak_op = top[2] - b1, top[0]
    else:
        out.backward(g)
        bwd_peak, peak_op = counter.peak() - b1, None
    u = B * H * 4
    r = {"cell": cell, "T": T, "B": B, "I": I, "H": H, "layers": layers, "D": directions,
         "batch_first": batch_first, "u": u, "fwd_peak_u": fwd_peak / u,
         "after_fwd_u": after / u, "bwd_peak_u": bwd_peak / u}
    if peak_op:
        r["peak_op"] = peak_op
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="?", default=None,
                    help="JSON list of [cell, T, B, I, H, layers, directions, batch_first]")
    ap.add_argument("--trace", action="store_true", help="name the aten op at the peak")
    a = ap.parse_args()
    preload()
    import torch
    torch.set_num_threads(measure.NUM_THREADS)
    counter = measure.Counter()
    counter.register_libraries()
    for c in json.loads(a.configs) if a.configs else DEFAULT:
        print(json.dumps(run(counter, *c, trace=a.trace)), flush=True)


if __name__ == "__main__":
    main()

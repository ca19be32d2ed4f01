#!/usr/bin/env python3
"""Export GPTs shaped like the models of Korthikanti et al. 2022, "Reducing Activation
Recomputation in Large Transformer Models" (Table 3 and Figure 7: 22B, 175B, 530B and 1T, all
at s = 2048 and t = 8), scaled down so this machine can export them, into tests/data/korthikanti/.

The paper's per-layer activation memory depends on the model only through s*b*h and a*s/h
(s*b*h*(34 + 5*a*s/h) bytes); each export keeps the head count a and the ratio a*s/h of its
model and divides h and s by the same factor f (so the head dim h/a shrinks by f too):

  name            paper (a, h, s)        f    export (a, h, s)   a*s/h
  korthikanti22b  64, 6144, 2048        16    64, 384, 128       21.33
  korthikanti175b 96, 12288, 2048       32    96, 384, 64        16
  korthikanti530b 128, 20480, 2048      32    128, 640, 64       12.8
  korthikanti1t   160, 25600, 2048      32    160, 800, 64       12.8

Three layers each (a middle layer, h.1, has a layer on either side), vocab 512 (divisible by
t = 8), block_size = s (the causal-mask buffer limits the sequence to s), dropout 0.1, models.py's
nanoGPT layout; exported as validation/export_models.py exports (training mode, opset 17, dynamic
batch and seq, weightless: initializer data marked external, never written).

Run with the Debian interpreter (it has torch):  /usr/bin/python3 validation/export_korthikanti.py
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import make_gpt  # noqa: E402
from export_models import export_module  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (heads a, hidden h, sequence s)
SHAPES = {
    "korthikanti22b": (64, 384, 128),
    "korthikanti175b": (96, 384, 64),
    "korthikanti530b": (128, 640, 64),
    "korthikanti1t": (160, 800, 64),
}
N_LAYER = 3
VOCAB = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "tests", "data", "korthikanti"))
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    for name, (heads, hidden, seq) in SHAPES.items():
        torch.manual_seed(0)
        model = make_gpt(n_layer=N_LAYER, n_head=heads, n_embd=hidden, vocab_size=VOCAB,
                         block_size=seq)
        idx = torch.randint(0, VOCAB, (2, seq), dtype=torch.int64)
        axes = {"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
        export_module(name, model, (idx,), ["idx"], axes, a.out_dir, write_params=False)


if __name__ == "__main__":
    main()

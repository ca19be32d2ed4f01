#!/usr/bin/env python3
"""Exports made with torch.onnx.export's defaults, which vramsim must refuse (issue 12).

  resnet18_eval_default.onnx   inference mode, constant folding on: BatchNorm fused into
                               `onnx::Conv_*` weights
  gpt_train_folded.onnx        training mode, constant folding on (the default): every Linear
                               on a 3-D input reads a folded `onnx::MatMul_*` W.t()

Both are written weightless (payloads marked external, not written) into
tests/data/default_exports/. Run with the Debian interpreter:
  /usr/bin/python3 validation/export_default_exports.py
"""
import os
import sys
import tempfile
import warnings

import onnx
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_models import make_weightless  # noqa: E402
from models import make_gpt  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "tests", "data", "default_exports")


def export(name, model, args, input_names, axes, **kwargs):
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(tmp, name + ".onnx")
        torch.onnx.export(model, args, path, input_names=input_names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=17, **kwargs)
        proto = onnx.load(path, load_external_data=False)
    make_weightless(proto, name + ".weights.bin")
    onnx.save(proto, os.path.join(OUT, name + ".onnx"))
    print(name, len(proto.graph.node), "nodes")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    export("resnet18_eval_default", resnet, (torch.randn(2, 3, 224, 224),), ["input"],
           {"input": {0: "batch"}, "logits": {0: "batch"}})
    gpt = make_gpt(n_layer=2, n_head=4, n_embd=64).train()
    idx = torch.randint(0, gpt.config.vocab_size, (2, 16))
    export("gpt_train_folded", gpt, (idx,), ["idx"],
           {"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
           training=torch.onnx.TrainingMode.TRAINING)


if __name__ == "__main__":
    main()

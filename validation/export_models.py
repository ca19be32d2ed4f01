#!/usr/bin/env python3
"""Export training-mode ONNX graphs for vramsim's examples/ and strip their weights.

For every model this writes
  examples/<name>.onnx         weightless ONNX (initializer data marked EXTERNAL,
                               pointing at <name>.weights.bin, which is NOT written)
  examples/<name>.params.json  PyTorch ground truth: named_parameters / named_buffers
                               plus the ONNX initializer names

Run with the Debian interpreter (it has torch):  /usr/bin/python3 validation/export_models.py
"""

import argparse
import json
import os
import sys
import tempfile
import warnings

import numpy as np
import onnx
from onnx import TensorProto, mapping
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import make_gpt, make_gpt_lora  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_MODELS = ["resnet18", "mobilenet_v2", "vit_b_16", "gpt", "gpt48", "gpt_lora"]
EXPORT_BATCH = 2
GPT_SEQ = 128
INLINE_MAX_BYTES = 256

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16,
               TensorProto.DOUBLE, TensorProto.COMPLEX64, TensorProto.COMPLEX128}
# repeated data fields of TensorProto that can hold a tensor's payload
DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
               "uint64_data", "string_data")


def build(name):
    """Returns (model, example_args, input_names, dynamic_axes)."""
    if name in ("resnet18", "mobilenet_v2", "vit_b_16"):
        model = getattr(torchvision.models, name)(weights=None)
        x = torch.randn(EXPORT_BATCH, 3, 224, 224, dtype=torch.float32)
        axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
        return model, (x,), ["input"], axes
    if name in ("gpt", "gpt48"):
        n_layer = 4 if name == "gpt" else 48
        model = make_gpt(n_layer=n_layer, n_head=4, n_embd=256)
        vocab = model.config.vocab_size
        idx = torch.randint(0, vocab, (EXPORT_BATCH, GPT_SEQ), dtype=torch.int64)
        axes = {"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
        return model, (idx,), ["idx"], axes
    if name == "gpt_lora":
        # gpt with rank-8 LoRA adapters on the attention projections (models.make_gpt_lora);
        # every initializer is a parameter here: which are frozen is vramsim's --trainable.
        model = make_gpt_lora(n_layer=4, n_head=4, n_embd=256, r=8, alpha=16)
        vocab = model.config.vocab_size
        idx = torch.randint(0, vocab, (EXPORT_BATCH, GPT_SEQ), dtype=torch.int64)
        axes = {"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
        return model, (idx,), ["idx"], axes
    raise ValueError(f"unknown model {name!r}; known: {', '.join(ALL_MODELS)}")


def tensor_nbytes(t):
    if t.data_type == TensorProto.STRING:
        return sum(len(s) for s in t.string_data)
    numel = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
    return numel * np.dtype(mapping.TENSOR_TYPE_TO_NP_TYPE[t.data_type]).itemsize


def make_weightless(model_proto, weights_file):
    """Clears initializer payloads in place; returns (n_external, n_inline, total_bytes)."""
    offset = 0
    n_ext = n_inline = 0
    for t in model_proto.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            raise RuntimeError(f"initializer {t.name} already external")
        nbytes = tensor_nbytes(t)
        if nbytes <= INLINE_MAX_BYTES and t.data_type not in FLOAT_TYPES:
            n_inline += 1
            continue
        for f in DATA_FIELDS:
            t.ClearField(f)
        del t.external_data[:]
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", weights_file), ("offset", str(offset)), ("length", str(nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        offset += nbytes
        n_ext += 1
    return n_ext, n_inline, offset


def verify(path, weights_file):
    """Reloads the weightless file and checks it without the (absent) weights file."""
    m = onnx.load(path, load_external_data=False)
    for t in m.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            assert not any(len(getattr(t, f)) for f in DATA_FIELDS), t.name
            assert {e.key: e.value for e in t.external_data}["location"] == weights_file
    onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    # onnx.checker insists that external files exist; check a copy with zero-filled data.
    for t in m.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            length = int({e.key: e.value for e in t.external_data}["length"])
            del t.external_data[:]
            t.data_location = TensorProto.DEFAULT
            t.raw_data = bytes(length)
    onnx.checker.check_model(m)


def export_one(name, out_dir):
    torch.manual_seed(0)
    model, args, input_names, axes = build(name)
    export_module(name, model, args, input_names, axes, out_dir)


def export_module(name, model, args, input_names, axes, out_dir, write_params=True):
    """Exports `model` (training mode) to <out_dir>/<name>.onnx and makes it weightless.
    With write_params, also writes <out_dir>/<name>.params.json."""
    model.train()
    param_names = [n for n, _ in model.named_parameters()]
    buffer_names = [n for n, _ in model.named_buffers()]

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = os.path.join(tmp, name + ".onnx")
        with warnings.catch_warnings():
            # BatchNorm's `num_batches_tracked += 1` is dropped by the exporter (one warning
            # per BN layer); the resulting missing buffers are reported below instead.
            warnings.filterwarnings("ignore", message=r".*Removing mutation from node aten::add_.*num_batches_tracked")
            torch.onnx.export(model.train(), args, tmp_path,
                              training=torch.onnx.TrainingMode.TRAINING,
                              do_constant_folding=False, opset_version=17,
                              input_names=input_names, output_names=["logits"],
                              dynamic_axes=axes)
        proto = onnx.load(tmp_path, load_external_data=False)

    weights_file = name + ".weights.bin"
    n_ext, n_inline, total = make_weightless(proto, weights_file)
    out_path = os.path.join(out_dir, name + ".onnx")
    if os.path.exists(os.path.join(out_dir, weights_file)):
        raise RuntimeError(f"{weights_file} must not exist in {out_dir}")
    # save_as_external_data=False: write the proto as-is, never touch <name>.weights.bin
    onnx.save(proto, out_path)

    verify(out_path, weights_file)

    init_names = [t.name for t in proto.graph.initializer]
    if write_params:
        with open(os.path.join(out_dir, name + ".params.json"), "w") as f:
            json.dump({"parameters": param_names, "buffers": buffer_names,
                       "initializers": init_names}, f, indent=1)
            f.write("\n")

    init_set = set(init_names)
    missing_p = [n for n in param_names if n not in init_set]
    missing_b = [n for n in buffer_names if n not in init_set]
    print(f"{name}: {len(proto.graph.node)} nodes, {len(init_names)} initializers "
          f"({n_ext} external = {total} bytes in {weights_file} [not written], {n_inline} inline), "
          f"file {os.path.getsize(out_path)} bytes")
    print(f"  parameters missing from initializers ({len(missing_p)}/{len(param_names)}): {missing_p}")
    print(f"  buffers missing from initializers ({len(missing_b)}/{len(buffer_names)}): {missing_b}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "examples"))
    ap.add_argument("--models", default=",".join(ALL_MODELS),
                    help="comma-separated subset of " + ",".join(ALL_MODELS))
    a = ap.parse_args()
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    for n in names:
        if n not in ALL_MODELS:
            ap.error(f"unknown model {n!r}")
    os.makedirs(a.out_dir, exist_ok=True)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnx {onnx.__version__}")
    for n in names:
        export_one(n, a.out_dir)


if __name__ == "__main__":
    main()

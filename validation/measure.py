#!/usr/bin/env python3
"""Measure the peak CPU tensor memory of one PyTorch training step (ground truth for vramsim).

For every case (architecture, batch dims, optimizer, cross-entropy loss) this builds the model
in train mode (torch.manual_seed(0)), a random batch and int64 labels, runs training step 1
(zero_grad(set_to_none=True); forward; loss; backward; optimizer.step()), zero_grad(set_to_none=True),
resets the peak, runs step 2 the same way, zero_grad(set_to_none=True) again, and records

  measured_peak_bytes  peak of live tensor-storage bytes during step 2 (parameters, buffers,
                       optimizer state, batch and labels included)
  steady_bytes         live tensor-storage bytes just before step 2
  param_bytes          bytes of model.parameters()

Optional per-case settings (recorded in the JSON only where not the default):
  precision "amp-bf16"  forward and loss under torch.autocast("cpu", dtype=torch.bfloat16),
                        backward and step outside; parameters stay float32
  precision "bf16"      model.to(torch.bfloat16), float input cast to bfloat16 (labels int64)
  accum K               K micro-batches (x.chunk(K), y.chunk(K)), loss / K, one backward each,
                        then one optimizer step
  checkpoint [paths]    these submodules' forwards run through torch.utils.checkpoint
                        (use_reentrant=False); "a+b" checkpoints consecutive modules as one
                        region, as vramsim's --checkpoint does; the ONNX export is the plain
                        model

Tensor storage is counted exactly by validation/alloc_counter.c, an LD_PRELOAD library that
records the requested size of every posix_memalign() called from libc10 (c10::alloc_cpu, the
CPU allocator of every CPU tensor) until its free().  This script compiles it with gcc into a
temporary directory and re-executes itself with LD_PRELOAD set.  Each architecture is also
exported (weightless, dynamic batch) to validation/models/<arch>.onnx via export_models.py.

Run with the Debian interpreter (it has torch):
  /usr/bin/python3 validation/measure.py                      # main cases -> validation/cases.json
  /usr/bin/python3 validation/measure.py --cases holdout      # -> validation/holdout.json
  /usr/bin/python3 validation/measure.py --cases all --only gpt --out /tmp/gpt.json
"""

import argparse
import ctypes
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
ALLOC_SRC = os.path.join(HERE, "alloc_counter.c")
MODELS_DIR = os.path.join(HERE, "models")
DEFAULT_OUT = {"main": os.path.join(HERE, "cases.json"),
               "holdout": os.path.join(HERE, "holdout.json"),
               "finetune": os.path.join(HERE, "finetune.json")}
NUM_THREADS = 2

# --------------------------------------------------------------------------------------------
# architectures and cases

# name -> (family, constructor, extra).  family: "vision" (input float [B,3,224,224], 1000
# classes), "mlp" (input float [B,1,28,28], 10 classes), "gpt" (input int64 idx [B,T]).
ARCHS = {
    # main set
    "resnet18": ("vision", "torchvision:resnet18", {}),
    "mobilenet_v2": ("vision", "torchvision:mobilenet_v2", {}),
    "densenet121": ("vision", "torchvision:densenet121", {}),
    "vit_b_16": ("vision", "torchvision:vit_b_16", {}),
    "gpt": ("gpt", "gpt", {}),                                 # GPTConfig() defaults
    "mlp": ("mlp", "mlp", {}),
    # held-out architectures
    "resnet50": ("vision", "torchvision:resnet50", {}),
    "shufflenet_v2_x1_0": ("vision", "torchvision:shufflenet_v2_x1_0", {}),
    "squeezenet1_0": ("vision", "torchvision:squeezenet1_0", {}),
    "gpt_l2_e384": ("gpt", "gpt", {"n_layer": 2, "n_embd": 384, "n_head": 6}),
    # fine-tuning: gpt with rank-8 LoRA adapters on the attention projections
    "gpt_lora": ("gpt", "gpt_lora", {}),
}
GPT_EXPORT_SEQ = {"gpt": 128, "gpt_l2_e384": 64, "gpt_lora": 128}


def _case(arch, opt, batch, seq=None, precision=None, accum=None, ckpt=None,
          loss_precision=None):
    """One case.  precision: None (fp32), "amp-bf16" or "bf16"; accum: micro-batches per step
    (None = 1); ckpt: a key of CHECKPOINT_SETS ("<arch>:<tag>") or None; loss_precision (bf16
    only): "model" (the default: cross-entropy on the bf16 logits) or "fp32" (`logits.float()`
    first, as Hugging Face's causal LMs do)."""
    dims = {"batch": batch}
    name = f"{arch}_b{batch}"
    if seq is not None:
        dims["seq"] = seq
        name += f"_s{seq}"
    name += f"_{opt}"
    case = {"arch": arch, "dims": dims, "optimizer": opt}
    if precision is not None:
        assert precision in PRECISIONS, precision
        case["precision"] = precision
        name += f"_{precision}"
    if precision == "bf16":
        case["loss_precision"] = loss_precision or "model"
        if case["loss_precision"] == "fp32":
            name += "_lossfp32"
    else:
        assert loss_precision is None, "loss_precision applies to pure bf16 only"
    if accum is not None:
        assert accum > 1 and batch % accum == 0, (batch, accum)
        case["accum"] = accum
        name += f"_accum{accum}"
    if ckpt is not None:
        ckpt_arch, tag = ckpt.split(":")
        assert ckpt_arch == arch, ckpt
        case["checkpoint"] = CHECKPOINT_SETS[ckpt]
        name += f"_ckpt-{tag}"
    return {"name": name, **case}


PRECISIONS = ("amp-bf16", "bf16")
# Module paths (model.get_submodule) whose forward runs under activation checkpointing.
CHECKPOINT_SETS = {
    "resnet18:layers": [f"layer{i}" for i in range(1, 5)],
    "resnet18:blocks": [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)],
    # the op-level strategies' stem cut in two (planners/op_level.h OpLevelRegionSets), and
    # every block: the plan that reaches resnet18's floor
    "resnet18:stem-split": ["conv1+bn1", "relu+maxpool"]
                           + [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)],
    "resnet50:layers": [f"layer{i}" for i in range(1, 5)],
    "gpt:blocks": [f"h.{i}" for i in range(4)],
    "vit_b_16:layers": [f"encoder.layers.encoder_layer_{i}" for i in range(12)],
    "mobilenet_v2:blocks": [f"features.{i}" for i in range(1, 18)],
    "densenet121:denseblocks": [f"features.denseblock{i}" for i in range(1, 5)],
}

MAIN_BATCHES = [("resnet18", (4, 16)), ("mobilenet_v2", (4, 16)), ("densenet121", (4, 16)),
                ("vit_b_16", (2, 4)), ("gpt", (4, 16)), ("mlp", (64, 256))]
MAIN_CASES = ([_case(a, o, b, 128 if a == "gpt" else None)
               for a, bs in MAIN_BATCHES for b in bs for o in ("sgd", "adam")]
              # autocast bf16 (not mobilenet_v2: ReLU6's backward, hardtanh_backward, has no
              # BFloat16 CPU kernel in torch 1.13)
              + [_case("resnet18", "sgd", 4, precision="amp-bf16"),
                 _case("resnet18", "adam", 16, precision="amp-bf16"),
                 _case("gpt", "sgd", 4, 128, precision="amp-bf16"),
                 _case("gpt", "adam", 16, 128, precision="amp-bf16"),
                 _case("mlp", "adam", 64, precision="amp-bf16"),
                 _case("mlp", "sgd", 256, precision="amp-bf16"),
                 _case("vit_b_16", "sgd", 2, precision="amp-bf16"),
                 _case("densenet121", "adam", 4, precision="amp-bf16")]
              # pure bf16: parameters, buffers, activations and optimizer state
              + [_case("resnet18", "adam", 4, precision="bf16"),
                 _case("resnet18", "sgd", 16, precision="bf16"),
                 _case("gpt", "adam", 4, 128, precision="bf16"),
                 _case("gpt", "sgd", 16, 128, precision="bf16"),
                 _case("mlp", "sgd", 64, precision="bf16"),
                 _case("mlp", "adam", 256, precision="bf16"),
                 _case("densenet121", "sgd", 4, precision="bf16"),
                 _case("vit_b_16", "adam", 2, precision="bf16")]
              # gradient accumulation over 4 micro-batches
              + [_case("resnet18", "sgd", 16, accum=4),
                 _case("gpt", "adam", 16, 128, accum=4),
                 _case("mlp", "adam", 256, accum=4),
                 _case("densenet121", "sgd", 8, accum=4),
                 _case("mobilenet_v2", "adam", 16, accum=4)]
              # activation checkpointing (non-reentrant) of the listed submodules
              + [_case("resnet18", "sgd", 16, ckpt="resnet18:layers"),
                 _case("resnet18", "adam", 16, ckpt="resnet18:blocks"),
                 _case("resnet18", "adam", 4, ckpt="resnet18:stem-split"),
                 _case("resnet18", "sgd", 16, ckpt="resnet18:stem-split"),
                 _case("gpt", "sgd", 16, 128, ckpt="gpt:blocks"),
                 _case("vit_b_16", "adam", 2, ckpt="vit_b_16:layers"),
                 _case("mobilenet_v2", "sgd", 16, ckpt="mobilenet_v2:blocks"),
                 _case("densenet121", "adam", 4, ckpt="densenet121:denseblocks")])
HOLDOUT_CASES = (
    [_case("resnet50", o, 2) for o in ("momentum", "adamw")]
    + [_case("shufflenet_v2_x1_0", o, 8) for o in ("momentum", "adamw")]
    + [_case("squeezenet1_0", o, 8) for o in ("momentum", "adamw")]
    + [_case("gpt_l2_e384", o, 8, 64) for o in ("momentum", "adamw")]
    + [_case("resnet18", "adamw", 8), _case("mobilenet_v2", "momentum", 8),
       _case("gpt", "adamw", 8, 128), _case("mlp", "momentum", 128)]
    # unseen combinations of precision, accumulation and checkpointing
    + [_case("resnet50", "momentum", 4, precision="amp-bf16", accum=2),
       _case("squeezenet1_0", "adamw", 8, precision="bf16"),
       _case("resnet50", "adamw", 2, ckpt="resnet50:layers"),
       _case("gpt_l2_e384", "momentum", 8, 64, precision="amp-bf16"),
       _case("shufflenet_v2_x1_0", "adamw", 8, accum=2),
       _case("gpt", "adamw", 8, 128, precision="bf16", ckpt="gpt:blocks"),
       _case("resnet18", "momentum", 8, accum=2, ckpt="resnet18:layers")]
    # small batches, where weight gradients dominate (issue 11: weight-only ops' order)
    + [_case("gpt", "sgd", 4, 8), _case("gpt", "sgd", 4, 8, accum=2),
       _case("gpt", "sgd", 4, 8, accum=4), _case("gpt", "adam", 4, 8, accum=2)]
    # pure bf16 with the logits upcast before the loss (issue 11: --loss-precision fp32)
    + [_case("gpt", "sgd", 16, 128, precision="bf16", loss_precision="fp32"),
       _case("gpt", "adam", 4, 128, precision="bf16", loss_precision="fp32"),
       _case("gpt_l2_e384", "sgd", 8, 64, precision="bf16", loss_precision="fp32")])


def _finetune(case, tag, trainable=None, freeze=None):
    """A fine-tuning variant of a _case: "trainable" (only parameters matching one of these
    patterns train) and/or "freeze" (matching parameters do not).  A pattern is a glob over
    the parameter name when it has * ? or [, else a module path matching the name or its
    dotted prefix (vramsim's --trainable / --freeze)."""
    case = dict(case)
    for key, patterns in (("freeze", freeze), ("trainable", trainable)):
        if patterns:
            case[key] = list(patterns)
    case["name"] += f"_{tag}"
    return case


# Fine-tuning (issue 11): frozen backbones, a frozen stem, LoRA adapters on a frozen decoder.
FINETUNE_CASES = (
    [_finetune(_case("resnet18", o, b), "train-fc", trainable=["fc"])
     for b in (4, 16) for o in ("sgd", "adam")]
    + [_finetune(_case("resnet18", o, b), "train-layer4-fc", trainable=["layer4", "fc"])
       for b in (4, 16) for o in ("sgd", "adam")]
    + [_finetune(_case("mobilenet_v2", o, b), "train-classifier", trainable=["classifier"])
       for b in (4, 16) for o in ("sgd", "adam")]
    + [_finetune(_case("vit_b_16", "adam", 2), "train-heads", trainable=["heads"]),
       _finetune(_case("resnet18", "adam", 16), "freeze-stem-layer1",
                 freeze=["conv1", "bn1", "layer1"]),
       _finetune(_case("gpt", "adam", 16, 128), "freeze-embeddings", freeze=["wte", "wpe"])]
    + [_finetune(_case("gpt_lora", o, b, 128), "lora", trainable=["*.lora_*"])
       for b in (4, 16) for o in ("sgd", "adam")]
    + [_finetune(_case("gpt_lora", "adam", 16, 128, precision="amp-bf16"), "lora",
                 trainable=["*.lora_*"]),
       _finetune(_case("gpt_lora", "sgd", 16, 128, accum=2), "lora", trainable=["*.lora_*"])])
CASE_SETS = {"main": MAIN_CASES, "holdout": HOLDOUT_CASES, "finetune": FINETUNE_CASES}


# --------------------------------------------------------------------------------------------
# torchvision set (issue 11): one case per torchvision 0.14 classification model

# Every builder in torchvision.models (top level: classification) that takes `weights`, as
# listed by this torchvision 0.14.1 install.  Exported to validation/models/tv/<name>.onnx.
TV_MODELS = [
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_v2_s", "googlenet", "inception_v3",
    "maxvit_t", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3", "mobilenet_v2",
    "mobilenet_v3_large", "mobilenet_v3_small",
    "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_32gf", "regnet_x_3_2gf", "regnet_x_400mf",
    "regnet_x_800mf", "regnet_x_8gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf",
    "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf",
    "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
    "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "squeezenet1_0", "squeezenet1_1", "swin_b", "swin_s", "swin_t", "swin_v2_b", "swin_v2_s",
    "swin_v2_t", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
    "vgg19_bn", "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32",
    "wide_resnet101_2", "wide_resnet50_2",
]
# Batch 2 instead of 4 (slow to measure on 2 cores): at least ~15 GFLOPs per image forward at
# the input size used, or at least 100M parameters.
TV_BATCH2 = {
    "convnext_base", "convnext_large", "efficientnet_v2_l", "regnet_x_16gf", "regnet_x_32gf",
    "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf", "resnext101_32x8d", "resnext101_64x4d",
    "swin_b", "swin_v2_b", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
    "vgg19", "vgg19_bn", "vit_b_16", "vit_h_14", "vit_l_16", "vit_l_32", "wide_resnet101_2",
}


def _tv_extra(name):
    """Constructor settings: stochastic depth off (convnext, efficientnet, efficientnet_v2 take
    stochastic_depth_prob=0.0; the swin and maxvit builders pass their own value, so their
    StochasticDepth modules get p = 0.0 after construction), googlenet / inception_v3 without
    the auxiliary classifiers (their train-mode tuple output would need an aux loss),
    inception_v3 at 299x299."""
    extra, kwargs = {}, {}
    if name.startswith(("convnext_", "efficientnet_")):
        kwargs["stochastic_depth_prob"] = 0.0
    if name in ("googlenet", "inception_v3"):
        kwargs["aux_logits"] = False
    if kwargs:
        extra["kwargs"] = kwargs
    if name.startswith(("swin_", "maxvit_")):
        extra["stochastic_depth_off"] = True
    if name == "inception_v3":
        extra["image_size"] = 299
    if name.startswith("swin_v2_"):
        # `qkv_bias[length:2 * length].zero_()` (on a clone of the bias, in every attention):
        # torch 1.13 has no ONNX symbolic for aten::zero; export it as zeros of its shape
        extra["onnx_zero_symbolic"] = True
    return extra


for _name in TV_MODELS:
    ARCHS["tv/" + _name] = ("vision", "torchvision:" + _name, _tv_extra(_name))
TV_CASES = [dict(_case("tv/" + n, "sgd", 2 if n in TV_BATCH2 else 4),
                 name=f"{n}_b{2 if n in TV_BATCH2 else 4}_sgd") for n in TV_MODELS]
# Swin-T with each of its 12 transformer blocks checkpointed (issue 11: "+7.4%").
CHECKPOINT_SETS["tv/swin_t:blocks"] = [f"features.{s}.{b}" for s, n in ((1, 2), (3, 2), (5, 6),
                                                                         (7, 2)) for b in range(n)]
TV_CASES.append(dict(_case("tv/swin_t", "sgd", 4, ckpt="tv/swin_t:blocks"),
                     name="swin_t_b4_sgd_ckpt-blocks"))
CASE_SETS["torchvision"] = TV_CASES
DEFAULT_OUT["torchvision"] = os.path.join(HERE, "torchvision.json")


def image_size(arch):
    return ARCHS[arch][2].get("image_size", 224)


def patch_export_for_2gib(export_models):
    """torch.onnx.export writes a model whose parameters exceed protobuf's 2 GiB (vit_h_14,
    regnet_y_128gf) with external data (in its temporary directory), and export_models'
    verify() would build an over-2-GiB in-memory copy.  These wrappers drop torch's external
    references before make_weightless (the payload is discarded anyway; the result is what a
    small model gets) and check such a file by path against a sparse zero-filled weights file.
    Smaller models go through the original functions unchanged."""
    import onnx
    from onnx import TensorProto
    orig_make_weightless, orig_verify = export_models.make_weightless, export_models.verify

    def make_weightless(proto, weights_file):
        for t in proto.graph.initializer:
            if t.data_location == TensorProto.EXTERNAL:
                del t.external_data[:]
                t.data_location = TensorProto.DEFAULT
        return orig_make_weightless(proto, weights_file)

    def verify(path, weights_file):
        m = onnx.load(path, load_external_data=False)
        ext = [t for t in m.graph.initializer if t.data_location == TensorProto.EXTERNAL]
        total = sum(int({e.key: e.value for e in t.external_data}["length"]) for t in ext)
        if m.ByteSize() + total < 2**31:
            return orig_verify(path, weights_file)
        for t in ext:
            assert not any(len(getattr(t, f)) for f in export_models.DATA_FIELDS), t.name
            assert {e.key: e.value for e in t.external_data}["location"] == weights_file
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(path, tmp)
            with open(os.path.join(tmp, weights_file), "wb") as f:
                f.truncate(total)  # sparse: no disk space
            onnx.checker.check_model(os.path.join(tmp, os.path.basename(path)))

    export_models.make_weightless, export_models.verify = make_weightless, verify


# --------------------------------------------------------------------------------------------
# recurrent set (issue 11): nn.LSTM / nn.GRU / nn.RNN token models (models.RNNLM), batch_first,
# a Linear head over the vocabulary and cross-entropy over every token; int64 idx [B, T] like
# GPT ("gpt" family: batch, export and labels as GPT's).  -> validation/recurrent.json

ARCHS.update({
    # 2-layer LSTM language model: vocab 1000, embedding 256, hidden 512
    "lstm_lm": ("gpt", "rnn_lm", {"cell": "LSTM", "vocab_size": 1000, "n_embd": 256,
                                  "hidden": 512, "n_layer": 2}),
    # 2-layer bidirectional GRU tagger: vocab 1000, embedding 256, hidden 384 per direction
    "gru_bi": ("gpt", "rnn_lm", {"cell": "GRU", "vocab_size": 1000, "n_embd": 256,
                                 "hidden": 384, "n_layer": 2, "bidirectional": True}),
    # 1-layer tanh RNN language model: vocab 1000, embedding 128, hidden 1024
    "rnn_lm": ("gpt", "rnn_lm", {"cell": "RNN", "vocab_size": 1000, "n_embd": 128,
                                 "hidden": 1024, "n_layer": 1}),
})
GPT_EXPORT_SEQ.update({"lstm_lm": 64, "gru_bi": 64, "rnn_lm": 64})
RECURRENT_CASES = (
    [_case("lstm_lm", o, b, 64) for b in (8, 32) for o in ("sgd", "adam")]
    + [_case("lstm_lm", "sgd", 4, 128), _case("lstm_lm", "adam", 32, 64, accum=2)]
    + [_case("gru_bi", o, b, 64) for b in (4, 16) for o in ("sgd", "adam")]
    + [_case("gru_bi", "sgd", 16, 64, accum=2)]
    + [_case("rnn_lm", o, b, 64) for b in (8, 32) for o in ("sgd", "adam")])
CASE_SETS["recurrent"] = RECURRENT_CASES

# A small UNet (models.UNet: 64x64 input, 8 classes, widths 16-128) in the holdout set: its
# up-convolutions are ConvTranspose, which torch 1.13's CPU autocast runs in fp32, promoting
# the skip concatenations (issue 11: --torch-version).
ARCHS["unet"] = ("segment", "unet", {"image_size": 64})
HOLDOUT_CASES += [_case("unet", "sgd", 8), _case("unet", "sgd", 8, precision="amp-bf16"),
                  _case("unet", "adam", 4, precision="amp-bf16")]
# MobileNetV3 under autocast (issue 11 reported -2% to -5.5%: Hardswish, Hardsigmoid and the
# squeeze-excitation multiply follow their inputs' types).
HOLDOUT_CASES += [_case("tv/mobilenet_v3_large", "sgd", 4, precision="amp-bf16"),
                  _case("tv/mobilenet_v3_small", "adam", 8, precision="amp-bf16")]
# (Pure bf16 is not measurable here: torch 1.13.1's CPU conv_transpose2d on bf16 weights fails
# with "expected input[8, 128, 8, 8] to have 64 channels".)
DEFAULT_OUT["recurrent"] = os.path.join(HERE, "recurrent.json")


def build_model(arch):
    """Builds the train-mode model for `arch` after torch.manual_seed(0)."""
    import torch
    import torch.nn as nn
    family, ctor, extra = ARCHS[arch]
    torch.manual_seed(0)
    if ctor.startswith("torchvision:"):
        import torchvision
        model = getattr(torchvision.models, ctor.split(":", 1)[1])(weights=None,
                                                                   **extra.get("kwargs", {}))
        for m in model.modules():  # stochastic depth off (torchvision set)
            if isinstance(m, torchvision.ops.StochasticDepth) and extra.get("stochastic_depth_off"):
                m.p = 0.0
            assert not isinstance(m, torchvision.ops.StochasticDepth) or m.p == 0.0, arch
    elif ctor == "gpt_lora":
        sys.path.insert(0, HERE)
        from models import make_gpt_lora
        model = make_gpt_lora(**extra)
    elif ctor == "gpt":
        sys.path.insert(0, HERE)
        from models import GPT, GPTConfig, make_gpt
        model = make_gpt(**extra) if extra else GPT(GPTConfig())
    elif ctor == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(),
                              nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    elif ctor == "unet":
        sys.path.insert(0, HERE)
        from models import UNet
        model = UNet(**extra.get("kwargs", {}))
        model.classes = extra.get("kwargs", {}).get("classes", 8)
    elif ctor == "rnn_lm":
        sys.path.insert(0, HERE)
        from models import make_rnn_lm
        model = make_rnn_lm(**extra)
    else:
        raise ValueError(ctor)
    return model.train()


def make_batch(arch, dims, model):
    """Returns (input, labels) for one step: labels [B] for classifiers, [B, T] for GPT."""
    import torch
    family = ARCHS[arch][0]
    b = dims["batch"]
    if family == "vision":
        s = image_size(arch)
        return torch.randn(b, 3, s, s), torch.randint(0, 1000, (b,), dtype=torch.int64)
    if family == "mlp":
        return torch.randn(b, 1, 28, 28), torch.randint(0, 10, (b,), dtype=torch.int64)
    if family == "segment":  # per-pixel classes, channels-last logits (models.UNet)
        s = image_size(arch)
        return (torch.randn(b, 3, s, s),
                torch.randint(0, model.classes, (b, s, s), dtype=torch.int64))
    v, t = model.config.vocab_size, dims["seq"]
    return (torch.randint(0, v, (b, t), dtype=torch.int64),
            torch.randint(0, v, (b, t), dtype=torch.int64))


def make_optimizer(name, params):
    import torch
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3)
    raise ValueError(f"unknown optimizer {name!r}")


# --------------------------------------------------------------------------------------------
# ONNX export (in a child process without LD_PRELOAD, so the measuring process stays clean)

def export_arch(arch):
    import torch
    sys.path.insert(0, HERE)
    from export_models import EXPORT_BATCH, export_module
    model = build_model(arch)  # seeds 0, like export_models.export_one
    family = ARCHS[arch][0]
    if family == "gpt":
        idx = torch.randint(0, model.config.vocab_size, (EXPORT_BATCH, GPT_EXPORT_SEQ[arch]),
                            dtype=torch.int64)
        args, names = (idx,), ["idx"]
        axes = {"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    else:
        s = image_size(arch)
        shape = (EXPORT_BATCH, 1, 28, 28) if family == "mlp" else (EXPORT_BATCH, 3, s, s)
        args, names = (torch.randn(*shape),), ["input"]
        axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
    out_dir = os.path.join(MODELS_DIR, os.path.dirname(arch))  # "tv/<name>" -> models/tv/
    if os.path.dirname(arch):
        import export_models
        patch_export_for_2gib(export_models)
    if ARCHS[arch][2].get("onnx_zero_symbolic"):
        def zero(g, self):  # aten::zero (out-of-place zero_): ConstantOfShape(Shape(self))
            return g.op("ConstantOfShape", g.op("Shape", self),
                        value_t=torch.tensor([0], dtype=torch.float32))
        torch.onnx.register_custom_op_symbolic("aten::zero", zero, 17)
    os.makedirs(out_dir, exist_ok=True)
    export_module(os.path.basename(arch), model, args, names, axes, out_dir, write_params=False)


def run_exports(archs):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for arch in archs:
        t0 = time.time()
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--export-arch", arch],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise SystemExit(f"export of {arch} failed")
        first = next((l for l in r.stdout.splitlines() if l.startswith(os.path.basename(arch) + ":")), "")
        print(f"exported {os.path.relpath(os.path.join(MODELS_DIR, arch + '.onnx'), REPO_ROOT)}"
              f" ({time.time() - t0:.1f} s): {first.split(':', 1)[1].strip()}", flush=True)


# --------------------------------------------------------------------------------------------
# the LD_PRELOAD counter

def counter_loaded():
    try:
        ctypes.CDLL(None).vramsim_loaded
        return True
    except AttributeError:
        return False


def ensure_preloaded():
    """Compiles alloc_counter.c and re-executes this script under LD_PRELOAD if needed."""
    if counter_loaded():
        d = os.environ.pop("VRAMSIM_ALLOC_TMPDIR", None)
        if d:  # the library stays mapped; its file is not needed any more
            shutil.rmtree(d, ignore_errors=True)
        return
    if os.environ.get("VRAMSIM_ALLOC_TMPDIR"):
        raise SystemExit("alloc_counter is still not loaded after re-exec with LD_PRELOAD")
    tmp = tempfile.mkdtemp(prefix="vramsim_alloc_")
    so = os.path.join(tmp, "alloc_counter.so")
    subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", so, ALLOC_SRC,
                    "-ldl", "-lpthread"], check=True)
    env = dict(os.environ)
    env["LD_PRELOAD"] = so + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    env["VRAMSIM_ALLOC_TMPDIR"] = tmp
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


class Counter:
    KIND_MALLOC, KIND_ALIGNED = 0, 1
    LIB_C10, LIB_DNNL, LIB_TORCH = 1, 2, 3

    def __init__(self):
        lib = ctypes.CDLL(None)
        for f in ("vramsim_peak_bytes", "vramsim_live_bytes", "vramsim_all_peak_bytes",
                  "vramsim_all_live_bytes", "vramsim_bucket_live", "vramsim_bucket_peak",
                  "vramsim_peak_trace_index"):
            getattr(lib, f).restype = ctypes.c_int64
        lib.vramsim_calls.restype = ctypes.c_uint64
        lib.vramsim_trace_buffer.restype = ctypes.c_void_p
        lib.vramsim_trace_count.restype = ctypes.c_size_t
        lib.vramsim_trace_stop.restype = ctypes.c_size_t
        lib.vramsim_register_range.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int]
        lib.vramsim_select.argtypes = [ctypes.c_uint64, ctypes.c_uint64]
        lib.vramsim_trace_start.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        self.lib = lib

    def register_libraries(self):
        """Attributes allocations by the caller's library; selects c10's aligned allocations
        (c10::alloc_cpu -> posix_memalign) as the counted "tensor storage"."""
        ids = {"libc10.so": self.LIB_C10, "libdnnl.so": self.LIB_DNNL,
               "libtorch_cpu.so": self.LIB_TORCH}
        found = set()
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 6 or "x" not in fields[1]:
                    continue
                base = os.path.basename(fields[5])
                for prefix, lib_id in ids.items():
                    if base.startswith(prefix):
                        lo, hi = (int(x, 16) for x in fields[0].split("-"))
                        if self.lib.vramsim_register_range(lo, hi, lib_id) != 0:
                            raise RuntimeError("too many code ranges")
                        found.add(prefix)
        if "libc10.so" not in found:
            raise RuntimeError("libc10.so is not mapped: import torch first")
        self.lib.vramsim_select(1 << self.KIND_ALIGNED, 1 << self.LIB_C10)

    def live(self):
        return self.lib.vramsim_live_bytes()

    def peak(self):
        return self.lib.vramsim_peak_bytes()

    def reset_peak(self):
        self.lib.vramsim_reset_peak()

    def bucket(self, kind, lib):
        return self.lib.vramsim_bucket_live(kind, lib), self.lib.vramsim_bucket_peak(kind, lib)

    def calls(self):
        names = ["malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc",
                 "memalign", "valloc", "pvalloc", "free_untracked"]
        return {n: self.lib.vramsim_calls(i) for i, n in enumerate(names)}


# --------------------------------------------------------------------------------------------
# measuring

def train_step(model, opt, x, y, precision=None, accum=1, loss_precision="model"):
    """One training step; the output and loss stay alive until the step returns.

    precision "amp-bf16": forward and loss under torch.autocast("cpu", torch.bfloat16),
    backward and step outside.  loss_precision "fp32": the logits are upcast first
    (`logits = logits.float()`, the bf16 logits dropped).  accum K > 1: K micro-batches x.chunk(K) / y.chunk(K), each
    forward, loss / K, backward (out and loss are reassigned per pass), then one step."""
    import contextlib
    import torch
    import torch.nn.functional as F

    def autocast():
        if precision == "amp-bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    opt.zero_grad(set_to_none=True)
    if accum == 1:
        with autocast():
            out = model(x)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            if loss_precision == "fp32":
                out = logits = logits.float()
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
    else:
        for xb, yb in zip(x.chunk(accum), y.chunk(accum)):
            with autocast():
                out = model(xb)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                if loss_precision == "fp32":
                    out = logits = logits.float()
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), yb.view(-1)) / accum
            loss.backward()
    opt.step()
    # out / logits / loss die here, when the frame is left


def apply_checkpointing(model, paths):
    """Runs each named submodule's forward through non-reentrant activation checkpointing
    (torch.utils.checkpoint.checkpoint(orig_forward, *args, use_reentrant=False), default
    preserve_rng_state=True).  A path "a+b" is a group of consecutive one-input modules the
    model's forward calls in that order (resnet's conv1, bn1, relu, maxpool): the first runs
    the whole chain under one checkpoint, the others pass their input through, as a user who
    checkpoints the group does.  Only the training model is wrapped, never the ONNX export."""
    import torch.utils.checkpoint

    def wrap(orig):
        def forward(*args):
            return torch.utils.checkpoint.checkpoint(orig, *args, use_reentrant=False)
        return forward

    def chain(forwards):
        def forward(x):
            for f in forwards:
                x = f(x)
            return x
        return forward

    for path in paths:
        mods = [model.get_submodule(p) for p in path.split("+")]
        if len(mods) == 1:
            mods[0].forward = wrap(mods[0].forward)
            continue
        forwards = [m.forward for m in mods]
        mods[0].forward = wrap(chain(forwards))
        for m in mods[1:]:
            m.forward = lambda x: x


def prepare_case(case):
    """Model (train mode, seeded), batch, optimizer for `case`, with its precision and
    checkpointing applied."""
    import torch
    model = build_model(case["arch"])
    x, y = make_batch(case["arch"], case["dims"], model)
    if case.get("precision") == "bf16":
        model.to(torch.bfloat16)  # parameters and floating-point buffers
        if x.is_floating_point():
            x = x.to(torch.bfloat16)  # labels stay int64
    if case.get("checkpoint"):
        apply_checkpointing(model, case["checkpoint"])
    opt = make_optimizer(case["optimizer"], trainable_parameters(model, case))
    return model, x, y, opt


def matches_parameter(pattern, name):
    """vramsim's --freeze/--trainable matching: a glob over the whole name when the pattern has
    * ? or [, else a module path: the name itself or a dotted prefix of it."""
    import fnmatch
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern + ".")


def trainable_parameters(model, case):
    """With "trainable" (only matching parameters train) and/or "freeze" (matching ones do
    not), sets requires_grad_(False) on the frozen parameters and returns the trainable ones,
    as fine-tuning code does (filter(lambda p: p.requires_grad, model.parameters())).
    Without either key: model.parameters()."""
    if "trainable" not in case and "freeze" not in case:
        return model.parameters()
    names = [n for n, _ in model.named_parameters()]
    for key in ("trainable", "freeze"):
        for pat in case.get(key, []):
            if not any(matches_parameter(pat, n) for n in names):
                raise ValueError(f"{case['name']}: {key} pattern {pat!r} matches no parameter")
    for n, p in model.named_parameters():
        train = "trainable" not in case or any(matches_parameter(t, n) for t in case["trainable"])
        train = train and not any(matches_parameter(f, n) for f in case.get("freeze", []))
        p.requires_grad_(train)
    return filter(lambda p: p.requires_grad, model.parameters())


def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def measure_case(case, counter):
    import torch
    gc.collect()
    base = counter.live()
    t0 = time.time()
    model, x, y, opt = prepare_case(case)
    step_kw = {"precision": case.get("precision"), "accum": case.get("accum", 1),
               "loss_precision": case.get("loss_precision", "model")}
    param_bytes = tensor_bytes(model.parameters())
    buffer_bytes = tensor_bytes(model.buffers())
    input_bytes = tensor_bytes((x, y))

    train_step(model, opt, x, y, **step_kw)
    opt.zero_grad(set_to_none=True)
    gc.collect()
    steady = counter.live() - base
    dnnl_live0 = counter.bucket(Counter.KIND_ALIGNED, Counter.LIB_DNNL)[0]
    heap_live0 = counter.lib.vramsim_all_live_bytes()
    counter.reset_peak()
    t1 = time.time()
    train_step(model, opt, x, y, **step_kw)
    opt.zero_grad(set_to_none=True)
    peak = counter.peak() - base
    t2 = time.time()
    after = counter.live() - base
    dnnl_peak = counter.bucket(Counter.KIND_ALIGNED, Counter.LIB_DNNL)[1] - dnnl_live0
    heap_peak = counter.lib.vramsim_all_peak_bytes() - heap_live0

    state_bytes = sum(tensor_bytes(v for v in st.values() if torch.is_tensor(v))
                      for st in opt.state.values())
    del model, x, y, opt
    gc.collect()
    leak = counter.live() - base
    return {
        "measured_peak_bytes": peak, "steady_bytes": steady, "param_bytes": param_bytes,
        "_buffer_bytes": buffer_bytes, "_input_bytes": input_bytes, "_state_bytes": state_bytes,
        "_after_bytes": after, "_leak_bytes": leak, "_base_bytes": base,
        "_dnnl_peak_bytes": dnnl_peak, "_heap_peak_over_steady": heap_peak, "_step2_s": t2 - t1, "_case_s": t2 - t0,
    }


def fmt_mib(n):
    return f"{n / 2**20:10.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", choices=["main", "holdout", "finetune", "torchvision", "recurrent", "all"], default="main")
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    ap.add_argument("--out", default=None,
                    help="write the results here (default: validation/cases.json and/or "
                         "validation/holdout.json; with --only, matching entries there are "
                         "updated in place)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="measure every case this many times in this process and check that "
                         "the peaks agree (default 2)")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX exports")
    ap.add_argument("--export-arch", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.export_arch:
        export_arch(a.export_arch)
        return

    sets = ["main", "holdout"] if a.cases == "all" else [a.cases]
    selected = [(s, c) for s in sets for c in CASE_SETS[s]
                if a.only is None or a.only in c["name"]]
    if not selected:
        ap.error("no case matches")

    ensure_preloaded()  # may re-exec this script; nothing heavy happened before this point

    if not a.no_export:
        archs = []
        for _, c in selected:
            if c["arch"] not in archs:
                archs.append(c["arch"])
        t0 = time.time()
        run_exports(archs)
        print(f"exports took {time.time() - t0:.1f} s", flush=True)

    import torch
    import torchvision  # noqa: F401  (imported before counting starts)
    torch.set_num_threads(NUM_THREADS)
    counter = Counter()
    counter.register_libraries()
    sys.path.insert(0, HERE)
    import models  # noqa: F401

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}", flush=True)
    hdr = (f"{'case':44s} {'peak MiB':>10s} {'steady MiB':>10s} {'param MiB':>10s} "
           f"{'peak-steady':>11s} {'step2 s':>7s}  repeat")
    print(hdr)
    print("-" * len(hdr), flush=True)

    results = {s: [] for s in sets}
    nondet = []
    t_start = time.time()
    for s, c in selected:
        runs = [measure_case(c, counter) for _ in range(max(1, a.repeat))]
        r = runs[0]
        peaks = [x["measured_peak_bytes"] for x in runs]
        steadies = [x["steady_bytes"] for x in runs]
        same = len(set(peaks)) == 1 and len(set(steadies)) == 1
        if not same:
            nondet.append((c["name"], peaks, steadies))
        rec = {"name": c["name"],
               "model": os.path.relpath(os.path.join(MODELS_DIR, c["arch"] + ".onnx"), REPO_ROOT),
               "dims": c["dims"], "optimizer": c["optimizer"], "loss": "cross-entropy",
               **{k: c[k] for k in ("precision", "loss_precision", "accum", "checkpoint", "freeze",
                                     "trainable")
                  if k in c},
               "measured_peak_bytes": r["measured_peak_bytes"],
               "steady_bytes": r["steady_bytes"], "param_bytes": r["param_bytes"],
               "torch": torch.__version__,
               # informational breakdown of steady_bytes (the rest is 0 when nothing leaks)
               "detail": {"buffer_bytes": r["_buffer_bytes"], "input_bytes": r["_input_bytes"],
                          "optimizer_state_bytes": r["_state_bytes"]}}
        results[s].append(rec)
        rep = "n/a" if len(runs) == 1 else ("same" if same else f"DIFFER {peaks}")
        print(f"{c['name']:44s} {fmt_mib(r['measured_peak_bytes'])} {fmt_mib(r['steady_bytes'])} "
              f"{fmt_mib(r['param_bytes'])} {fmt_mib(r['measured_peak_bytes'] - r['steady_bytes'])} "
              f"{r['_step2_s']:7.2f}  {rep}", flush=True)
        for x in runs:
            if x["_leak_bytes"] or x["_base_bytes"] or x["_after_bytes"] != x["steady_bytes"]:
                print(f"  note: base {x['_base_bytes']} B, after step 2 {x['_after_bytes']} B "
                      f"(steady {x['steady_bytes']} B), left after the case {x['_leak_bytes']} B",
                      flush=True)
        if os.environ.get("VRAMSIM_MEASURE_VERBOSE"):
            print("  " + json.dumps({k: v for k, v in r.items() if k.startswith("_")}), flush=True)
    print(f"measuring took {time.time() - t_start:.1f} s; "
          f"{'all peaks deterministic' if not nondet else f'NON-DETERMINISTIC: {nondet}'}",
          flush=True)

    if a.out:
        write_json(a.out, [r for s in sets for r in results[s]], merge=False)
    else:
        for s in sets:
            write_json(DEFAULT_OUT[s], results[s], merge=a.only is not None,
                       order=[c["name"] for c in CASE_SETS[s]])


def write_json(path, records, merge, order=None):
    if merge and os.path.exists(path):
        with open(path) as f:
            old = {r["name"]: r for r in json.load(f)}
        old.update({r["name"]: r for r in records})
        records = [old[n] for n in order if n in old] + \
                  [r for n, r in old.items() if n not in set(order)]
    with open(path, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    print(f"wrote {len(records)} cases to {os.path.relpath(path, REPO_ROOT)}")


if __name__ == "__main__":
    main()

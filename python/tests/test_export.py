"""Tests of vramsim.export (weightless training-mode ONNX export).

Run from the repository root with the Debian interpreter (torch 1.13, pytest from the
python3-pytest package), after building the CLI (bash scripts/build.sh):

    /usr/bin/python3 -m pytest python/tests            # everything but the 70B export
    /usr/bin/python3 -m pytest python/tests -m slow    # the 70B export (about 10 minutes)

VRAMSIM_BIN names the vramsim binary (default: build/cli/vramsim in the repository).
Expected values come from independent sources: the committed regular exports in examples/
(made by validation/export_models.py with real weights and torch.onnx.export), PyTorch's own
named_parameters()/named_buffers(), and the published parameter counts of LLaMA-2.
"""

import json
import os
import subprocess
import sys

import onnx
import pytest
import torch
import torchvision
from onnx import TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYDIR)
sys.path.insert(0, PYDIR)
sys.path.insert(0, os.path.join(REPO, "validation"))

from vramsim import export as E  # noqa: E402
from vramsim.models import llama  # noqa: E402
from models import GPT, GPTConfig  # noqa: E402  (validation/models.py)

VRAMSIM = os.environ.get("VRAMSIM_BIN", os.path.join(REPO, "build", "cli", "vramsim"))
GPT_AXES = {"idx": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
LLAMA_AXES = {"input_ids": {0: "batch", 1: "seq"}}
DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
               "uint64_data", "string_data")


def vramsim(*args):
    assert os.path.isfile(VRAMSIM), f"no vramsim binary at {VRAMSIM}: build it or set VRAMSIM_BIN"
    r = subprocess.run([VRAMSIM, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def peak(path, *dims, extra=()):
    args = ["estimate", str(path)]
    for d in dims:
        args += ["--dim", d]
    return json.loads(vramsim(*args, *extra, "--json"))["peak_bytes"]


def load(path):
    return onnx.load(str(path), load_external_data=False)


def export_cli(*args):
    env = dict(os.environ, PYTHONPATH=PYDIR)
    return subprocess.run([sys.executable, "-m", "vramsim.export", *args], capture_output=True,
                          text=True, env=env, timeout=900)


def export_gpt(path, **kw):
    with E.meta_init():
        model = GPT(GPTConfig())
    return E.export(model, torch.zeros(1, 8, dtype=torch.int64), path, GPT_AXES, ["idx"],
                    ["logits"], quiet=True, **kw)


def export_resnet18(path):
    with E.meta_init():
        model = torchvision.models.resnet18(weights=None)
    return E.export(model, torch.zeros(1, 3, 224, 224), path, {"input": {0: "batch"},
                    "logits": {0: "batch"}}, ["input"], ["logits"], quiet=True)


# ------------------------------------------------------------------------------------------
# (a) same answers as the committed regular exports

@pytest.mark.parametrize("name,dims", [("resnet18", ["batch=8"]),
                                       ("gpt", ["batch=8", "seq=128"])])
def test_same_peak_and_bytes_as_committed_export(tmp_path, name, dims):
    out = tmp_path / f"{name}.onnx"
    (export_resnet18 if name == "resnet18" else export_gpt)(out)
    committed = os.path.join(REPO, "examples", f"{name}.onnx")
    assert peak(out, *dims) == peak(committed, *dims)
    # stronger: the very same file (external location <name>.weights.bin, same offsets)
    assert out.read_bytes() == open(committed, "rb").read()


# ------------------------------------------------------------------------------------------
# (b) names, dtypes, shapes, no data

def check_weightless(proto, stem):
    for t in proto.graph.initializer:
        assert t.data_location == TensorProto.EXTERNAL, t.name
        assert not any(len(getattr(t, f)) for f in DATA_FIELDS), t.name
        ext = {e.key: e.value for e in t.external_data}
        assert ext["location"] == stem + ".weights.bin"


def test_gpt_names_are_pytorch_names(tmp_path):
    side = export_gpt(tmp_path / "g.onnx")
    proto = load(tmp_path / "g.onnx")
    real = GPT(GPTConfig())
    want = {n for n, _ in real.named_parameters()} | {n for n, _ in real.named_buffers()}
    inits = {t.name: t for t in proto.graph.initializer}
    assert set(inits) == want
    shapes = dict(real.named_parameters()) | dict(real.named_buffers())
    for n, t in inits.items():
        assert list(t.dims) == list(shapes[n].shape), n
    assert inits["h.0.attn.bias"].data_type == TensorProto.BOOL
    assert inits["wte.weight"].data_type == TensorProto.FLOAT
    check_weightless(proto, "g")
    assert side["initializers"] == [t.name for t in proto.graph.initializer]
    sidecar = json.load(open(tmp_path / "g.params.json"))
    assert sidecar["parameters"] == [n for n, _ in real.named_parameters()]
    assert sidecar["buffers"] == [n for n, _ in real.named_buffers()]
    assert sidecar["frozen"] == [] and sidecar["mode"] == "meta"
    # module scopes in node names
    assert any(n.name == "/h.0/attn/MatMul" for n in proto.graph.node)


def test_resnet18_names(tmp_path):
    export_resnet18(tmp_path / "r.onnx")
    proto = load(tmp_path / "r.onnx")
    real = torchvision.models.resnet18(weights=None)
    want = {n for n, _ in real.named_parameters()} | {n for n, _ in real.named_buffers()}
    got = {t.name for t in proto.graph.initializer}
    # the exporter drops BatchNorm's num_batches_tracked (its in-place increment), as the
    # regular export does (examples/resnet18.params.json)
    assert got == {n for n in want if not n.endswith("num_batches_tracked")}
    committed = json.load(open(os.path.join(REPO, "examples", "resnet18.params.json")))
    assert sorted(got) == sorted(committed["initializers"])
    check_weightless(proto, "r")


def test_module_is_restored(tmp_path):
    model = GPT(GPTConfig(n_layer=1))
    model.eval()
    before = {n: p for n, p in model.named_parameters()}
    w = model.wte.weight.detach().clone()
    E.export(model, torch.zeros(1, 4, dtype=torch.int64), tmp_path / "m.onnx", GPT_AXES,
             ["idx"], ["logits"], quiet=True)
    after = dict(model.named_parameters())
    assert all(after[n] is p for n, p in before.items())
    assert torch.equal(model.wte.weight, w) and not model.training


# ------------------------------------------------------------------------------------------
# (c) LLaMA

def test_tiny_llama_meta_equals_zero_storage_trace(tmp_path):
    """The meta trace (what "auto" picks for LLaMA) gives the same file as real CPU kernels
    on zero-storage stand-ins."""
    paths = {}
    for mode in ("meta", "zero"):
        d = tmp_path / mode
        d.mkdir()
        with E.meta_init():
            m = llama.tiny_lora()
        side = E.export(m, torch.zeros(1, 8, dtype=torch.int64), d / "t.onnx", LLAMA_AXES,
                        ["input_ids"], ["logits"], modes=(mode,), quiet=True)
        assert side["mode"] == mode
        paths[mode] = d / "t.onnx"
    assert paths["meta"].read_bytes() == paths["zero"].read_bytes()


def test_tiny_llama_estimate(tmp_path):
    out = tmp_path / "tiny.onnx"
    r = export_cli("vramsim.models.llama:tiny", str(out), "--input", "input_ids=1x8:int64",
                   "--dynamic", "input_ids=0:batch,1:seq", "--output", "logits")
    assert r.returncode == 0, r.stderr
    real = llama.tiny()
    n_params = sum(p.numel() for p in real.parameters())
    proto = load(out)
    want = {n for n, _ in real.named_parameters()} | {n for n, _ in real.named_buffers()}
    assert {t.name for t in proto.graph.initializer} == want
    check_weightless(proto, "tiny")
    j = json.loads(vramsim("estimate", str(out), "--dim", "batch=2", "--dim", "seq=16",
                           "--json"))
    # vramsim takes every floating initializer for a trainable parameter, the rotary
    # inv_freq buffer (head_dim / 2 = 8 floats) included; --freeze gives the true set
    assert j["parameters"]["elements"] == n_params + 8
    assert j["peak_bytes"] > 4 * 4 * n_params  # params + grads + 2 Adam moments at least
    j = json.loads(vramsim("estimate", str(out), "--dim", "batch=2", "--dim", "seq=16",
                           "--freeze", "model.rotary_emb.inv_freq", "--json"))
    assert j["trainable_parameters"]["elements"] == n_params
    side = json.load(open(tmp_path / "tiny.params.json"))
    assert side["float_buffers"] == ["model.rotary_emb.inv_freq"]


def test_tiny_llama_lora_frozen(tmp_path):
    out = tmp_path / "tl.onnx"
    with E.meta_init():
        m = llama.tiny_lora()
    side = E.export(m, torch.zeros(1, 8, dtype=torch.int64), out, LLAMA_AXES, ["input_ids"],
                    ["logits"], quiet=True)
    real = llama.tiny_lora()
    assert side["frozen"] == [n for n, p in real.named_parameters() if not p.requires_grad]
    assert side["frozen"] and all(".lora_" not in n for n in side["frozen"])
    full = peak(out, "batch=2", "seq=16")
    lora = peak(out, "batch=2", "seq=16", extra=("--trainable", "*.lora_*"))
    assert lora < full


# ------------------------------------------------------------------------------------------
# (d) bad input

@pytest.mark.parametrize("args,needle", [
    (["nosuchmodule_xyz:f", "OUT", "--input", "x=1x2"], "cannot import module"),
    (["vramsim.models.llama", "OUT", "--input", "x=1x2"], "expected MODULE:FACTORY"),
    (["vramsim.models.llama:nope", "OUT", "--input", "x=1x2"], "has no attribute"),
    (["vramsim.models.llama:LLAMA2_7B", "OUT", "--input", "x=1x2"], "not callable"),
    (["vramsim.models.llama:LlamaConfig", "OUT", "--input", "x=1x2"], "not an nn.Module"),
    (["vramsim.models.llama:tiny", "OUT"], "--input"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids"], "expected NAME=SHAPE"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids=1xq"], "not dims"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids=1x8:int3"], "unknown dtype"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids=1x8:int64",
      "--dynamic", "ids=0:batch"], "not an --input or --output name"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids=1x8:int64",
      "--dynamic", "input_ids=5:batch"], "out of range"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids=1x8:int64",
      "--dynamic", "input_ids=batch"], "not AXIS:DIM"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids=1x8:int64",
      "--kwargs", "{bad"], "not JSON"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids=1x8:int64",
      "--kwargs", '{"no_such_field": 1}'], "factory"),
    (["vramsim.models.llama:tiny", "OUT", "--input", "input_ids=1x8x3:float32"], "export failed"),
    (["vramsim.models.llama:tiny", "OUT", "--bogus"], "unrecognized arguments"),
])
def test_bad_input_one_line(tmp_path, args, needle):
    args = [str(tmp_path / "o.onnx") if a == "OUT" else a for a in args]
    r = export_cli(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("vramsim.export: error: "), r.stderr
    assert needle in lines[-1], lines[-1]
    assert len([ln for ln in lines if "error" in ln]) == 1, r.stderr
    assert not (tmp_path / "o.onnx").exists()


# ------------------------------------------------------------------------------------------
# LLaMA-2 7B (about 15 s on 2 cores, 0.3 GB RSS) and 70B (slow: about 10 minutes)

def check_big(tmp_path, factory, n_params, n_layers):
    out = tmp_path / "big.onnx"
    r = export_cli(f"vramsim.models.llama:{factory}", str(out), "--input",
                   "input_ids=1x8:int64", "--dynamic", "input_ids=0:batch,1:seq",
                   "--output", "logits")
    assert r.returncode == 0, r.stderr
    proto = load(out)
    check_weightless(proto, "big")
    lengths = [int({e.key: e.value for e in t.external_data}["length"])
               for t in proto.graph.initializer]
    # published parameter counts; plus the rotary inv_freq buffer (64 floats)
    assert sum(lengths) == 4 * n_params + 4 * 64
    assert len(proto.graph.initializer) == 2 + 9 * n_layers + 1 + 1
    j = json.loads(vramsim("estimate", str(out), "--dim", "batch=1", "--dim", "seq=4096",
                           "--precision", "bf16", "--json"))
    assert j["parameters"]["elements"] == n_params + 64  # + inv_freq, see test_tiny_llama_estimate
    return j


def test_llama2_7b(tmp_path):
    check_big(tmp_path, "llama2_7b", 6_738_415_616, 32)


@pytest.mark.slow
def test_llama2_70b(tmp_path):
    check_big(tmp_path, "llama2_70b", 68_976_648_192, 80)

"""Weightless training-mode ONNX export for vramsim: never materializes the weights.

`torch.onnx.export` needs a module whose weights exist (a 7B decoder is 27 GB in fp32).
vramsim reads only names, dtypes and shapes of the weights, so this exporter writes the same
graph without them:

* parameters and buffers are swapped, for the duration of the export, for stand-ins on the
  meta device (no storage) and the module is traced on meta example inputs of the same
  dtypes and shapes;
* torch 1.13's exporter copies parameter values in two passes (ONNX shape inference and
  initializer de-duplication); those two get zero-byte-per-element CPU stand-ins instead
  (a stride-0 expand of one element per tensor);
* the export runs with export_params=False, and every parameter and buffer becomes an
  initializer with its dtype and dims and EXTERNAL data in `<stem>.weights.bin`, which is never
  written: exactly the form of validation/export_models.py (`data_location=EXTERNAL`,
  `location`, consecutive `offset`/`length`), loadable with
  `onnx.load(path, load_external_data=False)` and by `vramsim estimate`.

Settings as the repository's own exports: `model.train()`,
`training=torch.onnx.TrainingMode.TRAINING`, `do_constant_folding=False`, opset 17 by
default, dynamic axes from `dynamic_dims`. Node names keep PyTorch's module scopes
("/model/layers.0/self_attn/q_proj/MatMul"), initializer names are PyTorch's
`named_parameters()` / `named_buffers()` names. Non-persistent buffers are made persistent
during the export so they too become named initializers (not anonymous constants).

Which stand-ins ("auto", the default): one forward on meta stand-ins, recording the torch
functions it calls; if all are in META_SAFE (functions checked to trace the same on meta as
on the CPU in torch 1.13: linear, embedding, layer_norm, softmax, matmul, elementwise and
view ops, ...) the export traces on meta (no compute at all: LLaMA-2-7B in 15 s); otherwise
(convolutions, batch norm, pooling, ...: 1.13 implements some meta kernels in Python and the
tracer would record their insides) on zero-storage CPU stand-ins, which run the real CPU
kernels on the tiny example input (each op copies its stride-0 weight into a transient
contiguous tensor, one at a time: LLaMA-2-7B forced this way took 2.3 minutes, 0.9 GB RSS).

Fallbacks, each announced with one line on stderr: if tracing on the meta device fails (a
forward that reads values, e.g. `.item()` or `if mask.any()`), the export is retried with
zero-storage CPU stand-ins (values all zero, so value-dependent Python control flow follows
the all-zero branch); if that fails too, with real zero-filled tensors (materialized, the
line gives the bytes).

Next to OUT.onnx it writes OUT.params.json: {"parameters": named_parameters() names,
"buffers": named_buffers() names, "initializers": the ONNX initializer names, "frozen": the
parameters with requires_grad=False, "float_buffers": floating-point buffers other than
BatchNorm statistics, "mode": "meta" | "zero" | "real"}. The ONNX file has no
requires-grad marker and vramsim trains every parameter unless told otherwise: pass the
frozen ones with `vramsim estimate --freeze ...` or the trainable ones with `--trainable ...`
(the command line prints a hint when some are frozen). vramsim also takes floating-point
buffers other than BatchNorm's running statistics (LLaMA's rotary inv_freq) for trainable
parameters, with gradients and optimizer state: `--freeze` them too (another hint).

Command line (the Debian interpreter, which has torch 1.13; run from python/ or with
PYTHONPATH=python):

    /usr/bin/python3 -m vramsim.export MODULE:FACTORY OUT.onnx \\
        --input NAME=SHAPE[:DTYPE] [--input ...] [--dynamic NAME=AXIS:DIM[,AXIS:DIM]...]... \\
        [--output NAME[,NAME]...] [--opset N] [--kwargs JSON] [--real-init]
        [--trace auto|meta|zero|real] [--quiet]

MODULE:FACTORY is an importable module (or a path to a .py file) and a callable in it that
returns an nn.Module, called with no arguments (or with --kwargs JSON as keyword arguments).
It is called under meta_init(): tensor factories (torch.empty, zeros, ones, randn, tensor,
...) without a device, or with the CPU, create meta tensors, so building a 70B model
allocates nothing (`--real-init` builds it normally). SHAPE is dims joined by 'x' or ',' (a
tiny example input is enough: the dims marked --dynamic are symbolic in the export), DTYPE
one of float32 (default), float16, bfloat16, float64, int64, int32, int8, uint8, bool. Example:

    /usr/bin/python3 -m vramsim.export vramsim.models.llama:llama2_7b /tmp/llama7b.onnx \\
        --input input_ids=1x8:int64 --dynamic input_ids=0:batch,1:seq --output logits
    build/cli/vramsim estimate /tmp/llama7b.onnx --dim batch=1 --dim seq=4096 --precision bf16

Bad input (unknown module or factory, a factory that returns no nn.Module, malformed
--input/--dynamic, a failing export) exits with status 2 and one line on stderr
`vramsim.export: error: ...`.
"""

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import os
import sys
import types
import warnings

import onnx
import torch
import torch.nn as nn
from onnx import TensorProto
from torch.overrides import TorchFunctionMode

DEFAULT_OPSET = 17

_DTYPES = {
    torch.float32: TensorProto.FLOAT, torch.float16: TensorProto.FLOAT16,
    torch.bfloat16: TensorProto.BFLOAT16, torch.float64: TensorProto.DOUBLE,
    torch.complex64: TensorProto.COMPLEX64, torch.complex128: TensorProto.COMPLEX128,
    torch.int64: TensorProto.INT64, torch.int32: TensorProto.INT32,
    torch.int16: TensorProto.INT16, torch.int8: TensorProto.INT8, torch.uint8: TensorProto.UINT8,
    torch.bool: TensorProto.BOOL,
}
_DTYPE_NAMES = {
    "float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64,
    "double": torch.float64, "int64": torch.int64, "long": torch.int64, "int32": torch.int32,
    "int": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
               "uint64_data", "string_data")


class ExportError(Exception):
    """Bad input to the exporter; str() is the one-line message."""


# ---------------------------------------------------------------------------------------------
# Building modules without storage

# Tensor factories that take a device argument (as torch 2.x's torch.utils._device list).
_FACTORIES = {getattr(torch, n) for n in (
    "empty", "empty_strided", "empty_quantized", "ones", "arange", "bartlett_window",
    "blackman_window", "eye", "fft.fftfreq", "fft.rfftfreq", "full", "hamming_window",
    "hann_window", "kaiser_window", "linspace", "logspace", "nested_tensor", "ones",
    "rand", "randn", "randint", "randperm", "range", "sparse_coo_tensor",
    "sparse_compressed_tensor", "sparse_csr_tensor", "sparse_csc_tensor", "sparse_bsr_tensor",
    "sparse_bsc_tensor", "tril_indices", "triu_indices", "vander", "zeros", "asarray",
    "tensor", "as_tensor", "scalar_tensor") if hasattr(torch, n)}


class _MetaInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _FACTORIES:
            dev = kwargs.get("device")
            if dev is None or torch.device(dev).type == "cpu":
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


@contextlib.contextmanager
def meta_init():
    """Inside, tensor factories without a device (or with the CPU) make meta tensors: modules
    built here have parameters and buffers with dtypes and shapes but no storage.
    (torch 1.13 has no `with torch.device("meta")`; this is the same TorchFunctionMode idea.)"""
    with _MetaInit():
        yield


# ---------------------------------------------------------------------------------------------
# Swapping parameters and buffers for stand-ins

def _meta_like(t):
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


def _zero_storage_like(t):
    """A CPU tensor of t's dtype and shape backed by one element (all strides 0)."""
    return torch.zeros((), dtype=t.dtype).expand(t.shape)


def _zeros_like(t):
    return torch.zeros(t.shape, dtype=t.dtype)


@contextlib.contextmanager
def _swapped(module, make):
    """Replaces every parameter and buffer of `module` by make(tensor) (tied tensors stay tied,
    requires_grad kept) and makes non-persistent buffers persistent; restores all on exit."""
    saved = []
    made = {}
    try:
        for m in module.modules():
            for key, p in list(m._parameters.items()):
                if p is None:
                    continue
                if id(p) not in made:
                    made[id(p)] = nn.Parameter(make(p.detach()), requires_grad=p.requires_grad)
                saved.append((m._parameters, key, p))
                m._parameters[key] = made[id(p)]
            for key, b in list(m._buffers.items()):
                if b is None:
                    continue
                if id(b) not in made:
                    made[id(b)] = make(b)
                saved.append((m._buffers, key, b))
                m._buffers[key] = made[id(b)]
            np_set = getattr(m, "_non_persistent_buffers_set", None)
            if np_set:
                saved.append((m, "_non_persistent_buffers_set", set(np_set)))
                np_set.clear()
        yield
    finally:
        for d, key, v in reversed(saved):
            if isinstance(d, nn.Module):
                getattr(d, key).update(v)
            else:
                d[key] = v


@contextlib.contextmanager
def _value_passes_without_values():
    """torch 1.13's exporter reads parameter values in two passes. ONNX shape inference
    (_jit_pass_onnx_graph_shape_type_inference) turns every parameter into a constant for
    ONNX's data propagation: that materializes each stand-in (a 2-layer 7B slice: 3.3 GB and
    190 s instead of 0.75 GB and 12 s) and would fold stand-in values (zeros) into shapes.
    It gets no parameters instead: their types are on the graph inputs already (the output is
    identical for GPT, resnet18 and LLaMA). Initializer de-duplication compares data
    pointers: every meta tensor has 0, so meta stand-ins get one zero-storage CPU tensor each
    (own storage, distinct pointers) there."""
    c = torch._C
    orig_infer = c._jit_pass_onnx_graph_shape_type_inference
    orig_dedup = c._jit_pass_onnx_deduplicate_initializers
    cache = {}

    def stand_in(v):
        if not (isinstance(v, torch.Tensor) and v.is_meta):
            return v
        if id(v) not in cache:
            cache[id(v)] = (v, _zero_storage_like(v))
        return cache[id(v)][1]

    def infer(graph, params, opset):
        return orig_infer(graph, {}, opset)

    def dedup(graph, params, training):
        return orig_dedup(graph, {k: stand_in(v) for k, v in params.items()}, training)

    c._jit_pass_onnx_graph_shape_type_inference = infer
    c._jit_pass_onnx_deduplicate_initializers = dedup
    try:
        yield
    finally:
        c._jit_pass_onnx_graph_shape_type_inference = orig_infer
        c._jit_pass_onnx_deduplicate_initializers = orig_dedup


@contextlib.contextmanager
def _no_input_clones():
    """torch 1.13's ONNXTracedModule.forward clones every trace input, parameters and buffers
    included (`x.clone(memory_format=torch.preserve_format)`, used only when the tracer is
    asked to return its inputs, which torch.onnx never does): on a stride-0 stand-in that
    materializes the whole tensor, i.e. all weights at once. This swaps in the same forward
    without that clone for the duration of the export."""
    from torch.jit import _trace as tr
    cls = getattr(tr, "ONNXTracedModule", None)
    if cls is None:  # not torch 1.13's layout: leave it alone
        yield
        return

    def forward(self, *args):
        in_vars, in_desc = tr._flatten(args)
        module_state = list(tr._unique_state_dict(self, keep_vars=True).values())
        ret_inputs, inputs_states, outs = [], [], []

        def wrapper(*args):
            in_args = []
            for i in range(len(in_vars)):
                if not isinstance(args[i], torch.Tensor):
                    raise RuntimeError("Expected Tensor argument")
                in_args.append(args[i])
            trace_inputs = tr._unflatten(in_args, in_desc)
            if self._return_inputs:
                ret_inputs.append(tuple(x.clone(memory_format=torch.preserve_format) for x in args))
            if self._return_inputs_states:
                inputs_states.append(tr._unflatten(in_args, in_desc))
            outs.append(self.inner(*trace_inputs))
            if self._return_inputs_states:
                inputs_states[0] = (inputs_states[0], trace_inputs)
            out_vars, _ = tr._flatten(outs)
            return out_vars[0] if len(out_vars) == 1 else tuple(out_vars)

        graph, out = torch._C._create_graph_by_tracing(
            wrapper, in_vars + module_state, tr._create_interpreter_name_lookup_fn(),
            self.strict, self._force_outplace)
        if self._return_inputs:
            return graph, outs[0], ret_inputs[0]
        if self._return_inputs_states:
            return graph, outs[0], inputs_states[0]
        return graph, outs[0]

    orig = cls.forward
    cls.forward = forward
    try:
        yield
    finally:
        cls.forward = orig


# Python-level torch functions whose meta-device trace is the same graph as a CPU trace in
# torch 1.13 (checked: GPT and the LLaMA decoders export byte-identical on meta and on
# zero-storage CPU stand-ins, tests/test_export.py). Others may not be: 1.13 implements some
# meta kernels in Python (convolution, batch norm, pooling, index, ...) and the tracer records
# the ops *inside* them (resnet18 traced on meta: 937 nodes instead of 69).
META_SAFE = frozenset("""
    linear embedding layer_norm softmax log_softmax gelu silu dropout relu tanh sigmoid
    getset_descriptor.__get__ Tensor.split _TensorBase.__getitem__ _TensorBase.__invert__
    _TensorBase.add _TensorBase.sub _TensorBase.mul _TensorBase.div _TensorBase.neg
    _TensorBase.pow _TensorBase.mean _TensorBase.cos _TensorBase.sin _TensorBase.exp
    _TensorBase.sqrt _TensorBase.rsqrt _TensorBase.contiguous _TensorBase.masked_fill
    _TensorBase.matmul _TensorBase.size _TensorBase.dim _TensorBase.to _TensorBase.float
    _TensorBase.type_as _TensorBase.transpose _TensorBase.permute _TensorBase.view
    _TensorBase.reshape _TensorBase.expand _TensorBase.unsqueeze _TensorBase.squeeze
    _TensorBase.flatten _TensorBase.chunk
    _VariableFunctionsClass.arange _VariableFunctionsClass.cat _VariableFunctionsClass.full
    _VariableFunctionsClass.matmul _VariableFunctionsClass.outer _VariableFunctionsClass.rsqrt
    _VariableFunctionsClass.triu _VariableFunctionsClass.tril _VariableFunctionsClass.ones
    _VariableFunctionsClass.zeros
""".split())


class _Record(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.add(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


def _meta_unsafe(module, args):
    """Runs one forward on meta stand-ins (no storage, no compute) and returns the sorted
    torch functions it called that are not in META_SAFE, or ["<exception>"] if it failed."""
    rec = _Record()
    try:
        with _swapped(module, _meta_like), torch.no_grad():
            margs = _map_tensors(args, _meta_like)
            with rec:
                module(*margs)
    except Exception as e:  # noqa: BLE001 - the meta trace is then not used
        return [f"{type(e).__name__} on meta"]
    return sorted(rec.seen - META_SAFE)


# ---------------------------------------------------------------------------------------------
# Export

def _as_tuple(example_inputs):
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    return tuple(example_inputs)


def _map_tensors(args, fn):
    if isinstance(args, torch.Tensor):
        return fn(args)
    if isinstance(args, (list, tuple)):
        return type(args)(_map_tensors(a, fn) for a in args)
    if isinstance(args, dict):
        return {k: _map_tensors(v, fn) for k, v in args.items()}
    return args


def _torch_export(module, args, input_names, output_names, dynamic_axes, opset):
    buf = io.BytesIO()
    with warnings.catch_warnings(), _no_input_clones(), _value_passes_without_values():
        warnings.filterwarnings("ignore", message=r".*Removing mutation from node aten::add_.*num_batches_tracked")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, args, buf, training=torch.onnx.TrainingMode.TRAINING,
                          do_constant_folding=False, opset_version=opset,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, export_params=False)
    return onnx.load_from_string(buf.getvalue())


def _weights_as_initializers(proto, infos, weights_file):
    """Turns the graph inputs that are parameters/buffers (export_params=False leaves them as
    inputs) into weightless initializers, in the exporter's order. Returns total bytes."""
    graph = proto.graph
    keep = []
    offset = 0
    for vi in graph.input:
        info = infos.get(vi.name)
        if info is None:
            keep.append(vi)
            continue
        dtype, shape = info
        t = graph.initializer.add()
        t.name = vi.name
        t.data_type = _DTYPES[dtype]
        t.dims.extend(shape)
        nbytes = torch.empty((), dtype=dtype).element_size()
        for d in shape:
            nbytes *= d
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", weights_file), ("offset", str(offset)), ("length", str(nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        offset += nbytes
    del graph.input[:]
    graph.input.extend(keep)
    return offset


def verify(proto):
    """Checks the weightless model without its (absent) weights: strict ONNX shape inference,
    and onnx.checker on a copy whose initializers are declared as graph inputs instead."""
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for t in m.graph.initializer:
        assert t.data_location == TensorProto.EXTERNAL, t.name
        assert not any(len(getattr(t, f)) for f in DATA_FIELDS), t.name
        m.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    del m.graph.initializer[:]
    onnx.checker.check_model(m)


def _say(msg):
    print("vramsim.export: " + msg, file=sys.stderr, flush=True)


def export(module, example_inputs, path, dynamic_dims=None, input_names=None,
           output_names=None, opset=DEFAULT_OPSET, modes=("auto", "zero", "real"), quiet=False):
    """Writes a weightless training-mode ONNX export of `module` to `path` and the sidecar
    `<stem>.params.json`; returns the sidecar's dict (plus "path", "bytes": total weight bytes).

    module: an nn.Module, with real or meta parameters (build big ones under meta_init()).
    example_inputs: a tensor or tuple of tensors (meta or real; only dtypes and shapes matter
      unless the meta trace fails). Keep them small: dims in dynamic_dims are symbolic.
    dynamic_dims: {input or output name: {axis: dim name}}, as torch.onnx's dynamic_axes.
    modes: the stand-ins to try in order ("auto", "meta", "zero", "real"; "auto" is "meta" when
      a meta forward calls only META_SAFE functions, else skipped; see the module docstring).
    The module is put in train() mode; its parameters and buffers are restored afterwards."""
    if not isinstance(module, nn.Module):
        raise ExportError(f"expected an nn.Module, got {type(module).__name__}")
    args = _as_tuple(example_inputs)
    path = os.fspath(path)
    stem = os.path.basename(path)
    stem = stem[:-5] if stem.endswith(".onnx") else stem
    weights_file = stem + ".weights.bin"
    out_dir = os.path.dirname(os.path.abspath(path))
    if os.path.exists(os.path.join(out_dir, weights_file)):
        raise ExportError(f"{weights_file} exists in {out_dir}: the weightless export would "
                          "point at it; remove it or write elsewhere")

    param_names = [n for n, _ in module.named_parameters()]
    buffer_names = [n for n, _ in module.named_buffers()]
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    float_buffers = [n for n, b in module.named_buffers()
                     if b.is_floating_point() and not n.endswith(("running_mean", "running_var"))]
    # dtype/shape of everything that can become an initializer, by state_dict-style name
    # (named_* dedups tied tensors, keeping the first name, as the exporter does).
    infos = {}
    for n, t in list(module.named_parameters()) + list(module.named_buffers()):
        infos[n] = (t.dtype, tuple(t.shape))
    was_training = module.training
    module.train()

    makers = {"meta": _meta_like, "zero": _zero_storage_like, "real": _zeros_like}
    proto = None
    errors = []
    used = None
    modes = list(modes)
    if "auto" in modes:
        unsafe = _meta_unsafe(module, args)
        i = modes.index("auto")
        if unsafe:
            modes.pop(i)
            if not quiet:
                print(f"{stem}: tracing on zero-storage CPU stand-ins (not meta: "
                      f"{', '.join(unsafe[:6])}{' ...' if len(unsafe) > 6 else ''})")
        else:
            modes[i] = "meta"
    try:
        for mode in modes:
            if mode == "real":
                real_bytes = sum(torch.empty((), dtype=d).element_size() * _numel(s)
                                 for d, s in infos.values())
                _say(f"falling back to real tensors: materializing {real_bytes} bytes of "
                     "zero-filled parameters and buffers")
            try:
                if mode == "meta":
                    margs = _map_tensors(args, _meta_like)
                    with _swapped(module, makers[mode]):
                        proto = _torch_export(module, margs, input_names, output_names,
                                              dynamic_dims, opset)
                else:
                    cargs = _map_tensors(args, lambda t: _zeros_like(t) if t.is_meta else t)
                    with _swapped(module, makers[mode]):
                        proto = _torch_export(module, cargs, input_names, output_names,
                                              dynamic_dims, opset)
                used = mode
                break
            except Exception as e:  # noqa: BLE001 - reported and retried with the next mode
                msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                errors.append(f"{mode}: {msg}")
                nxt = modes[modes.index(mode) + 1] if mode != modes[-1] else None
                if nxt:
                    _say(f"tracing with {mode} stand-ins failed ({msg}); retrying with {nxt}")
    finally:
        module.train(was_training)
    if proto is None:
        raise ExportError("export failed: " + "; ".join(errors))

    total = _weights_as_initializers(proto, infos, weights_file)
    verify(proto)
    onnx.save(proto, path)

    init_names = [t.name for t in proto.graph.initializer]
    sidecar = {"parameters": param_names, "buffers": buffer_names, "initializers": init_names,
               "frozen": frozen, "float_buffers": float_buffers, "mode": used}
    with open(os.path.join(out_dir, stem + ".params.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
        f.write("\n")
    if not quiet:
        init_set = set(init_names)
        missing = [n for n in param_names + buffer_names if n not in init_set]
        print(f"{stem}: {len(proto.graph.node)} nodes, {len(init_names)} initializers, "
              f"{total} bytes of weights in {weights_file} [not written], "
              f"file {os.path.getsize(path)} bytes, traced with {used} stand-ins")
        if missing:
            print(f"  parameters/buffers not in the graph ({len(missing)}): {missing}")
        if frozen:
            print(f"  {len(frozen)} of {len(param_names)} parameters have requires_grad=False; "
                  "the ONNX file cannot say so: pass them to vramsim with --freeze or "
                  "--trainable (names in " + stem + ".params.json \"frozen\")")
        if float_buffers:
            print(f"  {len(float_buffers)} floating-point buffers (not BatchNorm statistics) "
                  "that vramsim will take for trainable parameters: add --freeze "
                  + ",".join(float_buffers[:3]) + (",..." if len(float_buffers) > 3 else "")
                  + " (all in " + stem + ".params.json \"float_buffers\")")
    return dict(sidecar, path=path, bytes=total)


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------------
# Command line

def load_factory(spec):
    """'pkg.mod:factory' or 'path/to/file.py:factory' -> the callable."""
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise ExportError(f"bad factory spec {spec!r}: expected MODULE:FACTORY, "
                          "e.g. vramsim.models.llama:llama2_7b")
    mod_name, attr = spec.split(":")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name:
            if not os.path.isfile(mod_name):
                raise ExportError(f"no such file {mod_name!r} (from factory spec {spec!r})")
            s = importlib.util.spec_from_file_location(
                os.path.splitext(os.path.basename(mod_name))[0], mod_name)
            mod = importlib.util.module_from_spec(s)
            s.loader.exec_module(mod)
        else:
            mod = importlib.import_module(mod_name)
    except ExportError:
        raise
    except ModuleNotFoundError as e:
        raise ExportError(f"cannot import module {mod_name!r} (from factory spec {spec!r}): {e}")
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"importing {mod_name!r} failed: {type(e).__name__}: {e}")
    fn = mod
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ExportError(f"module {mod_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ExportError(f"{spec!r} is not callable")
    return fn


def parse_input(text):
    """'NAME=SHAPE[:DTYPE]' -> (name, shape tuple, dtype)."""
    if "=" not in text:
        raise ExportError(f"bad --input {text!r}: expected NAME=SHAPE[:DTYPE], e.g. idx=1x8:int64")
    name, rest = text.split("=", 1)
    if not name:
        raise ExportError(f"bad --input {text!r}: empty name")
    shape_s, _, dtype_s = rest.partition(":")
    dtype = torch.float32
    if dtype_s:
        if dtype_s.lower() not in _DTYPE_NAMES:
            raise ExportError(f"bad --input {text!r}: unknown dtype {dtype_s!r} (known: "
                              + ", ".join(sorted(_DTYPE_NAMES)) + ")")
        dtype = _DTYPE_NAMES[dtype_s.lower()]
    parts = shape_s.replace(",", "x").split("x") if shape_s else []
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ExportError(f"bad --input {text!r}: shape {shape_s!r} is not dims joined by 'x'")
    if any(d < 0 for d in shape) or any(d > 1 << 31 for d in shape):
        raise ExportError(f"bad --input {text!r}: dims must be between 0 and 2^31")
    return name, shape, dtype


def parse_dynamic(text):
    """'NAME=AXIS:DIM[,AXIS:DIM]...' -> (name, {axis: dim})."""
    if "=" not in text:
        raise ExportError(f"bad --dynamic {text!r}: expected NAME=AXIS:DIM[,AXIS:DIM]..., "
                          "e.g. idx=0:batch,1:seq")
    name, rest = text.split("=", 1)
    axes = {}
    for item in rest.split(","):
        a, sep, d = item.partition(":")
        try:
            ai = int(a)
        except ValueError:
            ai = -1
        if not sep or not d or ai < 0 or not d.replace("_", "").isalnum():
            raise ExportError(f"bad --dynamic {text!r}: {item!r} is not AXIS:DIM "
                              "(a non-negative axis and an identifier)")
        axes[ai] = d
    if not name or not axes:
        raise ExportError(f"bad --dynamic {text!r}")
    return name, axes


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python3 -m vramsim.export",
        description="Weightless training-mode ONNX export of MODULE:FACTORY for vramsim.")
    ap.add_argument("factory", help="MODULE:FACTORY returning an nn.Module")
    ap.add_argument("out", help="output .onnx path (OUT.params.json is written beside it)")
    ap.add_argument("--input", action="append", default=[], metavar="NAME=SHAPE[:DTYPE]")
    ap.add_argument("--dynamic", action="append", default=[], metavar="NAME=AXIS:DIM,...")
    ap.add_argument("--output", default=None, metavar="NAME[,NAME]...")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    ap.add_argument("--kwargs", default=None, metavar="JSON",
                    help="keyword arguments for the factory, a JSON object")
    ap.add_argument("--real-init", action="store_true",
                    help="build the module with real tensors (not under meta_init)")
    ap.add_argument("--trace", choices=("auto", "meta", "zero", "real"), default="auto",
                    help="stand-ins to trace with (default auto: meta when the forward calls "
                         "only META_SAFE functions, else zero-storage CPU tensors)")
    ap.add_argument("--quiet", action="store_true")

    def error(msg):
        raise ExportError(msg)
    ap.error = error  # one line, exit 2, same format as the rest
    try:
        a = ap.parse_args(argv)
        if not a.input:
            raise ExportError("at least one --input NAME=SHAPE[:DTYPE] is required")
        if not a.out.endswith(".onnx"):
            raise ExportError(f"output {a.out!r} must end in .onnx")
        if not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
            raise ExportError(f"output directory of {a.out!r} does not exist")
        inputs = [parse_input(s) for s in a.input]
        names = [n for n, _, _ in inputs]
        if len(set(names)) != len(names):
            raise ExportError("an --input name is given twice")
        outputs = [s for s in a.output.split(",") if s] if a.output else None
        dynamic = {}
        for s in a.dynamic:
            n, axes = parse_dynamic(s)
            known = names + (outputs or [])
            if n not in known:
                raise ExportError(f"--dynamic {s!r}: {n!r} is not an --input or --output name "
                                  f"(known: {', '.join(known)})")
            if n in names:
                rank = len(next(sh for nn_, sh, _ in inputs if nn_ == n))
                bad = [ax for ax in axes if ax >= rank]
                if bad:
                    raise ExportError(f"--dynamic {s!r}: axis {bad[0]} out of range for "
                                      f"{n!r} of rank {rank}")
            dynamic.setdefault(n, {}).update(axes)
        kwargs = {}
        if a.kwargs:
            try:
                kwargs = json.loads(a.kwargs)
            except ValueError as e:
                raise ExportError(f"--kwargs is not JSON: {e}")
            if not isinstance(kwargs, dict):
                raise ExportError("--kwargs must be a JSON object")
        fn = load_factory(a.factory)
        try:
            with (contextlib.nullcontext() if a.real_init else meta_init()):
                module = fn(**kwargs)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"factory {a.factory!r} failed: {type(e).__name__}: {e}")
        if not isinstance(module, nn.Module):
            raise ExportError(f"factory {a.factory!r} returned {type(module).__name__}, "
                              "not an nn.Module")
        args = tuple(torch.zeros(sh, dtype=dt) for _, sh, dt in inputs)
        export(module, args, a.out, dynamic_dims=dynamic or None, input_names=names,
               output_names=outputs, opset=a.opset, quiet=a.quiet,
               modes={"auto": ("auto", "zero", "real"), "meta": ("meta", "zero", "real"),
                      "zero": ("zero", "real"), "real": ("real",)}[a.trace])
    except ExportError as e:
        msg = " ".join(str(e).split())
        print(f"vramsim.export: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


class _CallableModule(types.ModuleType):
    """`vramsim.export(module, example_inputs, path, ...)` calls export() while
    `from vramsim import export` and `python3 -m vramsim.export` still see this module."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

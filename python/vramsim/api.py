"""vramsim from Python: the CLI's subcommands as functions.

    import vramsim
    r = vramsim.estimate("examples/gpt.onnx", dims={"batch": 8, "seq": 128},
                         optimizer="adamw", precision="amp-bf16")
    r.peak_bytes                 # int, the same number as `vramsim estimate ... --json`
    r.to_dict()                  # the CLI's --json object
    r.write_html("report.html")  # the CLI's --html page; r.write_trace("step.json")

Keywords are the CLI's training flags with underscores (optimizer, optimizer_impl, target,
loss, precision, torch_version, loss_precision, attention, accum, cpu_threads, dim_name,
checkpoint (a list or a comma string), data_parallel, zero, trainable, freeze,
allow_constant_weights); dims is a dict of symbolic dimensions. Results have the fields of the CLI's --json (integers in bytes)
as attributes and as keys. Errors raise vramsim.Error with the message the CLI prints.
"""

import copy
import json

try:
    from . import _vramsim
except ImportError as e:  # the package was copied without its native module
    raise ImportError(
        "vramsim's native module _vramsim is missing: build it with scripts/build.sh and use "
        "PYTHONPATH=build/python (see README.md, 'Python')") from e


class Error(Exception):
    """A refused model, option or dimension; the message is the CLI's."""


class Result:
    """The CLI's --json object: fields as attributes (and keys), to_dict() for a copy."""

    def __init__(self, data):
        self._data = data

    def __getattr__(self, name):
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        return self._data[key]

    def __contains__(self, key):
        return key in self._data

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._data))

    def to_dict(self):
        return copy.deepcopy(self._data)

    def __repr__(self):
        shown = {k: v for k, v in self._data.items() if not isinstance(v, (dict, list))}
        return f"{type(self).__name__}({shown})"


class Estimate(Result):
    """One simulated training step (`vramsim estimate`)."""

    def __init__(self, native):
        super().__init__(json.loads(native.json))
        self._native = native

    @property
    def summary(self):
        return self._native.summary

    def write_html(self, path):
        """The self-contained HTML report (the CLI's --html)."""
        _call(self._native.write_html, str(path))

    def write_trace(self, path):
        """The step as Chrome trace / Perfetto JSON (the CLI's --trace)."""
        _call(self._native.write_trace, str(path))


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except _vramsim.NativeError as e:
        raise Error(str(e)) from None


def _dims(dims):
    if dims is None:
        return {}
    if not isinstance(dims, dict):
        raise Error(f"dims must be a dict of NAME: VALUE, not {type(dims).__name__}")
    return {str(k): v for k, v in dims.items()}


def estimate(model, dims=None, top=12, **options):
    """The peak of one training step and what it is made of (`vramsim estimate --json`; top:
    how many of the largest tensors alive at the peak to list, as --top)."""
    return Estimate(_call(_vramsim.estimate, str(model), _dims(dims), top, **options))


def inspect(model, dims=None, trainable=(), freeze=(), allow_constant_weights=False):
    """The imported graph: inputs, parameters, ops (`vramsim inspect --json`)."""
    return Result(json.loads(_call(_vramsim.inspect, str(model), _dims(dims), list(trainable),
                                   list(freeze), allow_constant_weights)))


def fit(model, gpu, dims=None, gpu_memory=0, expandable_segments=False, **options):
    """Does the step fit on this GPU, and what is the smallest change that makes it fit
    (`vramsim fit --json`)."""
    return Result(json.loads(_call(_vramsim.fit, str(model), gpu, _dims(dims), gpu_memory,
                                   expandable_segments, **options)))


def max_batch(model, gpu, dims=None, gpu_memory=0, expandable_segments=False, **options):
    """The largest batch that fits on this GPU (`vramsim max-batch --json`)."""
    return Result(json.loads(_call(_vramsim.max_batch, str(model), gpu, _dims(dims),
                                   gpu_memory, expandable_segments, **options)))

"""vramsim from Python: the CLI's subcommands as functions.

    import vramsim
    r = vramsim.estimate("examples/gpt.onnx", dims={"batch": 8, "seq": 128},
                         optimizer="adamw", precision="amp-bf16")
    r.peak_bytes                 # int, the same number as `vramsim estimate ... --json`
    r.to_dict()                  # the CLI's --json object
    r.write_html("report.html")  # the CLI's --html page; r.write_trace("step.json")

    p = vramsim.plan("examples/gpt.onnx", dims={"batch": 16, "seq": 256}, budget="6GiB")
    p.checkpoint, p.fits          # `vramsim plan ... --json` (budget_bytes=N, budget_fraction=F)
    s = vramsim.strategies("examples/gpt.onnx", ["4GiB", 6 << 30], dims={"batch": 16, "seq": 256})
    s.rows                        # `vramsim strategies ... --json`; s.write_html("s.html")

Keywords are the CLI's training flags with underscores (optimizer, optimizer_impl, target,
loss, precision, torch_version, loss_precision, attention, accum, cpu_threads, dim_name,
checkpoint (a list or a comma string), data_parallel, zero, zero_rank, tensor_parallel,
sequence_parallel, context_parallel, pipeline_parallel (--pp), schedule, virtual_stages, stages
(a list or a comma string), pipeline_stage (--pp-stage), fsdp, gpus_per_node, offload, trainable,
freeze, allow_constant_weights); dims is a dict of symbolic dimensions. Results have the fields of the CLI's --json (integers in bytes)
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


class Strategies(Result):
    """Every checkpointing strategy at every budget (`vramsim strategies`)."""

    def __init__(self, native):
        super().__init__(json.loads(native.json))
        self._native = native

    def write_html(self, path):
        """The table and chart as an HTML page (the CLI's --html)."""
        _call(self._native.write_html, str(path))


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

    def write_snapshot(self, path, gpu=""):
        """The step as a PyTorch memory snapshot pickle (the CLI's --snapshot; gpu: a device
        profile whose cuBLAS workspaces it includes, as --snapshot-gpu)."""
        _call(self._native.write_snapshot, str(path), gpu)


class Comparison(Result):
    """A real run's memory snapshot held against the prediction (`vramsim compare --json`)."""

    def __init__(self, native):
        super().__init__(json.loads(native.json))
        self.text = native.text  # what the CLI prints without --json


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


def compare(snapshot, model, dims=None, threshold=0.05, gpu="", warmup_step=True, **options):
    """A PyTorch memory snapshot of a real step (torch.cuda.memory._dump_snapshot()) against
    vramsim's prediction for the same model and step (`vramsim compare --json`)."""
    return Comparison(_call(_vramsim.compare, str(snapshot), str(model), _dims(dims), threshold,
                            gpu, warmup_step, **options))


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


def _size(value, name):
    """A budget as the CLI's size text: an int of bytes, or text such as "6GiB"."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Error(f"{name} must be an integer number of bytes or a size such as '6GiB', "
                    f"not {type(value).__name__}")
    return str(value)


def _number(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Error(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def plan(model, dims=None, *, budget_bytes=None, budget=None, budget_fraction=None, strategy="",
         time_limit_s=60.0, **options):
    """What to checkpoint so that the step fits a budget (`vramsim plan --json`): one of
    budget_bytes (an int), budget (a size, "6GiB") or budget_fraction (of the peak without
    checkpointing). strategy runs only that one; time_limit_s is the MILP's limit and the
    remat strategy's safety cut (for a remat-graph JSON, the whole call's). A plan that does not fit is returned with fits False."""
    if budget_bytes is not None and budget is not None:
        raise Error("give budget_bytes or budget, not both")
    if budget_bytes is not None:
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int):
            raise Error(f"budget_bytes must be an integer, not {type(budget_bytes).__name__}")
        budget = budget_bytes
    text = "" if budget is None else _size(budget, "budget")
    fraction = None if budget_fraction is None else _number(budget_fraction, "budget_fraction")
    return Result(json.loads(_call(_vramsim.plan, str(model), _dims(dims), text, fraction,
                                   strategy or "", _number(time_limit_s, "time_limit_s"),
                                   **options)))


def strategies(model, budgets, dims=None, *, strategy="", time_limit_s=60.0, **options):
    """Every checkpointing strategy's peak, overhead and solve time at each budget (`vramsim
    strategies --json`); budgets: ints of bytes or sizes ("4GiB"), or one comma string."""
    if isinstance(budgets, (str, int)):
        budgets = budgets.split(",") if isinstance(budgets, str) else [budgets]
    sizes = [_size(b, "budgets") for b in budgets]
    return Strategies(_call(_vramsim.strategies, str(model), sizes, _dims(dims), strategy or "",
                            _number(time_limit_s, "time_limit_s"), **options))

"""vramsim from Python: how much memory will training this model take?

    import vramsim
    r = vramsim.estimate("model.onnx", dims={"batch": 16, "seq": 1024}, optimizer="adamw",
                         precision="amp-bf16")
    print(r.peak_bytes)

estimate, inspect, fit, max_batch, plan and strategies call the C++ engine (vramsim.api, the
native module _vramsim built into build/python by scripts/build.sh); vramsim.export(module,
example_inputs, path, dynamic_dims=...) writes a weightless training-mode ONNX export of an
nn.Module without materializing its weights (it needs torch; imported on first use).
"""

import importlib

_API = ("Error", "Estimate", "Result", "Strategies", "estimate", "inspect", "fit", "max_batch",
        "plan", "strategies")
_native_error = None

try:
    from .api import (Comparison, Error, Estimate, Result, Strategies,  # noqa: F401
                      compare, estimate, fit, inspect, max_batch, plan, strategies)
except ImportError as _missing:  # the native module is not built: vramsim.export still works
    _native_error = _missing


def __getattr__(name):
    if name == "export":  # torch is imported only by those who export
        return importlib.import_module(".export", __name__)
    if name in _API and _native_error is not None:
        raise ImportError(str(_native_error)) from _native_error
    raise AttributeError(f"module 'vramsim' has no attribute '{name}'")

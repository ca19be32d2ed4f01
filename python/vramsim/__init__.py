"""Python helpers for vramsim (the C++ estimator): weightless training-mode ONNX export."""

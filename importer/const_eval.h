// The project's own evaluation of shape-computing subgraphs. Exports compute Reshape targets,
// masks and slice bounds at run time (Shape -> Gather -> Concat -> Reshape); once every dim is
// bound these are constants, and folding them gives every downstream tensor a concrete shape.
// Only small tensors are evaluated: this is shape arithmetic, not an inference engine.
#pragma once

#include <onnx/onnx_pb.h>

#include <optional>
#include <vector>

#include "importer/graph.h"

namespace vramsim {

inline constexpr uint64_t kMaxEvalElements = 1 << 16;

// Values of a TensorProto (inline data only); nullopt when the data is external, stripped,
// too large or of an unsupported type.
std::optional<ConstValue> ValueFromTensorProto(const onnx::TensorProto& proto,
                                               uint64_t max_elements = kMaxEvalElements);
onnx::TensorProto ValueToTensorProto(const ConstValue& value, const std::string& name);

// Evaluates `op` when its result is determined by what is known of its inputs (shapes always,
// values where present). `inputs[i]` is null for an omitted optional input. Returns nullopt
// when the op is not one the evaluator knows, a needed value is unknown, or the result would
// be large; the caller then falls back to ONNX's shape inference.
std::optional<std::vector<ConstValue>> EvaluateOp(const Op& op, int64_t opset,
                                                  const std::vector<const Tensor*>& inputs);

}  // namespace vramsim

// Shape rules the project owns, for ops where ONNX's own inference cannot give a concrete
// shape: the output depends on input values ONNX's rule does not read (Compress, OneHot,
// NonMaxSuppression, Unique, ...), the op is newer than the opsets libonnx 1.12 knows (Gelu,
// Reduce* with axes as input), or the ONNX rule is incomplete (Einsum) or wrong (STFT).
#pragma once

#include <optional>
#include <vector>

#include "importer/graph.h"
#include "importer/status.h"

namespace vramsim {

struct ShapeResult {
  DType dtype = DType::kUndefined;
  std::vector<int64_t> shape;
  bool is_sequence = false;
  std::vector<TypeShape> elements;  // when is_sequence
};

// nullopt: no rule of ours applies, use ONNX's. An Error: the rule applies but cannot give a
// shape (for example a needed input value is unknown).
std::optional<Result<std::vector<ShapeResult>>> OwnShapeRule(
    const Op& op, int64_t opset, const std::vector<const Tensor*>& inputs);

// True for ops that libonnx 1.12 has no schema for but that we shape ourselves.
bool OwnRuleWithoutSchema(const std::string& type, int64_t opset);

}  // namespace vramsim

// Validation before trust: what a hostile or broken file can put into a node is checked here,
// before the evaluator or ONNX's shape inference reads it (ONNX's inference divides by strides
// and block sizes, indexes by axes, and trusts element types), and what inference produced is
// checked after it (element counts through Reshape, Expand, Tile).
#pragma once

#include <onnx/defs/schema.h>

#include <string>
#include <string_view>
#include <vector>

#include "importer/graph.h"
#include "importer/status.h"

namespace vramsim {

// Resource limits: beyond these a file is refused, never allowed to exhaust the machine.
inline constexpr int64_t kMaxDimension = int64_t{1} << 48;       // one tensor dimension
inline constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 48;   // one tensor: 256 TiB
inline constexpr int64_t kMaxAttributeValue = int64_t{1} << 31;  // kernel, stride, pad, ...
inline constexpr size_t kMaxNodes = size_t{1} << 21;             // 2M nodes in one graph
inline constexpr size_t kMaxRank = 64;                           // dimensions of one tensor

// Checks a default-domain node's attributes and input element types before any inference.
// `inputs[i]` is null for an omitted optional input; `schema` may be null.
Status ValidateOp(const Op& op, const std::vector<const Tensor*>& inputs,
                  const onnx::OpSchema* schema);

// Checks the shapes inference gave the outputs against the inputs where ONNX does not
// (Reshape, Expand, Tile keep or derive element counts).
Status CheckOutputs(const Op& op, const std::vector<const Tensor*>& inputs,
                    const std::vector<const Tensor*>& outputs);

// A name or message from a file, made printable and bounded: control bytes and invalid UTF-8
// become \xNN escapes, and anything past `max_bytes` is cut with "...".
std::string Printable(const std::string& text, size_t max_bytes = 1024);

// The length of the well-formed UTF-8 sequence starting at text[i] (1 to 4), or 0 when there
// is none (a stray continuation byte, a truncated, overlong or surrogate sequence, or one
// above U+10FFFF).
size_t Utf8SequenceLength(std::string_view text, size_t i);

}  // namespace vramsim

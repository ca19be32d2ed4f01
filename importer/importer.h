// ONNX file -> typed, shaped Graph, or one clear error.
#pragma once

#include <map>
#include <string>

#include "importer/graph.h"
#include "importer/onnx_reader.h"
#include "importer/status.h"

namespace vramsim {

struct ImportOptions {
  std::map<std::string, int64_t> dims;  // symbolic dim name -> value (--dim NAME=VALUE)
  // Values bound to graph inputs that carry shapes (e.g. a Reshape target fed as an input).
  std::map<std::string, ConstValue> input_values;
  // Element types and shapes of sequence-typed graph inputs.
  std::map<std::string, std::vector<TypeShape>> input_sequences;
  ReadOptions read;
  // Exports whose weights were folded into constants (torch.onnx.export's defaults) are refused
  // unless this is set; the folded weights are then counted as constants, not trainable.
  bool allow_constant_weights = false;
};

inline constexpr int64_t kMinOpset =
    1;  // schemas reach back to 1; exports since PyTorch 1.x use 7+
inline constexpr int64_t kMaxOpset = 21;

Result<Graph> ImportModel(const std::string& path, const ImportOptions& options = {});
Result<Graph> ImportModelProto(onnx::ModelProto model, const ImportOptions& options = {});

}  // namespace vramsim

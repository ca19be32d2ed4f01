// [4 x uint16 dim values][ONNX bytes] -> reader -> importer with the graph's symbolic input dims
// bound to the values (0..4096): exercises the shape evaluator and the shape rules.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_common.h"
#include "importer/importer.h"
#include "importer/onnx_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace f = vramsim::fuzz;
  if (size > f::kMaxInputBytes + f::kDimPrefixBytes) return -1;
  int64_t values[f::kDimSlots];
  if (!f::TakeDimValues(&data, &size, values)) return -1;
  auto model = vramsim::ReadModelFromBytes(data, size);
  if (!model) return 0;
  vramsim::ImportOptions options;
  options.dims = f::BindDims(*model, values);
  f::PrintArgs(options.dims);
  auto graph = vramsim::ImportModelProto(std::move(model.value()), options);
  (void)graph;
  return 0;
}

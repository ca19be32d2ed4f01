// bytes -> ONNX reader (from memory) -> importer, no dims bound: the import either succeeds or
// returns an Error; any crash, sanitizer report, hang or exception escaping is a bug.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_common.h"
#include "importer/importer.h"
#include "importer/onnx_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > vramsim::fuzz::kMaxInputBytes) return -1;
  auto model = vramsim::ReadModelFromBytes(data, size);
  if (!model) return 0;
  auto graph = vramsim::ImportModelProto(std::move(model.value()));
  (void)graph;
  return 0;
}

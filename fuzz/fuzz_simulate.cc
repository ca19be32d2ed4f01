// [4 x uint16 dim values][1 option byte][ONNX bytes] -> import with dims bound -> the training
// step estimate (cli/estimate.h's RunEstimate) under option variants picked by the option byte:
// optimizer sgd/adam, precision fp32/amp-bf16/bf16, accumulation 1/2, target torch-cuda/cpu.
#include <cstddef>
#include <cstdint>

#include "cli/estimate.h"
#include "fuzz/fuzz_common.h"
#include "importer/importer.h"
#include "importer/onnx_reader.h"
#include "policies/accumulation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace f = vramsim::fuzz;
  if (size > f::kMaxInputBytes + f::kDimPrefixBytes + 1) return -1;
  int64_t values[f::kDimSlots];
  if (!f::TakeDimValues(&data, &size, values)) return -1;
  if (size < 1) return -1;
  const uint8_t opt = data[0];
  ++data;
  --size;

  vramsim::EstimateFlags flags;
  flags.optimizer = (opt & 1) ? "sgd" : "adam";
  static const char* const kPrecisions[] = {"fp32", "amp-bf16", "bf16", "fp32"};
  flags.precision = kPrecisions[(opt >> 1) & 3];
  flags.accum = (opt & 8) ? 2 : 1;
  flags.target = (opt & 16) ? "torch-cpu" : "torch-cuda";
  auto options = vramsim::ParseEstimateFlags(flags);
  if (!options) __builtin_trap();  // the flag sets above are all valid

  auto model = vramsim::ReadModelFromBytes(data, size);
  if (!model) return 0;
  const auto dims = f::BindDims(*model, values);
  f::PrintArgs(dims, "--optimizer " + flags.optimizer + " --precision " + flags.precision +
                         " --accum " + std::to_string(flags.accum) + " --target " + flags.target);
  // Like EstimateModel: the graph is imported at the micro-batch size.
  auto micro = vramsim::MicroBatchDims(dims, {options->micro_batches, options->batch_dim});
  if (!micro) return 0;
  vramsim::ImportOptions io;
  io.dims = *micro;
  auto graph = vramsim::ImportModelProto(std::move(model.value()), io);
  if (!graph) return 0;
  auto e = vramsim::RunEstimate(*graph, *options);
  if (!e) return 0;
  (void)vramsim::EstimateText(*e);
  return 0;
}

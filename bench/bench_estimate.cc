// Import + shape + simulate of one training step, end to end, as `vramsim estimate` runs it.
#include <benchmark/benchmark.h>

#include "cli/estimate.h"
#include "importer/importer.h"

namespace {

const std::string kExamples = VRAMSIM_EXAMPLES;

void Estimate(benchmark::State& state, const std::string& model,
              std::map<std::string, int64_t> dims, const std::string& optimizer) {
  vramsim::EstimateFlags flags;
  flags.optimizer = optimizer;
  auto options = vramsim::ParseEstimateFlags(flags);
  uint64_t peak = 0;
  for (auto _ : state) {
    vramsim::ImportOptions io;
    io.dims = dims;
    auto graph = vramsim::ImportModel(kExamples + "/" + model, io);
    if (!graph) {
      state.SkipWithError(graph.error().message.c_str());
      return;
    }
    auto e = vramsim::RunEstimate(*graph, *options);
    if (!e) {
      state.SkipWithError(e.error().message.c_str());
      return;
    }
    peak = e->peak.peak_bytes;
  }
  state.counters["peak_MiB"] = static_cast<double>(peak) / (1024.0 * 1024.0);
}

void BM_EstimateVitB16Batch64(benchmark::State& state) {
  Estimate(state, "vit_b_16.onnx", {{"batch", 64}}, "adam");
}
void BM_EstimateGpt48Layers(benchmark::State& state) {
  Estimate(state, "gpt48.onnx", {{"batch", 8}, {"seq", 128}}, "adam");
}
// The simulation alone, on an imported graph: what a planner repeats per configuration.
void BM_SimulateOnlyGpt48(benchmark::State& state) {
  vramsim::ImportOptions io;
  io.dims = {{"batch", 8}, {"seq", 128}};
  auto graph = vramsim::ImportModel(kExamples + "/gpt48.onnx", io);
  vramsim::EstimateFlags flags;
  auto options = vramsim::ParseEstimateFlags(flags);
  for (auto _ : state) {
    auto e = vramsim::RunEstimate(*graph, *options);
    benchmark::DoNotOptimize(e->peak.peak_bytes);
  }
}

BENCHMARK(BM_EstimateVitB16Batch64)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EstimateGpt48Layers)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SimulateOnlyGpt48)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

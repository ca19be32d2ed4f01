// Import + shape time of real exports. The inline-weights variant of vit_b_16 is made here
// (zero-filled raw_data in place of the missing external file, ~330 MiB) so the repository
// need not carry it; the reader skips weight bytes, so the two should cost about the same.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "importer/importer.h"

namespace {

const std::string kExamples = VRAMSIM_EXAMPLES;

std::string InlineWeightsCopy(const std::string& src) {
  static std::string path;
  if (!path.empty()) return path;
  std::ifstream in(src, std::ios::binary);
  onnx::ModelProto model;
  if (!model.ParseFromIstream(&in)) return {};
  for (auto& init : *model.mutable_graph()->mutable_initializer()) {
    if (init.data_location() != onnx::TensorProto::EXTERNAL) continue;
    uint64_t bytes = 4;  // the exports are float32
    for (int64_t d : init.dims()) bytes *= static_cast<uint64_t>(d);
    init.clear_external_data();
    init.set_data_location(onnx::TensorProto::DEFAULT);
    init.set_raw_data(std::string(bytes, '\0'));
  }
  path = (std::filesystem::temp_directory_path() /
          ("vramsim_vit_inline_" + std::to_string(::getpid()) + ".onnx"))
             .string();
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
  return path;
}

void Import(benchmark::State& state, const std::string& path, vramsim::ImportOptions options) {
  size_t tensors = 0;
  for (auto _ : state) {
    auto graph = vramsim::ImportModel(path, options);
    if (!graph) {
      state.SkipWithError(graph.error().message.c_str());
      return;
    }
    tensors = graph->tensors.size();
    benchmark::DoNotOptimize(graph->tensors.data());
  }
  state.counters["tensors"] = static_cast<double>(tensors);
  state.counters["file_MiB"] =
      static_cast<double>(std::filesystem::file_size(path)) / (1024.0 * 1024.0);
}

void BM_ImportVitWeightless(benchmark::State& state) {
  Import(state, kExamples + "/vit_b_16.onnx", {{{"batch", 64}}, {}, {}, {}});
}
void BM_ImportVitInlineWeights(benchmark::State& state) {
  Import(state, InlineWeightsCopy(kExamples + "/vit_b_16.onnx"), {{{"batch", 64}}, {}, {}, {}});
}
void BM_ImportGpt48(benchmark::State& state) {
  Import(state, kExamples + "/gpt48.onnx", {{{"batch", 8}, {"seq", 128}}, {}, {}, {}});
}

BENCHMARK(BM_ImportVitWeightless)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ImportVitInlineWeights)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ImportGpt48)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::string inline_copy = InlineWeightsCopy(kExamples + "/vit_b_16.onnx");
  if (!inline_copy.empty()) std::remove(inline_copy.c_str());
  return 0;
}

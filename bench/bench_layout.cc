// vramsim layout's search (engine/layout.h): the GPT example over 8, 16 and 64 GPUs, and a
// model given by VRAMSIM_LAYOUT_MODEL (e.g. the LLaMA-2-7B export, seq 4096, bf16) over 64.
// Counters: layouts enumerated, layouts simulated per rank, per-rank simulations run.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "engine/layout.h"

namespace {

void Search(benchmark::State& state, const std::string& model, int64_t seq, int64_t batch,
            const std::string& gpu, const std::string& freeze) {
  vramsim::LayoutOptions o;
  o.gpus = static_cast<int>(state.range(0));
  o.gpu = gpu;
  o.global_batch = batch;
  o.dims = {{"seq", seq}};
  o.base.precision = "bf16";
  if (!freeze.empty()) o.base.freeze = {freeze};
  int layouts = 0, simulations = 0, simulated = 0;
  for (auto _ : state) {
    auto r = vramsim::SearchLayouts(model, o);
    if (!r) {
      state.SkipWithError(r.error().message.c_str());
      return;
    }
    layouts = static_cast<int>(r->candidates.size());
    simulations = r->simulations;
    simulated = 0;
    for (const vramsim::LayoutCandidate& c : r->candidates) simulated += c.simulated;
  }
  state.counters["layouts"] = layouts;
  state.counters["simulated"] = simulated;  // layouts simulated per rank (the rest pruned)
  state.counters["simulations"] = simulations;
}

void BM_LayoutGpt(benchmark::State& state) {
  Search(state, std::string(VRAMSIM_EXAMPLES) + "/gpt.onnx", 256, 128, "a100-40gb", "");
}
BENCHMARK(BM_LayoutGpt)->Arg(8)->Arg(16)->Arg(64)->Unit(benchmark::kMillisecond);

void BM_LayoutModel(benchmark::State& state) {
  const char* model = std::getenv("VRAMSIM_LAYOUT_MODEL");
  if (!model) {
    state.SkipWithError("set VRAMSIM_LAYOUT_MODEL to an export (the LLaMA-2-7B one)");
    return;
  }
  Search(state, model, 4096, 256, "h100-80gb", "model.rotary_emb.inv_freq");
}
BENCHMARK(BM_LayoutModel)->Arg(64)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();

// Checkpoint-placement benchmark.
//
// BM_Strategy/<model>/<strategy>/<budget>: every strategy on five exports at budgets of 0.8,
// 0.65 and 0.5 of the no-checkpoint peak; counters: the simulated peak over the budget, fits,
// recompute overhead (% of the step's FLOPs), simulations run. The time is the solve time
// (the problem's setup, the baseline and one simulation per block, is done once outside).
//
// BM_RematGraph/<graph>/<budget>: the optimal planner (Checkmate's MILP with CBC, fallbacks)
// on every graph in shared/remat-graphs at 0.9 and 0.8 of the baseline peak; counters: the
// recompute cost increase (%), proven optimal, gap (%), the replayed peak over the budget.
// The MILP's time limit is VRAMSIM_BENCH_TIME_LIMIT seconds (default 60).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/estimate.h"
#include "importer/importer.h"
#include "importer/remat_graph.h"
#include "policies/checkpoint_planner.h"
#include "policies/planner_remat.h"

namespace {

const std::string kExamples = VRAMSIM_EXAMPLES;
const std::string kRematGraphs = VRAMSIM_REMAT_GRAPHS;

double TimeLimit() {
  const char* v = std::getenv("VRAMSIM_BENCH_TIME_LIMIT");
  double t = v ? std::atof(v) : 0;
  return t > 0 ? t : 60;
}

struct Model {
  std::string file;
  std::map<std::string, int64_t> dims;
  std::unique_ptr<vramsim::Graph> graph;
  std::unique_ptr<vramsim::PlanProblem> problem;
  std::string error;
};

// Imported and measured once per model, on first use.
Model& Get(const std::string& file, const std::map<std::string, int64_t>& dims) {
  static std::map<std::string, std::unique_ptr<Model>> cache;
  auto& slot = cache[file];
  if (slot) return *slot;
  slot = std::make_unique<Model>();
  slot->file = file;
  slot->dims = dims;
  vramsim::ImportOptions io;
  io.dims = dims;
  auto g = vramsim::ImportModel(kExamples + "/" + file, io);
  if (!g) {
    slot->error = g.error().message;
    return *slot;
  }
  slot->graph = std::make_unique<vramsim::Graph>(std::move(g.value()));
  auto p = vramsim::MakePlanProblem(*slot->graph, *vramsim::ParseEstimateFlags({}));
  if (!p) {
    slot->error = p.error().message;
    return *slot;
  }
  slot->problem = std::make_unique<vramsim::PlanProblem>(std::move(p.value()));
  return *slot;
}

void Strategy(benchmark::State& state, std::string file, std::map<std::string, int64_t> dims,
              std::string strategy, double fraction) {
  Model& m = Get(file, dims);
  if (!m.problem) {
    state.SkipWithError(m.error.c_str());
    return;
  }
  vramsim::StrategyOptions o;
  o.milp_time_limit_s = TimeLimit();
  auto s = vramsim::MakeStrategy(strategy, o);
  uint64_t budget =
      static_cast<uint64_t>(fraction * static_cast<double>(m.problem->baseline.peak.peak_bytes));
  vramsim::PlanResult r;
  for (auto _ : state) {
    auto res = s->Solve(*m.problem, budget);
    if (!res) {
      state.SkipWithError(res.error().message.c_str());
      return;
    }
    r = *res;
  }
  state.counters["peak_over_budget"] =
      static_cast<double>(r.peak_bytes) / static_cast<double>(budget);
  state.counters["fits"] = r.fits ? 1 : 0;
  state.counters["overhead_pct"] = r.overhead_pct;
  state.counters["regions"] = static_cast<double>(r.checkpoint.size());
  state.counters["simulations"] = r.simulations;
  state.counters["setup_ms"] = m.problem->setup_ms;
}

void RematGraph(benchmark::State& state, std::string path, double fraction) {
  auto g = vramsim::LoadRematGraph(path);
  if (!g) {
    state.SkipWithError(g.error().message.c_str());
    return;
  }
  uint64_t base = vramsim::BaselinePeak(*g);
  uint64_t budget = static_cast<uint64_t>(fraction * static_cast<double>(base));
  vramsim::RematOptions o;
  o.time_limit_s = TimeLimit();
  double base_cost = vramsim::BaselineCost(*g);
  for (auto _ : state) {
    auto sol = vramsim::SolveRemat(*g, budget, o);
    if (!sol) {
      state.SkipWithError(sol.error().message.c_str());
      return;
    }
    auto replay = vramsim::ReplaySequence(*g, sol->steps);
    if (!replay || replay->peak_bytes > budget) {
      state.SkipWithError("the schedule fails its replay or is over the budget");
      return;
    }
    state.counters["cost_increase_pct"] = 100.0 * (replay->cost - base_cost) / base_cost;
    state.counters["optimal"] = sol->optimal ? 1 : 0;
    state.counters["gap_pct"] = sol->gap_pct();
    state.counters["peak_over_budget"] =
        static_cast<double>(replay->peak_bytes) / static_cast<double>(budget);
    state.counters["nodes"] = static_cast<double>(g->nodes.size());
  }
}

int Register() {
  struct Spec {
    std::string file;
    std::map<std::string, int64_t> dims;
  };
  std::vector<Spec> models = {{"resnet18.onnx", {{"batch", 64}}},
                              {"mobilenet_v2.onnx", {{"batch", 64}}},
                              {"vit_b_16.onnx", {{"batch", 32}}},
                              {"gpt.onnx", {{"batch", 16}, {"seq", 256}}},
                              {"gpt48.onnx", {{"batch", 16}, {"seq", 256}}}};
  for (const Spec& m : models) {
    std::string stem = m.file.substr(0, m.file.find('.'));
    for (const auto& s : vramsim::AllStrategies()) {
      for (double f : {0.8, 0.65, 0.5}) {
        std::string name = "BM_Strategy/" + stem + "/" + std::string(s->name()) + "/" +
                           std::to_string(static_cast<int>(f * 100)) + "pct";
        benchmark::RegisterBenchmark(name.c_str(), Strategy, m.file, m.dims, std::string(s->name()),
                                     f)
            ->Unit(benchmark::kMillisecond)
            ->Iterations(1);
      }
    }
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(kRematGraphs, ec)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(kRematGraphs, ec))
      if (e.path().extension() == ".json") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& p : files) {
      for (double f : {0.9, 0.8}) {
        std::string name = "BM_RematGraph/" + p.stem().string() + "/" +
                           std::to_string(static_cast<int>(f * 100)) + "pct";
        benchmark::RegisterBenchmark(name.c_str(), RematGraph, p.string(), f)
            ->Unit(benchmark::kMillisecond)
            ->Iterations(1);
      }
    }
  }
  return 0;
}

const int kRegistered = Register();

}  // namespace

BENCHMARK_MAIN();

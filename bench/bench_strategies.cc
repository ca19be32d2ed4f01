// Checkpoint-placement benchmark.
//
// BM_Strategy/<model>/<strategy>/<budget>: every strategy on five exports at budgets of 0.8,
// 0.65 and 0.5 of the no-checkpoint peak; counters: the simulated peak over the budget, fits,
// recompute overhead (% of the step's FLOPs), simulations run. The time is the solve time
// (the problem's setup, the baseline step, the derived block model and its two simulated
// checks, is done once outside; each solve starts without the plans other strategies
// simulated).
//
// BM_Plan/gpt48/<strategies>/50pct: what `vramsim plan examples/gpt48.onnx --dim batch=16
// --dim seq=256 --budget-fraction 0.5` does, end to end: import, the plan problem, every
// strategy (or dp alone) and the simulated replay of their plans; counters: simulations in
// all, the setup's share (ms), fits, the chosen plan's peak over the budget.
//
// BM_RematGraph/<graph>/<budget>: the optimal planner (heuristics, Checkmate's LP relaxation and
// MILP with CBC) on every graph in shared/remat-graphs at 0.9 and 0.8 of the baseline peak,
// within VRAMSIM_BENCH_TIME_LIMIT seconds for the whole solve (default 60); the label names the
// method and where the lower bound comes from; counters: nodes, solve_s, within_limit, fits,
// proven_infeasible (VGG16 at 0.8: the result, not an error), replay_checked, the recompute
// cost increase and the lower bound's (% of the baseline cost), gap (% of the cost), optimal
// (proven), the replayed peak over the budget.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/estimate.h"
#include "importer/importer.h"
#include "importer/remat_graph.h"
#include "planners/checkpoint_planner.h"
#include "planners/planner_remat.h"

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
    vramsim::ForgetStrategyPlans(*m.problem);
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

// Import + plan problem + strategies, as `vramsim plan` runs them.
void Plan(benchmark::State& state, std::string file, std::map<std::string, int64_t> dims,
          std::string only, double fraction) {
  vramsim::PlanResult best;
  int simulations = 0;
  double setup_ms = 0;
  uint64_t budget = 0;
  for (auto _ : state) {
    vramsim::ImportOptions io;
    io.dims = dims;
    auto g = vramsim::ImportModel(kExamples + "/" + file, io);
    if (!g) {
      state.SkipWithError(g.error().message.c_str());
      return;
    }
    auto p = vramsim::MakePlanProblem(*g, *vramsim::ParseEstimateFlags({}));
    if (!p) {
      state.SkipWithError(p.error().message.c_str());
      return;
    }
    budget = static_cast<uint64_t>(fraction * static_cast<double>(p->baseline.peak.peak_bytes));
    size_t index = 0;
    auto results = vramsim::RunStrategies(*p, budget, only, &index);
    if (!results) {
      state.SkipWithError(results.error().message.c_str());
      return;
    }
    best = (*results)[index];
    simulations = p->setup_simulations;
    for (const vramsim::PlanResult& x : *results) simulations += x.simulations;
    setup_ms = p->setup_ms;
  }
  state.counters["simulations"] = simulations;
  state.counters["setup_ms"] = setup_ms;
  state.counters["fits"] = best.fits ? 1 : 0;
  state.counters["peak_over_budget"] =
      static_cast<double>(best.peak_bytes) / static_cast<double>(budget);
}

int RegisterPlan() {
  std::map<std::string, int64_t> dims = {{"batch", 16}, {"seq", 256}};
  for (const char* only : {"", "dp"}) {
    std::string name = std::string("BM_Plan/gpt48/") + (*only ? only : "all") + "/50pct";
    benchmark::RegisterBenchmark(name.c_str(), Plan, "gpt48.onnx", dims, std::string(only), 0.5)
        ->Unit(benchmark::kMillisecond)
        ->MeasureProcessCPUTime()
        ->UseRealTime();
  }
  return 0;
}

const int kPlanRegistered = RegisterPlan();

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
  state.counters["nodes"] = static_cast<double>(g->nodes.size());
  state.counters["time_limit_s"] = o.time_limit_s;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto sol = vramsim::SolveRemat(*g, budget, o);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.counters["solve_s"] = seconds;
    state.counters["within_limit"] = seconds <= o.time_limit_s ? 1 : 0;
    if (!sol) {
      // A proof that nothing fits is a result (VGG16 at 0.8); anything else is a failure.
      bool proven = vramsim::InfeasibilityProof(*g, budget).has_value();
      state.counters["fits"] = 0;
      state.counters["proven_infeasible"] = proven ? 1 : 0;
      state.SetLabel(proven ? "proven infeasible" : "no schedule found");
      if (!proven) {
        state.SkipWithError(sol.error().message.c_str());
        return;
      }
      continue;
    }
    // The independent check: replay the schedule.
    auto replay = vramsim::ReplaySequence(*g, sol->steps);
    if (!replay) {
      state.SkipWithError(
          (std::string("the schedule fails its replay: ") + replay.error().message).c_str());
      return;
    }
    bool fits = replay->peak_bytes <= budget;
    state.counters["fits"] = fits ? 1 : 0;
    state.counters["proven_infeasible"] = 0;
    state.counters["replay_checked"] = 1;
    state.counters["cost_increase_pct"] = 100.0 * (replay->cost - base_cost) / base_cost;
    state.counters["lower_bound_increase_pct"] = 100.0 * (sol->lower_bound - base_cost) / base_cost;
    state.counters["optimal"] = sol->optimal ? 1 : 0;
    state.counters["gap_pct"] = sol->gap_pct();
    state.counters["peak_over_budget"] =
        static_cast<double>(replay->peak_bytes) / static_cast<double>(budget);
    state.SetLabel(sol->method + ", bound from " + sol->bound_source);
    if (!fits) state.SkipWithError("no schedule found fits the budget");
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

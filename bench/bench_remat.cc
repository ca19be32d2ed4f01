// The scalable remat heuristic (SolveRematEvict, planners/planner_remat.h) on the generated
// random layered graphs (tests/data/remat/, scripts/random_layered.py).
//
// BM_Evict/<n>/<budget %>/<passes>: one pass (the quick first answer) and all twelve passes on
// n500, n1000 and n2000 at 0.9, 0.8 and 0.7 of the baseline peak; counters: fits, the cost
// increase (% of the baseline cost), computations per node. A pass that finds no schedule
// reports fits 0 (at 0.7 they may: no other stage order is searched).
#include <benchmark/benchmark.h>

#include <string>

#include "importer/remat_graph.h"
#include "planners/planner_remat.h"

namespace {

void BM_Evict(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  double fraction = static_cast<double>(state.range(1)) / 100.0;
  int passes = static_cast<int>(state.range(2));
  auto g = vramsim::LoadRematGraph(std::string(VRAMSIM_REMAT_DATA) + "/random_layered_n" +
                                   std::to_string(n) + ".json");
  if (!g) {
    state.SkipWithError(g.error().message.c_str());
    return;
  }
  uint64_t budget =
      static_cast<uint64_t>(fraction * static_cast<double>(vramsim::BaselinePeak(*g)));
  double base = vramsim::BaselineCost(*g);
  bool fits = false;
  double increase = 0, per_node = 0;
  for (auto _ : state) {
    auto sol = vramsim::SolveRematEvict(*g, budget, 0, passes);
    fits = sol && sol->fits;
    if (sol) {
      increase = 100.0 * (sol->cost - base) / base;
      size_t computations = 0;
      for (const auto& s : sol->steps)
        computations += s.kind == vramsim::RematStep::Kind::kCompute ? 1 : 0;
      per_node = static_cast<double>(computations) / n;
    }
    benchmark::DoNotOptimize(sol);
  }
  state.counters["fits"] = fits ? 1 : 0;
  state.counters["cost_increase_pct"] = increase;
  state.counters["computations_per_node"] = per_node;
}

BENCHMARK(BM_Evict)
    ->ArgNames({"n", "budget_pct", "passes"})
    ->ArgsProduct({{500, 1000, 2000}, {90, 80, 70}, {1, 12}})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

// bytes -> remat-graph JSON reader (importer/remat_graph.h) -> the baseline schedule, its peak
// and cost, the least feasible budget, and (small graphs) the DTR heuristic at 80% of the peak.
#include <cstddef>
#include <cstdint>
#include <string>

#include "importer/remat_graph.h"
#include "planners/planner_remat.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 20)) return -1;
  auto g = vramsim::ParseRematGraph(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!g) return 0;
  auto seq = vramsim::StagesToSequence(*g, vramsim::BaselineSchedule(*g));
  if (!seq) __builtin_trap();  // the baseline of a parsed graph must be a valid schedule
  auto st = vramsim::ReplaySequence(*g, *seq);
  if (!st) __builtin_trap();
  const uint64_t peak = vramsim::BaselinePeak(*g);
  if (peak != st->peak_bytes) __builtin_trap();
  (void)vramsim::BaselineCost(*g);
  int at = -1;
  const uint64_t least = vramsim::LeastFeasibleBudget(*g, &at);
  if (least > peak) __builtin_trap();  // the baseline itself is a schedule
  (void)vramsim::InfeasibilityProof(*g, least / 2);
  if (g->nodes.size() <= 64) {
    auto sol = vramsim::SolveRematDtr(*g, peak / 10 * 8, /*time_limit_s=*/1.0);
    (void)sol;
  }
  return 0;
}

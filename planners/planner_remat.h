// Tensor-level rematerialization on a RematGraph (importer/remat_graph.h).
//
// Memory model: a node's output is alive from its computation until its last consumer has run
// (or until it is freed or evicted); the memory of a schedule at a computation is every output
// alive then plus the one being made, plus the graph's parameter bytes. The reference is the
// peak of the baseline order without rematerialization.
//
// Schedules are in Checkmate's form (Jain et al., MLSys 2020): n stages, stage t computes node t
// and may recompute earlier nodes (R[t][i]); S[t][i] says node i's output is kept from stage
// t-1 into stage t. Inside a stage the nodes run in index order and an input is freed right
// after its last use in the stage unless it is kept into the next stage.
//
// Planners: the exact MILP (Checkmate's R, S, FREE, U formulation) solved by CBC with a time
// limit, seeded with the best heuristic schedule; Checkmate's LP relaxation with deterministic
// rounding of S (repaired by a greedy when no rounding fits); a greedy in the stage space; a
// DTR-style dynamic eviction heuristic (Kirisame et al., ICLR 2021); brute force over S for
// tests. Every schedule any of them returns has been replayed (ReplaySequence).
//
// The LP relaxation and the MILP run in one child process, which sends the relaxation back as
// soon as it is solved and is killed at the deadline if CBC has not stopped by then (CBC checks
// its time limit only between phases), so a time limit holds for the whole solve.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "importer/remat_graph.h"
#include "importer/status.h"

namespace vramsim {

struct RematSchedule {
  std::vector<std::vector<uint8_t>> R;  // R[t][i], i <= t
  std::vector<std::vector<uint8_t>> S;  // S[t][i], i < t
};

// One step of an explicit schedule: compute a node, or drop its output.
struct RematStep {
  enum class Kind : uint8_t { kCompute, kFree };
  Kind kind = Kind::kCompute;
  int node = 0;
};

struct ReplayStats {
  uint64_t peak_bytes = 0;
  double cost = 0;          // total compute cost of the schedule
  size_t computations = 0;  // compute steps
};

// The independent check: runs an explicit schedule, failing if a node runs before its inputs
// are alive, a node runs while its output is alive, a free drops nothing, or a node never runs.
Result<ReplayStats> ReplaySequence(const RematGraph& g, const std::vector<RematStep>& steps);

// Checkmate's stage semantics as an explicit schedule (frees after each use, and at the end of
// each stage whatever is not kept into the next).
Result<std::vector<RematStep>> StagesToSequence(const RematGraph& g, const RematSchedule& s);

// The baseline: each node once, in order, each output freed after its last consumer.
RematSchedule BaselineSchedule(const RematGraph& g);
uint64_t BaselinePeak(const RematGraph& g);
double BaselineCost(const RematGraph& g);

// Given what is kept between stages, the least recomputation: node t in stage t, anything kept
// into stage t+1 but not into t, and every input of a computed node that is not kept.
RematSchedule ClosureFromKept(const RematGraph& g, std::vector<std::vector<uint8_t>> S);

struct RematSolution {
  std::string method;  // "milp", "lp-rounding", "dtr", "baseline", "brute-force"
  std::vector<RematStep> steps;
  RematSchedule stages;  // empty for an explicit-only schedule (dtr)
  uint64_t peak_bytes = 0;
  double cost = 0;
  bool fits = false;
  bool optimal = false;    // proven optimal (in Checkmate's stage space)
  double lower_bound = 0;  // on the cost (the baseline cost when nothing better is proven)
  // Where lower_bound comes from: "milp" (CBC's best bound, or the optimum), "lp" (the LP
  // relaxation's optimum), "segment-lp" / "segment-milp" (the segment-covering relaxation's LP or
  // CBC's bound on it, planners/remat/bound.cc: valid for schedules that compute the nodes first
  // in the baseline order) or "baseline" (no recomputation at all).
  std::string bound_source = "baseline";
  double gap_pct() const { return cost > 0 ? 100.0 * (cost - lower_bound) / cost : 0.0; }
  double solve_ms = 0;
  std::string note;
};

// What SolveRemat keeps of its time limit for the caller (replaying the plan, printing it):
// this many seconds, or 5% of the limit when that is less.
inline constexpr double kRematReserveSeconds = 1.5;

// SolveRemat's eviction search passes (after the 12 fixed weightings, when one of them fits).
inline constexpr int kRematSearchPasses = 100;

struct RematOptions {
  // Wall-clock seconds for the whole solve: SolveRemat's phases share it (each gets what the
  // earlier ones left) and it returns within it; SolveRematMilp and SolveRematLpRounding use it
  // as their own limit.
  double time_limit_s = 60;
  bool log = false;  // CBC/CLP output on stdout
  // Skip the MILP when its constraint matrix would have more nonzeros than this (0: never).
  size_t max_milp_nonzeros = 0;
  // Skip the LP relaxation and the MILP (and the stage-space heuristics) when their model would
  // have more nonzeros than this (0: never): it takes 250-350 bytes a nonzero across both
  // processes (n250: 1.7M, 0.6 GB; n500: 10M, 2.5 GB) and CLP did not solve n250's in a minute
  // on a busy 2-core machine. The shared graphs have at most 1.9M (ResNet50).
  size_t max_model_nonzeros = 4000000;
};

// The DTR-style heuristic: the baseline order, each output freed after its last use; when an
// allocation would exceed the budget, evict the alive output (not an input of the running node)
// with the smallest cost / (bytes * staleness); an evicted output is recomputed on demand.
// It gives up after time_limit_s seconds (0: never).
Result<RematSolution> SolveRematDtr(const RematGraph& g, uint64_t budget, double time_limit_s = 0);

// The scalable heuristic: list scheduling in the baseline order under the budget. Each node's
// stage remakes the missing outputs it needs, recursively, in index order (inputs pinned until
// their last use in the stage, remade outputs dropped after it unless a later node reads them);
// when an allocation would exceed the budget, the unpinned alive output with the least
// remaking cost (itself and its missing inputs, recursively) / (bytes * distance to its next
// reader) is evicted; the inputs of an evicted output stay alive while it is needed (an input
// remade inside a stage too), so that remaking it does not cascade. A pass is O(n * (n + edges))
// time at most and O(n + edges) memory. The passes: the first max_passes of 12 weightings (0: all),
// then, when one of them fits, search_passes more, each from the best weighting so far with its
// exponents and every node's score perturbed by deterministic draws; a pass stops as soon as its
// recomputation cannot beat the best, or gives up past 16n + 1024 computations. The number of
// passes is fixed and time_limit_s (0: no limit) is only a safety cut, so that the answer does not
// depend on the machine's speed. The cheapest replayed schedule that fits is returned (method
// "evict", explicit only: stages empty). A pass fails when every alive output is pinned and there
// is still no room (it does not search other stage orders).
Result<RematSolution> SolveRematEvict(const RematGraph& g, uint64_t budget, double time_limit_s = 0,
                                      int max_passes = 0, int search_passes = 0);

// Checkmate's LP relaxation, S rounded at thresholds 0.5..0.99, R by ClosureFromKept; the
// cheapest schedule that fits. lower_bound is the LP's objective when solved to optimality.
Result<RematSolution> SolveRematLpRounding(const RematGraph& g, uint64_t budget,
                                           const RematOptions& options);

// The MILP alone (seeded with `start` when it is given and fits).
Result<RematSolution> SolveRematMilp(const RematGraph& g, uint64_t budget,
                                     const RematOptions& options,
                                     const RematSolution* start = nullptr);

// The least budget any schedule can meet: the largest node with its inputs (and the parameter
// bytes); `at` gets that node.
uint64_t LeastFeasibleBudget(const RematGraph& g, int* at = nullptr);

// Why no schedule at all can fit the budget (below LeastFeasibleBudget), or nothing when that
// is not proven.
std::optional<std::string> InfeasibilityProof(const RematGraph& g, uint64_t budget);

// The optimal planner: the greedy and DTR for a start, then the LP relaxation (a lower bound and
// its rounding) and the MILP from the best start, all within options.time_limit_s; returns the
// cheapest replayed schedule that fits, or the best one found when none fits (fits false), or
// the error: InfeasibilityProof's when the budget is below what any schedule needs.
Result<RematSolution> SolveRemat(const RematGraph& g, uint64_t budget, const RematOptions& options);

// The schedule as JSON, for plan --json and validation/remat_check.py: {"format":
// "vramsim-remat-schedule/1", "graph", "nodes", "static_bytes", "peak_bytes", "cost",
// "computations", "steps": [["compute", ID], ["free", ID], ...]} with each node named by its id
// in the graph file (graph.ids; the index in the baseline order when the graph has none).
nlohmann::json RematScheduleJson(const RematGraph& g, const RematSolution& sol);

// Every S (n <= 8): the least cost in Checkmate's stage space, for tests.
Result<RematSolution> SolveRematBruteForce(const RematGraph& g, uint64_t budget);

}  // namespace vramsim

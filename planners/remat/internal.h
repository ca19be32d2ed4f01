// Shared pieces of the rematerialization planner (planners/planner_remat.h is the public API):
// the clock helpers every phase uses against the one deadline, and the functions that turn a
// stage schedule into a replayed solution and compare solutions. Not for use outside
// planners/remat/.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "planners/planner_remat.h"

namespace vramsim {
namespace remat_internal {

using Clock = std::chrono::steady_clock;

inline double SecondsLeft(Clock::time_point end) {
  return std::chrono::duration<double>(end - Clock::now()).count();
}

inline Clock::time_point After(Clock::time_point from, double seconds) {
  return from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

inline double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// "#index (name)" for messages.
std::string NodeLabel(const RematGraph& g, int i);

inline bool Kept(const RematSchedule& s, int t, int i) {
  return t < static_cast<int>(s.S.size()) && i < t && s.S[t][i];
}

// Replays a stage schedule into a solution; the error if it is not a valid schedule.
Result<RematSolution> FromStages(const RematGraph& g, RematSchedule stages, uint64_t budget,
                                 std::string method);

// Whether a is better than b: fits first, then the cost, then the peak.
bool Better(const RematSolution& a, const RematSolution& b);

// Drops what is kept without use (kept into stage t, read by nothing computed in it and not
// kept into t+1) and recomputes only what is needed, until nothing changes. The MILP may keep
// an output it never uses (keeping is free in its objective) and free it early by computing a
// reader of cost 0; replayed without that computation the output would stay alive for the
// whole stage. Dropping both never needs more memory and never costs more.
RematSchedule Tidy(const RematGraph& g, RematSchedule s);

// The better of a schedule as given and tidied (both replayed).
Result<RematSolution> FromStagesTidied(const RematGraph& g, RematSchedule s, uint64_t budget,
                                       const std::string& method);

// The greedy in Checkmate's stage space (greedy.cc), from the baseline or from `from`.
Result<RematSolution> GreedyKept(const RematGraph& g, uint64_t budget, double time_limit_s,
                                 const RematSchedule* from = nullptr);

// Nothing kept between stages: each stage recomputes what its node needs.
RematSchedule NothingKept(const RematGraph& g);

// The stage form of an explicit schedule that runs the nodes for the first time in index order
// (SolveRematEvict's), for a MILP start; nothing when it does not.
std::optional<RematSchedule> EvictStages(const RematGraph& g, const RematSolution& sol);

// The segment-covering lower bound (bound.cc): a relaxation in which each output dropped inside
// a segment between two of its readers costs one recomputation of itself, and the memory at
// each node's first computation must fit. Valid for every schedule that computes the nodes for
// the first time in index order (Checkmate's stage space and the eviction heuristic's).
struct SegmentBoundResult {
  double bound = 0;  // the best of the two below and the baseline cost, in cost units
  bool lp_solved = false;
  double lp_bound = 0;
  bool milp_returned = false, milp_optimal = false;
  double milp_bound = 0;
  bool infeasible = false;  // no schedule in that space fits the budget
  int infeasible_at = -1;   // the node whose first computation cannot fit
  int rows = 0, cols = 0;
  size_t nonzeros = 0;
  bool inputs_skipped = false;  // need_inputs, but over the size cap: not solved
};

// Its LP relaxation (CLP), then with milp CBC's best bound, in a child process stopped at `end`.
// need_inputs (bound.cc): an output dropped until a stage past the last reader of one of its
// inputs needs that input kept (memory) or remade (cost); not solved (inputs_skipped) past 1.5M
// nonzeros. Its LP is never below the plain one's; CBC's bound on it may be, in the same time.
SegmentBoundResult SegmentBound(const RematGraph& g, uint64_t budget, Clock::time_point end,
                                bool milp, bool need_inputs = true);

}  // namespace remat_internal
}  // namespace vramsim

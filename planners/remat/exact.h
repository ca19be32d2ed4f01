// The exact phase: Checkmate's LP relaxation (CLP) and MILP (CBC) solved in one child process
// (child_process.h) that streams the relaxation back as soon as it is solved; the rounding of
// the relaxation into schedules.
#pragma once

#include <limits>
#include <optional>
#include <vector>

#include "planners/remat/checkmate_model.h"

namespace vramsim {
namespace remat_internal {

// The cheapest schedule from rounding the relaxation's S at thresholds 0.5 to 1 (R by the
// closure); a schedule that fits wins over one that does not. When none fits, the greedy
// repairs each rounding, the one keeping least first, until `repair_end`.
std::optional<RematSolution> RoundRelaxation(const RematGraph& g, const Lp& lp, uint64_t budget,
                                             const double* x, Clock::time_point repair_end);

enum StartKind { kNoStart = 0, kGivenStart = 1, kRoundedStart = 2 };

struct ExactRun {
  bool lp_solved = false;  // the relaxation was solved to optimality
  bool lp_infeasible = false;
  double lp_objective = 0;  // scaled
  std::vector<double> lp_x;
  double lp_s = 0;             // seconds from the start until the relaxation was solved
  bool milp_returned = false;  // CBC returned (stopped or done) before the deadline
  bool milp_optimal = false;
  bool milp_infeasible = false;
  double milp_bound = -std::numeric_limits<double>::infinity();  // scaled
  std::vector<double> milp_x;
  int milp_start = kNoStart;
  std::optional<RematSchedule> rounded_start;  // the rounded relaxation CBC started from
  bool killed = false;                         // the child was still running at the deadline
  bool crashed = false;  // it ended early without finishing (an assertion inside CBC)
};

ExactRun RunExact(const RematGraph& g, uint64_t budget, const Lp& lp, const RematSolution* start,
                  Clock::time_point end, bool log, bool milp);

const char* StartName(int kind);

}  // namespace remat_internal
}  // namespace vramsim

// SolveRemat: the planner under one deadline: the infeasibility proof, the heuristic starts,
// then the exact phase with the time left; the cheapest replayed schedule and its bound.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "planners/remat/exact.h"

namespace vramsim {

using namespace remat_internal;

Result<RematSolution> SolveRemat(const RematGraph& g, uint64_t budget,
                                 const RematOptions& options) {
  auto t0 = Clock::now();
  // One deadline for every phase, less a reserve for the caller's replay and output.
  double reserve = std::min(kRematReserveSeconds, 0.05 * options.time_limit_s);
  Clock::time_point end = After(t0, options.time_limit_s - reserve);
  if (auto why = InfeasibilityProof(g, budget)) return Error{*why};
  std::optional<RematSolution> best;
  double bound = BaselineCost(g);
  std::string bound_source = "baseline";
  std::vector<std::string> notes;
  auto raise_bound = [&](double b, const char* source) {
    if (b > bound) {
      bound = b;
      bound_source = source;
    }
  };
  auto consider = [&](Result<RematSolution> r) {
    if (!r) {
      notes.push_back(r.error().message);
      return;
    }
    if (!best || Better(*r, *best)) best = std::move(r.value());
  };
  // First the scalable heuristic, so that a schedule exists within seconds whatever the graph's
  // size. A fixed number of passes (the 12 weightings, then 100 of the search when one of them
  // fits), so that the answer depends on the work and not on the machine's speed; half the time
  // left is only a safety cut.
  auto evict = SolveRematEvict(g, budget, 0.5 * SecondsLeft(end), 0, kRematSearchPasses);
  std::optional<RematSolution> evict_sol;
  if (evict) evict_sol = *evict;
  consider(std::move(evict));
  // The stage-space phases (greedy, DTR's projection, the LP and the MILP) hold n x n matrices
  // and a model of O(n^2 * degree) nonzeros: past the cap they would not finish in the time or
  // fit in memory, and the bound is the segment relaxation's.
  size_t nonzeros = CountNonzeros(g);
  bool stage_space = !options.max_model_nonzeros || nonzeros <= options.max_model_nonzeros;
  // The segment-covering bound (bound.cc): O(edges) columns, so it exists at every size; its LP
  // and then CBC's bound.
  {
    // Past the size cap nothing follows it, so it has the time left; below it, a fifth.
    double share = stage_space ? 0.2 : 1.0;
    Clock::time_point bound_end = After(Clock::now(), share * SecondsLeft(end));
    // The plain relaxation first (small: CBC often closes it), then the one with the inputs'
    // terms (higher LP, larger model) in the rest of the share: the better bound of the two.
    SegmentBoundResult sb = SegmentBound(
        g, budget, After(Clock::now(), 0.4 * share * SecondsLeft(end)), /*milp=*/true, false);
    SegmentBoundResult with;
    if (!sb.infeasible) with = SegmentBound(g, budget, bound_end, /*milp=*/true, true);
    if (with.milp_returned) raise_bound(with.milp_bound, "segment-milp");
    if (with.lp_solved) raise_bound(with.lp_bound, "segment-lp");
    if (sb.infeasible) {
      notes.push_back(
          "the segment relaxation proves that no schedule computing the nodes first "
          "in the baseline order fits: at " +
          NodeLabel(g, sb.infeasible_at) +
          " even dropping every output it does not read leaves too little room");
      if (!best || !best->fits) {
        std::string all;
        for (const auto& n : notes) all += (all.empty() ? "" : "; ") + n;
        return Error{all};
      }
    }
    if (sb.milp_returned) raise_bound(sb.milp_bound, "segment-milp");
    if (sb.lp_solved) raise_bound(sb.lp_bound, "segment-lp");
  }
  if (!stage_space)
    notes.push_back("the Checkmate model would have " + std::to_string(nonzeros) +
                    " nonzeros, over the cap of " + std::to_string(options.max_model_nonzeros) +
                    ": no Checkmate LP, no MILP");
  // Heuristic starts, in a tenth of the time: the greedy from the baseline (keeping everything)
  // and, when that does not fit, from keeping nothing; DTR; the eviction heuristic's schedule in
  // stage form.
  std::optional<RematSolution> start;
  auto offer_start = [&](const Result<RematSolution>& r) {
    if (r && r->fits && !r->stages.R.empty() && (!start || r->cost < start->cost))
      start = r.value();
  };
  if (stage_space) {
    if (evict_sol && evict_sol->fits) {
      if (auto stages = EvictStages(g, *evict_sol)) {
        auto projected = FromStagesTidied(g, std::move(*stages), budget, "evict");
        offer_start(projected);
        consider(std::move(projected));
      }
    }
    Clock::time_point heuristics_end = After(Clock::now(), 0.1 * SecondsLeft(end));
    auto greedy = GreedyKept(g, budget, std::max(0.0, 0.5 * SecondsLeft(heuristics_end)));
    bool greedy_fits = greedy && greedy->fits;
    offer_start(greedy);
    consider(std::move(greedy));
    if (!greedy_fits) {
      RematSchedule nothing = NothingKept(g);
      auto from_nothing =
          GreedyKept(g, budget, std::max(0.0, SecondsLeft(heuristics_end)), &nothing);
      offer_start(from_nothing);
      consider(std::move(from_nothing));
    }
    auto dtr = SolveRematDtr(g, budget, std::max(0.01, SecondsLeft(heuristics_end)));
    offer_start(dtr);
    consider(std::move(dtr));
  }
  // A schedule whose cost meets the lower bound is optimal (the bound holds for every schedule
  // that computes the nodes first in the baseline order, the stage space included; 2e-6
  // relative covers the bound's own safety margin of 1e-6): no exact phase.
  bool bound_closed = best && best->fits && best->cost <= bound * (1 + 2e-6);
  // The exact phase, with whatever time is left.
  bool optimal = false;
  double milp_cost = 0;
  if (bound_closed) {
    notes.push_back("the cost meets the " + bound_source + " lower bound: optimal");
  } else if (!stage_space) {
    // noted above
  } else if (options.max_milp_nonzeros && nonzeros > options.max_milp_nonzeros) {
    notes.push_back("milp: the model would have " + std::to_string(nonzeros) +
                    " nonzeros, over the cap of " + std::to_string(options.max_milp_nonzeros));
  } else if (SecondsLeft(end) < 0.5) {
    notes.push_back("no time left for the LP relaxation and the MILP");
  } else {
    int n = static_cast<int>(g.nodes.size());
    Lp lp = BuildCheckmate(g, budget, end);
    ExactRun ex;
    if (lp.complete)
      ex = RunExact(g, budget, lp, start ? &*start : nullptr, end, options.log, true);
    if (!lp.complete) {
      notes.push_back("the Checkmate model was not built within the time limit");
    } else if (ex.lp_solved) {
      raise_bound(ex.lp_objective / lp.cost_scale, "lp");
      if (auto r = RoundRelaxation(g, lp, budget, ex.lp_x.data(), Clock::now()))
        consider(std::move(*r));
      if (ex.rounded_start) {
        auto r = FromStagesTidied(g, *ex.rounded_start, budget, "lp-rounding");
        if (r) r->note = "rounding repaired by the greedy";
        consider(std::move(r));
      }
    } else if (ex.lp_infeasible) {
      notes.push_back(
          "the LP relaxation is infeasible: no schedule in Checkmate's stage space "
          "fits the budget");
    } else {
      notes.push_back("the LP relaxation was not solved within the time limit");
    }
    if (ex.milp_returned) raise_bound(ex.milp_bound / lp.cost_scale, "milp");
    if (!ex.milp_x.empty()) {
      auto sol = FromStagesTidied(g, StagesFromColumns(lp, n, ex.milp_x.data()), budget, "milp");
      if (sol && sol->fits) {
        optimal = ex.milp_optimal;
        milp_cost = sol->cost;
        sol->note =
            std::string(optimal ? "MILP proven optimal" : "MILP stopped at the time limit") +
            ", started from " + StartName(ex.milp_start) + " schedule";
      }
      consider(std::move(sol));
    } else if (ex.lp_solved) {
      notes.push_back(ex.milp_infeasible ? "milp: no schedule in Checkmate's stage space fits"
                      : ex.crashed ? "milp: CBC's process ended abnormally (a failed assertion "
                                     "inside CBC); the relaxation it sent is kept"
                      : ex.killed  ? "milp: CBC was stopped at the deadline without a schedule"
                                   : "milp: no schedule found in the time limit");
    }
  }
  if (!best) {
    std::string all;
    for (const auto& s : notes) {
      if (!all.empty()) all.append("; ");
      all.append(s);
    }
    return Error{all};
  }
  // Proven optimal when the MILP proved its schedule optimal and nothing is costlier than it.
  best->optimal = optimal && best->fits && best->cost <= milp_cost * (1 + 1e-9) + 1e-12;
  best->lower_bound = best->optimal ? best->cost : std::min(bound, best->cost);
  best->bound_source = best->optimal ? "milp" : bound_source;
  if (bound_closed) {
    best->optimal = true;
    best->lower_bound = best->cost;
    best->bound_source = bound_source;
  }
  for (const auto& s : notes) {
    if (!best->note.empty()) best->note.append("; ");
    best->note.append(s);
  }
  // A schedule far above its bound says so (the bound may be weak, or the schedule poor).
  if (best->fits && !best->optimal && best->lower_bound > 0 &&
      best->cost > 1.1 * best->lower_bound) {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "far above the lower bound: the cost is %.1f%% over it, so the schedule may be "
                  "far from optimal",
                  100.0 * (best->cost / best->lower_bound - 1));
    best->note.append(best->note.empty() ? "" : "; ").append(buf);
  }
  best->solve_ms = MsSince(t0);
  return std::move(best.value());
}

}  // namespace vramsim

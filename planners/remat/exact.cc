// The exact phase (exact.h) and the public LP-rounding and MILP-only solvers.
#include "planners/remat/exact.h"

#include <CbcEventHandler.hpp>
#include <CbcModel.hpp>
#include <CbcSolver.hpp>
#include <ClpSimplex.hpp>
#include <OsiClpSolverInterface.hpp>
#include <algorithm>
#include <cmath>
#include <string>

#include "planners/remat/child_process.h"

namespace vramsim {

using namespace remat_internal;

namespace remat_internal {

namespace {

// Stops CBC at a point in time; checked at every node and tree-status event.
class StopAt : public CbcEventHandler {
 public:
  explicit StopAt(Clock::time_point at) : at_(at) {}
  CbcAction event(CbcEvent which) override {
    if ((which == node || which == treeStatus) && Clock::now() >= at_) return stop;
    return noAction;
  }
  // No heuristic sub-MIPs (RINS, RENS, ...): on these models one can run for minutes without
  // looking at the clock, and without them CBC closes more of the gap in the same time.
  CbcAction event(CbcEvent which, void* /*data*/) override {
    return which == smallBranchAndBound ? killSolution : event(which);
  }
  CbcEventHandler* clone() const override { return new StopAt(*this); }

 private:
  Clock::time_point at_;
};

constexpr double kStartMessage = 3;  // the MILP's start when it is the rounded relaxation
constexpr double kLpMessage = 1, kMilpMessage = 2;  // a message's first value

}  // namespace

std::optional<RematSolution> RoundRelaxation(const RematGraph& g, const Lp& lp, uint64_t budget,
                                             const double* x, Clock::time_point repair_end) {
  int n = static_cast<int>(g.nodes.size());
  std::optional<RematSolution> best;
  std::vector<RematSchedule> rounded;
  for (double threshold : {0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01}) {
    rounded.push_back(ClosureFromKept(g, KeptFromColumns(lp, n, x, threshold)));
    auto sol = FromStagesTidied(g, rounded.back(), budget, "lp-rounding");
    if (!sol) continue;
    if (!best || Better(*sol, *best)) best = std::move(sol.value());
  }
  // Repairs from the rounding that keeps most but 1.01 (nothing kept: SolveRemat's own start).
  bool repair = !(best && best->fits);
  for (size_t k = rounded.size() - 1; repair && k-- > 0;) {
    double left = SecondsLeft(repair_end);
    if (left <= 0) break;
    auto sol = GreedyKept(g, budget, left, &rounded[k]);
    if (!sol) continue;
    sol->method = "lp-rounding";
    sol->note = "rounding repaired by the greedy";
    if (!best || Better(*sol, *best)) best = std::move(sol.value());
  }
  return best;
}

ExactRun RunExact(const RematGraph& g, uint64_t budget, const Lp& lp, const RematSolution* start,
                  Clock::time_point end, bool log, bool milp) {
  auto t0 = Clock::now();
  std::vector<CoinBigIndex> cstart;
  std::vector<int> index;
  std::vector<double> value;
  lp.Csc(&cstart, &index, &value);
  int n = static_cast<int>(g.nodes.size());
  Streamed st = RunStreaming(end, !log, [&](const Send& send) {
    OsiClpSolverInterface solver;
    solver.messageHandler()->setLogLevel(log ? 1 : 0);
    solver.loadProblem(lp.ncols, static_cast<int>(lp.rowlb.size()), cstart.data(), index.data(),
                       value.data(), lp.collb.data(), lp.colub.data(), lp.obj.data(),
                       lp.rowlb.data(), lp.rowub.data());
    for (int c = 0; c < lp.ncols; ++c)
      if (lp.integer[c]) solver.setInteger(c);
    solver.getModelPtr()->setMaximumWallSeconds(std::max(0.1, SecondsLeft(end)));
    solver.initialSolve();
    bool proven = solver.isProvenOptimal();
    std::vector<double> m{kLpMessage, proven ? 1.0 : 0.0,
                          solver.isProvenPrimalInfeasible() ? 1.0 : 0.0, solver.getObjValue(),
                          std::chrono::duration<double>(Clock::now() - t0).count()};
    const double* x = solver.getColSolution();
    if (proven) m.insert(m.end(), x, x + lp.ncols);
    send(m);
    if (!milp || !proven) return;
    // Start from the better of the given schedule and the rounded relaxation.
    int kind = kNoStart;
    const RematSchedule* from = nullptr;
    double from_cost = 0;
    if (start && start->fits && !start->stages.R.empty()) {
      kind = kGivenStart;
      from = &start->stages;
      from_cost = start->cost;
    }
    Clock::time_point repair_end = After(Clock::now(), 0.1 * SecondsLeft(end));
    std::optional<RematSolution> rounded = RoundRelaxation(g, lp, budget, x, repair_end);
    if (rounded && rounded->fits && (!from || rounded->cost < from_cost)) {
      kind = kRoundedStart;
      from = &rounded->stages;
      std::vector<double> kept{kStartMessage};
      for (int t = 0; t < n; ++t)
        for (int i = 0; i < t; ++i) kept.push_back(from->S[t][i]);
      send(kept);
    }
    CbcModel model(solver);
    CbcMain0(model);
    // CBC takes a while to wind up after it stops (undoing its preprocessing, a last solve of
    // the full model): it stops a tenth of the time left and 1.5 s before the deadline (at most
    // a third of the time left).
    double wind_up = std::min(1.5 + 0.1 * SecondsLeft(end), SecondsLeft(end) / 3);
    StopAt handler(After(end, -wind_up));
    model.passInEventHandler(&handler);
    if (from) {
      std::vector<std::pair<std::string, double>> values;
      for (int t = 0; t < n; ++t) {
        for (int i = 0; i <= t; ++i)
          values.push_back({solver.getColName(lp.R(t, i)), from->R[t][i]});
        for (int i = 0; i < t; ++i)
          values.push_back({solver.getColName(lp.S(t, i)), from->S[t][i]});
      }
      model.setMIPStart(values);
    }
    std::string seconds = std::to_string(std::max(0.2, SecondsLeft(end) - wind_up));
    std::vector<const char*> args{"vramsim",       "-log",    log ? "1" : "0",
                                  "-timeMode",     "elapsed", "-sec",
                                  seconds.c_str(), "-solve",  "-quit"};
    CbcMain1(static_cast<int>(args.size()), args.data(), model);
    std::vector<double> r{kMilpMessage, model.isProvenOptimal() ? 1.0 : 0.0,
                          model.isProvenInfeasible() ? 1.0 : 0.0, model.getBestPossibleObjValue(),
                          static_cast<double>(kind)};
    if (const double* best = model.bestSolution()) r.insert(r.end(), best, best + lp.ncols);
    send(r);
  });
  ExactRun ex;
  ex.killed = !st.finished;
  ex.crashed = st.crashed;
  for (std::vector<double>& m : st.messages) {
    if (m.size() >= 5 && m[0] == kLpMessage) {
      ex.lp_solved = m[1] > 0.5;
      ex.lp_infeasible = m[2] > 0.5;
      ex.lp_objective = m[3];
      ex.lp_s = m[4];
      if (static_cast<int>(m.size()) == 5 + lp.ncols) ex.lp_x.assign(m.begin() + 5, m.end());
      if (ex.lp_x.empty()) ex.lp_solved = false;
    } else if (m.size() == 1 + static_cast<size_t>(n) * (n - 1) / 2 && m[0] == kStartMessage) {
      std::vector<std::vector<uint8_t>> S(n);
      size_t at = 1;
      for (int t = 0; t < n; ++t) {
        S[t].assign(t, 0);
        for (int i = 0; i < t; ++i) S[t][i] = m[at++] > 0.5 ? 1 : 0;
      }
      ex.rounded_start = ClosureFromKept(g, std::move(S));
    } else if (m.size() >= 5 && m[0] == kMilpMessage) {
      ex.milp_returned = true;
      ex.milp_optimal = m[1] > 0.5;
      ex.milp_infeasible = m[2] > 0.5;
      if (std::isfinite(m[3]) && std::abs(m[3]) < 1e30) ex.milp_bound = m[3];
      ex.milp_start = static_cast<int>(m[4]);
      if (static_cast<int>(m.size()) == 5 + lp.ncols) ex.milp_x.assign(m.begin() + 5, m.end());
    }
  }
  return ex;
}

const char* StartName(int kind) {
  return kind == kGivenStart ? "heuristic" : kind == kRoundedStart ? "lp-rounding" : "no";
}

}  // namespace remat_internal

Result<RematSolution> SolveRematLpRounding(const RematGraph& g, uint64_t budget,
                                           const RematOptions& options) {
  auto t0 = Clock::now();
  Lp lp = BuildCheckmate(g, budget, After(t0, options.time_limit_s));
  if (!lp.complete) return Error{"lp-rounding: the model was not built within the time limit"};
  ExactRun ex = RunExact(g, budget, lp, nullptr, After(t0, options.time_limit_s), options.log,
                         /*milp=*/false);
  if (ex.lp_infeasible) return Error{"lp-rounding: the LP relaxation is infeasible at this budget"};
  if (!ex.lp_solved)
    return Error{"lp-rounding: the LP relaxation was not solved in the time limit"};
  auto best = RoundRelaxation(g, lp, budget, ex.lp_x.data(), After(t0, options.time_limit_s));
  if (!best) return Error{"lp-rounding: no rounding gives a valid schedule"};
  best->lower_bound = std::max(best->lower_bound, ex.lp_objective / lp.cost_scale);
  best->bound_source = "lp";
  best->note = "LP relaxation solved";
  best->solve_ms = MsSince(t0);
  return std::move(best.value());
}

Result<RematSolution> SolveRematMilp(const RematGraph& g, uint64_t budget,
                                     const RematOptions& options, const RematSolution* start) {
  auto t0 = Clock::now();
  int n = static_cast<int>(g.nodes.size());
  if (options.max_milp_nonzeros && CountNonzeros(g) > options.max_milp_nonzeros)
    return Error{"milp: the model would have " + std::to_string(CountNonzeros(g)) +
                 " nonzeros, over the cap of " + std::to_string(options.max_milp_nonzeros)};
  Lp lp = BuildCheckmate(g, budget, After(t0, options.time_limit_s));
  if (!lp.complete) return Error{"milp: the model was not built within the time limit"};
  ExactRun ex =
      RunExact(g, budget, lp, start, After(t0, options.time_limit_s), options.log, /*milp=*/true);
  if (ex.milp_x.empty()) {
    if (ex.lp_infeasible || ex.milp_infeasible)
      return Error{"milp: no schedule in Checkmate's stage space fits the budget"};
    return Error{std::string("milp: ") +
                 (ex.crashed  ? "CBC's process ended abnormally (a failed assertion inside CBC)"
                  : ex.killed ? "CBC did not finish within the time limit"
                              : "no schedule found in the time limit")};
  }
  auto sol = FromStagesTidied(g, StagesFromColumns(lp, n, ex.milp_x.data()), budget, "milp");
  if (!sol) return sol.error();
  sol->optimal = ex.milp_optimal;
  double bound = std::max(ex.milp_bound, ex.lp_solved ? ex.lp_objective : -1e300);
  if (bound > -1e300) {
    sol->lower_bound = std::max(sol->lower_bound, std::min(bound / lp.cost_scale, sol->cost));
    sol->bound_source = ex.milp_bound >= bound ? "milp" : "lp";
  }
  if (ex.milp_optimal) sol->lower_bound = sol->cost;
  sol->note = std::string(ex.milp_optimal ? "proven optimal" : "stopped at the time limit") +
              ", started from " + StartName(ex.milp_start) + " schedule";
  sol->solve_ms = MsSince(t0);
  return sol;
}

}  // namespace vramsim

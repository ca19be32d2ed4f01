// A lower bound that exists at scale (SegmentBound, internal.h): a covering model over the
// segments of each output's life, O(edges) columns and one row per node, solved by CLP (its LP
// relaxation) and then CBC (its best bound) in a child process killed at the deadline.
//
// Why it is a bound. In every schedule the planner considers, node t is computed for the first
// time in index order (Checkmate's stage t; the eviction heuristic's list order). Take the moment
// of t's first computation: its output is being made, the parameters are resident, and every
// earlier output i with a reader at or after t was alive in the baseline. An output i whose
// readers are u1 < u2 < ... has segments (i, u1), (u1, u2), ... (open intervals of first
// computations). If i is not alive at the moment of some t inside segment k, it was dropped
// after its last use before t and must be computed again before u_k: one recomputation of cost
// c_i, in a time interval no other segment shares. The inputs of t must be alive at t. So with
// y(i,k) = 1 when i is dropped somewhere inside segment k:
//   for each t:  sum over i alive in the baseline at t, not an input of t, of
//                mem(i) * y(i, segment of t) >= static + mem(t) + baseline live bytes at t - B
//   cost >= baseline cost + sum c_i * y(i,k).
// Remaking i also needs its inputs alive (often recomputed too) and memory of its own; the model
// ignores both, so it is a relaxation: its LP and CBC's best bound are lower bounds on the cost
// of every schedule in that space. When even dropping everything droppable does not make room
// at some t, no such schedule fits the budget.
#include <CbcEventHandler.hpp>
#include <CbcModel.hpp>
#include <CbcSolver.hpp>
#include <OsiClpSolverInterface.hpp>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "planners/remat/checkmate_model.h"
#include "planners/remat/child_process.h"

namespace vramsim {
namespace remat_internal {

namespace {

class StopCbcAt : public CbcEventHandler {
 public:
  explicit StopCbcAt(Clock::time_point at) : at_(at) {}
  CbcAction event(CbcEvent which) override {
    if ((which == node || which == treeStatus) && Clock::now() >= at_) return stop;
    return noAction;
  }
  CbcEventHandler* clone() const override { return new StopCbcAt(*this); }

 private:
  Clock::time_point at_;
};

constexpr double kLpMsg = 1, kMilpMsg = 2;

}  // namespace

SegmentBoundResult SegmentBound(const RematGraph& g, uint64_t budget, Clock::time_point end,
                                bool milp) {
  SegmentBoundResult out;
  int n = static_cast<int>(g.nodes.size());
  double base = BaselineCost(g);
  out.bound = base;
  // Memory in units of a thousandth of the budget, cost of a thousandth of the baseline.
  double mem_scale = budget > 0 ? 1000.0 / static_cast<double>(budget) : 1.0;
  double cost_scale = base > 0 ? 1000.0 / base : 1.0;
  // Baseline live bytes at each t (outputs of earlier nodes read at or after t).
  std::vector<double> live(n + 1, 0);
  for (int i = 0; i < n; ++i) {
    if (g.users[i].empty()) continue;
    double m = static_cast<double>(g.nodes[i].memory);
    live[i + 1] += m;
    live[g.users[i].back() + 1] -= m;
  }
  for (int t = 1; t <= n; ++t) live[t] += live[t - 1];
  // live[t] now: sum over i < t with last user >= t.
  std::vector<double> rhs(n, 0);
  std::vector<int> row_of(n, -1);
  int rows = 0;
  for (int t = 0; t < n; ++t) {
    double need = static_cast<double>(g.static_bytes) + static_cast<double>(g.nodes[t].memory) +
                  live[t] - static_cast<double>(budget);
    if (need > 0) {
      rhs[t] = need * mem_scale;
      row_of[t] = rows++;
    }
  }
  out.rows = rows;
  if (rows == 0) {
    out.lp_solved = out.milp_optimal = true;
    return out;
  }
  // Columns: y(i,k) for each segment with a row inside it.
  std::vector<double> obj;
  std::vector<CoinBigIndex> start{0};
  std::vector<int> index;
  std::vector<double> value;
  std::vector<double> room(n, 0);  // droppable bytes at each t (scaled)
  for (int i = 0; i < n; ++i) {
    if (Clock::now() >= end) return out;
    int prev = i;
    double m = static_cast<double>(g.nodes[i].memory) * mem_scale;
    if (m <= 0) continue;
    for (int u : g.users[i]) {
      size_t before = index.size();
      for (int t = prev + 1; t < u; ++t) {
        if (row_of[t] < 0) continue;
        index.push_back(row_of[t]);
        value.push_back(m);
        room[t] += m;
      }
      prev = u;
      if (index.size() == before) continue;
      obj.push_back(g.nodes[i].cost * cost_scale);
      start.push_back(static_cast<CoinBigIndex>(index.size()));
    }
  }
  for (int t = 0; t < n; ++t) {
    if (row_of[t] >= 0 && room[t] < rhs[t] * (1 - 1e-9)) {
      out.infeasible = true;
      out.infeasible_at = t;
      return out;
    }
  }
  int ncols = static_cast<int>(obj.size());
  out.cols = ncols;
  out.nonzeros = index.size();
  std::vector<double> collb(ncols, 0), colub(ncols, 1), rowub(rows, 1e30), rowlb;
  for (int t = 0; t < n; ++t)
    if (row_of[t] >= 0) rowlb.push_back(rhs[t]);
  Streamed st = RunStreaming(end, true, [&](const Send& send) {
    OsiClpSolverInterface solver;
    solver.messageHandler()->setLogLevel(0);
    solver.loadProblem(ncols, rows, start.data(), index.data(), value.data(), collb.data(),
                       colub.data(), obj.data(), rowlb.data(), rowub.data());
    solver.getModelPtr()->setMaximumWallSeconds(std::max(0.1, SecondsLeft(end)));
    solver.initialSolve();
    bool proven = solver.isProvenOptimal();
    send({kLpMsg, proven ? 1.0 : 0.0, solver.isProvenPrimalInfeasible() ? 1.0 : 0.0,
          solver.getObjValue()});
    if (!milp || !proven) return;
    for (int c = 0; c < ncols; ++c) solver.setInteger(c);
    CbcModel model(solver);
    CbcMain0(model);
    double wind_up = std::min(0.5 + 0.1 * SecondsLeft(end), SecondsLeft(end) / 3);
    StopCbcAt handler(After(end, -wind_up));
    model.passInEventHandler(&handler);
    std::string seconds = std::to_string(std::max(0.2, SecondsLeft(end) - wind_up));
    std::vector<const char*> args{"vramsim", "-log",          "0",      "-timeMode", "elapsed",
                                  "-sec",    seconds.c_str(), "-solve", "-quit"};
    CbcMain1(static_cast<int>(args.size()), args.data(), model);
    send({kMilpMsg, model.isProvenOptimal() ? 1.0 : 0.0, model.isProvenInfeasible() ? 1.0 : 0.0,
          model.getBestPossibleObjValue()});
  });
  for (const auto& m : st.messages) {
    if (m.size() != 4) continue;
    if (m[0] == kLpMsg) {
      out.lp_solved = m[1] > 0.5;
      if (m[2] > 0.5) out.infeasible = true;
      // A small margin for CLP's tolerances: the bound must not exceed the true optimum.
      if (out.lp_solved) out.lp_bound = base + std::max(0.0, m[3] * (1 - 1e-6) - 1e-6) / cost_scale;
      if (out.lp_solved) out.bound = std::max(out.bound, out.lp_bound);
    } else if (m[0] == kMilpMsg) {
      out.milp_returned = true;
      out.milp_optimal = m[1] > 0.5;
      if (m[2] > 0.5) out.infeasible = true;
      if (std::isfinite(m[3]) && std::abs(m[3]) < 1e30) {
        out.milp_bound = base + std::max(0.0, m[3] * (1 - 1e-6) - 1e-6) / cost_scale;
        out.bound = std::max(out.bound, out.milp_bound);
      }
    }
  }
  return out;
}

}  // namespace remat_internal
}  // namespace vramsim

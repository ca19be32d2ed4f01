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
// n2000 at 0.8 would have 3.5M (2 GB across the two processes); n1000 has under 1M.
constexpr size_t kMaxInputTermNonzeros = 1500000;

}  // namespace

SegmentBoundResult SegmentBound(const RematGraph& g, uint64_t budget, Clock::time_point end,
                                bool milp, bool need_inputs) {
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
  std::vector<int> last(n, -1);
  for (int i = 0; i < n; ++i)
    if (!g.users[i].empty()) last[i] = g.users[i].back();
  std::vector<double> need(n, 0);
  for (int t = 0; t < n; ++t)
    need[t] = (static_cast<double>(g.static_bytes) + static_cast<double>(g.nodes[t].memory) +
               live[t] - static_cast<double>(budget)) *
              mem_scale;
  // Where even dropping every whole segment around t leaves too little room, nothing fits.
  {
    std::vector<double> room(n + 1, 0);
    for (int i = 0; i < n; ++i) {
      double m = static_cast<double>(g.nodes[i].memory) * mem_scale;
      int prev = i;
      for (int u : g.users[i]) {
        if (u > prev + 1) {
          room[prev + 1] += m;
          room[u] -= m;
        }
        prev = u;
      }
    }
    for (int t = 0; t < n; ++t) {
      if (t > 0) room[t] += room[t - 1];
      if (need[t] > 0 && room[t] < need[t] * (1 - 1e-9) - 1e-9) {
        out.infeasible = true;
        out.infeasible_at = t;
        return out;
      }
    }
  }
  // Candidate columns: output i dropped after `from` and alive again from stage `to` (a
  // breakpoint: its next reader, or the last reader of one of its inputs in between); with
  // need_inputs, each input j whose life ended before `to` must be kept through `keep` (the
  // breakpoint before) or remade after its last reader.
  struct Drop {
    int node, from, to, keep;
  };
  std::vector<Drop> drops;
  for (int i = 0; i < n; ++i) {
    if (Clock::now() >= end) return out;
    if (g.nodes[i].memory == 0) continue;
    int prev = i;
    for (int u : g.users[i]) {
      std::vector<int> ends{u};
      if (need_inputs)
        for (int j : g.deps[i])
          for (int b : {last[j], last[j] + 1})
            if (b > prev && b < u) ends.push_back(b);
      std::sort(ends.begin(), ends.end());
      ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
      int before = prev;
      for (int b : ends) {
        if (b > prev + 1) drops.push_back({i, prev, b, before});
        before = b;
      }
      prev = u;
    }
  }
  // The requirements, found once: drop `drop` needs `input` kept through its `keep` or remade
  // (an input whose life ended before the drop's `to`); and a remaking of j after its last
  // reader happens past it, so an input k whose own life ended before must be kept through j's
  // last reader or remade itself (the cascade, transitively): cascade (j, k).
  struct Need {
    int drop, input;
  };
  std::vector<Need> needs;
  std::vector<std::pair<int, int>> cascade;
  // Extensions (j kept through stage q after its last reader), per j in increasing q.
  std::vector<std::vector<int>> keep_to(n);
  std::vector<uint8_t> remade(n, 0);
  std::vector<int> work;
  auto mark_remade = [&](int j) {
    if (!remade[j]) {
      remade[j] = 1;
      work.push_back(j);
    }
  };
  if (need_inputs) {
    for (size_t k = 0; k < drops.size(); ++k) {
      const Drop& d = drops[k];
      for (int j : g.deps[d.node]) {
        if (last[j] >= d.to || d.keep <= last[j]) continue;
        needs.push_back({static_cast<int>(k), j});
        keep_to[j].push_back(d.keep);
        mark_remade(j);
      }
    }
  }
  while (!work.empty()) {
    int j = work.back();
    work.pop_back();
    for (int k : g.deps[j]) {
      if (last[k] >= last[j]) continue;
      cascade.push_back({j, k});
      keep_to[k].push_back(last[j]);
      mark_remade(k);
    }
  }
  std::vector<uint8_t> is_row(n, 0);
  for (int t = 0; t < n; ++t) is_row[t] = need[t] > 0;
  for (int j = 0; j < n; ++j) {
    auto& v = keep_to[j];
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    if (!v.empty())
      for (int t = last[j] + 1; t <= v.back(); ++t) is_row[t] = 1;
  }
  std::vector<int> row_of(n, -1);
  int rows = 0;
  std::vector<double> rowlb;
  for (int t = 0; t < n; ++t) {
    if (!is_row[t]) continue;
    row_of[t] = rows++;
    rowlb.push_back(need[t]);
  }
  out.rows = rows;
  if (rows == 0) {
    out.lp_solved = out.milp_optimal = true;
    return out;
  }
  // The size before building it: the inputs' terms add columns over long stretches of stages
  // (and the transpose below copies them); past the cap, nothing (the baseline).
  if (need_inputs) {
    std::vector<size_t> upto(n + 1, 0);  // rows before stage t
    for (int t = 0; t < n; ++t) upto[t + 1] = upto[t] + (row_of[t] >= 0);
    size_t nz = 0;
    for (const Drop& d : drops)
      if (d.to > d.from + 1) nz += upto[d.to] - upto[d.from + 1] + 3 * g.deps[d.node].size();
    for (int j = 0; j < n; ++j)
      if (!keep_to[j].empty()) nz += static_cast<size_t>(keep_to[j].back() - last[j]) + 3;
    out.nonzeros = nz;
    if (nz > kMaxInputTermNonzeros) {
      out.inputs_skipped = true;  // the caller has the plain relaxation's
      return out;
    }
  }
  std::vector<double> obj;
  std::vector<CoinBigIndex> start{0};
  std::vector<int> index;
  std::vector<double> value;
  std::vector<int> drop_col(drops.size(), -1);
  for (size_t k = 0; k < drops.size(); ++k) {
    if (Clock::now() >= end) return out;
    const Drop& d = drops[k];
    double m = static_cast<double>(g.nodes[d.node].memory) * mem_scale;
    size_t before = index.size();
    for (int t = d.from + 1; t < d.to; ++t) {
      if (row_of[t] < 0) continue;
      index.push_back(row_of[t]);
      value.push_back(m);
    }
    if (index.size() == before) continue;  // it makes room nowhere it is needed
    drop_col[k] = static_cast<int>(obj.size());
    obj.push_back(g.nodes[d.node].cost * cost_scale);
    start.push_back(static_cast<CoinBigIndex>(index.size()));
  }
  // Extension columns (memory at the stages they add, no cost) and one remaking column per
  // node whose kept-through requirement exists (its cost, no memory).
  std::vector<std::vector<int>> keep_col(n);
  std::vector<int> remake_col(n, -1);
  for (int j = 0; j < n; ++j) {
    if (keep_to[j].empty() && !remade[j]) continue;
    double m = static_cast<double>(g.nodes[j].memory) * mem_scale;
    int from = last[j];
    for (int q : keep_to[j]) {
      for (int t = from + 1; t <= q; ++t) {
        index.push_back(row_of[t]);
        value.push_back(-m);
      }
      from = q;
      keep_col[j].push_back(static_cast<int>(obj.size()));
      obj.push_back(0);
      start.push_back(static_cast<CoinBigIndex>(index.size()));
    }
    remake_col[j] = static_cast<int>(obj.size());
    obj.push_back(g.nodes[j].cost * cost_scale);
    start.push_back(static_cast<CoinBigIndex>(index.size()));
  }
  int ncols = static_cast<int>(obj.size());
  // Linking rows, appended as rows of two or three entries: a later extension implies the
  // earlier; a drop needs each dead input kept or remade.
  std::vector<std::vector<std::pair<int, double>>> link;
  for (int j = 0; j < n; ++j)
    for (size_t l = 1; l < keep_col[j].size(); ++l)
      link.push_back({{keep_col[j][l - 1], 1}, {keep_col[j][l], -1}});
  // "Kept through q, or remade" for input j: its extension column to q, and its remaking.
  auto kept_or_remade = [&](int j, int q) {
    auto l = std::lower_bound(keep_to[j].begin(), keep_to[j].end(), q) - keep_to[j].begin();
    return std::pair{keep_col[j][static_cast<size_t>(l)], remake_col[j]};
  };
  for (const Need& r : needs) {
    if (drop_col[r.drop] < 0) continue;
    auto [keep, remake] = kept_or_remade(r.input, drops[r.drop].keep);
    link.push_back({{keep, 1}, {remake, 1}, {drop_col[r.drop], -1}});
  }
  for (auto [j, k] : cascade) {
    auto [keep, remake] = kept_or_remade(k, last[j]);
    link.push_back({{keep, 1}, {remake, 1}, {remake_col[j], -1}});
  }
  // Column-major for CLP: transpose the link rows into the columns.
  {
    std::vector<std::vector<std::pair<int, double>>> extra(ncols);
    for (size_t r = 0; r < link.size(); ++r)
      for (auto [c, v] : link[r]) extra[c].push_back({rows + static_cast<int>(r), v});
    std::vector<CoinBigIndex> start2{0};
    std::vector<int> index2;
    std::vector<double> value2;
    for (int c = 0; c < ncols; ++c) {
      for (CoinBigIndex e = start[c]; e < start[c + 1]; ++e) {
        index2.push_back(index[e]);
        value2.push_back(value[e]);
      }
      for (auto [r, v] : extra[c]) {
        index2.push_back(r);
        value2.push_back(v);
      }
      start2.push_back(static_cast<CoinBigIndex>(index2.size()));
    }
    start.swap(start2);
    index.swap(index2);
    value.swap(value2);
    for (size_t r = 0; r < link.size(); ++r) rowlb.push_back(0);
    rows += static_cast<int>(link.size());
  }
  out.cols = ncols;
  out.nonzeros = index.size();
  std::vector<double> collb(ncols, 0), colub(ncols, 1), rowub(rows, 1e30);
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

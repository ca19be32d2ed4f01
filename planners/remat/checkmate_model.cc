// Building Checkmate's MILP (see checkmate_model.h) and reading its columns back.
#include "planners/remat/checkmate_model.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace vramsim {
namespace remat_internal {

size_t CountNonzeros(const RematGraph& g) {
  size_t n = g.nodes.size(), nz = 0;
  for (size_t t = 0; t < n; ++t) {
    for (size_t k = 0; k <= t; ++k) {
      nz += 3 * g.deps[k].size() + 2 + 3;  // dependencies, S carry, U recurrence
      if (k == t) continue;
      auto frees = [&](size_t i) {
        if (!g.nodes[i].memory) return;
        nz += 2 + 4;  // the U term, <= R, + S
        for (int j : g.users[i])
          if (static_cast<size_t>(j) > k && static_cast<size_t>(j) <= t) nz += 2;
      };
      for (int d : g.deps[k]) frees(static_cast<size_t>(d));
      frees(k);
    }
  }
  return nz;
}

Lp BuildCheckmate(const RematGraph& g, uint64_t budget, Clock::time_point end) {
  int n = static_cast<int>(g.nodes.size());
  Lp lp;
  double mem_scale = 1000.0 / static_cast<double>(std::max<uint64_t>(budget, 1));
  double base = BaselineCost(g);
  lp.cost_scale = base > 0 ? 1000.0 / base : 1.0;
  auto mem = [&](int i) { return static_cast<double>(g.nodes[i].memory) * mem_scale; };
  lp.r_off.resize(n);
  lp.s_off.resize(n);
  for (int t = 0; t < n; ++t) {
    lp.r_off[t] = lp.ncols;
    for (int i = 0; i <= t; ++i)
      lp.AddCol(i == t ? 1 : 0, 1, g.nodes[i].cost * lp.cost_scale, true);
  }
  for (int t = 0; t < n; ++t) {
    lp.s_off[t] = lp.ncols;
    for (int i = 0; i < t; ++i) lp.AddCol(0, 1, 0, true);
  }
  // The budget less a billionth (whole bytes): CBC's tolerances cannot then let a schedule
  // through that the exact replay finds over.
  uint64_t effective = budget - budget / 1000000000;
  const double cap =
      1000.0 * static_cast<double>(effective) / static_cast<double>(std::max<uint64_t>(budget, 1));
  const double inf = std::numeric_limits<double>::max();
  for (int t = 0; t < n; ++t) {
    // A large model takes seconds to build on a busy machine: the deadline holds here too.
    if (Clock::now() >= end) {
      lp.complete = false;
      return lp;
    }
    // Inputs are computed in the stage or kept into it.
    for (int j = 0; j <= t; ++j) {
      for (int i : g.deps[j]) {
        int row = lp.AddRow(-inf, 0);
        lp.Add(row, lp.R(t, j), 1);
        lp.Add(row, lp.R(t, i), -1);
        lp.Add(row, lp.S(t, i), -1);
      }
    }
    // What is kept into the next stage was kept into this one or computed in it.
    if (t + 1 < n) {
      for (int i = 0; i <= t; ++i) {
        int row = lp.AddRow(-inf, 0);
        lp.Add(row, lp.S(t + 1, i), 1);
        if (i < t) lp.Add(row, lp.S(t, i), -1);
        lp.Add(row, lp.R(t, i), -1);
      }
    }
    // Memory: U(t,0) = static + kept + R(t,0) m_0; U(t,k) = U(t,k-1) + R(t,k) m_k - freed(k-1).
    int prev_u = -1;
    std::vector<std::pair<int, int>> prev_free;  // (FREE column, node) after k-1
    for (int k = 0; k <= t; ++k) {
      int u = lp.AddCol(0, cap, 0, false);
      double rhs = 0;
      int row;
      if (k == 0) {
        rhs = static_cast<double>(g.static_bytes) * mem_scale;
        row = lp.AddRow(rhs, rhs);
        for (int i = 0; i < t; ++i)
          if (g.nodes[i].memory) lp.Add(row, lp.S(t, i), -mem(i));
      } else {
        row = lp.AddRow(0, 0);
        lp.Add(row, prev_u, -1);
        for (auto [col, i] : prev_free) lp.Add(row, col, mem(i));
      }
      lp.Add(row, u, 1);
      if (g.nodes[k].memory) lp.Add(row, lp.R(t, k), -mem(k));
      prev_u = u;
      prev_free.clear();
      if (k == t) continue;
      // FREE(t,i,k): i is dropped after k; only when k runs, i is not kept into t+1, and no
      // later node of the stage reads it.
      auto add_free = [&](int i) {
        if (!g.nodes[i].memory) return;
        int f = lp.AddCol(0, 1, 0, false);
        prev_free.push_back({f, i});
        int r1 = lp.AddRow(-inf, 0);
        lp.Add(r1, f, 1);
        lp.Add(r1, lp.R(t, k), -1);
        if (t + 1 < n) {
          int r2 = lp.AddRow(-inf, 1);
          lp.Add(r2, f, 1);
          lp.Add(r2, lp.S(t + 1, i), 1);
        }
        for (int j : g.users[i]) {
          if (j <= k || j > t) continue;
          int r3 = lp.AddRow(-inf, 1);
          lp.Add(r3, f, 1);
          lp.Add(r3, lp.R(t, j), 1);
        }
      };
      for (int d : g.deps[k]) add_free(d);
      add_free(k);
    }
  }
  return lp;
}

std::vector<std::vector<uint8_t>> KeptFromColumns(const Lp& lp, int n, const double* x,
                                                  double threshold) {
  std::vector<std::vector<uint8_t>> S(n);
  for (int t = 0; t < n; ++t) {
    S[t].assign(t, 0);
    for (int i = 0; i < t; ++i) S[t][i] = x[lp.S(t, i)] >= threshold ? 1 : 0;
  }
  return S;
}

// The MILP's own schedule: R and S as CBC left them.
RematSchedule StagesFromColumns(const Lp& lp, int n, const double* x) {
  RematSchedule s;
  s.S = KeptFromColumns(lp, n, x, 0.5);
  s.R.assign(n, {});
  for (int t = 0; t < n; ++t) {
    s.R[t].assign(t + 1, 0);
    for (int i = 0; i <= t; ++i) s.R[t][i] = x[lp.R(t, i)] >= 0.5 ? 1 : 0;
  }
  return s;
}

}  // namespace remat_internal
}  // namespace vramsim

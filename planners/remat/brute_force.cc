// SolveRematBruteForce: every S of a graph of at most 7 nodes, for tests of the exact solvers.
#include <algorithm>
#include <chrono>
#include <vector>

#include "planners/remat/internal.h"

namespace vramsim {

using namespace remat_internal;

Result<RematSolution> SolveRematBruteForce(const RematGraph& g, uint64_t budget) {
  int n = static_cast<int>(g.nodes.size());
  if (n > 7) return Error{"brute force takes graphs of at most 7 nodes"};
  auto start = std::chrono::steady_clock::now();
  std::vector<std::pair<int, int>> bits;  // (t, i) of each S entry
  for (int t = 1; t < n; ++t)
    for (int i = 0; i < t; ++i) bits.push_back({t, i});
  std::vector<uint32_t> users(n, 0), deps(n, 0);
  for (int v = 0; v < n; ++v) {
    for (int u : g.users[v]) users[v] |= 1u << u;
    for (int d : g.deps[v]) deps[v] |= 1u << d;
  }
  double best_cost = 0;
  uint64_t best_mask = 0;
  bool found = false;
  std::vector<uint32_t> S(n + 1, 0);
  for (uint64_t mask = 0; mask < (uint64_t{1} << bits.size()); ++mask) {
    std::fill(S.begin(), S.end(), 0);
    for (size_t b = 0; b < bits.size(); ++b)
      if (mask >> b & 1) S[bits[b].first] |= 1u << bits[b].second;
    double cost = 0;
    uint64_t peak = 0;
    bool ok = true;
    uint32_t live = 0;
    for (int t = 0; t < n && ok; ++t) {
      if ((S[t] & ~live) != 0) ok = false;  // kept something not alive
      live = S[t];
      uint32_t next = t + 1 < n ? S[t + 1] : 0;
      uint32_t R = 1u << t;
      for (int k = t - 1; k >= 0; --k) {
        if (S[t] >> k & 1) continue;
        if ((next >> k & 1) || (users[k] & R)) R |= 1u << k;
      }
      uint64_t cur = g.static_bytes;
      for (int i = 0; i < n; ++i)
        if (live >> i & 1) cur += g.nodes[i].memory;
      for (int k = 0; k <= t; ++k) {
        if (!(R >> k & 1)) continue;
        cur += g.nodes[k].memory;
        cost += g.nodes[k].cost;
        live |= 1u << k;
        peak = std::max(peak, cur);
        uint32_t later = R & ~((2u << k) - 1);  // computed after k in this stage
        uint32_t cand = deps[k] | (1u << k);
        for (int i = 0; i <= k; ++i) {
          if (!(cand >> i & 1) || !(live >> i & 1) || (next >> i & 1) || (users[i] & later))
            continue;
          live &= ~(1u << i);
          cur -= g.nodes[i].memory;
        }
      }
      if ((next & ~live) != 0) ok = false;
      live &= next;
    }
    if (!ok || peak > budget) continue;
    if (!found || cost < best_cost) {
      found = true;
      best_cost = cost;
      best_mask = mask;
    }
  }
  if (!found) return Error{"brute force: no schedule fits the budget"};
  std::vector<std::vector<uint8_t>> kept(n);
  for (int t = 0; t < n; ++t) kept[t].assign(t, 0);
  for (size_t b = 0; b < bits.size(); ++b)
    if (best_mask >> b & 1) kept[bits[b].first][bits[b].second] = 1;
  auto sol = FromStages(g, ClosureFromKept(g, kept), budget, "brute-force");
  if (!sol) return sol.error();
  sol->optimal = true;
  sol->lower_bound = sol->cost;
  sol->solve_ms = MsSince(start);
  return sol;
}

}  // namespace vramsim

// The greedy in Checkmate's stage space (GreedyKept), used as a start for the MILP and to
// repair LP roundings that do not fit.
#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "planners/remat/internal.h"

namespace vramsim {
namespace remat_internal {

namespace {

// A greedy in Checkmate's stage space. Until the schedule fits, at the stage with the peak it
// either stops keeping one output over the span where it is not used (so it is recomputed where
// next needed) or keeps one output that the stage recomputes, taking the change with the most
// memory overflow removed per unit of added cost. Once it fits, it keeps instead of recomputing
// wherever that still fits. It starts from the baseline (everything kept) or any schedule, such
// as nothing kept or a rounded LP relaxation.

struct KeptEval {
  double cost = 0;
  uint64_t peak = 0;
  double overflow = 0;  // sum over computations of the bytes over the budget
  int peak_stage = 0;
};

KeptEval EvaluateKept(const RematGraph& g, const RematSchedule& s, uint64_t budget) {
  int n = static_cast<int>(g.nodes.size());
  KeptEval e;
  std::vector<uint8_t> live(n, 0);
  for (int t = 0; t < n; ++t) {
    uint64_t cur = g.static_bytes;
    for (int i = 0; i < t; ++i) {
      live[i] = s.S[t][i];
      if (live[i]) cur += g.nodes[i].memory;
    }
    for (int i = t; i < n; ++i) live[i] = 0;
    for (int k = 0; k <= t; ++k) {
      if (!s.R[t][k]) continue;
      cur += g.nodes[k].memory;
      e.cost += g.nodes[k].cost;
      live[k] = 1;
      if (cur > e.peak) {
        e.peak = cur;
        e.peak_stage = t;
      }
      if (cur > budget) e.overflow += static_cast<double>(cur - budget);
      auto try_free = [&](int i) {
        if (!live[i] || Kept(s, t + 1, i)) return;
        for (int j : g.users[i])
          if (j > k && j <= t && s.R[t][j]) return;
        live[i] = 0;
        cur -= g.nodes[i].memory;
      };
      for (int d : g.deps[k]) try_free(d);
      try_free(k);
    }
  }
  return e;
}

// Nothing kept between stages: each stage recomputes what its node needs.
bool UsedIn(const RematGraph& g, const RematSchedule& s, int t, int i) {
  if (i <= t && s.R[t][i]) return true;
  for (int j : g.users[i])
    if (j <= t && s.R[t][j]) return true;
  return false;
}

// Stops keeping i over the span around stage p where it is not used (it is then recomputed
// where next needed).
RematSchedule DropKept(const RematGraph& g, const RematSchedule& s, int p, int i) {
  int n = static_cast<int>(g.nodes.size());
  int first = p;
  while (first - 1 > i && s.S[first - 1][i] && !UsedIn(g, s, first - 1, i)) --first;
  int last = p;
  while (last + 1 < n && !UsedIn(g, s, last, i)) ++last;
  auto S = s.S;
  for (int t = first; t <= last && t < n; ++t) S[t][i] = 0;
  return ClosureFromKept(g, std::move(S));
}

// Keeps k, recomputed in stage p, from the last stage before p where it is alive instead.
std::optional<RematSchedule> AddKept(const RematGraph& g, const RematSchedule& s, int p, int k) {
  int q = p - 1;
  while (q > k && !s.R[q][k] && !s.S[q][k]) --q;
  if (q < k || (q == k && !s.R[q][k])) return std::nullopt;
  auto S = s.S;
  for (int t = q + 1; t <= p; ++t) S[t][k] = 1;
  return ClosureFromKept(g, std::move(S));
}

}  // namespace

RematSchedule NothingKept(const RematGraph& g) {
  std::vector<std::vector<uint8_t>> S(g.nodes.size());
  for (size_t t = 0; t < S.size(); ++t) S[t].assign(t, 0);
  return ClosureFromKept(g, std::move(S));
}

// Whether output i is read or made in stage t.
Result<RematSolution> GreedyKept(const RematGraph& g, uint64_t budget, double time_limit_s,
                                 const RematSchedule* from) {
  auto t0 = std::chrono::steady_clock::now();
  int n = static_cast<int>(g.nodes.size());
  RematSchedule cur = from ? *from : BaselineSchedule(g);
  KeptEval ev = EvaluateKept(g, cur, budget);
  auto in_time = [&] { return MsSince(t0) < time_limit_s * 1000; };
  // Overflow removed per unit of added cost; a move that removes overflow and adds no cost
  // comes first.
  auto score = [&](const KeptEval& e) {
    double gain = ev.overflow - e.overflow, added = e.cost - ev.cost;
    return added <= 0 ? 1e300 * (gain / (ev.overflow + 1)) - added : gain / added;
  };
  while (ev.peak > budget && in_time()) {
    int p = ev.peak_stage;
    double best_score = 0;
    std::optional<RematSchedule> best;
    KeptEval best_ev;
    auto offer = [&](RematSchedule cand) {
      KeptEval ce = EvaluateKept(g, cand, budget);
      if (ce.overflow >= ev.overflow) return;
      double sc = score(ce);
      if (!best || sc > best_score) {
        best_score = sc;
        best = std::move(cand);
        best_ev = ce;
      }
    };
    for (int i = 0; i < p && in_time(); ++i) {
      if (cur.S[p][i] && g.nodes[i].memory) offer(DropKept(g, cur, p, i));
      if (cur.R[p][i] && !cur.S[p][i])
        if (auto cand = AddKept(g, cur, p, i)) offer(std::move(*cand));
    }
    if (!best) break;
    cur = std::move(*best);
    ev = best_ev;
  }
  // Once it fits: keep instead of recomputing wherever that still fits, costliest first.
  bool improved = ev.peak <= budget;
  while (improved && in_time()) {
    improved = false;
    std::vector<std::pair<double, std::pair<int, int>>> recomputed;
    for (int t = 0; t < n; ++t)
      for (int k = 0; k < t; ++k)
        if (cur.R[t][k] && g.nodes[k].cost > 0) recomputed.push_back({g.nodes[k].cost, {t, k}});
    std::sort(recomputed.begin(), recomputed.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    for (const auto& [c, tk] : recomputed) {
      if (!in_time()) break;
      if (!cur.R[tk.first][tk.second]) continue;  // no longer recomputed there
      auto cand = AddKept(g, cur, tk.first, tk.second);
      if (!cand) continue;
      KeptEval ce = EvaluateKept(g, *cand, budget);
      if (ce.peak > budget || ce.cost >= ev.cost) continue;
      cur = std::move(*cand);
      ev = ce;
      improved = true;
    }
  }
  auto sol = FromStagesTidied(g, std::move(cur), budget, "greedy");
  if (sol) sol->solve_ms = MsSince(t0);
  return sol;
}

}  // namespace remat_internal
}  // namespace vramsim

// Schedules and their independent check: the stage form (Checkmate's R and S) turned into an
// explicit sequence of computations and frees, the replay that validates any sequence, the
// baseline, the closure that derives R from S, the tidying of solver output, and the proof of
// infeasibility below the least budget any schedule can meet.
#include <algorithm>

#include "planners/remat/internal.h"

namespace vramsim {

using namespace remat_internal;

Result<ReplayStats> ReplaySequence(const RematGraph& g, const std::vector<RematStep>& steps) {
  int n = static_cast<int>(g.nodes.size());
  std::vector<uint8_t> live(n, 0), ran(n, 0);
  ReplayStats st;
  uint64_t cur = g.static_bytes;
  st.peak_bytes = cur;
  for (size_t s = 0; s < steps.size(); ++s) {
    int v = steps[s].node;
    if (v < 0 || v >= n) return Error{"step " + std::to_string(s) + " names no node"};
    if (steps[s].kind == RematStep::Kind::kCompute) {
      if (live[v])
        return Error{"step " + std::to_string(s) + " computes " + NodeLabel(g, v) +
                     " while its output is alive"};
      for (int d : g.deps[v]) {
        if (!live[d])
          return Error{"step " + std::to_string(s) + " computes " + NodeLabel(g, v) +
                       " but its input " + NodeLabel(g, d) + " is not alive"};
      }
      cur += g.nodes[v].memory;
      st.peak_bytes = std::max(st.peak_bytes, cur);
      st.cost += g.nodes[v].cost;
      ++st.computations;
      live[v] = ran[v] = 1;
    } else {
      if (!live[v])
        return Error{"step " + std::to_string(s) + " frees " + NodeLabel(g, v) +
                     " which is not alive"};
      cur -= g.nodes[v].memory;
      live[v] = 0;
    }
  }
  for (int v = 0; v < n; ++v)
    if (!ran[v]) return Error{"the schedule never computes " + NodeLabel(g, v)};
  return st;
}

Result<std::vector<RematStep>> StagesToSequence(const RematGraph& g, const RematSchedule& s) {
  int n = static_cast<int>(g.nodes.size());
  if (static_cast<int>(s.R.size()) != n || static_cast<int>(s.S.size()) != n)
    return Error{"the schedule has the wrong number of stages"};
  std::vector<RematStep> steps;
  std::vector<uint8_t> live(n, 0);
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < t; ++i) {
      if (s.S[t][i] && !live[i])
        return Error{"stage " + std::to_string(t) + " keeps " + NodeLabel(g, i) +
                     " which is not alive"};
    }
    for (int k = 0; k <= t; ++k) {
      if (!s.R[t][k]) continue;
      steps.push_back({RematStep::Kind::kCompute, k});
      live[k] = 1;
      auto try_free = [&](int i) {
        if (!live[i] || Kept(s, t + 1, i)) return;
        for (int j : g.users[i])
          if (j > k && j <= t && s.R[t][j]) return;
        steps.push_back({RematStep::Kind::kFree, i});
        live[i] = 0;
      };
      for (int d : g.deps[k]) try_free(d);
      try_free(k);
    }
    for (int i = 0; i < n; ++i) {
      if (live[i] && !Kept(s, t + 1, i)) {
        steps.push_back({RematStep::Kind::kFree, i});
        live[i] = 0;
      }
    }
  }
  return steps;
}

RematSchedule ClosureFromKept(const RematGraph& g, std::vector<std::vector<uint8_t>> S) {
  int n = static_cast<int>(g.nodes.size());
  RematSchedule s;
  s.S = std::move(S);
  s.R.assign(n, {});
  for (int t = 0; t < n; ++t) {
    s.R[t].assign(t + 1, 0);
    for (int k = t; k >= 0; --k) {
      bool kept = k < t && s.S[t][k];
      if (k == t) {
        s.R[t][k] = 1;
        continue;
      }
      if (kept) continue;
      bool need = Kept(s, t + 1, k);
      for (int j : g.users[k]) {
        if (need) break;
        if (j <= t && s.R[t][j]) need = true;
      }
      s.R[t][k] = need ? 1 : 0;
    }
  }
  return s;
}

RematSchedule BaselineSchedule(const RematGraph& g) {
  int n = static_cast<int>(g.nodes.size());
  std::vector<std::vector<uint8_t>> S(n);
  for (int t = 0; t < n; ++t) {
    S[t].assign(t, 0);
    for (int i = 0; i < t; ++i) S[t][i] = !g.users[i].empty() && g.users[i].back() >= t ? 1 : 0;
  }
  return ClosureFromKept(g, std::move(S));
}

uint64_t BaselinePeak(const RematGraph& g) {
  auto seq = StagesToSequence(g, BaselineSchedule(g));
  auto st = ReplaySequence(g, *seq);
  return st->peak_bytes;
}

double BaselineCost(const RematGraph& g) {
  double c = 0;
  for (const RematNode& n : g.nodes) c += n.cost;
  return c;
}

namespace remat_internal {

std::string NodeLabel(const RematGraph& g, int i) {
  // Appended piecewise: GCC 12's -Wrestrict misfires on "#" + std::to_string(i) once inlined.
  std::string s = "#";
  s += std::to_string(i);
  s += " (";
  s += g.nodes[i].name;
  s += ")";
  return s;
}

// Replays a stage schedule into a solution; the error if it is not a valid schedule.
Result<RematSolution> FromStages(const RematGraph& g, RematSchedule stages, uint64_t budget,
                                 std::string method) {
  auto seq = StagesToSequence(g, stages);
  if (!seq) return seq.error();
  auto st = ReplaySequence(g, *seq);
  if (!st) return Error{method + " schedule fails the replay: " + st.error().message};
  RematSolution sol;
  sol.method = std::move(method);
  sol.steps = std::move(seq.value());
  sol.stages = std::move(stages);
  sol.peak_bytes = st->peak_bytes;
  sol.cost = st->cost;
  sol.fits = st->peak_bytes <= budget;
  sol.lower_bound = BaselineCost(g);
  return sol;
}

// Whether a is better than b: fits first, then the cost, then the peak.
bool Better(const RematSolution& a, const RematSolution& b) {
  if (a.fits != b.fits) return a.fits;
  if (!a.fits) return a.peak_bytes < b.peak_bytes;
  if (a.cost != b.cost) return a.cost < b.cost;
  return a.peak_bytes < b.peak_bytes;
}

// Drops what is kept without use (kept into stage t, read by nothing computed in it and not
// kept into t+1) and recomputes only what is needed, until nothing changes. The MILP may keep
// an output it never uses (keeping is free in its objective) and free it early by computing a
// reader of cost 0; replayed without that computation the output would stay alive for the
// whole stage. Dropping both never needs more memory and never costs more.
RematSchedule Tidy(const RematGraph& g, RematSchedule s) {
  int n = static_cast<int>(g.nodes.size());
  for (int round = 0; round < n + 1; ++round) {
    bool changed = false;
    for (int t = n - 1; t >= 1; --t) {
      for (int i = 0; i < t; ++i) {
        if (!s.S[t][i] || Kept(s, t + 1, i)) continue;
        bool used = false;
        for (int j : g.users[i]) used = used || (j <= t && s.R[t][j]);
        if (!used) {
          s.S[t][i] = 0;
          changed = true;
        }
      }
    }
    RematSchedule c = ClosureFromKept(g, s.S);
    changed = changed || c.R != s.R;
    s = std::move(c);
    if (!changed) break;
  }
  return s;
}

// The better of a schedule as given and tidied (both replayed).
Result<RematSolution> FromStagesTidied(const RematGraph& g, RematSchedule s, uint64_t budget,
                                       const std::string& method) {
  RematSchedule tidy = Tidy(g, s);
  auto as_given = FromStages(g, std::move(s), budget, method);
  auto tidied = FromStages(g, std::move(tidy), budget, method);
  if (!tidied) return as_given;
  if (!as_given || Better(*tidied, *as_given)) return tidied;
  return as_given;
}

}  // namespace remat_internal

uint64_t LeastFeasibleBudget(const RematGraph& g, int* at) {
  uint64_t most = g.static_bytes;
  for (int v = 0; v < static_cast<int>(g.nodes.size()); ++v) {
    uint64_t m = g.static_bytes + g.nodes[v].memory;
    for (int d : g.deps[v]) m += g.nodes[d].memory;
    if (m > most) {
      most = m;
      if (at) *at = v;
    }
  }
  return most;
}

std::optional<std::string> InfeasibilityProof(const RematGraph& g, uint64_t budget) {
  int at = 0;
  uint64_t least = LeastFeasibleBudget(g, &at);
  if (least <= budget) return std::nullopt;
  return std::string("no schedule fits (proven): ") + NodeLabel(g, at) +
         " needs its inputs and output alive together, " + std::to_string(least) +
         " bytes, over the budget of " + std::to_string(budget);
}

}  // namespace vramsim

#include "planners/planner_blocks.h"

#include <Cbc_C_Interface.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

namespace vramsim {

uint64_t BlockModel::Peak(const std::vector<bool>& c) const {
  int64_t peak = 0, saved_so_far = 0;
  for (size_t k = 0; k < level.size(); ++k) {
    if (k > 0 && c[k - 1]) saved_so_far += saved[k - 1];
    peak = std::max(peak, static_cast<int64_t>(level[k]) - saved_so_far);
  }
  return static_cast<uint64_t>(std::max<int64_t>(peak, 0));
}

uint64_t BlockModel::Flops(const std::vector<bool>& c) const {
  uint64_t f = 0;
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i]) f += forward_flops[i];
  return f;
}

namespace {

Status CheckModel(const BlockModel& m) {
  size_t n = m.size();
  if (m.forward_flops.size() != n || m.saved.size() != n || m.level.size() != n + 1)
    return Error{"block model: inconsistent sizes"};
  return {};
}

BlockChoice Finish(const BlockModel& m, std::vector<bool> c) {
  BlockChoice out;
  out.flops = m.Flops(c);
  out.model_peak = m.Peak(c);
  out.checkpointed = std::move(c);
  return out;
}

}  // namespace

Result<BlockChoice> SolveBlocksDp(const BlockModel& m, uint64_t budget) {
  if (auto s = CheckModel(m); !s) return Error{s.message()};
  size_t n = m.size();
  struct State {
    int64_t saved;
    uint64_t flops;
    int parent;  // index into the previous layer's arena entry
    bool took;
  };
  // arena[layer] holds the states after deciding blocks 0..layer-1.
  std::vector<std::vector<State>> arena(n + 1);
  arena[0].push_back({0, 0, -1, false});
  bool exact = true;
  auto need = [&](size_t k) {
    return static_cast<int64_t>(m.level[k]) - static_cast<int64_t>(budget);
  };
  for (size_t i = 0; i <= n; ++i) {
    // Level i holds blocks 0..i-1: drop states that cannot meet it.
    std::vector<State>& cur = arena[i];
    std::erase_if(cur, [&](const State& s) { return s.saved < need(i); });
    if (cur.empty()) {
      return Error{
          "no checkpoint plan fits the budget under the block model (even checkpointing "
          "every block leaves " +
          std::to_string(m.Peak(std::vector<bool>(n, true))) + " bytes)"};
    }
    if (i == n) break;
    std::vector<State> next;
    next.reserve(cur.size() * 2);
    for (size_t s = 0; s < cur.size(); ++s) {
      next.push_back({cur[s].saved, cur[s].flops, static_cast<int>(s), false});
      if (m.saved[i] > 0)
        next.push_back({cur[s].saved + m.saved[i], cur[s].flops + m.forward_flops[i],
                        static_cast<int>(s), true});
    }
    // Pareto: by saved descending, keep a state only if its FLOPs are below every state that
    // saved more (ties: fewer FLOPs, then the earlier decision path).
    std::stable_sort(next.begin(), next.end(), [](const State& a, const State& b) {
      if (a.saved != b.saved) return a.saved > b.saved;
      return a.flops < b.flops;
    });
    std::vector<State> front;
    for (const State& s : next) {
      if (!front.empty() && front.back().flops <= s.flops) continue;
      front.push_back(s);
    }
    if (front.size() > 200000) {
      exact = false;
      int64_t bucket = std::max<int64_t>(1, static_cast<int64_t>(budget / 100000));
      std::vector<State> coarse;
      for (const State& s : front) {
        if (!coarse.empty() && coarse.back().saved / bucket == s.saved / bucket) continue;
        coarse.push_back(s);
      }
      front = std::move(coarse);
    }
    arena[i + 1] = std::move(front);
  }
  // The cheapest final state.
  const std::vector<State>& last = arena[n];
  size_t best = 0;
  for (size_t s = 1; s < last.size(); ++s)
    if (last[s].flops < last[best].flops) best = s;
  std::vector<bool> c(n, false);
  int idx = static_cast<int>(best);
  for (size_t layer = n; layer > 0; --layer) {
    const State& s = arena[layer][idx];
    c[layer - 1] = s.took;
    idx = s.parent;
  }
  BlockChoice out = Finish(m, std::move(c));
  out.optimal = exact;
  return out;
}

Result<BlockChoice> SolveBlocksMilp(const BlockModel& m, uint64_t budget, double time_limit_s) {
  if (auto s = CheckModel(m); !s) return Error{s.message()};
  int n = static_cast<int>(m.size());
  // Scale: bytes in units of the budget / 1e6, FLOPs relative to the total.
  double bscale = 1e6 / static_cast<double>(std::max<uint64_t>(budget, 1));
  double total = 0;
  for (uint64_t f : m.forward_flops) total += static_cast<double>(f);
  double fscale = total > 0 ? 1000.0 / total : 1.0;
  std::vector<double> collb(n, 0), colub(n, 1), obj(n);
  for (int i = 0; i < n; ++i) {
    obj[i] = static_cast<double>(m.forward_flops[i]) * fscale;
    if (m.saved[i] <= 0) colub[i] = 0;
  }
  // Row k (1..n): sum_{i<k} saved_i x_i >= level_k - budget (level_0 must fit by itself).
  if (m.level[0] > budget)
    return Error{
        "no checkpoint plan fits: the step before any block "
        "already needs " +
        std::to_string(m.level[0]) + " bytes"};
  std::vector<double> rowlb, rowub;
  std::vector<std::vector<std::pair<int, double>>> cols(n);
  for (int k = 1; k <= n; ++k) {
    double need = (static_cast<double>(m.level[k]) - static_cast<double>(budget)) * bscale;
    int row = static_cast<int>(rowlb.size());
    rowlb.push_back(need - 1e-6);
    rowub.push_back(std::numeric_limits<double>::max());
    for (int i = 0; i < k; ++i)
      if (m.saved[i] > 0) cols[i].push_back({row, static_cast<double>(m.saved[i]) * bscale});
  }
  std::vector<CoinBigIndex> start(n + 1, 0);
  std::vector<int> index;
  std::vector<double> value;
  for (int i = 0; i < n; ++i) {
    for (auto [r, v] : cols[i]) {
      index.push_back(r);
      value.push_back(v);
    }
    start[i + 1] = static_cast<CoinBigIndex>(index.size());
  }
  Cbc_Model* cbc = Cbc_newModel();
  Cbc_loadProblem(cbc, n, static_cast<int>(rowlb.size()), start.data(), index.data(), value.data(),
                  collb.data(), colub.data(), obj.data(), rowlb.data(), rowub.data());
  for (int i = 0; i < n; ++i) Cbc_setInteger(cbc, i);
  Cbc_setLogLevel(cbc, 0);
  Cbc_setMaximumSeconds(cbc, time_limit_s);
  Cbc_setParameter(cbc, "threads", "1");
  Cbc_setParameter(cbc, "timeMode", "elapsed");
  Cbc_solve(cbc);
  const double* x = Cbc_bestSolution(cbc);
  bool optimal = Cbc_isProvenOptimal(cbc);
  double objv = Cbc_getObjValue(cbc), bound = Cbc_getBestPossibleObjValue(cbc);
  std::vector<bool> c(n, false);
  bool have = x != nullptr;
  if (have)
    for (int i = 0; i < n; ++i) c[i] = x[i] > 0.5;
  bool infeasible = Cbc_isProvenInfeasible(cbc);
  Cbc_deleteModel(cbc);
  if (!have) {
    return Error{infeasible ? "no checkpoint plan fits the budget under the block model"
                            : "milp: CBC found no plan within the time limit"};
  }
  BlockChoice out = Finish(m, std::move(c));
  if (out.model_peak > budget) return Error{"milp: CBC's plan does not fit under the model"};
  out.optimal = optimal;
  out.gap_pct = optimal || objv <= 0 ? 0.0 : std::max(0.0, 100.0 * (objv - bound) / objv);
  return out;
}

Result<BlockChoice> SolveBlocksDtr(const BlockModel& m, uint64_t budget) {
  if (auto s = CheckModel(m); !s) return Error{s.message()};
  size_t n = m.size();
  std::vector<bool> c(n, false);
  int64_t saved = 0;
  for (size_t k = 0; k <= n; ++k) {
    while (static_cast<int64_t>(m.level[k]) - saved > static_cast<int64_t>(budget)) {
      int victim = -1;
      double best = 0;
      for (size_t i = 0; i < k; ++i) {
        if (c[i] || m.saved[i] <= 0) continue;
        double staleness = static_cast<double>(k - i);
        double h = (static_cast<double>(m.forward_flops[i]) + 1) /
                   (static_cast<double>(m.saved[i]) * staleness);
        if (victim < 0 || h < best) {
          victim = static_cast<int>(i);
          best = h;
        }
      }
      if (victim < 0) return Error{"dtr: nothing left to evict"};
      c[victim] = true;
      saved += m.saved[victim];
    }
  }
  return Finish(m, std::move(c));
}

Result<BlockChoice> SolveBlocksBruteForce(const BlockModel& m, uint64_t budget) {
  if (auto s = CheckModel(m); !s) return Error{s.message()};
  size_t n = m.size();
  if (n > 20) return Error{"brute force takes at most 20 blocks"};
  std::optional<BlockChoice> best;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    std::vector<bool> c(n);
    for (size_t i = 0; i < n; ++i) c[i] = mask >> i & 1;
    if (m.Peak(c) > budget) continue;
    uint64_t f = m.Flops(c);
    if (!best || f < best->flops) best = Finish(m, c);
  }
  if (!best) return Error{"no checkpoint plan fits the budget under the block model"};
  best->optimal = true;
  return std::move(best.value());
}

}  // namespace vramsim

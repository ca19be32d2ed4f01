#include "planners/op_level.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/push_relabel_max_flow.hpp>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "policies/recompute.h"

namespace vramsim {

namespace {

using Traits = boost::adjacency_list_traits<boost::vecS, boost::vecS, boost::directedS>;
using FlowGraph = boost::adjacency_list<
    boost::vecS, boost::vecS, boost::directedS, boost::no_property,
    boost::property<
        boost::edge_capacity_t, int64_t,
        boost::property<boost::edge_residual_capacity_t, int64_t,
                        boost::property<boost::edge_reverse_t, Traits::edge_descriptor>>>>;

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

std::vector<bool> MatmulBans(const TrainingPlan& plan) {
  std::vector<bool> banned(plan.ops.size(), false);
  for (size_t i = 0; i < plan.ops.size(); ++i) banned[i] = IsMatmulType(plan.ops[i].type);
  return banned;
}

std::vector<std::string> MinCutEntries(const PlanProblem& p,
                                       const std::vector<OpLevelRegion>& regions,
                                       const std::vector<bool>& banned) {
  std::vector<std::string> entries;
  for (const OpLevelRegion& r : regions) {
    entries.push_back(
        OpLevelEntry(p.baseline.plan, r.scope, MinCutSaveOps(p.baseline.plan, r.ops, banned)));
  }
  return entries;
}

class SacMatmulStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "sac-matmul"; }
  std::string_view description() const override {
    return "op-level: every block and the runs between them checkpointed, saving matmul/conv/"
           "attention outputs (SAC's usual policy_fn)";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    OpSearch s(p, budget, std::string(name()));
    for (const auto& regions : OpLevelRegionSets(p)) {
      std::vector<std::string> entries;
      for (const OpLevelRegion& r : regions) entries.push_back(r.scope + kSaveMarker + "@matmul");
      if (auto r = s.Try(entries); !r) return r.error();
    }
    return s.Finish("");
  }
};

class MinCutStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "min-cut"; }
  std::string_view description() const override {
    return "op-level: each region saves the minimum cut between its forward and its backward "
           "(torch.compile's partitioner)";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    OpSearch s(p, budget, std::string(name()));
    for (const auto& regions : OpLevelRegionSets(p)) {
      auto entries = MinCutEntries(p, regions, MatmulBans(p.baseline.plan));
      if (auto r = s.Try(entries); !r) return r.error();
    }
    return s.Finish("");
  }
};

// The banned ops kept (must save) by the knapsack at memory fraction b: the most forward FLOPs
// whose output bytes sum to at most b of all of theirs (exact DP over bytes in 1/1000 units).
std::vector<bool> KnapsackBans(const TrainingPlan& plan, const std::vector<OpLevelRegion>& regions,
                               double b) {
  std::vector<bool> banned(plan.ops.size(), false);
  std::vector<int> items;
  std::vector<uint64_t> bytes;
  for (const OpLevelRegion& r : regions) {
    for (int i : r.ops) {
      if (!IsMatmulType(plan.ops[i].type)) continue;
      uint64_t sum = 0;
      for (PlanTensorId t : plan.ops[i].outputs)
        if (t >= 0 && !plan.tensors[t].metadata) sum += TensorBytes(plan.tensors[t]);
      items.push_back(i);
      bytes.push_back(sum);
    }
  }
  uint64_t total = 0;
  for (uint64_t x : bytes) total += x;
  if (items.empty() || total == 0) return banned;
  constexpr int kUnits = 1000;
  const int cap = static_cast<int>(std::floor(b * kUnits + 1e-9));
  std::vector<int> w(items.size());
  for (size_t k = 0; k < items.size(); ++k)
    w[k] =
        static_cast<int>((static_cast<unsigned __int128>(bytes[k]) * kUnits + total - 1) / total);
  // best[k][c]: most FLOPs from items < k in c units.
  std::vector<std::vector<double>> best(items.size() + 1, std::vector<double>(cap + 1, 0));
  for (size_t k = 0; k < items.size(); ++k) {
    double f = static_cast<double>(plan.ops[items[k]].forward_flops);
    for (int c = 0; c <= cap; ++c) {
      best[k + 1][c] = best[k][c];
      if (w[k] <= c) best[k + 1][c] = std::max(best[k + 1][c], best[k][c - w[k]] + f);
    }
  }
  for (size_t k = items.size(), c = cap; k-- > 0;) {
    if (best[k + 1][c] != best[k][c]) {
      banned[items[k]] = true;
      c -= w[k];
    }
  }
  return banned;
}

class KnapsackStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "knapsack"; }
  std::string_view description() const override {
    return "op-level: a 0-1 knapsack keeps the matmul outputs worth most FLOPs within a memory "
           "fraction b (activation_memory_budget), the rest by min cut; b bisected to fit";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    OpSearch s(p, budget, std::string(name()));
    const TrainingPlan& plan = p.baseline.plan;
    // The fraction b of the best plan (the last try that improved on the best), for the note.
    double best_b = 1;
    for (const auto& regions : OpLevelRegionSets(p)) {
      auto at = [&](double b) {
        bool improved = false;
        auto r = s.Try(MinCutEntries(p, regions, KnapsackBans(plan, regions, b)), &improved);
        if (improved) best_b = b;
        return r;
      };
      auto top = at(1);
      if (!top) return top.error();
      if (top->fits) continue;
      auto bottom = at(0);
      if (!bottom) return bottom.error();
      if (!bottom->fits) continue;
      double lo = 0, hi = 1;  // lo fits, hi does not
      for (int k = 0; k < 7; ++k) {
        double mid = (lo + hi) / 2;
        auto r = at(mid);
        if (!r) return r.error();
        (r->fits ? lo : hi) = mid;
      }
    }
    return s.Finish(fmt::format("memory budget b = {:.3f}", best_b));
  }
};

}  // namespace

OpSearch::OpSearch(const PlanProblem& p, uint64_t budget, std::string name)
    : p_(p), budget_(budget), name_(std::move(name)), start_(std::chrono::steady_clock::now()) {}

Result<PlanResult> OpSearch::Try(const std::vector<std::string>& entries, bool* improved) {
  if (improved) *improved = false;
  bool simulated = false;
  auto r = CachedCheckpoint(p_, entries, budget_, &simulated);
  if (simulated) ++sims_;
  if (!r) return r.error();
  r->strategy = name_;
  if (!have_ || BetterPlanResult(*r, best_)) {
    best_ = *r;
    have_ = true;
    if (improved) *improved = true;
  }
  return r;
}

Result<PlanResult> OpSearch::Finish(const std::string& note) {
  if (!have_) return Error{name_ + ": no plan"};
  best_.solve_ms = MsSince(start_);
  best_.simulations = sims_;
  best_.budget_bytes = budget_;
  best_.note = note;
  return best_;
}

bool PersistentTensor(const PlanTensor& t) {
  return t.metadata || t.role == TensorRole::kParameter || t.role == TensorRole::kBuffer ||
         t.role == TensorRole::kDataInput;
}

PlanTensorId StorageRoot(const TrainingPlan& plan, PlanTensorId t) {
  while (plan.tensors[t].view_of >= 0) t = plan.tensors[t].view_of;
  return t;
}

std::vector<OpLevelRegion> OpLevelRegions(const PlanProblem& p) {
  const TrainingPlan& plan = p.baseline.plan;
  const size_t n = plan.ops.size();
  std::vector<int> block(n, -1);
  for (size_t b = 0; b < p.block_ops.size(); ++b)
    for (int i : p.block_ops[b]) block[i] = static_cast<int>(b);
  std::vector<OpLevelRegion> out;
  size_t next_block = 0;
  auto add_run = [&](size_t a, size_t e) {  // ops [a, e) outside the blocks
    std::vector<std::string> parts;
    for (size_t i = a; i < e; ++i) {
      const std::string& s = plan.ops[i].scope;
      if (!s.empty() && std::find(parts.begin(), parts.end(), s) == parts.end()) parts.push_back(s);
    }
    if (parts.empty()) return;
    std::vector<int> ops;
    for (size_t i = 0; i < n; ++i) {
      bool in = std::any_of(parts.begin(), parts.end(),
                            [&](const std::string& s) { return InScope(plan.ops[i], s); });
      if (!in) continue;
      if (i < a || i >= e) return;  // a scope reaches past the run: not nameable
      ops.push_back(static_cast<int>(i));
    }
    std::string scope;
    for (const std::string& s : parts) scope += (scope.empty() ? "" : "+") + s;
    out.push_back({scope, ops});
  };
  size_t run = 0;
  for (size_t i = 0; i <= n; ++i) {
    if (i < n && block[i] < 0) continue;
    if (i > run) add_run(run, i);
    run = i + 1;
    if (i < n && static_cast<size_t>(block[i]) == next_block) {
      out.push_back({p.blocks.scopes[next_block], p.block_ops[next_block]});
      ++next_block;
    }
  }
  return out;
}

namespace {

// The ways to cut one run: the scopes it joins, and the cut positions allowed (c: between
// parts[c-1] and parts[c]).
struct RunCuts {
  std::vector<std::string> parts;
  std::vector<std::vector<int>> part_ops;
  std::vector<size_t> allowed;
};

RunCuts CutsOf(const TrainingPlan& plan, const OpLevelRegion& run) {
  RunCuts c;
  size_t from = 0;
  while (from <= run.scope.size()) {
    size_t plus = run.scope.find('+', from);
    if (plus == std::string::npos) plus = run.scope.size();
    c.parts.push_back(run.scope.substr(from, plus - from));
    from = plus + 1;
  }
  for (const std::string& part : c.parts) {
    std::vector<int> ops;
    for (int i : run.ops)
      if (InScope(plan.ops[i], part)) ops.push_back(i);
    c.part_ops.push_back(std::move(ops));
  }
  for (size_t k = 1; k < c.parts.size(); ++k) {
    int last_before = -1, first_after = std::numeric_limits<int>::max();
    for (size_t j = 0; j < c.parts.size(); ++j) {
      for (int i : c.part_ops[j]) {
        if (j < k) {
          last_before = std::max(last_before, i);
        } else {
          first_after = std::min(first_after, i);
        }
      }
    }
    if (last_before < first_after) c.allowed.push_back(k);
  }
  return c;
}

// The run cut at the positions in `cuts` (sorted), as regions.
std::vector<OpLevelRegion> CutRun(const RunCuts& c, const std::vector<size_t>& cuts) {
  std::vector<OpLevelRegion> out;
  size_t start = 0;
  for (size_t k = 0; k <= cuts.size(); ++k) {
    size_t end = k < cuts.size() ? cuts[k] : c.parts.size();
    OpLevelRegion r;
    for (size_t j = start; j < end; ++j) {
      r.scope += (r.scope.empty() ? "" : "+") + c.parts[j];
      r.ops.insert(r.ops.end(), c.part_ops[j].begin(), c.part_ops[j].end());
    }
    std::sort(r.ops.begin(), r.ops.end());
    out.push_back(std::move(r));
    start = end;
  }
  return out;
}

}  // namespace

std::vector<std::vector<OpLevelRegion>> OpLevelRegionSets(const PlanProblem& p) {
  const TrainingPlan& plan = p.baseline.plan;
  std::vector<OpLevelRegion> merged = OpLevelRegions(p);
  std::vector<std::vector<OpLevelRegion>> sets{merged};
  // Each region as one group of regions; runs are replaced by their best cut, one at a time.
  std::vector<std::vector<OpLevelRegion>> groups;
  for (const OpLevelRegion& r : merged) groups.push_back({r});
  auto peak_of = [&]() -> std::optional<uint64_t> {
    std::vector<std::string> entries;
    for (const auto& g : groups)
      for (const OpLevelRegion& r : g) entries.push_back(r.scope + kSaveMarker);
    auto e = CachedCheckpoint(p, entries, 0);
    if (!e) return std::nullopt;  // a cut the policy cannot apply: not offered
    return e->peak_bytes;
  };
  bool any = false;
  for (size_t k = 0; k < merged.size(); ++k) {
    const bool block = std::find(p.blocks.scopes.begin(), p.blocks.scopes.end(), merged[k].scope) !=
                       p.blocks.scopes.end();
    if (block) continue;
    RunCuts c = CutsOf(plan, merged[k]);
    if (c.allowed.empty()) continue;
    std::vector<std::vector<size_t>> options;
    if (c.allowed.size() <= 5) {
      for (uint32_t mask = 1; mask < (1u << c.allowed.size()); ++mask) {
        std::vector<size_t> cuts;
        for (size_t b = 0; b < c.allowed.size(); ++b)
          if (mask & (1u << b)) cuts.push_back(c.allowed[b]);
        options.push_back(std::move(cuts));
      }
    } else {
      for (size_t cut : c.allowed) options.push_back({cut});
    }
    auto best = peak_of();
    if (!best) continue;
    std::vector<OpLevelRegion> best_group = groups[k];
    for (const auto& cuts : options) {
      groups[k] = CutRun(c, cuts);
      auto peak = peak_of();
      if (peak && (*peak < *best || (*peak == *best && groups[k].size() < best_group.size()))) {
        best = peak;
        best_group = groups[k];
      }
    }
    groups[k] = best_group;
    any = any || best_group.size() > 1;
  }
  if (any) {
    std::vector<OpLevelRegion> split;
    for (const auto& g : groups) split.insert(split.end(), g.begin(), g.end());
    sets.push_back(std::move(split));
  }
  return sets;
}

std::vector<int> MinCutSaveOps(const TrainingPlan& plan, const std::vector<int>& region_ops,
                               const std::vector<bool>& banned) {
  // Vertices: 0 source, 1 sink, per op one, per made tensor an in and an out.
  std::map<PlanTensorId, int> made;  // tensor -> its "in" vertex (out = in + 1)
  std::map<PlanTensorId, int> producer;
  std::map<int, int> op_vertex;
  int v = 2;
  for (int i : region_ops) {
    op_vertex[i] = v++;
    const PlanOp& op = plan.ops[i];
    for (const std::vector<PlanTensorId>* list : {&op.copies, &op.extras, &op.outputs}) {
      for (PlanTensorId t : *list) {
        if (t < 0 || PersistentTensor(plan.tensors[t]) || made.count(t)) continue;
        made[t] = v;
        producer[t] = i;
        v += 2;
      }
    }
  }
  // "Infinite" edges carry more than every finite cut together, and no sum push-relabel forms
  // (excesses: up to one infinite edge per vertex pair) may overflow int64: 2^62 each would.
  // Byte capacities are shifted right in the (theoretical) case where that bound would not fit.
  uint64_t edges_bound = 2 * made.size() + 2;
  for (int i : region_ops) edges_bound += plan.ops[i].inputs.size() + plan.ops[i].saved.size() + 1;
  unsigned __int128 total = 1;
  for (const auto& [t, in] : made) total += TensorBytes(plan.tensors[t]);
  int shift = 0;
  while (((total >> shift) + 1) * (edges_bound + 1) > (static_cast<unsigned __int128>(1) << 62)) {
    ++shift;
  }
  const int64_t inf = static_cast<int64_t>(total >> shift) + 1;
  FlowGraph g(v);
  auto cap = boost::get(boost::edge_capacity, g);
  auto rev = boost::get(boost::edge_reverse, g);
  auto res = boost::get(boost::edge_residual_capacity, g);
  auto edge = [&](int a, int b, int64_t c) {
    auto e = boost::add_edge(a, b, g).first;
    auto r = boost::add_edge(b, a, g).first;
    cap[e] = c;
    cap[r] = 0;
    rev[e] = r;
    rev[r] = e;
  };
  for (const auto& [t, in] : made) {
    const PlanTensor& x = plan.tensors[t];
    int64_t c = static_cast<int64_t>(TensorBytes(x) >> shift);
    if (x.view_of >= 0)
      c = made.count(StorageRoot(plan, t)) ? inf : 0;  // saving a view holds its base
    edge(in, in + 1, c);
    edge(op_vertex[producer[t]], in, inf);
  }
  for (int i : region_ops) {
    const PlanOp& op = plan.ops[i];
    // Region inputs and parameters stay for the backward anyway: an op reading them may run
    // again. Only banned ops are tied to the source (run in the forward, never recomputed).
    for (PlanTensorId t : op.inputs) {
      if (t < 0) continue;
      if (auto it = made.find(t); it != made.end()) edge(it->second + 1, op_vertex[i], inf);
    }
    if (banned[i]) edge(0, op_vertex[i], inf);
    for (PlanTensorId t : op.saved)
      if (auto it = made.find(t); it != made.end()) edge(it->second + 1, 1, inf);
  }
  int64_t flow = boost::push_relabel_max_flow(g, 0, 1);
  std::vector<int> save;
  if (flow >= inf) return save;  // no finite cut: save nothing
  // The source side: reachable from the source in the residual graph.
  std::vector<bool> side(v, false);
  std::vector<int> stack = {0};
  side[0] = true;
  while (!stack.empty()) {
    int a = stack.back();
    stack.pop_back();
    for (auto [e, end] = boost::out_edges(a, g); e != end; ++e) {
      int b = static_cast<int>(boost::target(*e, g));
      if (!side[b] && res[*e] > 0) {
        side[b] = true;
        stack.push_back(b);
      }
    }
  }
  std::set<int> ops;
  for (const auto& [t, in] : made)
    if (side[in] && !side[in + 1]) ops.insert(producer[t]);
  save.assign(ops.begin(), ops.end());
  return save;
}

std::string OpLevelEntry(const TrainingPlan& plan, const std::string& scope,
                         const std::vector<int>& save_ops) {
  std::string s = scope + kSaveMarker;
  for (size_t k = 0; k < save_ops.size(); ++k) s += (k ? "|" : "") + plan.ops[save_ops[k]].name;
  return s;
}

void AddOpLevelStrategies(std::vector<std::unique_ptr<CheckpointStrategy>>* strategies,
                          const StrategyOptions& options) {
  strategies->push_back(std::make_unique<SacMatmulStrategy>());
  strategies->push_back(std::make_unique<MinCutStrategy>());
  strategies->push_back(std::make_unique<KnapsackStrategy>());
  strategies->push_back(MakeRematOpLevelStrategy(options.milp_time_limit_s));
}

}  // namespace vramsim

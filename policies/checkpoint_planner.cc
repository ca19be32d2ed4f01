#include "policies/checkpoint_planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "policies/recompute.h"
#include "simulator/peak.h"

namespace vramsim {

namespace {

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// "12" -> ("", 12); "encoder_layer_3" -> ("encoder_layer_", 3); otherwise false.
bool Numbered(const std::string& name, std::string* prefix, long* number) {
  size_t d = name.size();
  while (d > 0 && std::isdigit(static_cast<unsigned char>(name[d - 1]))) --d;
  if (d == name.size() || name.size() - d > 9) return false;
  *prefix = name.substr(0, d);
  *number = std::stol(name.substr(d));
  return true;
}

bool Under(const std::string& scope, const std::string& path) {
  return scope == path || (scope.size() > path.size() && scope.compare(0, path.size(), path) == 0 &&
                           scope[path.size()] == '.');
}

bool BetterResult(const PlanResult& a, const PlanResult& b) {
  if (a.fits != b.fits) return a.fits;
  if (a.fits && a.recompute_flops != b.recompute_flops)
    return a.recompute_flops < b.recompute_flops;
  return a.peak_bytes < b.peak_bytes;
}

}  // namespace

std::vector<std::string> FindBlockScopes(const TrainingPlan& plan) {
  // Module paths and their children, from the ops' scopes.
  std::map<std::string, std::set<std::string>> children;  // path -> child names
  std::set<std::string> composite;                        // paths with sub-modules
  std::map<std::string, size_t> first_op;
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const std::string& scope = plan.ops[i].scope;
    if (scope.empty()) continue;
    std::string path;
    size_t pos = 0;
    while (true) {
      size_t dot = scope.find('.', pos);
      std::string part = scope.substr(pos, dot == std::string::npos ? dot : dot - pos);
      children[path].insert(part);
      if (!path.empty()) composite.insert(path);
      path = path.empty() ? part : path + "." + part;
      first_op.emplace(path, i);
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
  }
  auto depth = [](const std::string& p) {
    return p.empty() ? 0 : 1 + std::count(p.begin(), p.end(), '.');
  };
  std::vector<std::string> paths;
  for (const auto& [p, _] : children) paths.push_back(p);
  std::stable_sort(paths.begin(), paths.end(),
                   [&](const std::string& a, const std::string& b) { return depth(a) < depth(b); });
  std::vector<std::string> blocks;
  for (const std::string& p : paths) {
    const auto& kids = children[p];
    if (kids.size() < 2) continue;
    bool inside = std::any_of(blocks.begin(), blocks.end(),
                              [&](const std::string& b) { return Under(p, b); });
    if (inside) continue;
    std::string common;
    bool ok = true, first = true;
    std::set<long> numbers;
    for (const std::string& k : kids) {
      std::string prefix;
      long number = 0;
      std::string full = p.empty() ? k : p + "." + k;
      if (!Numbered(k, &prefix, &number) || !composite.count(full) ||
          (!first && prefix != common) || !numbers.insert(number).second) {
        ok = false;
        break;
      }
      common = prefix;
      first = false;
    }
    if (!ok) continue;
    for (const std::string& k : kids) blocks.push_back(p.empty() ? k : p + "." + k);
  }
  std::stable_sort(blocks.begin(), blocks.end(), [&](const std::string& a, const std::string& b) {
    return first_op[a] < first_op[b];
  });
  return blocks;
}

std::vector<uint64_t> StepHighs(const Trace& trace, uint64_t round_bytes) {
  std::vector<uint64_t> highs(trace.steps.size(), 0);
  uint64_t live = 0;
  size_t e = 0;
  for (size_t s = 0; s < trace.steps.size(); ++s) {
    uint64_t high = live;
    for (; e < trace.events.size() && trace.events[e].step == static_cast<StepId>(s); ++e) {
      uint64_t b = RoundUp(trace.buffers[trace.events[e].buffer].bytes, round_bytes);
      if (trace.events[e].kind == Event::Kind::kAlloc) {
        live += b;
        high = std::max(high, live);
      } else {
        live -= b;
      }
    }
    highs[s] = high;
  }
  return highs;
}

namespace {

// Live bytes when every block's forward has run and no backward has: the loss.
uint64_t HeldAll(const Trace& trace, const std::vector<uint64_t>& highs) {
  uint64_t high = 0;
  bool seen = false;
  for (size_t s = 0; s < trace.steps.size(); ++s) {
    Phase ph = trace.steps[s].phase;
    if (ph == Phase::kLoss) {
      high = std::max(high, highs[s]);
      seen = true;
    } else if (ph == Phase::kBackward) {
      if (!seen && s > 0) high = highs[s - 1];
      break;
    }
  }
  return high;
}

}  // namespace

Result<PlanProblem> MakePlanProblem(const Graph& graph, EstimateOptions options) {
  auto start = std::chrono::steady_clock::now();
  PlanProblem p;
  p.graph = &graph;
  options.checkpoint.clear();
  p.options = options;
  auto base = RunEstimate(graph, options);
  if (!base) return base.error();
  p.baseline = std::move(base.value());
  std::vector<std::string> scopes = FindBlockScopes(p.baseline.plan);
  size_t n = scopes.size();
  BlockModel& m = p.blocks;
  m.scopes = scopes;
  m.level.assign(n + 1, 0);
  uint64_t round = p.baseline.plan.target.round_bytes;
  std::vector<uint64_t> highs = StepHighs(p.baseline.trace, round);
  auto block_of = [&](const std::string& scope) {
    for (size_t b = 0; b < n; ++b)
      if (Under(scope, scopes[b])) return static_cast<int>(b);
    return -1;
  };
  int fwd_last = -1, bwd_last = static_cast<int>(n);
  Phase prev = Phase::kSetup;
  for (size_t s = 0; s < p.baseline.trace.steps.size(); ++s) {
    const Step& st = p.baseline.trace.steps[s];
    if (st.phase == Phase::kForward && prev != Phase::kForward) {
      fwd_last = -1;
      bwd_last = static_cast<int>(n);
    }
    prev = st.phase;
    size_t k = 0;
    int b = st.phase == Phase::kForward || st.phase == Phase::kBackward ? block_of(st.scope) : -1;
    switch (st.phase) {
      case Phase::kForward:
        if (b >= 0) fwd_last = std::max(fwd_last, b);
        k = b >= 0 ? b : fwd_last + 1;
        break;
      case Phase::kLoss:
        k = n;
        break;
      case Phase::kBackward:
        if (b >= 0) bwd_last = std::min(bwd_last, b);
        k = b >= 0 ? b : bwd_last;
        break;
      default:
        k = 0;
    }
    m.level[k] = std::max(m.level[k], highs[s]);
  }
  uint64_t held = HeldAll(p.baseline.trace, highs);
  for (size_t b = 0; b < n; ++b) {
    EstimateOptions o = options;
    o.checkpoint = {scopes[b]};
    auto e = RunEstimate(graph, o);
    if (!e) return Error{"simulating --checkpoint " + scopes[b] + ": " + e.error().message};
    uint64_t h = HeldAll(e->trace, StepHighs(e->trace, round));
    m.saved.push_back(static_cast<int64_t>(held) - static_cast<int64_t>(h));
    m.forward_flops.push_back(e->recompute_flops);
  }
  p.setup_ms = MsSince(start);
  return p;
}

Result<PlanResult> EvaluateCheckpoint(const PlanProblem& problem,
                                      const std::vector<std::string>& scopes, uint64_t budget) {
  EstimateOptions o = problem.options;
  o.checkpoint = scopes;
  auto e = RunEstimate(*problem.graph, o);
  if (!e) return e.error();
  PlanResult r;
  r.checkpoint = scopes;
  r.budget_bytes = budget;
  r.peak_bytes = e->peak.peak_bytes;
  r.recompute_flops = e->recompute_flops;
  r.step_flops = e->step_flops;
  r.overhead_pct = e->overhead_pct();
  r.fits = r.peak_bytes <= budget;
  r.simulations = 1;
  return r;
}

namespace {

std::vector<std::string> ScopesOf(const BlockModel& m, const std::vector<bool>& c) {
  std::vector<std::string> s;
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i]) s.push_back(m.scopes[i]);
  return s;
}

// Evaluates candidate scope lists through the simulator; keeps the best.
class Search {
 public:
  Search(const PlanProblem& p, uint64_t budget, std::string name)
      : p_(p), budget_(budget), start_(std::chrono::steady_clock::now()) {
    best_.strategy = std::move(name);
  }
  Result<PlanResult> Try(const std::vector<std::string>& scopes) {
    auto it = seen_.find(scopes);
    if (it != seen_.end()) return it->second;
    auto r = EvaluateCheckpoint(p_, scopes, budget_);
    ++sims_;
    if (!r) return r.error();
    seen_.emplace(scopes, *r);
    if (!have_ || BetterResult(*r, best_)) {
      std::string name = best_.strategy;
      best_ = *r;
      best_.strategy = name;
      have_ = true;
    }
    return r;
  }
  Result<PlanResult> Finish(std::string note = {}) {
    if (!have_) return Error{best_.strategy + ": no plan" + (note.empty() ? "" : ": " + note)};
    best_.solve_ms = MsSince(start_);
    best_.simulations = sims_;
    best_.budget_bytes = budget_;
    if (!note.empty()) best_.note = note;
    return best_;
  }
  PlanResult& best() { return best_; }

 private:
  const PlanProblem& p_;
  uint64_t budget_;
  std::chrono::steady_clock::time_point start_;
  std::map<std::vector<std::string>, PlanResult> seen_;
  PlanResult best_;
  bool have_ = false;
  int sims_ = 0;
};

class NoneStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "none"; }
  std::string_view description() const override { return "no checkpointing"; }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    Search s(p, budget, std::string(name()));
    if (auto r = s.Try({}); !r) return r.error();
    return s.Finish();
  }
};

class EveryKStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "every-k"; }
  std::string_view description() const override {
    return "every k-th block (k = 1..n), the cheapest k that fits";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    Search s(p, budget, std::string(name()));
    size_t n = p.blocks.size();
    if (n == 0) return NoneStrategy().Solve(p, budget);
    for (size_t k = n; k >= 1; --k) {
      std::vector<std::string> scopes;
      for (size_t i = k - 1; i < n; i += k) scopes.push_back(p.blocks.scopes[i]);
      if (auto r = s.Try(scopes); !r) return r.error();
    }
    return s.Finish();
  }
};

std::string Join(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : "+") + p;
  return s;
}

class ChenSqrtStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "chen-sqrt"; }
  std::string_view description() const override {
    return "Chen et al. 2016: ceil(sqrt(n)) blocks per segment, every segment checkpointed";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    Search s(p, budget, std::string(name()));
    size_t n = p.blocks.size();
    size_t seg = static_cast<size_t>(std::ceil(std::sqrt(static_cast<double>(n))));
    std::vector<std::string> scopes;
    for (size_t i = 0; i < n; i += seg) {
      std::vector<std::string> parts(p.blocks.scopes.begin() + i,
                                     p.blocks.scopes.begin() + std::min(n, i + seg));
      scopes.push_back(Join(parts));
    }
    if (auto r = s.Try(scopes); !r) return r.error();
    return s.Finish();
  }
};

class ChenGreedyStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "chen-greedy"; }
  std::string_view description() const override {
    return "Chen et al. 2016 budgeted greedy: a block is kept when the activations gathered "
           "since the last kept one exceed b; the blocks between kept ones form one "
           "checkpointed segment; b searched";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    Search s(p, budget, std::string(name()));
    const BlockModel& m = p.blocks;
    size_t n = m.size();
    if (n == 0) return NoneStrategy().Solve(p, budget);
    int64_t total = 0;
    for (int64_t d : m.saved) total += std::max<int64_t>(d, 0);
    double avg = static_cast<double>(std::max<int64_t>(total, 1)) / static_cast<double>(n);
    for (size_t mult = 1; mult <= n; ++mult) {
      double b = avg * static_cast<double>(mult) - 1;
      std::vector<std::string> scopes, seg;
      double x = 0;
      for (size_t i = 0; i < n; ++i) {
        x += static_cast<double>(std::max<int64_t>(m.saved[i], 0));
        if (x > b) {
          if (!seg.empty()) scopes.push_back(Join(seg));
          seg.clear();
          x = 0;
        } else {
          seg.push_back(m.scopes[i]);
        }
      }
      if (!seg.empty()) scopes.push_back(Join(seg));
      if (auto r = s.Try(scopes); !r) return r.error();
    }
    return s.Finish();
  }
};

// Solves the block model at a budget, replays it, and when the simulator's peak is over,
// solves again with the budget lowered by the excess (at most 6 rounds).
using ModelSolver = std::function<Result<BlockChoice>(const BlockModel&, uint64_t)>;

Result<PlanResult> SolveWithRepair(const PlanProblem& p, uint64_t budget, std::string name,
                                   const ModelSolver& solve) {
  Search s(p, budget, name);
  uint64_t target = budget;
  std::string note;
  bool optimal = false;
  double gap = 0;
  for (int round = 0; round < 6; ++round) {
    auto c = solve(p.blocks, target);
    if (!c) {
      note = c.error().message;
      break;
    }
    auto r = s.Try(ScopesOf(p.blocks, c->checkpointed));
    if (!r) return r.error();
    if (r->fits) {
      optimal = round == 0 && c->optimal;
      gap = c->gap_pct;
      note = round == 0 ? "" : "model budget lowered to " + FormatBytes(target) + " to fit";
      break;
    }
    uint64_t over = r->peak_bytes - budget;
    if (target <= over) break;
    target -= over;
    note = "the simulated peak stays over the budget";
  }
  if (p.blocks.size() == 0) {
    if (auto r = s.Try({}); !r) return r.error();
    note = "no repeated blocks found";
  }
  auto out = s.Finish(note);
  if (out && out->fits) {
    out->optimal = optimal;
    if (gap > 0) out->note += (out->note.empty() ? "" : "; ") + fmt::format("gap {:.2f}%", gap);
  }
  if (!out) {
    // Nothing the model allowed: report checkpointing every block.
    std::vector<bool> all(p.blocks.size(), true);
    if (auto r = s.Try(ScopesOf(p.blocks, all)); !r) return r.error();
    return s.Finish(note);
  }
  return out;
}

class DpStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "dp"; }
  std::string_view description() const override {
    return "optimal under the block-chain model by dynamic programming (Pareto front)";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    return SolveWithRepair(p, budget, std::string(name()), SolveBlocksDp);
  }
};

class MilpStrategy : public CheckpointStrategy {
 public:
  explicit MilpStrategy(double limit) : limit_(limit) {}
  std::string_view name() const override { return "milp"; }
  std::string_view description() const override {
    return "optimal under the block-chain model as a 0/1 MILP (CBC, time limit)";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    double limit = limit_;
    return SolveWithRepair(
        p, budget, std::string(name()),
        [limit](const BlockModel& m, uint64_t b) { return SolveBlocksMilp(m, b, limit); });
  }

 private:
  double limit_;
};

class DtrStrategy : public CheckpointStrategy {
 public:
  std::string_view name() const override { return "dtr"; }
  std::string_view description() const override {
    return "DTR-style dynamic eviction: the smallest cost / (memory * staleness) goes first";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    return SolveWithRepair(p, budget, std::string(name()), SolveBlocksDtr);
  }
};

}  // namespace

std::vector<std::unique_ptr<CheckpointStrategy>> AllStrategies(const StrategyOptions& o) {
  std::vector<std::unique_ptr<CheckpointStrategy>> v;
  v.push_back(std::make_unique<NoneStrategy>());
  v.push_back(std::make_unique<EveryKStrategy>());
  v.push_back(std::make_unique<ChenSqrtStrategy>());
  v.push_back(std::make_unique<ChenGreedyStrategy>());
  v.push_back(std::make_unique<DpStrategy>());
  v.push_back(std::make_unique<MilpStrategy>(o.milp_time_limit_s));
  v.push_back(std::make_unique<DtrStrategy>());
  return v;
}

std::unique_ptr<CheckpointStrategy> MakeStrategy(std::string_view name, const StrategyOptions& o) {
  for (auto& s : AllStrategies(o))
    if (s->name() == name) return std::move(s);
  return nullptr;
}

std::string StrategyNames() {
  std::string s;
  for (const auto& st : AllStrategies()) s += (s.empty() ? "" : ", ") + std::string(st->name());
  return s;
}

Result<std::vector<PlanResult>> RunStrategies(const PlanProblem& problem, uint64_t budget,
                                              const std::string& only, size_t* best,
                                              const StrategyOptions& o) {
  std::vector<std::unique_ptr<CheckpointStrategy>> strategies;
  if (only.empty()) {
    strategies = AllStrategies(o);
  } else {
    auto s = MakeStrategy(only, o);
    if (!s) return Error{"unknown --strategy '" + only + "' (" + StrategyNames() + ")"};
    strategies.push_back(std::move(s));
  }
  std::vector<PlanResult> out;
  for (const auto& s : strategies) {
    auto r = s->Solve(problem, budget);
    if (!r) return Error{std::string(s->name()) + ": " + r.error().message};
    out.push_back(std::move(r.value()));
  }
  if (best) {
    *best = 0;
    for (size_t i = 1; i < out.size(); ++i)
      if (BetterResult(out[i], out[*best])) *best = i;
  }
  return out;
}

}  // namespace vramsim

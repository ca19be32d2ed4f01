#include "planners/checkpoint_planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "planners/op_level.h"
#include "policies/recompute.h"
#include "simulator/peak.h"
#include "simulator/simulate.h"

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

struct PlanCache {
  std::mutex mu;
  std::map<std::vector<std::string>, PlanResult> plans;
  std::map<std::vector<std::string>, PlanResult> setup_plans;  // what MakePlanProblem simulated
  std::map<std::pair<size_t, size_t>, int64_t> segment_saved;  // blocks a..b as one region
};

namespace {

PlanResult ResultOf(const Estimate& e, const std::vector<std::string>& scopes) {
  PlanResult r;
  r.checkpoint = scopes;
  r.peak_bytes = e.peak.peak_bytes;
  r.recompute_flops = e.recompute_flops;
  r.step_flops = e.step_flops;
  r.overhead_pct = e.overhead_pct();
  r.simulations = 1;
  return r;
}

Result<Estimate> Simulated(const PlanProblem& p, const std::vector<std::string>& scopes) {
  EstimateOptions o = p.options;
  o.checkpoint = scopes;
  return RunEstimate(*p.graph, o);
}

// Each block measured by simulating it checkpointed on its own.
Status MeasureBlocks(PlanProblem& p, uint64_t held) {
  BlockModel& m = p.blocks;
  m.saved.clear();
  m.forward_flops.clear();
  uint64_t round = p.baseline.plan.target.round_bytes;
  for (const std::string& scope : m.scopes) {
    auto e = Simulated(p, {scope});
    ++p.setup_simulations;
    if (!e) {
      return Error{fmt::format("simulating --checkpoint {}: {}", scope, e.error().message)};
    }
    uint64_t h = HeldAll(e->trace, StepHighs(e->trace, round));
    m.saved.push_back(static_cast<int64_t>(held) - static_cast<int64_t>(h));
    m.forward_flops.push_back(e->recompute_flops);
    p.cache->setup_plans.emplace(std::vector<std::string>{scope}, ResultOf(*e, {scope}));
    if (!e->plan.regions.empty()) p.rng_state_bytes = e->plan.regions.front().rng_state_bytes;
  }
  // For the savings of segments (PredictCheckpoint).
  auto base = ForwardHeldBytes(p.baseline.plan, {}, p.rng_state_bytes, round);
  if (!base) return Error{"replaying the forward: " + base.error().message};
  p.forward_held = *base;
  p.block_model = fmt::format("measured: {} blocks simulated one at a time", m.size());
  return {};
}

// Each block's savings from forward replays of the baseline plan, checked against simulated
// steps with every block and with every other block checkpointed. Returns false (and a reason)
// when a check disagrees or fails.
bool DeriveBlocks(PlanProblem& p, uint64_t held, std::string* why) {
  BlockModel& m = p.blocks;
  size_t n = m.size();
  const TrainingPlan& plan = p.baseline.plan;
  uint64_t round = plan.target.round_bytes;
  std::vector<std::vector<std::string>> checks;
  checks.push_back(m.scopes);  // every block
  if (n >= 3) {
    std::vector<std::string> other;
    for (size_t i = 1; i < n; i += 2) other.push_back(m.scopes[i]);
    checks.push_back(other);  // every other block (every-k's k = 2)
  }
  std::vector<Estimate> sims;
  for (const auto& scopes : checks) {
    auto e = Simulated(p, scopes);
    ++p.setup_simulations;
    if (!e) {
      *why = fmt::format("simulating the block checks: {}", e.error().message);
      return false;
    }
    p.cache->setup_plans.emplace(scopes, ResultOf(*e, scopes));
    sims.push_back(std::move(e.value()));
  }
  p.rng_state_bytes =
      sims[0].plan.regions.empty() ? 0 : sims[0].plan.regions.front().rng_state_bytes;
  // The forward replays run Simulate's own runtime with tracing off.
  auto replay = [&](const std::vector<std::vector<int>>& regions) -> std::optional<int64_t> {
    auto h = ForwardHeldBytes(plan, regions, p.rng_state_bytes, round);
    if (!h) {
      *why = "replaying the forward: " + h.error().message;
      return std::nullopt;
    }
    return static_cast<int64_t>(*h);
  };
  auto base = replay({});
  if (!base) return false;
  p.forward_held = static_cast<uint64_t>(*base);
  m.saved.assign(n, 0);
  m.forward_flops.assign(n, 0);
  for (size_t b = 0; b < n; ++b) {
    auto h = replay({p.block_ops[b]});
    if (!h) return false;
    m.saved[b] = *base - *h;
    for (int i : p.block_ops[b]) m.forward_flops[b] += plan.ops[i].forward_flops;
  }
  for (size_t c = 0; c < checks.size(); ++c) {
    std::vector<std::vector<int>> regions;
    uint64_t flops = 0;
    for (const std::string& scope : checks[c]) {
      size_t b = static_cast<size_t>(std::find(m.scopes.begin(), m.scopes.end(), scope) -
                                     m.scopes.begin());
      regions.push_back(p.block_ops[b]);
      flops += m.forward_flops[b];
    }
    const Estimate& e = sims[c];
    auto h = replay(regions);
    if (!h) return false;
    int64_t predicted = *base - *h;
    int64_t simulated = static_cast<int64_t>(held) -
                        static_cast<int64_t>(HeldAll(e.trace, StepHighs(e.trace, round)));
    if (predicted != simulated || flops != e.recompute_flops) {
      *why = fmt::format(
          "the derived block model disagrees with the simulator ({} regions: {} bytes freed at "
          "the loss, simulated {}; {} recompute FLOPs, simulated {})",
          regions.size(), predicted, simulated, flops, e.recompute_flops);
      return false;
    }
  }
  p.block_model =
      fmt::format("derived from the baseline step, checked by {} simulated steps", checks.size());
  p.model_checked = true;
  return true;
}

}  // namespace

Result<PlanProblem> MakePlanProblem(const Graph& graph, EstimateOptions options,
                                    BlockMeasure measure) {
  auto start = std::chrono::steady_clock::now();
  PlanProblem p;
  p.graph = &graph;
  options.checkpoint.clear();
  p.options = options;
  p.cache = std::make_shared<PlanCache>();
  auto base = RunEstimate(graph, options);
  if (!base) return base.error();
  p.baseline = std::move(base.value());
  p.model_state_bytes =
      ModelStatesAtOptimizerStart(p.baseline.trace, p.baseline.plan.target.round_bytes);
  p.floor = RecomputeFloor(p.baseline.trace, p.baseline.plan.target.round_bytes);
  p.setup_simulations = 1;
  p.cache->setup_plans.emplace(std::vector<std::string>{}, ResultOf(p.baseline, {}));
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
  // The ops of each block, as RecomputePolicy collects them.
  const std::vector<PlanOp>& ops = p.baseline.plan.ops;
  p.block_ops.assign(n, {});
  for (size_t b = 0; b < n; ++b) {
    for (size_t i = 0; i < ops.size(); ++i)
      if (InScope(ops[i], scopes[b])) p.block_ops[b].push_back(static_cast<int>(i));
  }
  uint64_t held = HeldAll(p.baseline.trace, highs);
  bool derived = false;
  std::string why;
  if (measure == BlockMeasure::kDerive && n > 0) {
    derived = DeriveBlocks(p, held, &why);
  }
  if (n == 0) {
    p.block_model = "no repeated blocks";
  } else if (!derived) {
    p.model_checked = false;
    if (auto s = MeasureBlocks(p, held); !s) return Error{s.message()};
    if (!why.empty()) p.block_model += fmt::format(" ({})", why);
  }
  p.cache->plans = p.cache->setup_plans;
  p.setup_ms = MsSince(start);
  return p;
}

void ForgetStrategyPlans(const PlanProblem& problem) {
  if (!problem.cache) return;
  std::lock_guard<std::mutex> lock(problem.cache->mu);
  problem.cache->plans = problem.cache->setup_plans;
  problem.cache->segment_saved.clear();
}

namespace {

// Bytes block segment a..b frees at the loss when checkpointed as one region.
int64_t SegmentSaved(const PlanProblem& p, size_t a, size_t b) {
  if (a == b) return p.blocks.saved[a];
  if (p.cache) {
    std::lock_guard<std::mutex> lock(p.cache->mu);
    auto it = p.cache->segment_saved.find({a, b});
    if (it != p.cache->segment_saved.end()) return it->second;
  }
  std::vector<int> ops;
  for (size_t i = a; i <= b; ++i)
    ops.insert(ops.end(), p.block_ops[i].begin(), p.block_ops[i].end());
  auto h = ForwardHeldBytes(p.baseline.plan, {ops}, p.rng_state_bytes,
                            p.baseline.plan.target.round_bytes);
  // The baseline's forward replayed without error, and a region only drops allocations (its
  // RNG state aside), so this cannot fail; were it to, predict no savings (the strategies
  // replay every plan they choose through the simulator anyway).
  int64_t saved = h ? static_cast<int64_t>(p.forward_held) - static_cast<int64_t>(*h) : 0;
  if (p.cache) {
    std::lock_guard<std::mutex> lock(p.cache->mu);
    p.cache->segment_saved[{a, b}] = saved;
  }
  return saved;
}

}  // namespace

std::optional<CheckpointPrediction> PredictCheckpoint(const PlanProblem& p,
                                                      const std::vector<std::string>& scopes) {
  const BlockModel& m = p.blocks;
  size_t n = m.size();
  if (m.saved.size() != n || m.forward_flops.size() != n || m.level.size() != n + 1 ||
      p.block_ops.size() != n)
    return std::nullopt;
  auto index = [&](std::string_view scope) {
    for (size_t i = 0; i < n; ++i)
      if (m.scopes[i] == scope) return i;
    return n;
  };
  std::vector<int64_t> drop(n + 1, 0);  // savings that count from level k on
  std::vector<bool> used(n, false);
  CheckpointPrediction out;
  for (const std::string& spec : scopes) {
    size_t a = n, b = n;
    for (size_t pos = 0;;) {
      size_t plus = spec.find('+', pos);
      size_t i = index(std::string_view(spec).substr(
          pos, plus == std::string::npos ? std::string::npos : plus - pos));
      if (i == n || used[i] || (a != n && i != b + 1)) return std::nullopt;
      used[i] = true;
      if (a == n) a = i;
      b = i;
      out.recompute_flops += m.forward_flops[i];
      if (plus == std::string::npos) break;
      pos = plus + 1;
    }
    drop[b + 1] += SegmentSaved(p, a, b);
  }
  int64_t peak = 0, saved = 0;
  for (size_t k = 0; k <= n; ++k) {
    saved += drop[k];
    peak = std::max(peak, static_cast<int64_t>(m.level[k]) - saved);
  }
  out.peak_bytes = static_cast<uint64_t>(std::max<int64_t>(peak, 0));
  return out;
}

Result<PlanResult> EvaluateCheckpoint(const PlanProblem& problem,
                                      const std::vector<std::string>& scopes, uint64_t budget) {
  auto e = Simulated(problem, scopes);
  if (!e) return e.error();
  PlanResult r = ResultOf(*e, scopes);
  r.budget_bytes = budget;
  r.fits = r.peak_bytes <= budget;
  return r;
}

Result<PlanResult> CachedCheckpoint(const PlanProblem& problem,
                                    const std::vector<std::string>& scopes, uint64_t budget,
                                    bool* simulated) {
  if (simulated) *simulated = false;
  PlanResult r;
  bool cached = false;
  if (problem.cache) {
    std::lock_guard<std::mutex> lock(problem.cache->mu);
    auto it = problem.cache->plans.find(scopes);
    if (it != problem.cache->plans.end()) {
      r = it->second;
      cached = true;
    }
  }
  if (!cached) {
    if (simulated) *simulated = true;
    auto e = EvaluateCheckpoint(problem, scopes, budget);
    if (!e) return e.error();
    r = std::move(e.value());
    if (problem.cache) {
      std::lock_guard<std::mutex> lock(problem.cache->mu);
      problem.cache->plans.emplace(scopes, r);
    }
  }
  r.budget_bytes = budget;
  r.fits = r.peak_bytes <= budget;
  return r;
}

namespace {

std::vector<std::string> ScopesOf(const BlockModel& m, const std::vector<bool>& c) {
  std::vector<std::string> s;
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i]) s.push_back(m.scopes[i]);
  return s;
}

// Evaluates candidate scope lists through the simulator (reusing the problem's simulated
// plans); keeps the best.
class Search {
 public:
  Search(const PlanProblem& p, uint64_t budget, std::string name)
      : p_(p), budget_(budget), start_(std::chrono::steady_clock::now()) {
    best_.strategy = std::move(name);
  }
  Result<PlanResult> Try(const std::vector<std::string>& scopes) {
    bool simulated = false;
    auto e = CachedCheckpoint(p_, scopes, budget_, &simulated);
    if (simulated) ++sims_;
    if (!e) return e.error();
    PlanResult r = std::move(e.value());
    if (!have_ || BetterPlanResult(r, best_)) {
      std::string name = best_.strategy;
      best_ = r;
      best_.strategy = name;
      have_ = true;
    }
    return r;
  }

  // The candidate with the least recompute whose simulated peak fits (then the lowest peak),
  // else the lowest simulated peak. With a checked block model the candidates are simulated
  // cheapest first, skipping those the model puts over the budget by more than it has
  // overestimated any simulated peak so far, up to the first that fits; when none does, the
  // two the model puts lowest are simulated too. Without one, every candidate is simulated.
  Status TryCandidates(const std::vector<std::vector<std::string>>& candidates) {
    struct Candidate {
      size_t index;
      CheckpointPrediction model;
      bool simulated = false;
    };
    std::vector<Candidate> order;
    bool screen = p_.model_checked;
    for (size_t i = 0; i < candidates.size() && screen; ++i) {
      auto pred = PredictCheckpoint(p_, candidates[i]);
      if (!pred) screen = false;
      if (pred) order.push_back({i, *pred});
    }
    if (!screen) {
      for (const auto& c : candidates)
        if (auto r = Try(c); !r) return Error{r.error().message};
      return {};
    }
    std::stable_sort(order.begin(), order.end(), [](const Candidate& a, const Candidate& b) {
      if (a.model.recompute_flops != b.model.recompute_flops)
        return a.model.recompute_flops < b.model.recompute_flops;
      return a.model.peak_bytes < b.model.peak_bytes;
    });
    uint64_t slack = 0;  // the most the model has put a simulated plan's peak too high
    auto simulate = [&](Candidate& c) -> Result<PlanResult> {
      auto r = Try(candidates[c.index]);
      c.simulated = true;
      if (r && c.model.peak_bytes > r->peak_bytes)
        slack = std::max(slack, c.model.peak_bytes - r->peak_bytes);
      return r;
    };
    bool found = false;
    for (size_t k = 0; k < order.size() && !found;) {
      Candidate& c = order[k];
      if (c.simulated || c.model.peak_bytes > budget_ + slack) {
        ++k;
        continue;
      }
      uint64_t before = slack;
      auto r = simulate(c);
      if (!r) return Error{r.error().message};
      found = r->fits;
      k = slack > before ? 0 : k + 1;  // the model was pessimistic: look again from the cheapest
    }
    if (!found) {
      std::stable_sort(order.begin(), order.end(), [](const Candidate& a, const Candidate& b) {
        return a.model.peak_bytes < b.model.peak_bytes;
      });
      int extra = 0;
      for (Candidate& c : order) {
        if (c.simulated) continue;
        if (auto r = simulate(c); !r) return Error{r.error().message};
        if (++extra == 2) break;
      }
    }
    return {};
  }

  Result<PlanResult> Finish(std::string note = {}) {
    if (!have_) {
      return Error{note.empty() ? fmt::format("{}: no plan", best_.strategy)
                                : fmt::format("{}: no plan: {}", best_.strategy, note)};
    }
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
    std::vector<std::vector<std::string>> candidates;
    for (size_t k = n; k >= 1; --k) {
      std::vector<std::string> scopes;
      for (size_t i = k - 1; i < n; i += k) scopes.push_back(p.blocks.scopes[i]);
      candidates.push_back(std::move(scopes));
    }
    if (auto st = s.TryCandidates(candidates); !st) return Error{st.message()};
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
    std::vector<std::vector<std::string>> candidates;
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
      if (std::find(candidates.begin(), candidates.end(), scopes) == candidates.end())
        candidates.push_back(std::move(scopes));
    }
    if (auto st = s.TryCandidates(candidates); !st) return Error{st.message()};
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

bool BetterPlanResult(const PlanResult& a, const PlanResult& b) {
  if (a.fits != b.fits) return a.fits;
  if (a.fits && a.recompute_flops != b.recompute_flops)
    return a.recompute_flops < b.recompute_flops;
  return a.peak_bytes < b.peak_bytes;
}

std::vector<std::unique_ptr<CheckpointStrategy>> AllStrategies(const StrategyOptions& o) {
  std::vector<std::unique_ptr<CheckpointStrategy>> v;
  v.push_back(std::make_unique<NoneStrategy>());
  v.push_back(std::make_unique<EveryKStrategy>());
  v.push_back(std::make_unique<ChenSqrtStrategy>());
  v.push_back(std::make_unique<ChenGreedyStrategy>());
  v.push_back(std::make_unique<DpStrategy>());
  v.push_back(std::make_unique<MilpStrategy>(o.milp_time_limit_s));
  v.push_back(std::make_unique<DtrStrategy>());
  AddOpLevelStrategies(&v, o);  // planners/op_level.h
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
      if (BetterPlanResult(out[i], out[*best])) *best = i;
  }
  return out;
}

}  // namespace vramsim

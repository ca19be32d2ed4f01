// The scalable heuristic (SolveRematEvict): budget-aware list scheduling in the baseline order
// with eviction and recomputation on demand. Each pass is a few list scans per eviction over the
// live outputs (no n x n stage matrices), so a schedule exists within milliseconds on thousands
// of nodes; the passes that follow vary the eviction score and keep the cheapest schedule.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "planners/remat/internal.h"

namespace vramsim {

using namespace remat_internal;

namespace {

// One eviction score: an output is evicted when its recomputation cost over
// bytes^mem_exp * next_use_distance^next_exp * staleness^stale_exp is the least.
struct Score {
  double mem_exp = 1, next_exp = 1, stale_exp = 0;
  bool neighbours = true;   // add the cost of remaking its missing inputs, recursively
  bool keep_inputs = true;  // keep the inputs of an evicted output alive while it is needed
  double noise = 0;         // each node's score times exp(noise * a standard normal draw)
  uint64_t seed = 0;        // of those draws (SplitMix64 of seed and the node)
};

// A standard normal draw from (seed, i), Box-Muller over SplitMix64: the same on every machine.
double Normal(uint64_t seed, uint64_t i) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  uint64_t a = mix(seed * 0x100000001b3ull + 2 * i), b = mix(seed * 0x100000001b3ull + 2 * i + 1);
  double u1 = (static_cast<double>(a >> 11) + 0.5) / 9007199254740992.0;
  double u2 = static_cast<double>(b >> 11) / 9007199254740992.0;
  return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// The passes, in order: the first is the best on the generated graphs; the others weigh bytes,
// distance and DTR's staleness differently. keep_inputs off ran away on every generated graph.
const Score kScores[] = {
    {1, 1, 0, true, true},    {1, 0.5, 0, true, true},   {1, 0, 1, true, true},
    {1, 2, 0, true, true},    {2, 1, 0, true, true},     {0.5, 1, 0, true, true},
    {1, 1, 1, true, true},    {1, 1, 0, false, true},    {1.5, 1, 0, true, true},
    {1, 0.75, 0, true, true}, {1, 0.5, 0.5, true, true}, {1, 0.25, 0, true, true},
};

class Evictor {
 public:
  // cutoff: the pass stops as soon as its cost so far and the first computations still to come
  // reach it (it cannot beat the schedule that cost that).
  Evictor(const RematGraph& g, uint64_t budget, Score score, Clock::time_point end,
          double cutoff = std::numeric_limits<double>::infinity())
      : g_(g),
        n_(static_cast<int>(g.nodes.size())),
        budget_(budget),
        score_(score),
        end_(end),
        cutoff_(cutoff) {
    factor_.assign(n_, 1.0);
    if (score.noise > 0)
      for (int v = 0; v < n_; ++v) factor_[v] = std::exp(score.noise * Normal(score.seed, v));
    for (const RematNode& node : g.nodes) base_ += node.cost;
    live_.assign(n_, 0);
    pins_.assign(n_, 0);
    in_stage_.assign(n_, 0);
    mark_.assign(n_, 0);
    need_.assign(n_, 1);
    made_at_.assign(n_, -1);
    next_.assign(n_, 0);
    stamp_of_.assign(n_, 0);
    remake_.assign(n_, 0);
    pos_.assign(n_, -1);
    last_.assign(n_, 0);
    cur_ = g.static_bytes;
    // Recomputation may not run away (a cascade of evicted ancestors evicting each other):
    // a pass gives up past this many computations.
    max_computations_ = static_cast<size_t>(n_) * 16 + 1024;
  }

  // The schedule, or why this pass failed.
  Status Run() {
    t_ = -1;
    ComputeNeed();
    for (t_ = 0; t_ < n_; ++t_) {
      if (!MakeTarget()) {
        if (timed_out_) return Error{"stopped at the time limit"};
        if (cut_) return Error{"no cheaper than the best pass"};
        if (steps_.size() > 4 * max_computations_ || computations_ > max_computations_)
          return Error{"recomputation ran away at " + NodeLabel(g_, t_) + " (" +
                       std::to_string(computations_) + " computations)"};
        return Error{"no eviction makes room for " + NodeLabel(g_, t_)};
      }
      // Outputs nothing will read are dropped at once (as the baseline does).
      ComputeNeed();
      for (size_t k = 0; k < live_list_.size();) {
        int v = live_list_[k];
        if (!need_[v]) {
          Free(v);
        } else {
          ++k;
        }
      }
    }
    return {};
  }

  std::vector<RematStep> steps_;

 private:
  // Whether an evicted output that is still needed reads v (with keep_inputs).
  bool NeededByEvicted(int v) const {
    if (!score_.keep_inputs) return false;
    for (int u : g_.users[v]) {
      if (u > t_) break;
      if (!live_[u] && need_[u]) return true;
    }
    return false;
  }

  // Whether a node after the current target reads v.
  bool NeededLater(int v) const {
    const auto& u = g_.users[v];
    return !u.empty() && u.back() > t_;
  }

  // need_[v]: a node after the current target reads v, or an evicted output that is needed
  // does (it will be recomputed from v). Keeping the inputs of an evicted output alive while it
  // is needed stops its recomputation from cascading back through the graph. One reverse sweep,
  // O(n + edges).
  // next_[v]: when it is needed next, through the evicted outputs that need it.
  void ComputeNeed() {
    for (int v = n_ - 1; v >= 0; --v) {
      int next = NextUse(v);
      if (score_.keep_inputs) {
        for (int u : g_.users[v]) {
          if (u > t_) break;
          if (!live_[u] && need_[u]) next = std::min(next, next_[u]);
        }
      }
      need_[v] = next < n_ ? 1 : 0;
      next_[v] = next;
    }
  }

  // The index of the next node after the current target that reads v (n when none).
  int NextUse(int v) const {
    const auto& u = g_.users[v];
    auto it = std::upper_bound(u.begin(), u.end(), t_);
    return it == u.end() ? n_ : *it;
  }

  // Makes target t_: the missing outputs it needs, recursively (the stage), are remade in index
  // order, as in Checkmate's stage, each input pinned until its last use in the stage and each
  // remade output dropped after its last use there unless a later node reads it; when an
  // allocation would exceed the budget, an unpinned output is evicted by the score.
  bool MakeTarget() {
    if (timed_out_ || (++ticks_ % 64 == 0 && Clock::now() >= end_)) {
      timed_out_ = true;
      return false;
    }
    ++stage_id_;
    stage_.clear();
    stage_.push_back(t_);
    in_stage_[t_] = stage_id_;
    for (size_t k = 0; k < stage_.size(); ++k) {
      for (int d : g_.deps[stage_[k]]) {
        if (live_[d] || in_stage_[d] == stage_id_) continue;
        in_stage_[d] = stage_id_;
        stage_.push_back(d);
      }
    }
    std::sort(stage_.begin(), stage_.end());
    for (int v : stage_)
      for (int d : g_.deps[v]) ++pins_[d];
    bool ok = true;
    size_t k = 0;
    size_t forced = 0;
    for (; k < stage_.size(); ++k) {
      int v = stage_[k];
      if (live_[v]) {  // remade earlier for an output evicted from the stage (below)
        for (int d : g_.deps[v]) --pins_[d];
        continue;
      }
      if (v != t_) {
        spent_ += g_.nodes[v].cost;
        if (base_ + spent_ >= cutoff_) {
          cut_ = true;
          ok = false;
          break;
        }
      }
      bool room = computations_ <= max_computations_ && MakeRoom(g_.nodes[v].memory);
      // Every alive output is pinned by the stage: evict one that v does not read and remake
      // it (with what it needs) right after v, before its next reader in the stage.
      while (!room && computations_ <= max_computations_ && forced++ < 4 * stage_.size() + 64) {
        if (!EvictFromStage(v, k)) break;
        room = MakeRoom(g_.nodes[v].memory);
      }
      if (!room) {
        ok = false;
        break;
      }
      steps_.push_back({RematStep::Kind::kCompute, v});
      ++computations_;
      cur_ += g_.nodes[v].memory;
      Add(v);
      need_[v] = 1;
      made_at_[v] = t_;
      ++clock_;
      last_[v] = clock_;
      for (int d : g_.deps[v]) {
        last_[d] = clock_;
        // A remade input no later node reads is dropped after its last use in the stage, unless
        // an evicted output that is still needed reads it (it would be remade from it: what
        // keep_inputs keeps between targets is kept inside the stage too, instead of the next
        // stage remaking the same ancestry).
        if (--pins_[d] == 0 && in_stage_[d] == stage_id_ && !NeededLater(d) && !NeededByEvicted(d))
          Free(d);
      }
    }
    for (; k < stage_.size(); ++k)
      for (int d : g_.deps[stage_[k]]) --pins_[d];
    return ok;
  }

  // Evicts a pinned alive output that v (stage_[k]) does not read, the most bytes per unit of
  // remaking cost, and inserts it and its missing inputs (index order) after position k.
  bool EvictFromStage(int v, size_t k) {
    ++stamp_;
    int victim = -1;
    double best = 0;
    for (int x : live_list_) {
      if (!pins_[x] || g_.nodes[x].memory == 0) continue;
      if (std::binary_search(g_.deps[v].begin(), g_.deps[v].end(), x)) continue;
      double c = g_.nodes[x].cost;
      for (int d : g_.deps[x]) c += Remake(d);
      double h = static_cast<double>(g_.nodes[x].memory) / (c + 1e-9);
      if (victim < 0 || h > best) {
        victim = x;
        best = h;
      }
    }
    if (victim < 0) return false;
    Free(victim);
    std::vector<int> add{victim};
    ++mark_id_;
    mark_[victim] = mark_id_;
    for (size_t i = 0; i < add.size(); ++i) {
      for (int d : g_.deps[add[i]]) {
        if (live_[d] || mark_[d] == mark_id_) continue;
        mark_[d] = mark_id_;
        add.push_back(d);
      }
    }
    for (int a : add) in_stage_[a] = stage_id_;  // remade here: dropped after their last use
    std::sort(add.begin(), add.end());
    for (int a : add)
      for (int d : g_.deps[a]) ++pins_[d];
    stage_.insert(stage_.begin() + static_cast<std::ptrdiff_t>(k) + 1, add.begin(), add.end());
    return true;
  }

  double Priority(int v) {
    if (!need_[v]) return -1;  // nothing will read it: the first to go
    // Its recomputation: itself, and (neighbours) remaking its missing inputs, recursively.
    double c = g_.nodes[v].cost;
    if (score_.neighbours)
      for (int d : g_.deps[v]) c += Remake(d);
    double h = (c + 1e-9) * factor_[v];
    double m = static_cast<double>(g_.nodes[v].memory);
    h /= score_.mem_exp == 1 ? m : std::pow(m, score_.mem_exp);
    if (score_.next_exp != 0) {
      double dist = made_at_[v] == t_ ? 1 : static_cast<double>(next_[v] - t_) + 1;
      h /= score_.next_exp == 1 ? dist : std::pow(dist, score_.next_exp);
    }
    if (score_.stale_exp != 0) {
      double stale = static_cast<double>(clock_ - last_[v] + 1);
      h /= score_.stale_exp == 1 ? stale : std::pow(stale, score_.stale_exp);
    }
    return h;
  }

  // The cost of making v from what is alive now, memoized for one eviction choice (stamp_).
  double Remake(int v) {
    if (live_[v]) return 0;
    if (stamp_of_[v] == stamp_) return remake_[v];
    stamp_of_[v] = stamp_;
    double c = g_.nodes[v].cost;
    for (int d : g_.deps[v]) c += Remake(d);
    remake_[v] = c;
    return c;
  }

  bool MakeRoom(uint64_t bytes) {
    while (cur_ + bytes > budget_) {
      ++stamp_;
      if (timed_out_ || (++ticks_ % 256 == 0 && Clock::now() >= end_)) {
        timed_out_ = true;
        return false;
      }
      int victim = -1;
      double best = 0;
      for (int v : live_list_) {
        if (pins_[v] || g_.nodes[v].memory == 0) continue;
        double h = Priority(v);
        if (victim < 0 || h < best || (h == best && v < victim)) {
          victim = v;
          best = h;
        }
      }
      if (victim < 0) return false;
      Free(victim);
    }
    return true;
  }

  void Add(int v) {
    live_[v] = 1;
    pos_[v] = static_cast<int>(live_list_.size());
    live_list_.push_back(v);
  }

  void Free(int v) {
    steps_.push_back({RematStep::Kind::kFree, v});
    cur_ -= g_.nodes[v].memory;
    live_[v] = 0;
    int p = pos_[v], last = live_list_.back();
    live_list_[p] = last;
    pos_[last] = p;
    live_list_.pop_back();
    pos_[v] = -1;
  }

  const RematGraph& g_;
  int n_;
  uint64_t budget_;
  Score score_;
  Clock::time_point end_;
  int t_ = 0;
  uint64_t ticks_ = 0;
  bool timed_out_ = false;
  double cutoff_;
  double spent_ = 0;  // recomputation cost so far
  bool cut_ = false;
  std::vector<double> factor_;
  double base_ = 0;
  size_t computations_ = 0, max_computations_ = 0;
  std::vector<uint8_t> live_, need_;
  std::vector<int> pins_, made_at_, next_, pos_, live_list_, stage_;
  std::vector<uint64_t> in_stage_, mark_;
  uint64_t mark_id_ = 0;
  uint64_t stage_id_ = 0;
  std::vector<uint64_t> last_, stamp_of_;
  std::vector<double> remake_;
  uint64_t stamp_ = 0;
  uint64_t clock_ = 0;
  uint64_t cur_ = 0;
};

}  // namespace

Result<RematSolution> SolveRematEvict(const RematGraph& g, uint64_t budget, double time_limit_s,
                                      int max_passes, int search_passes) {
  auto t0 = Clock::now();
  Clock::time_point end = time_limit_s > 0 ? After(t0, time_limit_s) : Clock::time_point::max();
  int fixed = static_cast<int>(sizeof kScores / sizeof kScores[0]);
  if (max_passes > 0) fixed = std::min(fixed, max_passes);
  std::optional<RematSolution> best;
  Score best_score = kScores[0];
  std::string last_error;
  int ran = 0, improved = 0;
  for (int p = 0; p < fixed + std::max(0, search_passes); ++p) {
    // The search starts only from a weighting that fits (when every fixed one ran away, its
    // perturbations do as well, each at the cost of a runaway).
    if (p == fixed && !(best && best->fits)) break;
    // The deadline is a safety cut only: the number of passes is fixed, so that the answer
    // depends on the work done and not on the machine's speed.
    if (p > 0 && Clock::now() >= end) break;
    Score score;
    if (p < fixed) {
      score = kScores[p];
    } else {
      // The search: the best weighting so far (or a fixed one while none fits), its exponents
      // and each node's score perturbed by deterministic draws (pass p's seed).
      uint64_t seed = static_cast<uint64_t>(p) * 7919 + 17;
      score = best ? best_score : kScores[p % (sizeof kScores / sizeof kScores[0])];
      score.mem_exp =
          std::clamp(score.mem_exp * std::exp(0.25 * Normal(seed, 1u << 30)), 0.25, 3.0);
      score.next_exp = std::clamp(score.next_exp + 0.25 * Normal(seed, (1u << 30) + 1), 0.0, 3.0);
      score.stale_exp = std::clamp(score.stale_exp + 0.15 * Normal(seed, (1u << 30) + 2), 0.0, 2.0);
      score.noise = 0.05 + 0.4 * std::abs(Normal(seed, (1u << 30) + 3));
      score.seed = seed;
    }
    Evictor ev(g, budget, score, end,
               best && best->fits ? best->cost : std::numeric_limits<double>::infinity());
    ++ran;
    if (auto s = ev.Run(); !s) {
      last_error = s.message();
      continue;
    }
    auto st = ReplaySequence(g, ev.steps_);
    if (!st) return Error{"evict schedule fails the replay: " + st.error().message};
    RematSolution sol;
    sol.method = "evict";
    sol.steps = std::move(ev.steps_);
    sol.peak_bytes = st->peak_bytes;
    sol.cost = st->cost;
    sol.fits = st->peak_bytes <= budget;
    sol.lower_bound = BaselineCost(g);
    if (!best || Better(sol, *best)) {
      if (best && p >= fixed) ++improved;
      best = std::move(sol);
      best_score = score;
    }
  }
  if (!best) return Error{"evict: " + last_error};
  best->note = "best of " + std::to_string(ran) + " eviction passes";
  if (search_passes > 0)
    best->note += " (" + std::to_string(improved) + " improvements by the search)";
  best->solve_ms = MsSince(t0);
  return std::move(best.value());
}

namespace remat_internal {

// The stage form of an explicit schedule, for a MILP start: what is alive when stage t's first
// computation begins (after the frees that close stage t-1) is kept into it; the closure adds
// the recomputations.
std::optional<RematSchedule> EvictStages(const RematGraph& g, const RematSolution& sol) {
  int n = static_cast<int>(g.nodes.size());
  std::vector<std::vector<uint8_t>> kept(n);
  std::vector<uint8_t> live(n, 0);
  int next = 0;  // the next node to run for the first time
  bool pending = true;
  for (const RematStep& s : sol.steps) {
    if (s.kind == RematStep::Kind::kFree) {
      live[s.node] = 0;
      continue;
    }
    if (pending && next < n) {
      kept[next].assign(next, 0);
      for (int i = 0; i < next; ++i) kept[next][i] = live[i];
      pending = false;
    }
    live[s.node] = 1;
    if (s.node == next) {
      ++next;
      pending = true;
    }
  }
  if (next != n) return std::nullopt;
  return ClosureFromKept(g, std::move(kept));
}

}  // namespace remat_internal
}  // namespace vramsim

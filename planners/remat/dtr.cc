// The DTR-style dynamic eviction heuristic (Kirisame et al., ICLR 2021): the baseline order,
// evicting the alive output with the smallest cost / (bytes * staleness) when an allocation
// would exceed the budget, recomputing evicted outputs on demand.
#include <vector>

#include "planners/remat/internal.h"

namespace vramsim {

using namespace remat_internal;

namespace {

class Dtr {
 public:
  Dtr(const RematGraph& g, uint64_t budget, Clock::time_point end)
      : g_(g), budget_(budget), end_(end) {
    int n = static_cast<int>(g.nodes.size());
    live_.assign(n, 0);
    locked_.assign(n, 0);
    done_.assign(n, 0);
    last_.assign(n, 0);
    cur_ = g.static_bytes;
  }

  Status Run() {
    int n = static_cast<int>(g_.nodes.size());
    kept_.assign(n, {});
    for (int t = 0; t < n; ++t) {
      kept_[t].assign(t, 0);
      for (int i = 0; i < t; ++i) kept_[t][i] = live_[i];
      if (!Ensure(t)) {
        if (timed_out_) return Error{"stopped at the time limit"};
        return Error{"no eviction makes room for " + NodeLabel(g_, t) + " within the budget"};
      }
      done_[t] = 1;
      for (int v = 0; v <= t; ++v) {
        if (!live_[v]) continue;
        bool needed = false;
        for (int u : g_.users[v]) needed = needed || !done_[u];
        if (!needed) Free(v);
      }
    }
    return {};
  }

  std::vector<RematStep> steps_;
  std::vector<std::vector<uint8_t>> kept_;  // alive at the start of each stage

 private:
  bool Ensure(int v) {
    if (live_[v]) return true;
    if (timed_out_ || (++calls_ % 4096 == 0 && Clock::now() >= end_)) {
      timed_out_ = true;
      return false;
    }
    // Recompute missing inputs without pinning the others (pinning across a deep recursion
    // can exhaust the budget); the ones alive are touched so staleness protects them. A few
    // passes until all are alive together, then the ones still missing with the rest locked.
    bool all = false;
    for (int pass = 0; pass < 4 && !all; ++pass) {
      for (int d : g_.deps[v])
        if (live_[d]) last_[d] = clock_;
      for (int d : g_.deps[v])
        if (!live_[d] && !Ensure(d)) return false;
      all = true;
      for (int d : g_.deps[v]) all = all && live_[d];
    }
    size_t locked = 0;
    bool ok = true;
    for (int d : g_.deps[v]) {
      if (!Ensure(d)) {
        ok = false;
        break;
      }
      ++locked_[d];
      ++locked;
    }
    if (!ok) {
      for (size_t i = 0; i < locked; ++i) --locked_[g_.deps[v][i]];
      return false;
    }
    ok = MakeRoom(g_.nodes[v].memory);
    if (ok) {
      steps_.push_back({RematStep::Kind::kCompute, v});
      cur_ += g_.nodes[v].memory;
      live_[v] = 1;
      ++clock_;
      last_[v] = clock_;
      for (int d : g_.deps[v]) last_[d] = clock_;
    }
    for (int d : g_.deps[v]) --locked_[d];
    return ok;
  }

  bool MakeRoom(uint64_t bytes) {
    while (cur_ + bytes > budget_) {
      int victim = -1;
      double best = 0;
      for (int v = 0; v < static_cast<int>(live_.size()); ++v) {
        if (!live_[v] || locked_[v] || g_.nodes[v].memory == 0) continue;
        double staleness = static_cast<double>(clock_ - last_[v] + 1);
        double h =
            (g_.nodes[v].cost + 1e-9) / (static_cast<double>(g_.nodes[v].memory) * staleness);
        if (victim < 0 || h < best) {
          victim = v;
          best = h;
        }
      }
      if (victim < 0) {
        return false;
      }
      Free(victim);
    }
    return true;
  }

  void Free(int v) {
    steps_.push_back({RematStep::Kind::kFree, v});
    cur_ -= g_.nodes[v].memory;
    live_[v] = 0;
  }

  const RematGraph& g_;
  uint64_t budget_;
  Clock::time_point end_;
  uint64_t calls_ = 0;
  bool timed_out_ = false;
  std::vector<uint8_t> live_;
  std::vector<int> locked_;
  std::vector<uint8_t> done_;
  std::vector<uint64_t> last_;
  uint64_t clock_ = 0;
  uint64_t cur_ = 0;
};

}  // namespace

Result<RematSolution> SolveRematDtr(const RematGraph& g, uint64_t budget, double time_limit_s) {
  auto start = std::chrono::steady_clock::now();
  Dtr dtr(g, budget, time_limit_s > 0 ? After(start, time_limit_s) : Clock::time_point::max());
  if (auto s = dtr.Run(); !s) return Error{"dtr: " + s.message()};
  auto st = ReplaySequence(g, dtr.steps_);
  if (!st) return Error{"dtr schedule fails the replay: " + st.error().message};
  RematSolution sol;
  sol.method = "dtr";
  sol.steps = std::move(dtr.steps_);
  sol.peak_bytes = st->peak_bytes;
  sol.cost = st->cost;
  sol.fits = st->peak_bytes <= budget;
  sol.lower_bound = BaselineCost(g);
  // Its projection onto Checkmate's stages (kept = alive at each stage's start), usable as a
  // MILP start when it fits.
  auto proj = FromStagesTidied(g, ClosureFromKept(g, dtr.kept_), budget, "dtr");
  if (proj && proj->fits && (!sol.fits || proj->cost <= sol.cost)) {
    sol = std::move(proj.value());
  } else if (proj && proj->fits) {
    sol.stages = std::move(proj->stages);  // the start, though the explicit schedule is cheaper
  }
  sol.solve_ms = MsSince(start);
  return sol;
}

}  // namespace vramsim

#include "policies/planner_remat.h"

#include <Cbc_C_Interface.h>
#include <Clp_C_Interface.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>

namespace vramsim {

namespace {

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

std::string NodeLabel(const RematGraph& g, int i) {
  return "#" + std::to_string(i) + " (" + g.nodes[i].name + ")";
}

bool Kept(const RematSchedule& s, int t, int i) {
  return t < static_cast<int>(s.S.size()) && i < t && s.S[t][i];
}

}  // namespace

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

namespace {

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

// ---------------------------------------------------------------------------------------------
// The DTR-style heuristic.

class Dtr {
 public:
  Dtr(const RematGraph& g, uint64_t budget) : g_(g), budget_(budget) {
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
      if (!Ensure(t))
        return Error{"no eviction makes room for " + NodeLabel(g_, t) + " within the budget"};
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
  std::vector<uint8_t> live_;
  std::vector<int> locked_;
  std::vector<uint8_t> done_;
  std::vector<uint64_t> last_;
  uint64_t clock_ = 0;
  uint64_t cur_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Checkmate's MILP: columns R(t,i) i<=t, S(t,i) i<t, U(t,k) k<=t, FREE(t,i,k) k<t with i an
// input of k or k itself. Memory is scaled so the budget is 1000 units, cost so the baseline is
// 1000 units.

struct Lp {
  int ncols = 0;
  std::vector<double> collb, colub, obj;
  std::vector<uint8_t> integer;
  std::vector<double> rowlb, rowub;
  std::vector<int> trip_row, trip_col;
  std::vector<double> trip_val;
  std::vector<int> r_off, s_off;  // R(t,i) = r_off[t] + i; S(t,i) = s_off[t] + i
  double cost_scale = 1;

  int AddCol(double lb, double ub, double c, bool is_int) {
    collb.push_back(lb);
    colub.push_back(ub);
    obj.push_back(c);
    integer.push_back(is_int ? 1 : 0);
    return ncols++;
  }
  int AddRow(double lb, double ub) {
    rowlb.push_back(lb);
    rowub.push_back(ub);
    return static_cast<int>(rowlb.size()) - 1;
  }
  void Add(int row, int col, double v) {
    trip_row.push_back(row);
    trip_col.push_back(col);
    trip_val.push_back(v);
  }
  int R(int t, int i) const { return r_off[t] + i; }
  int S(int t, int i) const { return s_off[t] + i; }

  // Column-major matrix for CBC/CLP.
  void Csc(std::vector<CoinBigIndex>* start, std::vector<int>* index,
           std::vector<double>* value) const {
    start->assign(ncols + 1, 0);
    for (int c : trip_col) ++(*start)[c + 1];
    for (int c = 0; c < ncols; ++c) (*start)[c + 1] += (*start)[c];
    std::vector<CoinBigIndex> fill(start->begin(), start->end() - 1);
    index->assign(trip_col.size(), 0);
    value->assign(trip_col.size(), 0);
    for (size_t e = 0; e < trip_col.size(); ++e) {
      CoinBigIndex p = fill[trip_col[e]]++;
      (*index)[p] = trip_row[e];
      (*value)[p] = trip_val[e];
    }
  }
};

// Nonzeros of the MILP without building it (for the size cap).
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

Lp BuildCheckmate(const RematGraph& g, uint64_t budget) {
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

// Runs `work` in a child process and returns what it sends back, or nothing when the child
// has not finished by the deadline (it is then killed): CBC and CLP check their time limits
// only between phases, so presolve or the root LP of a large model can overrun them.
std::optional<std::vector<double>> RunWithDeadline(
    double seconds, const std::function<std::vector<double>()>& work) {
  int fds[2];
  if (pipe(fds) != 0) return work();
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return work();
  }
  if (pid == 0) {
    close(fds[0]);
    std::vector<double> out = work();
    uint64_t count = out.size();
    auto write_all = [&](const void* data, size_t bytes) {
      const char* p = static_cast<const char*>(data);
      while (bytes > 0) {
        ssize_t w = write(fds[1], p, bytes);
        if (w <= 0) _exit(1);
        p += w;
        bytes -= static_cast<size_t>(w);
      }
    };
    write_all(&count, sizeof count);
    write_all(out.data(), out.size() * sizeof(double));
    close(fds[1]);
    std::fflush(stdout);
    _exit(0);
  }
  close(fds[1]);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::string buffer;
  bool done = false, killed = false;
  char chunk[65536];
  while (!done) {
    double left =
        std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(std::min(left * 1000, 1000.0)) + 1);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t got = read(fds[0], chunk, sizeof chunk);
    if (got <= 0) {
      done = true;
    } else {
      buffer.append(chunk, static_cast<size_t>(got));
    }
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (killed || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  uint64_t count = 0;
  if (buffer.size() < sizeof count) return std::nullopt;
  std::memcpy(&count, buffer.data(), sizeof count);
  if (buffer.size() != sizeof count + count * sizeof(double)) return std::nullopt;
  std::vector<double> out(count);
  std::memcpy(out.data(), buffer.data() + sizeof count, count * sizeof(double));
  return out;
}

// The hard deadline for a solver given a time limit: the limit, plus a quarter and 2 s.
double HardDeadline(double limit) { return limit * 1.25 + 2; }

std::vector<std::vector<uint8_t>> KeptFromColumns(const Lp& lp, int n, const double* x,
                                                  double threshold) {
  std::vector<std::vector<uint8_t>> S(n);
  for (int t = 0; t < n; ++t) {
    S[t].assign(t, 0);
    for (int i = 0; i < t; ++i) S[t][i] = x[lp.S(t, i)] >= threshold ? 1 : 0;
  }
  return S;
}

// ---------------------------------------------------------------------------------------------
// A greedy in Checkmate's stage space: from the baseline, repeatedly stop keeping one output
// over the span around the peak where it is not used (so it is recomputed where next needed),
// taking the change with the most memory overflow removed per unit of added cost.

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

Result<RematSolution> GreedyKept(const RematGraph& g, uint64_t budget, double time_limit_s) {
  auto t0 = std::chrono::steady_clock::now();
  int n = static_cast<int>(g.nodes.size());
  RematSchedule cur = BaselineSchedule(g);
  KeptEval ev = EvaluateKept(g, cur, budget);
  while (ev.peak > budget && MsSince(t0) < time_limit_s * 1000) {
    int p = ev.peak_stage;
    double best_ratio = 0;
    std::optional<RematSchedule> best;
    KeptEval best_ev;
    for (int i = 0; i < p; ++i) {
      if (!cur.S[p][i] || !g.nodes[i].memory) continue;
      auto used_in = [&](int t) {
        if (cur.R[t].size() > static_cast<size_t>(i) && cur.R[t][i]) return true;
        for (int j : g.users[i])
          if (j <= t && cur.R[t][j]) return true;
        return false;
      };
      int first = p;
      while (first - 1 > i && cur.S[first - 1][i] && !used_in(first - 1)) --first;
      int last = p;
      while (last + 1 < n && !used_in(last)) ++last;
      auto S = cur.S;
      for (int t = first; t <= last && t < n; ++t) S[t][i] = 0;
      RematSchedule cand = ClosureFromKept(g, std::move(S));
      KeptEval ce = EvaluateKept(g, cand, budget);
      if (ce.overflow >= ev.overflow) continue;
      double ratio = (ev.overflow - ce.overflow) / (ce.cost - ev.cost + 1e-9 * (1 + ev.cost));
      if (!best || ratio > best_ratio) {
        best_ratio = ratio;
        best = std::move(cand);
        best_ev = ce;
      }
    }
    if (!best) break;
    cur = std::move(*best);
    ev = best_ev;
  }
  auto sol = FromStages(g, std::move(cur), budget, "greedy");
  if (sol) sol->solve_ms = MsSince(t0);
  return sol;
}

}  // namespace

Result<RematSolution> SolveRematDtr(const RematGraph& g, uint64_t budget) {
  auto start = std::chrono::steady_clock::now();
  Dtr dtr(g, budget);
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
  auto proj = FromStages(g, ClosureFromKept(g, dtr.kept_), budget, "dtr");
  if (proj && proj->fits && (!sol.fits || proj->cost <= sol.cost)) {
    sol = std::move(proj.value());
  } else if (proj && proj->fits) {
    sol.stages = std::move(proj->stages);  // the start, though the explicit schedule is cheaper
  }
  sol.solve_ms = MsSince(start);
  return sol;
}

Result<RematSolution> SolveRematLpRounding(const RematGraph& g, uint64_t budget,
                                           const RematOptions& options) {
  auto start = std::chrono::steady_clock::now();
  int n = static_cast<int>(g.nodes.size());
  Lp lp = BuildCheckmate(g, budget);
  std::vector<CoinBigIndex> cstart;
  std::vector<int> index;
  std::vector<double> value;
  lp.Csc(&cstart, &index, &value);
  // Payload: status, proven, objective, then the columns (when solved).
  auto payload = RunWithDeadline(HardDeadline(options.time_limit_s), [&] {
    Clp_Simplex* clp = Clp_newModel();
    Clp_setLogLevel(clp, options.log ? 1 : 0);
    Clp_loadProblem(clp, lp.ncols, static_cast<int>(lp.rowlb.size()), cstart.data(), index.data(),
                    value.data(), lp.collb.data(), lp.colub.data(), lp.obj.data(), lp.rowlb.data(),
                    lp.rowub.data());
    Clp_setMaximumSeconds(clp, options.time_limit_s);
    Clp_initialSolve(clp);
    int st = Clp_status(clp);
    std::vector<double> out{static_cast<double>(st), Clp_isProvenOptimal(clp) ? 1.0 : 0.0,
                            Clp_objectiveValue(clp)};
    if (st == 0 || st == 3) {
      const double* col = Clp_getColSolution(clp);
      out.insert(out.end(), col, col + lp.ncols);
    }
    Clp_deleteModel(clp);
    return out;
  });
  if (!payload) return Error{"lp-rounding: the LP relaxation was not solved in the time limit"};
  int status = static_cast<int>((*payload)[0]);
  bool proven = (*payload)[1] > 0.5;
  double lp_obj = (*payload)[2];
  std::vector<double> x(payload->begin() + 3, payload->end());
  if (static_cast<int>(x.size()) != lp.ncols) x.clear();
  if (x.empty()) {
    return Error{"lp-rounding: the LP relaxation " +
                 std::string(status == 1 ? "is infeasible at this budget" : "was not solved")};
  }
  std::optional<RematSolution> best;
  for (double threshold : {0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01}) {
    auto sol = FromStages(g, ClosureFromKept(g, KeptFromColumns(lp, n, x.data(), threshold)),
                          budget, "lp-rounding");
    if (!sol) continue;
    if (!best || Better(*sol, *best)) best = std::move(sol.value());
  }
  if (!best) return Error{"lp-rounding: no rounding gives a valid schedule"};
  if (proven) best->lower_bound = std::max(best->lower_bound, lp_obj / lp.cost_scale);
  best->note = proven ? "LP relaxation solved" : "LP relaxation stopped at the time limit";
  best->solve_ms = MsSince(start);
  return std::move(best.value());
}

Result<RematSolution> SolveRematMilp(const RematGraph& g, uint64_t budget,
                                     const RematOptions& options, const RematSolution* start) {
  auto t0 = std::chrono::steady_clock::now();
  int n = static_cast<int>(g.nodes.size());
  if (options.max_milp_nonzeros && CountNonzeros(g) > options.max_milp_nonzeros)
    return Error{"milp: the model would have " + std::to_string(CountNonzeros(g)) +
                 " nonzeros, over the cap of " + std::to_string(options.max_milp_nonzeros)};
  Lp lp = BuildCheckmate(g, budget);
  std::vector<CoinBigIndex> cstart;
  std::vector<int> index;
  std::vector<double> value;
  lp.Csc(&cstart, &index, &value);
  bool started = start && start->fits && !start->stages.R.empty();
  // Payload: optimal, bound, seconds limit reached, proven infeasible, then the best solution.
  auto payload = RunWithDeadline(HardDeadline(options.time_limit_s), [&] {
    Cbc_Model* cbc = Cbc_newModel();
    Cbc_loadProblem(cbc, lp.ncols, static_cast<int>(lp.rowlb.size()), cstart.data(), index.data(),
                    value.data(), lp.collb.data(), lp.colub.data(), lp.obj.data(), lp.rowlb.data(),
                    lp.rowub.data());
    for (int c = 0; c < lp.ncols; ++c)
      if (lp.integer[c]) Cbc_setInteger(cbc, c);
    Cbc_setLogLevel(cbc, options.log ? 1 : 0);
    Cbc_setMaximumSeconds(cbc, options.time_limit_s);
    Cbc_setParameter(cbc, "threads", "1");
    Cbc_setParameter(cbc, "timeMode", "elapsed");  // the limit is wall-clock time, not CPU time
    if (started) {
      std::vector<int> idx;
      std::vector<double> val;
      for (int t = 0; t < n; ++t) {
        for (int i = 0; i <= t; ++i) {
          idx.push_back(lp.R(t, i));
          val.push_back(start->stages.R[t][i]);
        }
        for (int i = 0; i < t; ++i) {
          idx.push_back(lp.S(t, i));
          val.push_back(start->stages.S[t][i]);
        }
      }
      Cbc_setMIPStartI(cbc, static_cast<int>(idx.size()), idx.data(), val.data());
    }
    Cbc_solve(cbc);
    std::vector<double> out{Cbc_isProvenOptimal(cbc) ? 1.0 : 0.0, Cbc_getBestPossibleObjValue(cbc),
                            Cbc_isSecondsLimitReached(cbc) ? 1.0 : 0.0,
                            Cbc_isProvenInfeasible(cbc) ? 1.0 : 0.0};
    if (const double* x = Cbc_bestSolution(cbc)) out.insert(out.end(), x, x + lp.ncols);
    Cbc_deleteModel(cbc);
    return out;
  });
  if (!payload) return Error{"milp: CBC did not finish within the time limit (stopped)"};
  bool optimal = (*payload)[0] > 0.5;
  double bound = (*payload)[1];
  bool time_limit = (*payload)[2] > 0.5;
  bool infeasible = (*payload)[3] > 0.5;
  std::vector<double> sol_x(payload->begin() + 4, payload->end());
  if (static_cast<int>(sol_x.size()) != lp.ncols) sol_x.clear();
  if (sol_x.empty()) {
    return Error{std::string("milp: ") + (infeasible   ? "no schedule fits the budget"
                                          : time_limit ? "no schedule found in the time limit"
                                                       : "CBC found no schedule")};
  }
  auto sol =
      FromStages(g, ClosureFromKept(g, KeptFromColumns(lp, n, sol_x.data(), 0.5)), budget, "milp");
  if (!sol) return sol.error();
  sol->optimal = optimal;
  if (std::isfinite(bound) && bound > -1e30)
    sol->lower_bound = std::max(sol->lower_bound, std::min(bound / lp.cost_scale, sol->cost));
  if (optimal) sol->lower_bound = sol->cost;
  sol->note = std::string(optimal ? "proven optimal" : "stopped at the time limit") +
              (started ? ", started from the " + start->method + " schedule" : "");
  sol->solve_ms = MsSince(t0);
  return sol;
}

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

Result<RematSolution> SolveRemat(const RematGraph& g, uint64_t budget,
                                 const RematOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  int at = 0;
  if (uint64_t least = LeastFeasibleBudget(g, &at); least > budget) {
    return Error{"no schedule fits: " + NodeLabel(g, at) + " needs its inputs and output alive " +
                 "together, " + std::to_string(least) + " bytes, over the budget of " +
                 std::to_string(budget)};
  }
  std::optional<RematSolution> best;
  double bound = BaselineCost(g);
  std::vector<std::string> notes;
  auto consider = [&](Result<RematSolution> r) {
    if (!r) {
      notes.push_back(r.error().message);
      return;
    }
    bound = std::max(bound, r->lower_bound);
    if (!best || Better(*r, *best)) best = std::move(r.value());
  };
  std::optional<RematSolution> start;
  auto greedy = GreedyKept(g, budget, options.time_limit_s / 4);
  if (greedy && greedy->fits) start = *greedy;
  consider(std::move(greedy));
  auto dtr = SolveRematDtr(g, budget);
  if (dtr && dtr->fits && !dtr->stages.R.empty() && (!start || dtr->cost < start->cost))
    start = *dtr;
  consider(std::move(dtr));
  auto milp = SolveRematMilp(g, budget, options, start ? &*start : nullptr);
  bool optimal = milp && milp->optimal && milp->fits;
  bool milp_ok = milp && milp->fits;
  double milp_cost = milp_ok ? milp->cost : 0;
  consider(std::move(milp));
  if (!milp_ok) consider(SolveRematLpRounding(g, budget, options));
  if (!best) {
    std::string all;
    for (const auto& s : notes) all += (all.empty() ? "" : "; ") + s;
    return Error{all};
  }
  // Proven optimal when the MILP proved its schedule optimal and nothing is costlier than it.
  best->optimal = optimal && best->fits && best->cost <= milp_cost * (1 + 1e-9) + 1e-12;
  best->lower_bound = best->optimal ? best->cost : std::min(bound, best->cost);
  for (const auto& s : notes) best->note += (best->note.empty() ? "" : "; ") + s;
  best->solve_ms = MsSince(t0);
  return std::move(best.value());
}

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

#include "planners/planner_remat.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CbcEventHandler.hpp>
#include <CbcModel.hpp>
#include <CbcSolver.hpp>
#include <ClpSimplex.hpp>
#include <OsiClpSolverInterface.hpp>
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

using Clock = std::chrono::steady_clock;

double SecondsLeft(Clock::time_point end) {
  return std::chrono::duration<double>(end - Clock::now()).count();
}

Clock::time_point After(Clock::time_point from, double seconds) {
  return from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

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

// Runs `work` in a child process, which sends messages (vectors of doubles) as it goes, and
// returns every message that arrived in full by `end`; the child is killed then if it has not
// finished. CBC and CLP check their time limits only between phases (presolve, the root LP of a
// large model, a round of cuts), so only a separate process can be stopped on time. Without a
// process (fork fails), `work` runs here, unbounded.
struct Streamed {
  std::vector<std::vector<double>> messages;
  bool finished = false;  // the child exited normally before the deadline
};

using Send = std::function<void(const std::vector<double>&)>;

Streamed RunStreaming(Clock::time_point end, bool quiet,
                      const std::function<void(const Send&)>& work) {
  Streamed out;
  int fds[2];
  auto inline_run = [&] {
    work([&](const std::vector<double>& m) { out.messages.push_back(m); });
    out.finished = true;
    return out;
  };
  if (pipe(fds) != 0) return inline_run();
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return inline_run();
  }
  if (pid == 0) {
    close(fds[0]);
    if (quiet) {  // solver output must not mix with the caller's (JSON on stdout)
      int null_fd = open("/dev/null", O_WRONLY);
      if (null_fd >= 0) {
        dup2(null_fd, 1);
        close(null_fd);
      }
    }
    auto write_all = [&](const void* data, size_t bytes) {
      const char* p = static_cast<const char*>(data);
      while (bytes > 0) {
        ssize_t w = write(fds[1], p, bytes);
        if (w <= 0) _exit(1);
        p += w;
        bytes -= static_cast<size_t>(w);
      }
    };
    work([&](const std::vector<double>& m) {
      uint64_t count = m.size();
      write_all(&count, sizeof count);
      write_all(m.data(), m.size() * sizeof(double));
    });
    close(fds[1]);
    std::fflush(stdout);
    _exit(0);
  }
  close(fds[1]);
  std::string buffer;
  size_t parsed = 0;
  auto parse = [&] {
    while (buffer.size() - parsed >= sizeof(uint64_t)) {
      uint64_t count = 0;
      std::memcpy(&count, buffer.data() + parsed, sizeof count);
      if (buffer.size() - parsed - sizeof count < count * sizeof(double)) break;
      std::vector<double> m(count);
      std::memcpy(m.data(), buffer.data() + parsed + sizeof count, count * sizeof(double));
      out.messages.push_back(std::move(m));
      parsed += sizeof count + count * sizeof(double);
    }
  };
  bool eof = false, killed = false;
  std::vector<char> chunk(1 << 16);
  while (!eof) {
    double left = SecondsLeft(end);
    if (left <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(std::min(left * 1000, 1000.0)) + 1);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t got = read(fds[0], chunk.data(), chunk.size());
    if (got <= 0) {
      eof = true;
    } else {
      buffer.append(chunk.data(), static_cast<size_t>(got));
      parse();
    }
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  out.finished = !killed && eof && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  return out;
}

std::vector<std::vector<uint8_t>> KeptFromColumns(const Lp& lp, int n, const double* x,
                                                  double threshold) {
  std::vector<std::vector<uint8_t>> S(n);
  for (int t = 0; t < n; ++t) {
    S[t].assign(t, 0);
    for (int i = 0; i < t; ++i) S[t][i] = x[lp.S(t, i)] >= threshold ? 1 : 0;
  }
  return S;
}

// The MILP's own schedule: R and S as CBC left them.
RematSchedule StagesFromColumns(const Lp& lp, int n, const double* x) {
  RematSchedule s;
  s.S = KeptFromColumns(lp, n, x, 0.5);
  s.R.assign(n, {});
  for (int t = 0; t < n; ++t) {
    s.R[t].assign(t + 1, 0);
    for (int i = 0; i <= t; ++i) s.R[t][i] = x[lp.R(t, i)] >= 0.5 ? 1 : 0;
  }
  return s;
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

// ---------------------------------------------------------------------------------------------
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
RematSchedule NothingKept(const RematGraph& g) {
  std::vector<std::vector<uint8_t>> S(g.nodes.size());
  for (size_t t = 0; t < S.size(); ++t) S[t].assign(t, 0);
  return ClosureFromKept(g, std::move(S));
}

// Whether output i is read or made in stage t.
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

Result<RematSolution> GreedyKept(const RematGraph& g, uint64_t budget, double time_limit_s,
                                 const RematSchedule* from = nullptr) {
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

// ---------------------------------------------------------------------------------------------
// The exact solver, in one child process: Checkmate's LP relaxation (CLP), sent back as soon as
// it is solved, then the MILP (CBC) from the solved relaxation's basis, started from the best
// schedule known.

// Stops CBC at a point in time; checked at every node and tree-status event.
class StopAt : public CbcEventHandler {
 public:
  explicit StopAt(Clock::time_point at) : at_(at) {}
  CbcAction event(CbcEvent which) override {
    if ((which == node || which == treeStatus) && Clock::now() >= at_) return stop;
    return noAction;
  }
  // No heuristic sub-MIPs (RINS, RENS, ...): on these models one can run for minutes without
  // looking at the clock, and without them CBC closes more of the gap in the same time.
  CbcAction event(CbcEvent which, void* /*data*/) override {
    return which == smallBranchAndBound ? killSolution : event(which);
  }
  CbcEventHandler* clone() const override { return new StopAt(*this); }

 private:
  Clock::time_point at_;
};

// The cheapest schedule from rounding the relaxation's S at thresholds 0.5 to 1 (R by the
// closure); a schedule that fits wins over one that does not. When none fits, the greedy
// repairs each rounding, the one keeping least first, until `repair_end`.
std::optional<RematSolution> RoundRelaxation(const RematGraph& g, const Lp& lp, uint64_t budget,
                                             const double* x, Clock::time_point repair_end) {
  int n = static_cast<int>(g.nodes.size());
  std::optional<RematSolution> best;
  std::vector<RematSchedule> rounded;
  for (double threshold : {0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01}) {
    rounded.push_back(ClosureFromKept(g, KeptFromColumns(lp, n, x, threshold)));
    auto sol = FromStagesTidied(g, rounded.back(), budget, "lp-rounding");
    if (!sol) continue;
    if (!best || Better(*sol, *best)) best = std::move(sol.value());
  }
  // Repairs from the rounding that keeps most but 1.01 (nothing kept: SolveRemat's own start).
  bool repair = !(best && best->fits);
  for (size_t k = rounded.size() - 1; repair && k-- > 0;) {
    double left = SecondsLeft(repair_end);
    if (left <= 0) break;
    auto sol = GreedyKept(g, budget, left, &rounded[k]);
    if (!sol) continue;
    sol->method = "lp-rounding";
    sol->note = "rounding repaired by the greedy";
    if (!best || Better(*sol, *best)) best = std::move(sol.value());
  }
  return best;
}

constexpr double kStartMessage = 3;  // the MILP's start when it is the rounded relaxation
constexpr double kLpMessage = 1, kMilpMessage = 2;  // a message's first value
enum StartKind { kNoStart = 0, kGivenStart = 1, kRoundedStart = 2 };

struct ExactRun {
  bool lp_solved = false;  // the relaxation was solved to optimality
  bool lp_infeasible = false;
  double lp_objective = 0;  // scaled
  std::vector<double> lp_x;
  double lp_s = 0;             // seconds from the start until the relaxation was solved
  bool milp_returned = false;  // CBC returned (stopped or done) before the deadline
  bool milp_optimal = false;
  bool milp_infeasible = false;
  double milp_bound = -std::numeric_limits<double>::infinity();  // scaled
  std::vector<double> milp_x;
  int milp_start = kNoStart;
  std::optional<RematSchedule> rounded_start;  // the rounded relaxation CBC started from
  bool killed = false;                         // the child was still running at the deadline
};

ExactRun RunExact(const RematGraph& g, uint64_t budget, const Lp& lp, const RematSolution* start,
                  Clock::time_point end, bool log, bool milp) {
  auto t0 = Clock::now();
  std::vector<CoinBigIndex> cstart;
  std::vector<int> index;
  std::vector<double> value;
  lp.Csc(&cstart, &index, &value);
  int n = static_cast<int>(g.nodes.size());
  Streamed st = RunStreaming(end, !log, [&](const Send& send) {
    OsiClpSolverInterface solver;
    solver.messageHandler()->setLogLevel(log ? 1 : 0);
    solver.loadProblem(lp.ncols, static_cast<int>(lp.rowlb.size()), cstart.data(), index.data(),
                       value.data(), lp.collb.data(), lp.colub.data(), lp.obj.data(),
                       lp.rowlb.data(), lp.rowub.data());
    for (int c = 0; c < lp.ncols; ++c)
      if (lp.integer[c]) solver.setInteger(c);
    solver.getModelPtr()->setMaximumWallSeconds(std::max(0.1, SecondsLeft(end)));
    solver.initialSolve();
    bool proven = solver.isProvenOptimal();
    std::vector<double> m{kLpMessage, proven ? 1.0 : 0.0,
                          solver.isProvenPrimalInfeasible() ? 1.0 : 0.0, solver.getObjValue(),
                          std::chrono::duration<double>(Clock::now() - t0).count()};
    const double* x = solver.getColSolution();
    if (proven) m.insert(m.end(), x, x + lp.ncols);
    send(m);
    if (!milp || !proven) return;
    // Start from the better of the given schedule and the rounded relaxation.
    int kind = kNoStart;
    const RematSchedule* from = nullptr;
    double from_cost = 0;
    if (start && start->fits && !start->stages.R.empty()) {
      kind = kGivenStart;
      from = &start->stages;
      from_cost = start->cost;
    }
    Clock::time_point repair_end = After(Clock::now(), 0.1 * SecondsLeft(end));
    std::optional<RematSolution> rounded = RoundRelaxation(g, lp, budget, x, repair_end);
    if (rounded && rounded->fits && (!from || rounded->cost < from_cost)) {
      kind = kRoundedStart;
      from = &rounded->stages;
      std::vector<double> kept{kStartMessage};
      for (int t = 0; t < n; ++t)
        for (int i = 0; i < t; ++i) kept.push_back(from->S[t][i]);
      send(kept);
    }
    CbcModel model(solver);
    CbcMain0(model);
    // CBC takes a while to wind up after it stops (undoing its preprocessing, a last solve of
    // the full model): it stops a tenth of the time left and 1.5 s before the deadline (at most
    // a third of the time left).
    double wind_up = std::min(1.5 + 0.1 * SecondsLeft(end), SecondsLeft(end) / 3);
    StopAt handler(After(end, -wind_up));
    model.passInEventHandler(&handler);
    if (from) {
      std::vector<std::pair<std::string, double>> values;
      for (int t = 0; t < n; ++t) {
        for (int i = 0; i <= t; ++i)
          values.push_back({solver.getColName(lp.R(t, i)), from->R[t][i]});
        for (int i = 0; i < t; ++i)
          values.push_back({solver.getColName(lp.S(t, i)), from->S[t][i]});
      }
      model.setMIPStart(values);
    }
    std::string seconds = std::to_string(std::max(0.2, SecondsLeft(end) - wind_up));
    std::vector<const char*> args{"vramsim",       "-log",    log ? "1" : "0",
                                  "-timeMode",     "elapsed", "-sec",
                                  seconds.c_str(), "-solve",  "-quit"};
    CbcMain1(static_cast<int>(args.size()), args.data(), model);
    std::vector<double> r{kMilpMessage, model.isProvenOptimal() ? 1.0 : 0.0,
                          model.isProvenInfeasible() ? 1.0 : 0.0, model.getBestPossibleObjValue(),
                          static_cast<double>(kind)};
    if (const double* best = model.bestSolution()) r.insert(r.end(), best, best + lp.ncols);
    send(r);
  });
  ExactRun ex;
  ex.killed = !st.finished;
  for (std::vector<double>& m : st.messages) {
    if (m.size() >= 5 && m[0] == kLpMessage) {
      ex.lp_solved = m[1] > 0.5;
      ex.lp_infeasible = m[2] > 0.5;
      ex.lp_objective = m[3];
      ex.lp_s = m[4];
      if (static_cast<int>(m.size()) == 5 + lp.ncols) ex.lp_x.assign(m.begin() + 5, m.end());
      if (ex.lp_x.empty()) ex.lp_solved = false;
    } else if (m.size() == 1 + static_cast<size_t>(n) * (n - 1) / 2 && m[0] == kStartMessage) {
      std::vector<std::vector<uint8_t>> S(n);
      size_t at = 1;
      for (int t = 0; t < n; ++t) {
        S[t].assign(t, 0);
        for (int i = 0; i < t; ++i) S[t][i] = m[at++] > 0.5 ? 1 : 0;
      }
      ex.rounded_start = ClosureFromKept(g, std::move(S));
    } else if (m.size() >= 5 && m[0] == kMilpMessage) {
      ex.milp_returned = true;
      ex.milp_optimal = m[1] > 0.5;
      ex.milp_infeasible = m[2] > 0.5;
      if (std::isfinite(m[3]) && std::abs(m[3]) < 1e30) ex.milp_bound = m[3];
      ex.milp_start = static_cast<int>(m[4]);
      if (static_cast<int>(m.size()) == 5 + lp.ncols) ex.milp_x.assign(m.begin() + 5, m.end());
    }
  }
  return ex;
}

const char* StartName(int kind) {
  return kind == kGivenStart ? "heuristic" : kind == kRoundedStart ? "lp-rounding" : "no";
}

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

Result<RematSolution> SolveRematLpRounding(const RematGraph& g, uint64_t budget,
                                           const RematOptions& options) {
  auto t0 = Clock::now();
  Lp lp = BuildCheckmate(g, budget);
  ExactRun ex = RunExact(g, budget, lp, nullptr, After(t0, options.time_limit_s), options.log,
                         /*milp=*/false);
  if (ex.lp_infeasible) return Error{"lp-rounding: the LP relaxation is infeasible at this budget"};
  if (!ex.lp_solved)
    return Error{"lp-rounding: the LP relaxation was not solved in the time limit"};
  auto best = RoundRelaxation(g, lp, budget, ex.lp_x.data(), After(t0, options.time_limit_s));
  if (!best) return Error{"lp-rounding: no rounding gives a valid schedule"};
  best->lower_bound = std::max(best->lower_bound, ex.lp_objective / lp.cost_scale);
  best->bound_source = "lp";
  best->note = "LP relaxation solved";
  best->solve_ms = MsSince(t0);
  return std::move(best.value());
}

Result<RematSolution> SolveRematMilp(const RematGraph& g, uint64_t budget,
                                     const RematOptions& options, const RematSolution* start) {
  auto t0 = Clock::now();
  int n = static_cast<int>(g.nodes.size());
  if (options.max_milp_nonzeros && CountNonzeros(g) > options.max_milp_nonzeros)
    return Error{"milp: the model would have " + std::to_string(CountNonzeros(g)) +
                 " nonzeros, over the cap of " + std::to_string(options.max_milp_nonzeros)};
  Lp lp = BuildCheckmate(g, budget);
  ExactRun ex =
      RunExact(g, budget, lp, start, After(t0, options.time_limit_s), options.log, /*milp=*/true);
  if (ex.milp_x.empty()) {
    if (ex.lp_infeasible || ex.milp_infeasible)
      return Error{"milp: no schedule in Checkmate's stage space fits the budget"};
    return Error{std::string("milp: ") + (ex.killed ? "CBC did not finish within the time limit"
                                                    : "no schedule found in the time limit")};
  }
  auto sol = FromStagesTidied(g, StagesFromColumns(lp, n, ex.milp_x.data()), budget, "milp");
  if (!sol) return sol.error();
  sol->optimal = ex.milp_optimal;
  double bound = std::max(ex.milp_bound, ex.lp_solved ? ex.lp_objective : -1e300);
  if (bound > -1e300) {
    sol->lower_bound = std::max(sol->lower_bound, std::min(bound / lp.cost_scale, sol->cost));
    sol->bound_source = ex.milp_bound >= bound ? "milp" : "lp";
  }
  if (ex.milp_optimal) sol->lower_bound = sol->cost;
  sol->note = std::string(ex.milp_optimal ? "proven optimal" : "stopped at the time limit") +
              ", started from " + StartName(ex.milp_start) + " schedule";
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

std::optional<std::string> InfeasibilityProof(const RematGraph& g, uint64_t budget) {
  int at = 0;
  uint64_t least = LeastFeasibleBudget(g, &at);
  if (least <= budget) return std::nullopt;
  return std::string("no schedule fits (proven): ") + NodeLabel(g, at) +
         " needs its inputs and output alive together, " + std::to_string(least) +
         " bytes, over the budget of " + std::to_string(budget);
}

Result<RematSolution> SolveRemat(const RematGraph& g, uint64_t budget,
                                 const RematOptions& options) {
  auto t0 = Clock::now();
  // One deadline for every phase, less a reserve for the caller's replay and output.
  double reserve = std::min(kRematReserveSeconds, 0.05 * options.time_limit_s);
  Clock::time_point end = After(t0, options.time_limit_s - reserve);
  if (auto why = InfeasibilityProof(g, budget)) return Error{*why};
  std::optional<RematSolution> best;
  double bound = BaselineCost(g);
  std::string bound_source = "baseline";
  std::vector<std::string> notes;
  auto raise_bound = [&](double b, const char* source) {
    if (b > bound) {
      bound = b;
      bound_source = source;
    }
  };
  auto consider = [&](Result<RematSolution> r) {
    if (!r) {
      notes.push_back(r.error().message);
      return;
    }
    if (!best || Better(*r, *best)) best = std::move(r.value());
  };
  // Heuristic starts, in a tenth of the time: the greedy from the baseline (keeping everything)
  // and, when that does not fit, from keeping nothing; DTR.
  std::optional<RematSolution> start;
  auto offer_start = [&](const Result<RematSolution>& r) {
    if (r && r->fits && !r->stages.R.empty() && (!start || r->cost < start->cost))
      start = r.value();
  };
  Clock::time_point heuristics_end = After(Clock::now(), 0.1 * SecondsLeft(end));
  auto greedy = GreedyKept(g, budget, std::max(0.0, 0.5 * SecondsLeft(heuristics_end)));
  bool greedy_fits = greedy && greedy->fits;
  offer_start(greedy);
  consider(std::move(greedy));
  if (!greedy_fits) {
    RematSchedule nothing = NothingKept(g);
    auto from_nothing = GreedyKept(g, budget, std::max(0.0, SecondsLeft(heuristics_end)), &nothing);
    offer_start(from_nothing);
    consider(std::move(from_nothing));
  }
  auto dtr = SolveRematDtr(g, budget, std::max(0.01, SecondsLeft(heuristics_end)));
  offer_start(dtr);
  consider(std::move(dtr));
  // The exact phase, with whatever time is left.
  bool optimal = false;
  double milp_cost = 0;
  size_t nonzeros = options.max_milp_nonzeros ? CountNonzeros(g) : 0;
  if (options.max_milp_nonzeros && nonzeros > options.max_milp_nonzeros) {
    notes.push_back("milp: the model would have " + std::to_string(nonzeros) +
                    " nonzeros, over the cap of " + std::to_string(options.max_milp_nonzeros));
  } else if (SecondsLeft(end) < 0.5) {
    notes.push_back("no time left for the LP relaxation and the MILP");
  } else {
    int n = static_cast<int>(g.nodes.size());
    Lp lp = BuildCheckmate(g, budget);
    ExactRun ex = RunExact(g, budget, lp, start ? &*start : nullptr, end, options.log, true);
    if (ex.lp_solved) {
      raise_bound(ex.lp_objective / lp.cost_scale, "lp");
      if (auto r = RoundRelaxation(g, lp, budget, ex.lp_x.data(), Clock::now()))
        consider(std::move(*r));
      if (ex.rounded_start) {
        auto r = FromStagesTidied(g, *ex.rounded_start, budget, "lp-rounding");
        if (r) r->note = "rounding repaired by the greedy";
        consider(std::move(r));
      }
    } else if (ex.lp_infeasible) {
      notes.push_back(
          "the LP relaxation is infeasible: no schedule in Checkmate's stage space "
          "fits the budget");
    } else {
      notes.push_back("the LP relaxation was not solved within the time limit");
    }
    if (ex.milp_returned) raise_bound(ex.milp_bound / lp.cost_scale, "milp");
    if (!ex.milp_x.empty()) {
      auto sol = FromStagesTidied(g, StagesFromColumns(lp, n, ex.milp_x.data()), budget, "milp");
      if (sol && sol->fits) {
        optimal = ex.milp_optimal;
        milp_cost = sol->cost;
        sol->note =
            std::string(optimal ? "MILP proven optimal" : "MILP stopped at the time limit") +
            ", started from " + StartName(ex.milp_start) + " schedule";
      }
      consider(std::move(sol));
    } else if (ex.lp_solved) {
      notes.push_back(ex.milp_infeasible ? "milp: no schedule in Checkmate's stage space fits"
                      : ex.killed ? "milp: CBC was stopped at the deadline without a schedule"
                                  : "milp: no schedule found in the time limit");
    }
  }
  if (!best) {
    std::string all;
    for (const auto& s : notes) {
      if (!all.empty()) all.append("; ");
      all.append(s);
    }
    return Error{all};
  }
  // Proven optimal when the MILP proved its schedule optimal and nothing is costlier than it.
  best->optimal = optimal && best->fits && best->cost <= milp_cost * (1 + 1e-9) + 1e-12;
  best->lower_bound = best->optimal ? best->cost : std::min(bound, best->cost);
  best->bound_source = best->optimal ? "milp" : bound_source;
  for (const auto& s : notes) {
    if (!best->note.empty()) best->note.append("; ");
    best->note.append(s);
  }
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

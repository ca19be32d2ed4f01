// The scalable remat heuristic (SolveRematEvict) and what surrounds it: feasible schedules that
// replay to their reported peak on generated random layered graphs of 500 to 2000 nodes, never
// cheaper than the optimum (brute force) on small graphs, SolveRemat's deadline and memory-free
// answer on n2000, and the schedule JSON checked by validation/remat_check.py.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "importer/remat_graph.h"
#include "planners/planner_remat.h"

using namespace vramsim;

namespace {

const std::string kData = VRAMSIM_REMAT_DATA;

RematGraph Load(int n) {
  auto g = LoadRematGraph(kData + "/random_layered_n" + std::to_string(n) + ".json");
  EXPECT_TRUE(g) << g.error().message;
  return g.value();
}

// Deterministic pseudo-random DAGs (a linear congruential generator), as in planner_test.cc.
RematGraph RandomDag(int n, uint32_t seed) {
  uint32_t x = seed;
  auto next = [&] {
    x = x * 1664525u + 1013904223u;
    return x >> 8;
  };
  std::vector<RematNode> nodes;
  for (int i = 0; i < n; ++i) {
    RematNode node;
    node.name = "v";
    node.name += std::to_string(i);
    node.cost = static_cast<double>(1 + next() % 9);
    node.memory = 1 + next() % 20;
    nodes.push_back(node);
  }
  std::vector<std::pair<int, int>> edges;
  for (int j = 1; j < n; ++j) {
    edges.push_back({j - 1, j});
    for (int i = 0; i + 1 < j; ++i)
      if (next() % 4 == 0) edges.push_back({i, j});
  }
  return MakeRematGraph(std::move(nodes), edges).value();
}

void ExpectReplays(const RematGraph& g, const RematSolution& sol, uint64_t budget) {
  auto replay = ReplaySequence(g, sol.steps);
  ASSERT_TRUE(replay) << replay.error().message;
  EXPECT_EQ(replay->peak_bytes, sol.peak_bytes);
  EXPECT_NEAR(replay->cost, sol.cost, 1e-9 * sol.cost);
  EXPECT_LE(replay->peak_bytes, budget);
  EXPECT_GE(sol.cost, BaselineCost(g) * (1 - 1e-12));
}

// At 0.9 and 0.8 of the baseline peak every generated graph gets a schedule from the passes
// in a second or two; at 0.7 they may all fail (no other stage order is searched), but what
// they return fits and replays.
TEST(RematEvict, FeasibleAndReplayedOnGeneratedGraphs) {
  for (int n : {500, 1000, 2000}) {
    RematGraph g = Load(n);
    ASSERT_EQ(g.nodes.size(), static_cast<size_t>(n));
    for (double f : {0.9, 0.8, 0.7}) {
      uint64_t budget = static_cast<uint64_t>(f * static_cast<double>(BaselinePeak(g)));
      // The first pass alone is the quick answer (its time is bench/bench_remat.cc's).
      auto first = SolveRematEvict(g, budget, 0, 1);
      if (first) ExpectReplays(g, *first, budget);
      auto sol = SolveRematEvict(g, budget, 10);
      if (f < 0.75 && !sol) continue;
      ASSERT_TRUE(sol) << n << " at " << f << ": " << sol.error().message;
      EXPECT_TRUE(sol->fits) << n << " at " << f;
      EXPECT_EQ(sol->method, "evict");
      ExpectReplays(g, *sol, budget);
    }
  }
}

// At 0.7 on n2000 every weighting ran away before a remade input read by an evicted, still
// needed output was kept inside the stage (each later stage remade the same ancestry); the
// second weighting now fits, and the schedule replays within the budget.
TEST(RematEvict, TwoThousandNodesAtSevenTenths) {
  RematGraph g = Load(2000);
  uint64_t budget = static_cast<uint64_t>(0.7 * static_cast<double>(BaselinePeak(g)));
  auto sol = SolveRematEvict(g, budget, 0, 2);
  ASSERT_TRUE(sol) << sol.error().message;
  EXPECT_TRUE(sol->fits);
  ExpectReplays(g, *sol, budget);
}

TEST(RematEvict, MorePassesNeverWorse) {
  RematGraph g = Load(500);
  uint64_t budget = BaselinePeak(g) * 8 / 10;
  auto one = SolveRematEvict(g, budget, 0, 1);
  auto all = SolveRematEvict(g, budget, 0, 0);
  ASSERT_TRUE(one) << one.error().message;
  ASSERT_TRUE(one && all);
  EXPECT_LE(all->cost, one->cost);
  ExpectReplays(g, *all, budget);
}

TEST(RematEvict, NeverBelowTheOptimumOnSmallGraphs) {
  int compared = 0;
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    RematGraph g = RandomDag(5 + seed % 4, seed * 7919);
    uint64_t lo = LeastFeasibleBudget(g), hi = BaselinePeak(g);
    for (int i = 0; i <= 4; ++i) {
      uint64_t budget = lo + (hi - lo) * i / 4;
      auto brute = SolveRematBruteForce(g, budget);
      if (!brute) continue;
      auto sol = SolveRematEvict(g, budget);
      if (!sol || !sol->fits) continue;
      ExpectReplays(g, *sol, budget);
      EXPECT_GE(sol->cost, brute->cost - 1e-9) << "seed " << seed << " budget " << budget;
      ++compared;
    }
  }
  EXPECT_GE(compared, 20);
}

// SolveRemat on n2000: the Checkmate model is over the size cap, so the answer is the
// heuristic's, on time, with the segment relaxation's bound (bound.cc) below its cost.
TEST(RematEvict, SolveRematOnTwoThousandNodesKeepsItsDeadline) {
  RematGraph g = Load(2000);
  uint64_t budget = BaselinePeak(g) * 8 / 10;
  RematOptions o;
  // Half for the passes (a safety cut), the rest for the bound's LP (about 2 s alone here).
  o.time_limit_s = 10;
  auto t0 = std::chrono::steady_clock::now();
  auto r = SolveRemat(g, budget, o);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_LE(s, o.time_limit_s * 1.1);
  EXPECT_TRUE(r->fits);
  EXPECT_EQ(r->bound_source.rfind("segment", 0), 0u) << r->bound_source;
  EXPECT_LE(r->lower_bound, r->cost);
  ExpectReplays(g, *r, budget);
}

TEST(RematScheduleJson, NamesNodesAsTheFileDoes) {
  RematGraph g = Load(500);
  uint64_t budget = BaselinePeak(g) * 8 / 10;
  auto sol = SolveRematEvict(g, budget, 0, 1);
  ASSERT_TRUE(sol);
  nlohmann::json j = RematScheduleJson(g, *sol);
  EXPECT_EQ(j["format"], "vramsim-remat-schedule/1");
  EXPECT_EQ(j["peak_bytes"].get<uint64_t>(), sol->peak_bytes);
  ASSERT_EQ(j["steps"].size(), sol->steps.size());
  // The first step computes the first node of the file's graph.order (an integer id).
  EXPECT_EQ(j["steps"][0][0], "compute");
  EXPECT_EQ(j["steps"][0][1].dump(), g.ids[sol->steps[0].node]);
}

// The independent checker (plain python3) replays the schedule from the graph file and agrees.
TEST(RematScheduleJson, CheckerAgrees_python) {
  if (std::system("python3 --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  std::string graph = kData + "/random_layered_n1000.json";
  RematGraph g = Load(1000);
  uint64_t budget = BaselinePeak(g) * 9 / 10;
  auto sol = SolveRematEvict(g, budget, 0, 1);
  ASSERT_TRUE(sol);
  std::string plan = testing::TempDir() + "/remat_plan.json";
  nlohmann::json j{{"budget", budget},
                   {"peak", sol->peak_bytes},
                   {"cost", sol->cost},
                   {"schedule", RematScheduleJson(g, *sol)}};
  std::ofstream(plan) << j.dump();
  std::string cmd =
      std::string("python3 ") + VRAMSIM_REMAT_CHECK + " " + graph + " " + plan + " > /dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  // A schedule that computes a node before its input is caught.
  auto bad = j;
  std::swap(bad["schedule"]["steps"][0], bad["schedule"]["steps"][1]);
  std::ofstream(plan) << bad.dump();
  EXPECT_NE(std::system((cmd + " 2>&1").c_str()), 0);
}

}  // namespace

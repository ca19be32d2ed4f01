// The segment-covering lower bound (planners/remat/bound.cc, an internal of the remat planner):
// a hand-computed chain where the LP and the integer bound differ, and never above the optimum
// of Checkmate's stage space (brute force) on small random DAGs.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "importer/remat_graph.h"
#include "planners/planner_remat.h"
#include "planners/remat/child_process.h"
#include "planners/remat/internal.h"

using namespace vramsim;
using namespace vramsim::remat_internal;

namespace {

RematNode Node(const char* name, double cost, uint64_t memory) {
  RematNode n;
  n.name = name;
  n.cost = cost;
  n.memory = memory;
  return n;
}

Clock::time_point Soon() { return After(Clock::now(), 20); }

}  // namespace

// a(10 bytes) -> b(1) -> c(1) -> d(0), and a -> d; every cost 1 (baseline 4).
// Baseline memory at each first computation: a 10; b a+b = 11; c a+b+c = 12; d a+c+d = 11.
// Budget 11: at c (inputs b), a is alive only for d, so a must go inside its segment (b, d):
// y(a) * 10 >= 12 - 11. The LP takes y = 0.1 (bound 4.1); an integer y is 1: one
// recomputation of a (bound 5). A schedule of cost 5 exists: free a after b, remake it after c
// (c 1 + a 10 = 11), then d (a + c + d = 11).
TEST(RematBound, ChainHandComputed) {
  auto g = MakeRematGraph({Node("a", 1, 10), Node("b", 1, 1), Node("c", 1, 1), Node("d", 1, 0)},
                          {{0, 1}, {1, 2}, {2, 3}, {0, 3}});
  ASSERT_TRUE(g) << g.error().message;
  ASSERT_EQ(BaselinePeak(*g), 12u);
  SegmentBoundResult r = SegmentBound(*g, 11, Soon(), /*milp=*/true);
  ASSERT_TRUE(r.lp_solved);
  EXPECT_FALSE(r.infeasible);
  EXPECT_NEAR(r.lp_bound, 4.1, 1e-4);
  ASSERT_TRUE(r.milp_returned);
  EXPECT_NEAR(r.milp_bound, 5.0, 1e-4);
  auto brute = SolveRematBruteForce(*g, 11);
  ASSERT_TRUE(brute) << brute.error().message;
  EXPECT_NEAR(brute->cost, 5.0, 1e-9);
  // Budget 10: b's input a and b itself (11 bytes) cannot be dropped at b's computation.
  SegmentBoundResult tight = SegmentBound(*g, 10, Soon(), true);
  EXPECT_TRUE(tight.infeasible);
  EXPECT_EQ(tight.infeasible_at, 1);
}

// Deterministic pseudo-random DAGs (a linear congruential generator), as in
// remat_evict_test.cc.
RematGraph RandomDag(int n, uint32_t seed) {
  uint32_t x = seed;
  auto next = [&] {
    x = x * 1664525u + 1013904223u;
    return x >> 8;
  };
  std::vector<RematNode> nodes;
  for (int i = 0; i < n; ++i) nodes.push_back(Node("v", 1 + next() % 9, 1 + next() % 20));
  std::vector<std::pair<int, int>> edges;
  for (int j = 1; j < n; ++j) {
    edges.push_back({j - 1, j});
    for (int i = 0; i + 1 < j; ++i)
      if (next() % 4 == 0) edges.push_back({i, j});
  }
  return MakeRematGraph(std::move(nodes), edges).value();
}

// The bound never exceeds the least cost in the stage space, and says infeasible only where
// brute force finds nothing that fits; with the inputs' terms (an output remade past the last
// reader of one of its inputs needs that input kept or remade) it is never below the plain
// relaxation, never above the optimum, and above the plain one somewhere.
TEST(RematBound, InputsTermsStayBelowTheOptimum) {
  int compared = 0, raised = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    RematGraph g = RandomDag(5 + seed % 2, seed * 7919 + 3);
    uint64_t lo = LeastFeasibleBudget(g), hi = BaselinePeak(g);
    for (int i = 0; i <= 4; ++i) {
      uint64_t budget = lo + (hi - lo) * i / 5;
      auto brute = SolveRematBruteForce(g, budget);
      if (!brute || !brute->fits) continue;
      SegmentBoundResult plain = SegmentBound(g, budget, Soon(), true, /*need_inputs=*/false);
      SegmentBoundResult with = SegmentBound(g, budget, Soon(), true, /*need_inputs=*/true);
      ASSERT_TRUE(plain.lp_solved && with.lp_solved) << "seed " << seed;
      EXPECT_FALSE(with.infeasible) << "seed " << seed << " budget " << budget;
      EXPECT_LE(with.bound, brute->cost + 1e-9) << "seed " << seed << " budget " << budget;
      EXPECT_GE(with.bound, plain.bound - 1e-6) << "seed " << seed << " budget " << budget;
      raised += with.bound > plain.bound + 1e-6;
      ++compared;
    }
  }
  EXPECT_GE(compared, 100);
  EXPECT_GE(raised, 1);
}

// The bound never exceeds the least cost in the stage space, and says infeasible only where
// brute force finds nothing that fits.
TEST(RematBound, NeverAboveTheOptimumOnSmallGraphs) {
  int compared = 0;
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    RematGraph g = RandomDag(5 + seed % 3, seed * 104729);
    uint64_t lo = LeastFeasibleBudget(g), hi = BaselinePeak(g);
    for (int i = 0; i <= 3; ++i) {
      uint64_t budget = lo + (hi - lo) * i / 4;
      SegmentBoundResult r = SegmentBound(g, budget, Soon(), true);
      auto brute = SolveRematBruteForce(g, budget);
      if (!brute || !brute->fits) continue;
      EXPECT_FALSE(r.infeasible) << "seed " << seed << " budget " << budget;
      EXPECT_LE(r.bound, brute->cost + 1e-9) << "seed " << seed << " budget " << budget;
      ++compared;
    }
  }
  EXPECT_GE(compared, 16);
}

// The solver's child process (planners/remat/child_process.h): a message sent before the child
// aborts (as CBC does on some of its own failed assertions) arrives, the run is marked crashed
// and not finished, and in quiet mode what the child wrote on stderr does not reach ours.
TEST(RematChildProcess, AnAbortIsReportedAndItsNoiseKeptOffStderr) {
  ::testing::internal::CaptureStderr();
  Streamed st = RunStreaming(Soon(), /*quiet=*/true, [](const Send& send) {
    send({1.0, 2.0});
    std::fprintf(stderr, "solver.cpp:1: an assertion failed\n");
    std::abort();
  });
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(st.messages.size(), 1u);
  EXPECT_EQ(st.messages[0], (std::vector<double>{1.0, 2.0}));
  EXPECT_FALSE(st.finished);
  EXPECT_TRUE(st.crashed);
  EXPECT_EQ(err.find("assertion"), std::string::npos) << err;
  // A child that ends normally is neither.
  Streamed ok = RunStreaming(Soon(), true, [](const Send& send) { send({3.0}); });
  EXPECT_TRUE(ok.finished);
  EXPECT_FALSE(ok.crashed);
}

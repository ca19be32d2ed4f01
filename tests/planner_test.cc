// Checkpoint planners: the remat-graph importer (both JSON variants, bad files), the schedule
// replay, Checkmate's MILP and the block-chain DP/MILP against brute force on small graphs,
// heuristics never beating the optimum, block discovery on the examples, the derived block model
// against per-block simulation, predictions of scope lists, screened strategies against
// simulating every candidate, `A+B` segments, and `plan` on gpt48 at half its peak.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cli/estimate.h"
#include "cli/plan_cmd.h"
#include "importer/importer.h"
#include "importer/remat_graph.h"
#include "planners/checkpoint_planner.h"
#include "planners/planner_blocks.h"
#include "planners/planner_remat.h"

using namespace vramsim;

namespace {

const std::string kExamples = VRAMSIM_EXAMPLES;

// ---------------------------------------------------------------------------------------------
// The importer.

TEST(RematGraph, CheckmateVariant) {
  auto g = ParseRematGraph(R"({"directed": true, "graph": {"name": "tiny"},
    "nodes": [{"name": "a", "backward": false, "cost_cpu": 10, "cost_ram": 100, "id": 0},
              {"name": "b", "backward": false, "cost_cpu": 20, "cost_ram": 200, "id": 1},
              {"name": "b_grad", "backward": true, "cost_cpu": 30, "cost_ram": 50, "id": 2}],
    "links": [{"source": 0, "target": 1}, {"source": 1, "target": 2},
              {"source": 0, "target": 2}]})");
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(g->name, "tiny");
  ASSERT_EQ(g->nodes.size(), 3u);
  EXPECT_EQ(g->nodes[1].name, "b");
  EXPECT_EQ(g->nodes[1].memory, 200u);
  EXPECT_DOUBLE_EQ(g->nodes[2].cost, 30);
  EXPECT_TRUE(g->nodes[2].backward);
  EXPECT_EQ(g->deps[2], (std::vector<int>{0, 1}));
  EXPECT_EQ(g->users[0], (std::vector<int>{1, 2}));
  EXPECT_EQ(g->edge_count(), 3u);
  // a (100) + b (200) while b runs; a, b alive + b_grad (50) while b_grad runs.
  EXPECT_EQ(BaselinePeak(*g), 350u);
  EXPECT_DOUBLE_EQ(BaselineCost(*g), 60);
}

TEST(RematGraph, MoccasinVariantFollowsGraphOrder) {
  // Node names are the ids; links use "0"/"1"; graph.order is the baseline order.
  auto g = ParseRematGraph(R"({"graph": {"order": [0, 2, 1, 3]},
    "nodes": [{"out_cost": 5, "param_cost": 7, "duration": 0, "name": 0},
              {"out_cost": 6, "param_cost": 0, "duration": 2, "name": 1},
              {"out_cost": 8, "param_cost": 0, "duration": 3, "name": 2},
              {"out_cost": 1, "param_cost": 0, "duration": 4, "name": 3}],
    "links": [{"0": 0, "1": 2}, {"0": 2, "1": 1}, {"0": 1, "1": 3}]})");
  ASSERT_TRUE(g) << g.error().message;
  ASSERT_EQ(g->nodes.size(), 4u);
  EXPECT_EQ(g->nodes[1].name, "n2");
  EXPECT_EQ(g->nodes[2].name, "n1");
  EXPECT_EQ(g->static_bytes, 7u);
  EXPECT_EQ(g->deps[2], (std::vector<int>{1}));
  // Chain 0 -> 2 -> 1 -> 3: the largest pair is n2 (8) + n1 (6), plus the 7 parameter bytes.
  EXPECT_EQ(BaselinePeak(*g), 21u);
}

TEST(RematGraph, KahnOrderWithoutOrder) {
  auto g = ParseRematGraph(R"({"nodes": [{"id": "x", "cost_cpu": 1, "cost_ram": 1},
    {"id": "y", "cost_cpu": 1, "cost_ram": 1}], "links": [{"source": "y", "target": "x"}]})");
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(g->nodes[0].name, "ny");
}

void ExpectBad(const std::string& text, const std::string& needle) {
  auto g = ParseRematGraph(text, "bad.json");
  ASSERT_FALSE(g) << text;
  EXPECT_NE(g.error().message.find(needle), std::string::npos) << g.error().message;
  EXPECT_NE(g.error().message.find("bad.json"), std::string::npos) << g.error().message;
}

TEST(RematGraph, BadFiles) {
  ExpectBad("{\"nodes\": [", "not valid JSON");
  ExpectBad("[1, 2]", "JSON object");
  ExpectBad(R"({"links": []})", "'nodes'");
  ExpectBad(R"({"nodes": [], "links": []})", "no nodes");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1}], "links": []})", "cost_ram");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": -1, "cost_ram": 1}], "links": []})",
            "non-negative");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": "x", "cost_ram": 1}], "links": []})",
            "not a number");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1}],
               "links": [{"source": 0, "target": 5}]})",
            "no node with id 5");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1},
                          {"id": 0, "cost_cpu": 1, "cost_ram": 1}], "links": []})",
            "twice");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1},
                          {"id": 1, "cost_cpu": 1, "cost_ram": 1}],
               "links": [{"source": 0, "target": 1}, {"source": 1, "target": 0}]})",
            "cycle");
  ExpectBad(R"({"graph": {"order": [1, 0]},
               "nodes": [{"name": 0, "duration": 1, "out_cost": 1, "param_cost": 0},
                         {"name": 1, "duration": 1, "out_cost": 1, "param_cost": 0}],
               "links": [{"0": 0, "1": 1}]})",
            "not a topological order");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1}],
               "links": [{"from": 0, "to": 0}]})",
            "source/target");
  auto missing = LoadRematGraph("/nonexistent/graph.json");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("cannot open"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Small graphs: hand-made chains and DAGs, and deterministic pseudo-random ones.

RematGraph Make(std::vector<std::pair<double, uint64_t>> cost_mem,
                std::vector<std::pair<int, int>> edges) {
  std::vector<RematNode> nodes;
  for (size_t i = 0; i < cost_mem.size(); ++i) {
    std::string name = "v";  // not "v" + to_string(i): GCC 12's false -Wrestrict (PR 105329)
    name += std::to_string(i);
    nodes.push_back({name, cost_mem[i].first, cost_mem[i].second, 0, false});
  }
  return MakeRematGraph(std::move(nodes), edges).value();
}

// A training-like chain: forward f0..f2, loss, backward b2..b0 reading the forward outputs.
RematGraph TrainingChain() {
  return Make({{4, 10}, {3, 20}, {5, 15}, {1, 5}, {6, 15}, {4, 20}, {5, 10}},
              {{0, 1}, {1, 2}, {2, 3}, {3, 4}, {2, 4}, {4, 5}, {1, 5}, {5, 6}, {0, 6}});
}

// A diamond-and-skip DAG.
RematGraph Diamond() {
  return Make({{2, 8}, {3, 12}, {1, 9}, {4, 6}, {2, 14}, {3, 5}},
              {{0, 1}, {0, 2}, {1, 3}, {2, 3}, {3, 4}, {1, 4}, {0, 5}, {4, 5}});
}

// Deterministic pseudo-random DAGs (a linear congruential generator).
RematGraph RandomDag(int n, uint32_t seed) {
  uint32_t x = seed;
  auto next = [&] {
    x = x * 1664525u + 1013904223u;
    return x >> 8;
  };
  std::vector<std::pair<double, uint64_t>> cm;
  for (int i = 0; i < n; ++i) cm.push_back({static_cast<double>(1 + next() % 9), 1 + next() % 20});
  std::vector<std::pair<int, int>> edges;
  for (int j = 1; j < n; ++j) {
    edges.push_back({j - 1, j});
    for (int i = 0; i + 1 < j; ++i)
      if (next() % 4 == 0) edges.push_back({i, j});
  }
  return Make(cm, edges);
}

std::vector<RematGraph> SmallGraphs() {
  std::vector<RematGraph> v{TrainingChain(), Diamond()};
  v.push_back(Make({{1, 4}, {2, 6}, {3, 8}, {4, 6}, {5, 4}},
                   {{0, 1}, {1, 2}, {2, 3}, {3, 4}, {0, 4}, {1, 3}}));  // 5-node chain + skips
  for (uint32_t seed = 1; seed <= 4; ++seed) v.push_back(RandomDag(5 + seed % 3, seed * 7919));
  return v;
}

// Budgets from the least feasible to the baseline peak.
std::vector<uint64_t> Budgets(const RematGraph& g) {
  uint64_t lo = LeastFeasibleBudget(g), hi = BaselinePeak(g);
  std::vector<uint64_t> b;
  for (int i = 0; i <= 4; ++i) b.push_back(lo + (hi - lo) * i / 4);
  return b;
}

TEST(Replay, CatchesInvalidSchedules) {
  RematGraph g = TrainingChain();
  using K = RematStep::Kind;
  auto r = ReplaySequence(g, {{K::kCompute, 1}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not alive"), std::string::npos);
  r = ReplaySequence(g, {{K::kCompute, 0}, {K::kCompute, 0}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("while its output is alive"), std::string::npos);
  r = ReplaySequence(g, {{K::kCompute, 0}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("never computes"), std::string::npos);
  r = ReplaySequence(g, {{K::kFree, 0}});
  ASSERT_FALSE(r);
}

TEST(Remat, BaselineStagesReplayToTheBaselinePeak) {
  for (const RematGraph& g : SmallGraphs()) {
    auto seq = StagesToSequence(g, BaselineSchedule(g));
    ASSERT_TRUE(seq);
    auto st = ReplaySequence(g, *seq);
    ASSERT_TRUE(st) << st.error().message;
    EXPECT_EQ(st->peak_bytes, BaselinePeak(g));
    EXPECT_DOUBLE_EQ(st->cost, BaselineCost(g));
    EXPECT_EQ(st->computations, g.nodes.size());
  }
}

TEST(Remat, MilpEqualsBruteForce) {
  RematOptions o;
  o.time_limit_s = 60;
  int compared = 0;
  for (const RematGraph& g : SmallGraphs()) {
    for (uint64_t budget : Budgets(g)) {
      auto brute = SolveRematBruteForce(g, budget);
      auto milp = SolveRematMilp(g, budget, o);
      ASSERT_EQ(brute.ok(), milp.ok()) << g.nodes.size() << " nodes, budget " << budget << ": "
                                       << (brute ? milp.error().message : brute.error().message);
      if (!brute) continue;
      EXPECT_TRUE(milp->optimal);
      EXPECT_TRUE(milp->fits);
      EXPECT_LE(milp->peak_bytes, budget);
      EXPECT_NEAR(milp->cost, brute->cost, 1e-6) << g.nodes.size() << " nodes, budget " << budget;
      // The full planner agrees and its schedule replays.
      auto full = SolveRemat(g, budget, o);
      ASSERT_TRUE(full) << full.error().message;
      EXPECT_NEAR(full->cost, brute->cost, 1e-6);
      EXPECT_TRUE(full->optimal);
      auto replay = ReplaySequence(g, full->steps);
      ASSERT_TRUE(replay) << replay.error().message;
      EXPECT_LE(replay->peak_bytes, budget);
      ++compared;
    }
  }
  EXPECT_GE(compared, 20);
}

TEST(Remat, HeuristicsNeverBeatTheOptimum) {
  RematOptions o;
  o.time_limit_s = 30;
  for (const RematGraph& g : SmallGraphs()) {
    for (uint64_t budget : Budgets(g)) {
      auto brute = SolveRematBruteForce(g, budget);
      if (!brute) continue;
      auto dtr = SolveRematDtr(g, budget);
      if (dtr && dtr->fits) {
        EXPECT_GE(dtr->cost, brute->cost - 1e-9);
        auto replay = ReplaySequence(g, dtr->steps);
        ASSERT_TRUE(replay) << replay.error().message;
        EXPECT_LE(replay->peak_bytes, budget);
      }
      auto lp = SolveRematLpRounding(g, budget, o);
      if (lp && lp->fits) {
        EXPECT_GE(lp->cost, brute->cost - 1e-9);
      }
      if (lp) {
        EXPECT_LE(lp->lower_bound, brute->cost * (1 + 1e-6));  // the LP bounds the optimum
      }
    }
  }
}

TEST(Remat, BelowTheLeastFeasibleBudgetIsAClearError) {
  RematGraph g = Diamond();
  auto r = SolveRemat(g, LeastFeasibleBudget(g) - 1, {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no schedule fits (proven)"), std::string::npos)
      << r.error().message;
  EXPECT_TRUE(InfeasibilityProof(g, LeastFeasibleBudget(g) - 1));
  EXPECT_FALSE(InfeasibilityProof(g, LeastFeasibleBudget(g)));
}

// The time limit bounds the whole solve (heuristics, LP relaxation, MILP), whatever CBC does,
// and the answer still comes with a replayed schedule and a lower bound.
TEST(Remat, TimeLimitBoundsTheWholeSolve) {
  RematGraph g = RandomDag(70, 12345);
  uint64_t budget = BaselinePeak(g) * 8 / 10;
  ASSERT_LE(LeastFeasibleBudget(g), budget);
  RematOptions o;
  o.time_limit_s = 3;
  auto t0 = std::chrono::steady_clock::now();
  auto r = SolveRemat(g, budget, o);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LE(seconds, o.time_limit_s + 0.25);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->fits);
  auto replay = ReplaySequence(g, r->steps);
  ASSERT_TRUE(replay) << replay.error().message;
  EXPECT_LE(replay->peak_bytes, budget);
  EXPECT_NEAR(replay->cost, r->cost, 1e-9 * r->cost);
  EXPECT_GE(r->lower_bound, BaselineCost(g));
  EXPECT_LE(r->lower_bound, r->cost);
  EXPECT_GE(r->gap_pct(), 0);
  EXPECT_TRUE(r->bound_source == "milp" || r->bound_source == "lp" ||
              r->bound_source == "segment-lp" || r->bound_source == "segment-milp" ||
              r->bound_source == "baseline")
      << r->bound_source;
  if (r->optimal) {
    EXPECT_DOUBLE_EQ(r->lower_bound, r->cost);
  }
}

// ---------------------------------------------------------------------------------------------
// The block-chain model.

BlockModel Chain(std::vector<uint64_t> flops, std::vector<int64_t> saved,
                 std::vector<uint64_t> level) {
  BlockModel m;
  for (size_t i = 0; i < flops.size(); ++i) m.scopes.push_back(fmt::format("b{}", i));
  m.forward_flops = std::move(flops);
  m.saved = std::move(saved);
  m.level = std::move(level);
  return m;
}

std::vector<BlockModel> SmallChains() {
  std::vector<BlockModel> v;
  // Uniform blocks, levels growing to the loss then the backward.
  v.push_back(Chain({10, 10, 10, 10, 10}, {5, 5, 5, 5, 5}, {20, 30, 40, 50, 60, 70}));
  // Mixed costs and savings, a block that saves nothing, a level that is not monotone.
  v.push_back(Chain({3, 9, 4, 7, 2, 8}, {6, 10, 0, 7, 3, 9}, {15, 25, 40, 38, 55, 60, 64}));
  uint32_t x = 12345;
  auto next = [&] {
    x = x * 1103515245u + 12345u;
    return (x >> 16) & 0x7fff;
  };
  for (int c = 0; c < 6; ++c) {
    size_t n = 5 + c % 4;
    std::vector<uint64_t> f, level{static_cast<uint64_t>(50 + next() % 20)};
    std::vector<int64_t> s;
    for (size_t i = 0; i < n; ++i) {
      f.push_back(1 + next() % 50);
      s.push_back(static_cast<int64_t>(next() % 30) - 3);
      level.push_back(level.back() + next() % 40);
    }
    v.push_back(Chain(f, s, level));
  }
  return v;
}

TEST(Blocks, DpAndMilpEqualBruteForce) {
  int compared = 0;
  for (const BlockModel& m : SmallChains()) {
    uint64_t hi = m.level.back() + 5;
    for (uint64_t budget = m.level[0]; budget <= hi; budget += 3) {
      auto brute = SolveBlocksBruteForce(m, budget);
      auto dp = SolveBlocksDp(m, budget);
      auto milp = SolveBlocksMilp(m, budget, 30);
      ASSERT_EQ(brute.ok(), dp.ok()) << "budget " << budget;
      ASSERT_EQ(brute.ok(), milp.ok()) << "budget " << budget;
      if (!brute) continue;
      EXPECT_EQ(dp->flops, brute->flops) << "budget " << budget;
      EXPECT_EQ(milp->flops, brute->flops) << "budget " << budget;
      EXPECT_TRUE(dp->optimal);
      EXPECT_TRUE(milp->optimal);
      EXPECT_LE(dp->model_peak, budget);
      EXPECT_LE(milp->model_peak, budget);
      ++compared;
    }
  }
  EXPECT_GE(compared, 50);
}

TEST(Blocks, HeuristicsNeverBeatTheOptimum) {
  for (const BlockModel& m : SmallChains()) {
    size_t n = m.size();
    for (uint64_t budget = m.level[0]; budget <= m.level.back(); budget += 4) {
      auto dp = SolveBlocksDp(m, budget);
      if (!dp) continue;
      auto dtr = SolveBlocksDtr(m, budget);
      if (dtr && dtr->model_peak <= budget) {
        EXPECT_GE(dtr->flops, dp->flops);
      }
      for (size_t k = 1; k <= n; ++k) {  // every k-th block
        std::vector<bool> c(n, false);
        for (size_t i = k - 1; i < n; i += k) c[i] = true;
        if (m.Peak(c) <= budget) {
          EXPECT_GE(m.Flops(c), dp->flops);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// On the exported models.

Graph Import(const std::string& model, std::map<std::string, int64_t> dims) {
  ImportOptions io;
  io.dims = std::move(dims);
  auto g = ImportModel(kExamples + "/" + model, io);
  EXPECT_TRUE(g) << g.error().message;
  return std::move(g.value());
}

TEST(Blocks, FoundInTheExamples) {
  auto scopes = [](const std::string& model, std::map<std::string, int64_t> dims) {
    Graph g = Import(model, std::move(dims));
    auto e = RunEstimate(g, *ParseEstimateFlags({}));
    EXPECT_TRUE(e);
    return FindBlockScopes(e->plan);
  };
  EXPECT_EQ(scopes("resnet18.onnx", {{"batch", 2}}),
            (std::vector<std::string>{"layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0",
                                      "layer3.1", "layer4.0", "layer4.1"}));
  auto gpt = scopes("gpt48.onnx", {{"batch", 1}, {"seq", 16}});
  ASSERT_EQ(gpt.size(), 48u);
  EXPECT_EQ(gpt.front(), "h.0");
  EXPECT_EQ(gpt.back(), "h.47");
  auto vit = scopes("vit_b_16.onnx", {{"batch", 1}});
  ASSERT_EQ(vit.size(), 12u);
  EXPECT_EQ(vit[11], "encoder.layers.encoder_layer_11");
  auto mb = scopes("mobilenet_v2.onnx", {{"batch", 1}});
  ASSERT_GE(mb.size(), 17u);
  EXPECT_EQ(mb[1], "features.1");
  EXPECT_EQ(mb[17], "features.17");
}

TEST(Segments, PlusJoinsScopesIntoOneRegion) {
  Graph g = Import("gpt.onnx", {{"batch", 2}, {"seq", 16}});
  EstimateFlags f;
  f.checkpoint = "h.0+h.1";
  auto o = ParseEstimateFlags(f);
  ASSERT_TRUE(o) << o.error().message;
  auto seg = RunEstimate(g, *o);
  ASSERT_TRUE(seg) << seg.error().message;
  ASSERT_EQ(seg->plan.regions.size(), 1u);
  EXPECT_EQ(seg->plan.regions[0].scope, "h.0+h.1");
  f.checkpoint = "h.0,h.1";
  auto each = RunEstimate(g, *ParseEstimateFlags(f));
  ASSERT_TRUE(each);
  EXPECT_EQ(seg->plan.regions[0].ops.size(),
            each->plan.regions[0].ops.size() + each->plan.regions[1].ops.size());
  EXPECT_EQ(seg->recompute_flops, each->recompute_flops);
  f.checkpoint = "h.0+nothing";
  auto bad = RunEstimate(g, *ParseEstimateFlags(f));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("nothing"), std::string::npos);
  f.checkpoint = "h.0++h.1";
  EXPECT_FALSE(ParseEstimateFlags(f));
}

// The block model derived from one simulated step and forward replays equals the one measured
// by simulating each block checkpointed on its own, on every example, on both targets (the CPU
// keeps an RNG state per region), under autocast and with accumulation.
TEST(Blocks, DerivedModelEqualsMeasured) {
  struct Case {
    std::string model;
    std::map<std::string, int64_t> dims;
    EstimateFlags flags;
  };
  EstimateFlags cpu, amp;
  cpu.target = "torch-cpu";
  cpu.optimizer = "sgd";
  amp.precision = "amp-bf16";
  amp.accum = 2;
  std::vector<Case> cases = {
      {"resnet18.onnx", {{"batch", 2}}, {}},         {"resnet18.onnx", {{"batch", 2}}, cpu},
      {"mobilenet_v2.onnx", {{"batch", 2}}, {}},     {"vit_b_16.onnx", {{"batch", 1}}, amp},
      {"gpt.onnx", {{"batch", 2}, {"seq", 16}}, {}}, {"gpt.onnx", {{"batch", 2}, {"seq", 16}}, cpu},
      {"gpt.onnx", {{"batch", 2}, {"seq", 16}}, amp}};
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << c.model << " " << c.flags.target << " " << c.flags.precision);
    Graph g = Import(c.model, c.dims);
    auto o = ParseEstimateFlags(c.flags);
    ASSERT_TRUE(o) << o.error().message;
    auto derived = MakePlanProblem(g, *o);
    auto measured = MakePlanProblem(g, *o, BlockMeasure::kSimulate);
    ASSERT_TRUE(derived) << derived.error().message;
    ASSERT_TRUE(measured) << measured.error().message;
    size_t n = derived->blocks.size();
    ASSERT_GE(n, 4u);
    EXPECT_TRUE(derived->model_checked) << derived->block_model;
    EXPECT_FALSE(measured->model_checked);
    EXPECT_EQ(derived->blocks.saved, measured->blocks.saved);
    EXPECT_EQ(derived->blocks.forward_flops, measured->blocks.forward_flops);
    EXPECT_EQ(derived->blocks.level, measured->blocks.level);
    EXPECT_EQ(derived->setup_simulations, 3);
    EXPECT_EQ(measured->setup_simulations, static_cast<int>(n) + 1);
    EXPECT_EQ(derived->rng_state_bytes, c.flags.target == "torch-cpu" ? 5056u : 0u);
  }
}

TEST(Blocks, PredictionsOfScopeLists) {
  Graph g = Import("gpt.onnx", {{"batch", 2}, {"seq", 16}});
  auto p = MakePlanProblem(g, *ParseEstimateFlags({}));
  ASSERT_TRUE(p) << p.error().message;
  const BlockModel& m = p->blocks;
  ASSERT_EQ(m.size(), 4u);
  // Single blocks: the block model itself.
  auto one = PredictCheckpoint(*p, {"h.1", "h.3"});
  ASSERT_TRUE(one);
  std::vector<bool> c{false, true, false, true};
  EXPECT_EQ(one->peak_bytes, m.Peak(c));
  EXPECT_EQ(one->recompute_flops, m.Flops(c));
  EXPECT_EQ(PredictCheckpoint(*p, {})->peak_bytes, m.Peak(std::vector<bool>(4, false)));
  // A segment frees more at the loss than its blocks one by one (the inputs between them go),
  // and its recompute FLOPs are exactly the simulator's.
  auto seg = PredictCheckpoint(*p, {"h.0+h.1+h.2"});
  auto each = PredictCheckpoint(*p, {"h.0", "h.1", "h.2"});
  ASSERT_TRUE(seg);
  ASSERT_TRUE(each);
  EXPECT_EQ(seg->recompute_flops, each->recompute_flops);
  EXPECT_LE(seg->peak_bytes, m.level[0] > each->peak_bytes ? m.level[0] : each->peak_bytes);
  auto sim = EvaluateCheckpoint(*p, {"h.0+h.1+h.2"}, 1);
  ASSERT_TRUE(sim);
  EXPECT_EQ(seg->recompute_flops, sim->recompute_flops);
  // Not runs of consecutive candidate blocks.
  EXPECT_FALSE(PredictCheckpoint(*p, {"h.0+h.2"}));
  EXPECT_FALSE(PredictCheckpoint(*p, {"h.1+h.0"}));
  EXPECT_FALSE(PredictCheckpoint(*p, {"h.0", "h.0+h.1"}));
  EXPECT_FALSE(PredictCheckpoint(*p, {"ln_f"}));
}

// Strategies that screen candidate plans with the derived model find the plans that simulating
// every candidate (the measured model's way) finds, with fewer simulations.
TEST(Plan, ScreeningFindsWhatSimulatingEveryCandidateFinds) {
  struct Case {
    std::string model;
    std::map<std::string, int64_t> dims;
  };
  for (const Case& c : std::vector<Case>{{"gpt.onnx", {{"batch", 4}, {"seq", 64}}},
                                         {"resnet18.onnx", {{"batch", 8}}},
                                         {"mobilenet_v2.onnx", {{"batch", 8}}}}) {
    Graph g = Import(c.model, c.dims);
    auto screened = MakePlanProblem(g, *ParseEstimateFlags({}));
    auto every = MakePlanProblem(g, *ParseEstimateFlags({}), BlockMeasure::kSimulate);
    ASSERT_TRUE(screened) << screened.error().message;
    ASSERT_TRUE(every) << every.error().message;
    ASSERT_TRUE(screened->model_checked);
    int sims_screened = 0, sims_every = 0;
    for (double f : {0.5, 0.6, 0.7, 0.8, 0.9}) {
      uint64_t budget =
          static_cast<uint64_t>(f * static_cast<double>(screened->baseline.peak.peak_bytes));
      auto a = RunStrategies(*screened, budget, "", nullptr);
      auto b = RunStrategies(*every, budget, "", nullptr);
      ASSERT_TRUE(a) << a.error().message;
      ASSERT_TRUE(b) << b.error().message;
      ASSERT_EQ(a->size(), b->size());
      for (size_t i = 0; i < a->size(); ++i) {
        const PlanResult &x = (*a)[i], &y = (*b)[i];
        SCOPED_TRACE(testing::Message() << c.model << " " << x.strategy << " at " << f);
        EXPECT_EQ(x.fits, y.fits);
        if (x.fits) {
          EXPECT_LE(x.peak_bytes, budget);
          EXPECT_EQ(x.recompute_flops, y.recompute_flops);
        } else {
          EXPECT_EQ(x.peak_bytes, y.peak_bytes);
        }
        sims_screened += x.simulations;
        sims_every += y.simulations;
      }
    }
    EXPECT_LT(sims_screened, sims_every) << c.model;
  }
}

TEST(Plan, Gpt48AtHalfItsPeakFits) {
  // Large enough activations that half the peak is above the optimizer step's floor.
  Graph g = Import("gpt48.onnx", {{"batch", 16}, {"seq", 256}});
  auto problem = MakePlanProblem(g, *ParseEstimateFlags({}));
  ASSERT_TRUE(problem) << problem.error().message;
  EXPECT_EQ(problem->blocks.size(), 48u);
  uint64_t budget = problem->baseline.peak.peak_bytes / 2;
  size_t best = 0;
  auto results = RunStrategies(*problem, budget, "", &best);
  ASSERT_TRUE(results) << results.error().message;
  const PlanResult& r = (*results)[best];
  EXPECT_TRUE(r.fits);
  EXPECT_LE(r.peak_bytes, budget);
  EXPECT_GT(r.recompute_flops, 0u);
  // The reported peak is the simulator's for those scopes.
  auto replay = EvaluateCheckpoint(*problem, r.checkpoint, budget);
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->peak_bytes, r.peak_bytes);
  // No fitting strategy needs less recompute than the chosen plan.
  for (const PlanResult& x : *results) {
    if (x.fits) {
      EXPECT_GE(x.recompute_flops, r.recompute_flops) << x.strategy;
    }
  }
  EXPECT_FALSE((*results)[0].fits);  // none
  // The block model came from one simulated step and two checks, and the strategies needed
  // only a few more simulations.
  EXPECT_TRUE(problem->model_checked) << problem->block_model;
  EXPECT_EQ(problem->setup_simulations, 3);
  int sims = 0;
  for (const PlanResult& x : *results) {
    // The op-level strategies (planners/op_level.h) simulate their own plans, not block ones.
    if (x.strategy != "sac-matmul" && x.strategy != "min-cut" && x.strategy != "knapsack" &&
        x.strategy != "remat")
      sims += x.simulations;
  }
  EXPECT_LE(sims, 8);
}

TEST(Plan, ByteSizes) {
  EXPECT_EQ(*ParseByteSize("6GiB", "--budget"), 6ull << 30);
  EXPECT_EQ(*ParseByteSize("512 MiB", "--budget"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("1.5GB", "--budget"), 1500000000ull);
  EXPECT_EQ(*ParseByteSize("2kb", "--budget"), 2000ull);
  EXPECT_EQ(*ParseByteSize("4096", "--budget"), 4096ull);
  for (const char* bad : {"", "GiB", "6XB", "-1GiB", "1.2.3MiB", "0", "1.5", "99999999999TiB"}) {
    auto r = ParseByteSize(bad, "--budget");
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message.find("--budget"), std::string::npos);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile remat graphs (issue 12): one clear error each, never a crash or a wrapped sum.

TEST(RematGraph, HostileFiles) {
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1e300, "cost_ram": 1}], "links": []})",
            "more than 1e18");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1e30}], "links": []})",
            "more than 2^50");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 18446744073709551615}],
               "links": []})",
            "more than 2^50");
  ExpectBad(R"({"nodes": [{"name": 0, "duration": 1, "out_cost": 1, "param_cost": 1e20}],
               "links": []})",
            "param_cost");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": NaN, "cost_ram": 1}], "links": []})",
            "not valid JSON");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": -0.5, "cost_ram": 1}], "links": []})",
            "non-negative");
  ExpectBad(R"({"nodes": [{"id": 1.5, "cost_cpu": 1, "cost_ram": 1}], "links": []})",
            "not an integer or a string");
  ExpectBad(R"({"nodes": [{"id": true, "cost_cpu": 1, "cost_ram": 1}], "links": []})",
            "not an integer or a string");
  ExpectBad(R"({"nodes": {"id": 0}, "links": []})", "'nodes'");
  ExpectBad(R"({"nodes": [7], "links": []})", "not an object");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1, "backward": 1}],
               "links": []})",
            "'backward'");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1}], "links": [{"source": 0}]})",
            "source/target");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1}],
               "links": [{"source": [0], "target": 0}]})",
            "not an integer or a string");
  ExpectBad(R"({"nodes": [{"id": 0, "cost_cpu": 1, "cost_ram": 1}],
               "links": [{"source": 0, "target": 0}]})",
            "self-loop");
  ExpectBad(R"({"nodes": [{"id": "a", "cost_cpu": 1, "cost_ram": 1},
                          {"id": "a", "cost_cpu": 2, "cost_ram": 1}], "links": []})",
            "twice");
  ExpectBad(R"({"graph": {"order": [0, 0]},
               "nodes": [{"name": 0, "duration": 1, "out_cost": 1, "param_cost": 0},
                         {"name": 1, "duration": 1, "out_cost": 1, "param_cost": 0}],
               "links": []})",
            "twice");
  ExpectBad(R"({"graph": {"order": "0,1"},
               "nodes": [{"name": 0, "duration": 1, "out_cost": 1, "param_cost": 0}],
               "links": []})",
            "not a list");
  // Three nodes in a cycle, none of them first.
  ExpectBad(R"({"nodes": [{"id": "a", "cost_cpu": 1, "cost_ram": 1},
                          {"id": "b", "cost_cpu": 1, "cost_ram": 1},
                          {"id": "c", "cost_cpu": 1, "cost_ram": 1}],
               "links": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"},
                         {"source": "c", "target": "a"}]})",
            "cycle");
}

// Node counts the planner's n x n stage matrices cannot hold, and byte totals past 2^60.
TEST(RematGraph, TooLargeGraphs) {
  auto nodes = [](size_t n, const std::string& ram) {
    std::ostringstream s;
    s << R"({"nodes": [)";
    for (size_t i = 0; i < n; ++i) {
      s << (i ? "," : "") << R"({"id": )" << i << R"(, "cost_cpu": 1, "cost_ram": )" << ram << "}";
    }
    s << R"(], "links": []})";
    return s.str();
  };
  ExpectBad(nodes(10001, "1"), "at most 10000");
  // 2000 outputs of 2^50 bytes: 2^61 in all.
  ExpectBad(nodes(2000, "1125899906842624"), "more than 2^60");
  auto ok = ParseRematGraph(nodes(10000, "1"), "ok.json");
  EXPECT_TRUE(ok.ok()) << ok.error().message;
  // MakeRematGraph (generators) checks the same.
  std::vector<RematNode> bad(1);
  bad[0].cost = std::nan("");
  EXPECT_FALSE(MakeRematGraph(bad, {}).ok());
  bad[0].cost = 1;
  bad[0].memory = uint64_t{1} << 61;
  EXPECT_FALSE(MakeRematGraph(bad, {}).ok());
}

}  // namespace

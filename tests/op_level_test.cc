// Op-level checkpointing (simulator/plan.h's op-level regions, policies/recompute.h's
// "SCOPE:save=..." entries, planners/op_level.h): the recompute of a tiny region by hand with and
// without saved ops, the --checkpoint syntax, the min cut on the tiny region, and on the
// exported models every op-level strategy's reported peak replayed by estimate.
#include "planners/op_level.h"

#include <gtest/gtest.h>

#include <climits>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/estimate.h"
#include "importer/importer.h"
#include "planners/checkpoint_planner.h"
#include "policies/recompute.h"
#include "simulator/peak.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::ModelBuilder;

namespace {

constexpr DType kF32 = DType::kFloat32;
const std::string kExamples = VRAMSIM_EXAMPLES;

// x -> [pre: h = x + B] -> [blk: a = h @ W1; b = tanh(a); c = tanh(b); y = c @ W2], every
// activation [4,64] float32 = 4*64*4 = 1024 bytes. In the backward the region's ops save:
// MatMul h (a region input) and W1, Tanh its output b, Tanh_1 its output c, MatMul_1 c and W2.
// Its inputs, weights and first two ops, shared with the in-place variant below.
void TinyHead(ModelBuilder& m) {
  m.Input("x", kF32, {4, 64});
  m.Initializer("B", kF32, {64});
  m.Initializer("W1", kF32, {64, 64});
  m.Initializer("W2", kF32, {64, 64});
  m.Node("Add", {"x", "B"}, {"h"}, "/pre/Add");
  m.Node("MatMul", {"h", "W1"}, {"a"}, "/blk/MatMul");
}

void TinyRegion(ModelBuilder& m) {
  TinyHead(m);
  m.Node("Tanh", {"a"}, {"b"}, "/blk/Tanh");
  m.Node("Tanh", {"b"}, {"c"}, "/blk/Tanh_1");
  m.Node("MatMul", {"c", "W2"}, {"y"}, "/blk/MatMul_1");
  m.Output("y");
}

// SGD on the CPU target, no loss (the output's gradient is given).
Result<Estimate> RunTinyModel(ModelBuilder& m, const std::string& checkpoint) {
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  EstimateFlags flags;
  flags.optimizer = "sgd";
  flags.target = "torch-cpu";
  flags.loss = "none";
  flags.checkpoint = checkpoint;
  auto o = ParseEstimateFlags(flags);
  if (!o) return o.error();
  return RunEstimate(*g, *o);
}

Result<Estimate> RunTiny(const std::string& checkpoint) {
  ModelBuilder m;
  TinyRegion(m);
  return RunTinyModel(m, checkpoint);
}

// (A|F, step, buffer, bytes) of the events in the recompute's steps.
using Ev = std::tuple<char, std::string, std::string, uint64_t>;
std::vector<Ev> RecomputeEvents(const Trace& t) {
  std::vector<Ev> out;
  for (const Event& e : t.events) {
    const std::string& step = t.steps[e.step].name;
    if (step.rfind("recompute", 0) != 0) continue;
    out.emplace_back(e.kind == Event::Kind::kAlloc ? 'A' : 'F', step, t.buffers[e.buffer].name,
                     t.buffers[e.buffer].bytes);
  }
  return out;
}

// The most bytes live at once (unrounded) while the recompute runs, above what was live before.
uint64_t RecomputeHigh(const Trace& t) {
  int64_t live = 0, high = 0;
  for (const Event& e : t.events) {
    if (t.steps[e.step].name.rfind("recompute", 0) != 0) continue;
    live +=
        (e.kind == Event::Kind::kAlloc ? 1 : -1) * static_cast<int64_t>(t.buffers[e.buffer].bytes);
    high = std::max(high, live);
  }
  return static_cast<uint64_t>(high);
}

// Where the forward's a = h @ W1 (1024 bytes) is freed.
std::string FreeOfA(const Trace& t) {
  for (const Event& e : t.events) {
    if (e.kind == Event::Kind::kFree && t.buffers[e.buffer].name == "a") {
      return std::string(PhaseName(t.steps[e.step].phase)) + ":" + t.steps[e.step].name;
    }
  }
  return "";
}

TEST(OpLevelSimulator, PlainRegionRecomputesEveryOp) {
  auto e = RunTiny("blk");
  ASSERT_TRUE(e) << e.error().message;
  // torch.utils.checkpoint runs the whole region again: a (freed once Tanh has read it), b and
  // c (saved), and y, which nothing in the region reads or saves (dropped at once).
  const std::vector<Ev> expected = {
      {'A', "recompute blk", "a", 1024},           {'A', "recompute /blk/Tanh", "b", 1024},
      {'F', "recompute /blk/Tanh", "a", 1024},     {'A', "recompute /blk/Tanh_1", "c", 1024},
      {'A', "recompute /blk/MatMul_1", "y", 1024}, {'F', "recompute /blk/MatMul_1", "y", 1024},
  };
  EXPECT_EQ(RecomputeEvents(e->trace), expected);
  // a, b at once after Tanh (2 KiB); b, c, y after MatMul_1: 3 KiB.
  EXPECT_EQ(RecomputeHigh(e->trace), 3072u);
  EXPECT_EQ(FreeOfA(e->trace), "forward:/blk/Tanh");
}

TEST(OpLevelSimulator, SavedMatMulIsKeptAndNotRunAgain) {
  auto plain = RunTiny("blk");
  auto e = RunTiny("blk:save=MatMul");  // SAC: MUST_SAVE the matmuls
  ASSERT_TRUE(plain) << plain.error().message;
  ASSERT_TRUE(e) << e.error().message;
  ASSERT_EQ(e->plan.regions.size(), 1u);
  EXPECT_TRUE(e->plan.regions[0].op_level);
  EXPECT_EQ(e->plan.regions[0].save_ops.size(), 2u);  // both MatMuls
  // The region's backward reads b and c. c comes from Tanh_1 (runs again, reads b), b from
  // Tanh (runs again, reads a), a from the saved MatMul: kept from the forward. MatMul_1's y is
  // read by nothing in the backward: neither kept nor recomputed.
  const std::vector<Ev> expected = {
      {'A', "recompute blk", "b", 1024},
      {'F', "recompute blk", "a", 1024},  // the forward's a, read by the recompute's Tanh
      {'A', "recompute /blk/Tanh_1", "c", 1024},
  };
  EXPECT_EQ(RecomputeEvents(e->trace), expected);
  // a and b after Tanh (2 KiB; a was already live before), b and c after Tanh_1: 2 KiB in all,
  // 1 KiB above the start (3 KiB without).
  EXPECT_EQ(RecomputeHigh(e->trace), 1024u);
  // a stays from the forward until the recompute; without the save it goes in the forward.
  EXPECT_EQ(FreeOfA(e->trace), "backward:recompute blk");
  // Both MatMuls (2 * 4 * 64 * 64 = 32768 FLOPs each) are not run again.
  EXPECT_EQ(plain->recompute_flops - e->recompute_flops, 2u * 32768u);
}

TEST(OpLevelSimulator, SavingNothingRunsOnlyWhatTheBackwardReads) {
  auto plain = RunTiny("blk");
  auto e = RunTiny("blk:save=");
  ASSERT_TRUE(e) << e.error().message;
  // a, b, c again (a freed after Tanh); y is not made.
  const std::vector<Ev> expected = {
      {'A', "recompute blk", "a", 1024},
      {'A', "recompute /blk/Tanh", "b", 1024},
      {'F', "recompute /blk/Tanh", "a", 1024},
      {'A', "recompute /blk/Tanh_1", "c", 1024},
  };
  EXPECT_EQ(RecomputeEvents(e->trace), expected);
  EXPECT_EQ(RecomputeHigh(e->trace), 2048u);  // 2 KiB (3 KiB for the whole region)
  EXPECT_EQ(FreeOfA(e->trace), "forward:/blk/Tanh");
  EXPECT_EQ(plain->recompute_flops - e->recompute_flops, 32768u);  // MatMul_1 only
  // A saved node name works as its type does; a name that is neither is refused.
  auto by_name = RunTiny("blk:save=/blk/MatMul");
  ASSERT_TRUE(by_name) << by_name.error().message;
  EXPECT_EQ(RecomputeEvents(by_name->trace).size(), 3u);
  auto bad = RunTiny("blk:save=Conv2");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("'Conv2' is no op type or node name"), std::string::npos);
}

TEST(OpLevelSyntax, PoliciesAndSaveLists) {
  auto all = ParseScopes("sac-matmul");
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(*all, (std::vector<std::string>{"*:save=@matmul"}));
  auto some = ParseScopes("sac-matmul:h.0-2,ln_f");
  ASSERT_TRUE(some) << some.error().message;
  EXPECT_EQ(*some, (std::vector<std::string>{"h.0:save=@matmul", "h.1:save=@matmul",
                                             "h.2:save=@matmul", "ln_f:save=@matmul"}));
  auto lists = ParseScopes("a+b:save=/a/Conv|Gemm,c:save=");
  ASSERT_TRUE(lists) << lists.error().message;
  EXPECT_EQ(*lists, (std::vector<std::string>{"a+b:save=/a/Conv|Gemm", "c:save="}));
  EXPECT_FALSE(ParseScopes("sac-matmul:"));
  EXPECT_FALSE(ParseScopes("sac-matmul:h.0:save=X"));
  EXPECT_FALSE(ParseScopes(":save=X"));
  // "*" is the whole model: on the tiny graph the pre Add is in the region too.
  auto e = RunTiny("sac-matmul");
  ASSERT_TRUE(e) << e.error().message;
  ASSERT_EQ(e->plan.regions.size(), 1u);
  EXPECT_EQ(e->plan.regions[0].ops.size(), 5u);
}

TEST(OpLevelMinCut, CutsAtTheMatMulOutputOnlyWhenMatMulsAreBanned) {
  auto e = RunTiny("");
  ASSERT_TRUE(e) << e.error().message;
  const TrainingPlan& plan = e->plan;
  std::vector<int> region;
  for (size_t i = 0; i < plan.ops.size(); ++i)
    if (plan.ops[i].name.rfind("/blk/", 0) == 0) region.push_back(static_cast<int>(i));
  ASSERT_EQ(region.size(), 4u);
  // Banned MatMuls are tied to the source; b and c go to the sink (Tanh, Tanh_1 and MatMul_1
  // save them). Cuts: {a} 1024 bytes, {b, c} 2048, {b} alone leaves c's path open. Min: a.
  std::vector<bool> banned(plan.ops.size(), false);
  banned[region[0]] = banned[region[3]] = true;
  EXPECT_EQ(MinCutSaveOps(plan, region, banned), (std::vector<int>{region[0]}));
  // Nothing banned: everything can run again from h and the weights: the cut is empty.
  EXPECT_TRUE(MinCutSaveOps(plan, region, std::vector<bool>(plan.ops.size(), false)).empty());
  EXPECT_EQ(OpLevelEntry(plan, "blk", {region[0], region[3]}),
            "blk:save=/blk/MatMul|/blk/MatMul_1");
}

// The tiny model's training step as a remat graph, by hand. Forward: Add h (x is the batch,
// B a parameter: no input node), MatMul a, Tanh b, Tanh_1 c, MatMul_1 y, each 4*64*4 = 1024 B,
// each reading the one before; the loss reads y and makes its gradient (1024 B). Backward, in
// reverse: MatMul_1's reads c (saved) and the loss's gradient and makes c's gradient (W2's
// gradient is a parameter's: left out); Tanh_1's reads its output c and MatMul_1's gradient and
// makes b's; Tanh's reads b and Tanh_1's gradient and makes a's; MatMul's reads h and Tanh's
// gradient and makes h's; Add's reads MatMul's gradient and makes only B's: 0 B.
TEST(OpLevelRemat, TrainingGraphOfTheTinyModel) {
  auto e = RunTiny("");
  ASSERT_TRUE(e) << e.error().message;
  auto tg = MakeTrainingRematGraph(e->plan);
  ASSERT_TRUE(tg) << tg.error().message;
  const RematGraph& g = tg->graph;
  ASSERT_EQ(g.nodes.size(), 11u);
  const std::vector<std::string> names = {"/pre/Add",
                                          "/blk/MatMul",
                                          "/blk/Tanh",
                                          "/blk/Tanh_1",
                                          "/blk/MatMul_1",
                                          "loss",
                                          "/blk/MatMul_1.backward",
                                          "/blk/Tanh_1.backward",
                                          "/blk/Tanh.backward",
                                          "/blk/MatMul.backward",
                                          "/pre/Add.backward"};
  const std::vector<uint64_t> memory = {1024, 1024, 1024, 1024, 1024, 1024,
                                        1024, 1024, 1024, 1024, 0};
  const std::vector<std::vector<int>> deps = {{},     {0},    {1},    {2},    {3}, {4},
                                              {3, 5}, {3, 6}, {2, 7}, {0, 8}, {9}};
  double forward_cost = 0;
  for (size_t v = 0; v < g.nodes.size(); ++v) {
    EXPECT_EQ(g.nodes[v].name, names[v]) << v;
    EXPECT_EQ(g.nodes[v].memory, memory[v]) << v;
    EXPECT_EQ(g.deps[v], deps[v]) << v;
    EXPECT_EQ(g.nodes[v].backward, v >= 6) << v;
    EXPECT_EQ(tg->forward_op[v], v < 5 ? static_cast<int>(v) : -1) << v;
    if (v < 5) forward_cost += g.nodes[v].cost;
  }
  // MatMul: 2*4*64*64 = 32768 FLOPs, in GFLOP.
  EXPECT_NEAR(g.nodes[1].cost, 32768e-9, 1e-5);
  // No backward node is worth remaking instead of the whole forward.
  for (size_t v = 6; v < g.nodes.size(); ++v) EXPECT_GT(g.nodes[v].cost, forward_cost);
  // Each op's outputs live in its own node's storage.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(tg->storage_nodes[i], std::vector<int>{i});
  EXPECT_EQ(g.static_bytes, 0u);
}

// An in-place op in the remat graph: x -> Add h -> MatMul a -> Relu b -> MatMul_1 y, where Relu
// runs in place on a (MatMul's backward does not read its output, and nothing else reads a), so
// b is a's storage: Relu's node makes no bytes, its output lives in MatMul's node (saving the
// Relu holds that storage, remaking MatMul remakes it), and Relu's backward, which reads its
// output, reads MatMul's node.
TEST(OpLevelRemat, AnInPlaceOpLivesInItsInputsNode) {
  ModelBuilder m;
  TinyHead(m);
  m.Node("Relu", {"a"}, {"b"}, "/blk/Relu");
  m.Node("MatMul", {"b", "W2"}, {"y"}, "/blk/MatMul_1");
  m.Output("y");
  auto e = RunTinyModel(m, "");
  ASSERT_TRUE(e) << e.error().message;
  ASSERT_EQ(e->plan.ops.size(), 4u);
  ASSERT_EQ(e->plan.ops[2].name, "/blk/Relu");
  ASSERT_GE(e->plan.tensors[e->plan.ops[2].outputs[0]].view_of, 0) << "Relu not in place";
  auto tg = MakeTrainingRematGraph(e->plan);
  ASSERT_TRUE(tg) << tg.error().message;
  const RematGraph& rg = tg->graph;
  ASSERT_EQ(rg.nodes.size(), 9u);  // 4 forward, the loss, 4 backward (Add's makes only B's: 0 B)
  EXPECT_EQ(rg.nodes[1].memory, 1024u);
  EXPECT_EQ(rg.nodes[2].memory, 0u);
  EXPECT_EQ(tg->storage_nodes[2], (std::vector<int>{1, 2}));
  EXPECT_EQ(rg.deps[3], std::vector<int>{1});  // MatMul_1 reads b: a's storage
  // Backward in reverse: MatMul_1's (node 5) reads b, Relu's (node 6) reads b and MatMul_1's
  // gradient.
  EXPECT_EQ(rg.nodes[6].name, "/blk/Relu.backward");
  EXPECT_EQ(rg.deps[6], (std::vector<int>{1, 5}));
}

// Every op-level strategy's plan, replayed by estimate from its --checkpoint text, peaks where
// the planner said; at 0.8 of the peak op-level plans fit with less recompute than the optimal
// block plan; on resnet18 they go below the lowest peak any block plan reaches.
void CheckReplays(const std::string& model, std::map<std::string, int64_t> dims,
                  bool below_blocks) {
  ImportOptions io;
  io.dims = dims;
  auto g = ImportModel(kExamples + "/" + model, io);
  ASSERT_TRUE(g) << g.error().message;
  EstimateFlags flags;
  auto o = ParseEstimateFlags(flags);
  ASSERT_TRUE(o) << o.error().message;
  auto p = MakePlanProblem(*g, *o);
  ASSERT_TRUE(p) << p.error().message;
  auto block = RunStrategies(*p, 1, "dp", nullptr);  // 1 byte: the lowest block plan
  ASSERT_TRUE(block) << block.error().message;
  for (const char* name : {"sac-matmul", "min-cut", "knapsack", "remat"}) {
    auto r = RunStrategies(*p, p->baseline.peak.peak_bytes / 2, name, nullptr);
    ASSERT_TRUE(r) << r.error().message;
    const PlanResult& plan = r->front();
    std::string text;
    for (const std::string& s : plan.checkpoint) text += (text.empty() ? "" : ",") + s;
    EstimateFlags replay = flags;
    replay.checkpoint = text;
    auto ro = ParseEstimateFlags(replay);
    ASSERT_TRUE(ro) << ro.error().message;
    auto e = RunEstimate(*g, *ro);
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_EQ(e->peak.peak_bytes, plan.peak_bytes) << model << " " << name;
    // No plan goes below the floor (simulator/peak.h RecomputeFloor).
    EXPECT_GE(plan.peak_bytes, p->floor.bytes) << model << " " << name;
    EXPECT_EQ(e->recompute_flops, plan.recompute_flops) << model << " " << name;
  }
  if (below_blocks) {
    // At a budget nothing fits the knapsack's lowest plan (b = 0: no matmul kept, each region
    // saves its min cut) goes below the lowest block plan.
    auto low = RunStrategies(*p, 1, "knapsack", nullptr);
    ASSERT_TRUE(low) << low.error().message;
    EXPECT_LT(low->front().peak_bytes, block->front().peak_bytes) << model;
    EXPECT_GE(low->front().peak_bytes, p->floor.bytes) << model;
  }
  EXPECT_GE(block->front().peak_bytes, p->floor.bytes) << model;
  EXPECT_GE(p->floor.bytes, p->model_state_bytes) << model;
  // At 0.8 of the peak the best op-level plan fits with less recompute than the optimal
  // block plan (dp).
  const uint64_t budget = p->baseline.peak.peak_bytes / 5 * 4;
  auto dp = RunStrategies(*p, budget, "dp", nullptr);
  ASSERT_TRUE(dp) << dp.error().message;
  uint64_t least = UINT64_MAX;
  for (const char* name : {"sac-matmul", "min-cut", "knapsack", "remat"}) {
    auto r = RunStrategies(*p, budget, name, nullptr);
    ASSERT_TRUE(r) << r.error().message;
    if (r->front().fits) least = std::min(least, r->front().recompute_flops);
  }
  ASSERT_TRUE(dp->front().fits) << model;
  EXPECT_LT(least, dp->front().recompute_flops) << model;
}

// RecomputeFloor on a trace written by hand. P (parameter, 100 B) from the setup; forward
// step f1 makes A (10 B); f2 makes B (20 B) from A and frees A; f3 makes C (1000 B, saved,
// read only by the last step); backward step b1 makes G (40 B) and the parameter gradient PG
// (100 B) from B and frees B; b2 frees C. At b1's second allocation the step holds G and B
// (it frees B: it reads it) beside P and PG: 40 + 20 + 100 + 100 = 260 B. C (1000 B) is alive
// there too, but b1 does not touch it: a plan may recompute it after b1. f2 holds A + B +
// P = 130 B; f3 C + P = 1100 B: C is the step's own output, so the floor is 1100 B at f3.
// Without f3's C (a 5 B output instead) the floor is b1's 260 B.
TEST(RecomputeFloor, HandTrace) {
  auto make = [](uint64_t c_bytes) {
    Trace t;
    auto buf = [&](std::string name, uint64_t bytes, Category c) {
      Buffer b;
      b.name = std::move(name);
      b.bytes = bytes;
      b.category = c;
      t.buffers.push_back(b);
      return static_cast<BufferId>(t.buffers.size() - 1);
    };
    auto step = [&](Phase ph, std::string name) {
      Step s;
      s.phase = ph;
      s.name = std::move(name);
      t.steps.push_back(s);
      return static_cast<StepId>(t.steps.size() - 1);
    };
    BufferId P = buf("P", 100, Category::kParameters), A = buf("A", 10, Category::kTransient),
             B = buf("B", 20, Category::kSavedActivations),
             C = buf("C", c_bytes, Category::kSavedActivations),
             G = buf("G", 40, Category::kTransient), PG = buf("PG", 100, Category::kGradients);
    StepId setup = step(Phase::kSetup, "setup"), f1 = step(Phase::kForward, "f1"),
           f2 = step(Phase::kForward, "f2"), f3 = step(Phase::kForward, "f3"),
           b1 = step(Phase::kBackward, "b1"), b2 = step(Phase::kBackward, "b2");
    using K = Event::Kind;
    t.events = {{K::kAlloc, P, setup}, {K::kAlloc, A, f1}, {K::kAlloc, B, f2},
                {K::kFree, A, f2},     {K::kAlloc, C, f3}, {K::kAlloc, G, b1},
                {K::kAlloc, PG, b1},   {K::kFree, B, b1},  {K::kFree, C, b2}};
    return t;
  };
  Trace big = make(1000);
  StepFloor f = RecomputeFloor(big);
  EXPECT_EQ(f.bytes, 1100u);
  EXPECT_EQ(big.steps[f.step].name, "f3");
  Trace small = make(5);
  f = RecomputeFloor(small);
  EXPECT_EQ(f.bytes, 260u);
  EXPECT_EQ(small.steps[f.step].name, "b1");
  EXPECT_EQ(f.invariant_bytes, 200u);
  ASSERT_EQ(f.working.size(), 2u);
  EXPECT_EQ(small.buffers[f.working[0]].name, "G");
  EXPECT_EQ(small.buffers[f.working[1]].name, "B");
  // The baseline peaks at b1 with C alive: 265 B, above the floor.
  EXPECT_EQ(FindPeak(small).peak_bytes, 265u);
}

// resnet18 at batch 64: the stem's backward needs three [64,64,112,112] fp32 tensors at once
// (64*64*112*112*4 = 205,520,896 B each: the ReLU's output it reads, the gradient it reads and
// the one it makes, or the BatchNorm's saved input, its incoming and its outgoing gradient),
// beside the parameters, their gradients, Adam's two moments and the batch. So no plan reaches
// 0.5 of the peak.
// resnet18 at batch 64 with the default flags (torch-cuda, Adam), as a plan problem.
class Resnet18Batch64 : public ::testing::Test {
 protected:
  void SetUp() override {
    ImportOptions io;
    io.dims = {{"batch", 64}};
    auto g = ImportModel(kExamples + "/resnet18.onnx", io);
    ASSERT_TRUE(g) << g.error().message;
    graph_ = std::make_unique<Graph>(std::move(*g));
    auto o = ParseEstimateFlags(EstimateFlags{});
    ASSERT_TRUE(o) << o.error().message;
    auto p = MakePlanProblem(*graph_, *o);  // keeps a pointer to the graph
    ASSERT_TRUE(p) << p.error().message;
    problem_ = std::make_unique<PlanProblem>(std::move(*p));
  }
  std::unique_ptr<Graph> graph_;
  std::unique_ptr<PlanProblem> problem_;
};

TEST_F(Resnet18Batch64, RecomputeFloorIsTheStemBackward) {
  const PlanProblem* p = problem_.get();
  const StepFloor& f = p->floor;
  ASSERT_GE(f.working.size(), 3u);
  int stem = 0;
  for (BufferId b : f.working) stem += p->baseline.trace.buffers[b].bytes == 205520896u;
  EXPECT_EQ(stem, 3);
  EXPECT_EQ(p->baseline.trace.steps[f.step].phase, Phase::kBackward);
  EXPECT_GE(f.bytes, 3 * uint64_t{205520896} + p->model_state_bytes);
  EXPECT_GT(f.bytes, p->baseline.peak.peak_bytes / 2);
}

// resnet18's stem (conv1, bn1, relu, maxpool: one run between blocks) checkpointed as one
// region recomputes all four ops when its backward starts, so the ReLU's backward holds the
// recomputed conv output beside the ReLU's output and two gradients: 4 x 205,520,896 B. Cut
// after bn1, the relu+maxpool region's backward runs first and conv1+bn1 is recomputed after
// it: the floor's 3 tensors (the BatchNorm's backward). The op-level strategies get that cut
// as a second region set, and the knapsack's lowest plan comes within 1 MiB of the floor
// (0.53 of the peak; 0.66 with the stem whole).
TEST_F(Resnet18Batch64, OpLevelRegionSetsCutTheStemAfterItsBatchNorm) {
  const PlanProblem* p = problem_.get();
  auto sets = OpLevelRegionSets(*p);
  ASSERT_EQ(sets.size(), 2u);
  auto scopes = [](const std::vector<OpLevelRegion>& set) {
    std::vector<std::string> out;
    for (const OpLevelRegion& r : set) out.push_back(r.scope);
    return out;
  };
  auto whole = scopes(sets[0]), cut = scopes(sets[1]);
  EXPECT_EQ(whole.front(), "conv1+bn1+relu+maxpool");
  ASSERT_GE(cut.size(), 2u);
  EXPECT_EQ(cut[0], "conv1+bn1");
  EXPECT_EQ(cut[1], "relu+maxpool");
  // The cut regions hold the same ops as the whole one.
  std::vector<int> ops = sets[1][0].ops;
  ops.insert(ops.end(), sets[1][1].ops.begin(), sets[1][1].ops.end());
  EXPECT_EQ(ops, sets[0][0].ops);
  auto low = RunStrategies(*p, 1, "knapsack", nullptr);
  ASSERT_TRUE(low) << low.error().message;
  EXPECT_GE(low->front().peak_bytes, p->floor.bytes);
  EXPECT_LT(low->front().peak_bytes, p->floor.bytes + (uint64_t{1} << 20));
  EXPECT_EQ(low->front().checkpoint.front(), "conv1+bn1:save=");
}

TEST(OpLevelExamples, Resnet18PlansReplayAndBeatBlocks) {
  CheckReplays("resnet18.onnx", {{"batch", 64}}, true);
}
TEST(OpLevelExamples, GptPlansReplayAndBeatBlocks) {
  // gpt's lowest op-level peak is the lowest block plan's (what remains is the head and loss).
  CheckReplays("gpt.onnx", {{"batch", 16}, {"seq", 256}}, false);
}

}  // namespace

// Fixes for what a new user tripped over (issue 14, item 5), each with the case that showed it.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/estimate.h"
#include "importer/importer.h"
#include "planners/checkpoint_planner.h"
#include "policies/recompute.h"
#include "reports/report.h"
#include "simulator/peak.h"
#include "simulator/trace.h"

namespace vramsim {
namespace {

const std::string kExamples = VRAMSIM_EXAMPLES;

std::vector<std::string> Blocks(const std::string& prefix, int first, int last) {
  std::vector<std::string> v;
  for (int i = first; i <= last; ++i) v.push_back(prefix + std::to_string(i));
  return v;
}

TEST(CheckpointRanges, ARangeStandsForEveryIndexInIt) {
  auto s = ParseScopes("h.0-3,lm_head");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(*s, (std::vector<std::string>{"h.0", "h.1", "h.2", "h.3", "lm_head"}));
  auto big = ParseScopes("model.layers.0-31");
  ASSERT_TRUE(big);
  EXPECT_EQ(*big, Blocks("model.layers.", 0, 31));
}

TEST(CheckpointRanges, WhatIsNoRangeStaysAsWritten) {
  // A leading zero is no index; a '+' segment is one region and is not expanded.
  auto s = ParseScopes("h.01-3,h.0+h.1,layer-1,h.2-2");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(*s, (std::vector<std::string>{"h.01-3", "h.0+h.1", "layer-1", "h.2"}));
}

TEST(CheckpointRanges, BackwardAndHugeRangesAreRefused) {
  auto back = ParseScopes("h.31-0");
  ASSERT_FALSE(back);
  EXPECT_NE(back.error().message.find("ends before it starts"), std::string::npos);
  EXPECT_NE(back.error().message.find("h.0-31"), std::string::npos);
  auto huge = ParseScopes("h.0-999999999");
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message.find("over 100000"), std::string::npos);
}

TEST(CheckpointRanges, PrintedListsFoldRunsOfThreeOrMore) {
  EXPECT_EQ(CompactScopes(Blocks("h.", 0, 31)), "h.0-31");
  EXPECT_EQ(CompactScopes({"h.0", "h.1"}), "h.0,h.1");
  EXPECT_EQ(CompactScopes({"h.0", "h.1", "h.2", "h.5", "lm_head", "h.6", "h.7", "h.8"}),
            "h.0-2,h.5,lm_head,h.6-8");
  EXPECT_EQ(CompactScopes({"h.0+h.1", "h.2+h.3"}), "h.0+h.1,h.2+h.3");
  EXPECT_EQ(CompactScopes({}), "");
  // Parsing what is printed gives the list back.
  auto again = ParseScopes(CompactScopes(Blocks("h.", 4, 27)));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, Blocks("h.", 4, 27));
}

TEST(ShapeConflicts, TheBufferThatLimitsADimensionIsNamed) {
  // The GPT example's causal mask is a [1,1,256,256] buffer sliced to [:seq, :seq]: with seq
  // 257 the slice stays 256 long and the Where that applies it cannot broadcast.
  ImportOptions io;
  io.dims = {{"batch", 8}, {"seq", 257}};
  auto g = ImportModel(kExamples + "/gpt.onnx", io);
  ASSERT_FALSE(g);
  const std::string& m = g.error().message;
  EXPECT_NE(m.find("'h.0.attn.bias' [1,1,256,256]"), std::string::npos) << m;
  EXPECT_NE(m.find("limits 'seq' (bound to 257) to at most 256"), std::string::npos) << m;
  io.dims["seq"] = 256;
  EXPECT_TRUE(ImportModel(kExamples + "/gpt.onnx", io));
}

TEST(ExtraOutputs, MaxPoolIndicesSayWhatTheyAre) {
  EstimateOptions o;
  auto e = EstimateModel(kExamples + "/resnet18.onnx", {{"batch", 2}}, o);
  ASSERT_TRUE(e) << e.error().message;
  bool found = false;
  for (const Buffer& b : e->trace.buffers) {
    if (b.name != "/maxpool/MaxPool:indices") continue;
    found = true;
    EXPECT_EQ(b.category, Category::kSavedActivations);
    EXPECT_EQ(b.why, "argmax indices MaxPool /maxpool/MaxPool keeps for its backward");
    // int64 indices of the pooled output [2,64,56,56].
    EXPECT_EQ(b.bytes, uint64_t{2} * 64 * 56 * 56 * 8);
  }
  EXPECT_TRUE(found);
}

// A per-rank figure says which rank of which layout it is, so that nobody reads it as the
// whole job's: 4 data-parallel x 2 tensor-parallel ranks are 8 GPUs.
TEST(PerRank, TheLayoutIsNamedWithTheRankCount) {
  EstimateFlags f;
  f.data_parallel = 4;
  f.zero = 1;
  f.tensor_parallel = 2;
  f.sequence_parallel = true;
  auto o = ParseEstimateFlags(f);
  ASSERT_TRUE(o) << o.error().message;
  auto e = EstimateModel(kExamples + "/gpt.onnx", {{"batch", 8}, {"seq", 128}}, *o);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->per_rank,
            "one rank of 8 GPUs: data parallel 4 (ZeRO 1), tensor parallel 2 + sequence parallel");
  EXPECT_EQ(EstimateJson(*e)["per_rank"], e->per_rank);
  EstimateOptions one_gpu;
  auto single = EstimateModel(kExamples + "/gpt.onnx", {{"batch", 8}, {"seq", 128}}, one_gpu);
  ASSERT_TRUE(single) << single.error().message;
  EXPECT_EQ(single->per_rank, "");
  EXPECT_FALSE(EstimateJson(*single).contains("per_rank"));
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(StrategiesChart, EqualResultsSitSideBySideAndBudgetsAreDrawn) {
  const uint64_t MiB = uint64_t{1} << 20;
  std::vector<StrategyRow> rows = {
      {"dp", 100 * MiB, 90 * MiB, 10.0, 1.0, true},
      {"milp", 100 * MiB, 90 * MiB, 10.0, 1.0, true},  // the same plan as dp
      {"every-k", 100 * MiB, 80 * MiB, 20.0, 1.0, true},
      {"dp", 60 * MiB, 70 * MiB, 30.0, 1.0, false},
  };
  std::string path = ::testing::TempDir() + "/ux_strategies.html";
  ASSERT_TRUE(WriteStrategiesHtml("m.onnx", rows, path));
  std::string page = ReadAll(path);
  EXPECT_NE(page.find("budget 100.00 MiB"), std::string::npos);
  EXPECT_NE(page.find("budget 60.00 MiB"), std::string::npos);
  EXPECT_NE(page.find("same result as milp"), std::string::npos);
  EXPECT_NE(page.find("same result as dp"), std::string::npos);
  // dp's and milp's points at 100 MiB: same height, different x.
  std::regex point(
      "data-strategy=\"(dp|milp)\" cx=\"([0-9.]+)\" cy=\"([0-9.]+)\"[^>]*><title>[^<]*budget "
      "100\\.00 MiB");
  std::set<std::string> xs, ys;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), point);
       it != std::sregex_iterator(); ++it) {
    xs.insert((*it)[2]);
    ys.insert((*it)[3]);
  }
  EXPECT_EQ(xs.size(), 2u);
  EXPECT_EQ(ys.size(), 1u);
}

TEST(PlannerFloor, ModelStatesAreParametersGradientsAndAdamMoments) {
  // Adam in fp32 on torch-cuda: each parameter, its gradient and its two moments, each
  // rounded up to the allocator's 512-byte blocks, are alive when the optimizer starts.
  ImportOptions io;
  io.dims = {{"batch", 2}, {"seq", 64}};
  auto g = ImportModel(kExamples + "/gpt.onnx", io);
  ASSERT_TRUE(g) << g.error().message;
  EstimateOptions o;
  auto p = MakePlanProblem(*g, o);
  ASSERT_TRUE(p) << p.error().message;
  uint64_t expected = 0;
  for (const Tensor& t : g->tensors) {
    if (t.role == TensorRole::kParameter) expected += 4 * ((t.bytes + 511) / 512 * 512);
  }
  EXPECT_EQ(p->model_state_bytes, expected);
  EXPECT_LT(p->model_state_bytes, p->baseline.peak.peak_bytes);
}

TEST(PeakWording, EachStepNamesItsPhaseOnce) {
  auto step = [](Phase p, std::string name, std::string type, std::string scope) {
    Step s;
    s.phase = p;
    s.name = std::move(name);
    s.op_type = std::move(type);
    s.scope = std::move(scope);
    return s;
  };
  EXPECT_EQ(DescribeStep(step(Phase::kBackward, "loss backward", "loss backward", "")),
            "the loss's backward (its gradient)");
  EXPECT_EQ(DescribeStep(step(Phase::kOptimizer, "optimizer step", "adam", "")),
            "the optimizer step (adam)");
  EXPECT_EQ(DescribeStep(step(Phase::kBackward, "/conv1/Conv", "Conv backward", "conv1")),
            "backward of /conv1/Conv (Conv), module conv1");
  EXPECT_EQ(DescribeStep(step(Phase::kForward, "/h.0/attn/Softmax", "Softmax", "h.0.attn")),
            "forward of /h.0/attn/Softmax (Softmax), module h.0.attn");
  EXPECT_EQ(DescribeStep(step(Phase::kBackward, "recompute h.3", "checkpoint recompute", "h.3")),
            "backward, recomputing checkpointed h.3");
}

}  // namespace
}  // namespace vramsim

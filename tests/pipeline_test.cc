// Pipeline parallelism (policies/pipeline.h): the split, the micro-batches each stage holds in
// flight, and one stage's bytes worked out by hand on a tiny four-block model.
#include "policies/pipeline.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "engine/estimate.h"
#include "importer/importer.h"
#include "simulator/peak.h"
#include "tests/model_builder.h"

namespace vramsim {
namespace {

using testing::ModelBuilder;
constexpr DType kF32 = DType::kFloat32;

// x [4,8] -> h.0 .. h.3, each Gemm(in, W [8,8], transB) -> [4,8]; cross-entropy over 8 classes.
//   x: 4*8*4 = 128 bytes; every activation [4,8] f32 = 128; every W [8,8] f32 = 256.
void FourBlocks(ModelBuilder& m) {
  m.Input("x", kF32, {4, 8});
  const char* ins[] = {"x", "a0", "a1", "a2"};
  const char* outs[] = {"a0", "a1", "a2", "y"};
  const char* weights[] = {"W0", "W1", "W2", "W3"};
  const char* names[] = {"/h.0/fc/Gemm", "/h.1/fc/Gemm", "/h.2/fc/Gemm", "/h.3/fc/Gemm"};
  for (int k = 0; k < 4; ++k) {
    m.Initializer(weights[k], kF32, {8, 8});
    m.Node("Gemm", {ins[k], weights[k]}, {outs[k]}, names[k]).Int("transB", 1);
  }
  m.Output("y");
}

Result<Estimate> RunStage(int pp, int stage, int accum, const std::string& schedule = "1f1b") {
  ModelBuilder m;
  FourBlocks(m);
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  EstimateFlags f;
  f.optimizer = "sgd";
  f.target = "torch-cpu";  // no 512-byte rounding: exact bytes
  f.accum = accum;
  f.pipeline_parallel = pp;
  f.pipeline_stage = stage;
  f.schedule = schedule;
  auto o = ParseEstimateFlags(f);
  if (!o) return o.error();
  return RunEstimate(*g, *o);
}

uint64_t Cat(const PeakReport& p, Category c) { return p.by_category[static_cast<size_t>(c)]; }

// Micro-batches in flight, against the published counts.
TEST(PipelineInFlight, OneFOneBFirstStageHoldsPAsInTheSchedulePapers) {
  // Narayanan et al. 2021 (PipeDream-Flush) / Korthikanti et al. 2022 Sec. 4.2.3: with 1F1B
  // the first stage holds the activations of p micro-batches; stage i of p holds p - i.
  for (int p : {2, 4, 8}) {
    InFlight first = InFlightMicroBatches(PipelineSchedule::k1F1B, p, 1, 64, 0);
    EXPECT_EQ(first.num, static_cast<uint64_t>(p));
    EXPECT_EQ(first.den, 1u);
    EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::k1F1B, p, 1, 64, p - 1).num, 1u);
  }
  EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::k1F1B, 8, 1, 64, 3).num, 5u);  // 8 - 3
  // Fewer micro-batches than stages: at most m are ever in flight.
  EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::k1F1B, 8, 1, 3, 0).num, 3u);
  // GPipe: every micro-batch's forward before any backward.
  EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::kGPipe, 4, 1, 16, 0).num, 16u);
  EXPECT_EQ(InFlightMicroBatches(PipelineSchedule::kGPipe, 4, 1, 16, 3).num, 16u);
}

TEST(PipelineInFlight, InterleavedFirstStageIsKorthikantisFactor) {
  // Korthikanti et al. 2022 Sec. 4.2.3 and Megatron's theoretical_memory_usage.py: the first
  // stage holds p (1 + (p - 1) / (p V)) micro-batches' activations.
  //   p = 4, V = 2: 4 (1 + 3/8) = 5.5;   p = 8, V = 4: 8 (1 + 7/32) = 9.75
  InFlight a = InFlightMicroBatches(PipelineSchedule::kInterleaved, 4, 2, 64, 0);
  EXPECT_DOUBLE_EQ(static_cast<double>(a.num) / static_cast<double>(a.den), 5.5);
  InFlight b = InFlightMicroBatches(PipelineSchedule::kInterleaved, 8, 4, 64, 0);
  EXPECT_DOUBLE_EQ(static_cast<double>(b.num) / static_cast<double>(b.den), 9.75);
  // The last stage of Megatron's interleaved schedule: (V - 1) p warm-up chunks + 1, of
  // 1/V each: p = 4, V = 2: (4 + 1) / 2 = 2.5.
  InFlight c = InFlightMicroBatches(PipelineSchedule::kInterleaved, 4, 2, 64, 3);
  EXPECT_DOUBLE_EQ(static_cast<double>(c.num) / static_cast<double>(c.den), 2.5);
}

// The split: four equal blocks over two stages, two each; --stages moves the boundary.
TEST(PipelineSplit, EqualBlocksSplitEvenlyAndStagesMoveTheBoundary) {
  auto s0 = RunStage(2, 0, 1);
  ASSERT_TRUE(s0.ok()) << s0.error().message;
  EXPECT_EQ(s0->pipeline.block_count, 2);
  EXPECT_EQ(s0->pipeline.first_blocks, std::vector<std::string>{"h.0"});
  auto s1 = RunStage(2, 1, 1);
  ASSERT_TRUE(s1.ok()) << s1.error().message;
  EXPECT_EQ(s1->pipeline.first_blocks, std::vector<std::string>{"h.2"});

  ModelBuilder m;
  FourBlocks(m);
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok());
  EstimateFlags f;
  f.optimizer = "sgd";
  f.target = "torch-cpu";
  f.pipeline_parallel = 2;
  f.stages = "h.3";
  auto o = ParseEstimateFlags(f);
  ASSERT_TRUE(o.ok()) << o.error().message;
  auto all = RunEstimate(*g, *o);
  ASSERT_TRUE(all.ok()) << all.error().message;
  ASSERT_EQ(all->stage_peaks.size(), 2u);
  // The worst stage is reported; stage 0 now holds h.0-h.2.
  EXPECT_EQ(all->peak.peak_bytes, std::max(all->stage_peaks[0], all->stage_peaks[1]));
  f.stages = "h.9";
  o = ParseEstimateFlags(f);
  ASSERT_TRUE(o.ok());
  auto bad = RunEstimate(*g, *o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("h.9"), std::string::npos);
  f.stages = "";
  f.pipeline_parallel = 5;  // 4 blocks
  o = ParseEstimateFlags(f);
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(RunEstimate(*g, *o).ok());
}

// One micro-batch, stage 0 of 2 (h.0, h.1), sgd on the CPU (exact bytes):
//   parameters W0 256 + W1 256, batch x 128                                = 640
//   forward: a0 128 (saved by h.1's Gemm for W1's gradient); a1 128 goes to the send op and
//   is freed after it; the send op's output is a 4-byte float handle the script holds.
//   backward: the handle's gradient 4 (freed after the send's backward), the received
//   gradient of a1 128; h.1's backward makes grad a0 128 and grad W1 256:
//   640 + a0 128 + handle 4 + grad a1 128 + grad a0 128 + grad W1 256       = 1284
// Stage 1 (h.2, h.3, the loss): W2 256 + W3 256 + labels [4] int64 32 = 544; the received a1
// 128 (saved by h.2), a2 128 (saved by h.3), y 128 (held by the script), loss 4; at h.2's
// backward: grad W3 256 + grad a2 128 + grad of the received a1 128 + grad W2 256:
//   544 + 128 + 128 + 128 + 4 + 256 + 128 + 128 + 256                       = 1572
TEST(PipelineBytes, TwoStagesOneMicroBatchByHand) {
  auto s0 = RunStage(2, 0, 1);
  ASSERT_TRUE(s0.ok()) << s0.error().message;
  EXPECT_EQ(s0->peak.peak_bytes, 1284u);
  EXPECT_EQ(Cat(s0->peak, Category::kParameters), 512u);
  EXPECT_EQ(Cat(s0->peak, Category::kGradients), 256u);  // W1's only: W0's comes after
  // What one micro-batch's forward leaves: a0 128 + the handle 4.
  EXPECT_EQ(s0->pipeline.micro_batch_bytes, 132u);
  auto s1 = RunStage(2, 1, 1);
  ASSERT_TRUE(s1.ok()) << s1.error().message;
  EXPECT_EQ(s1->peak.peak_bytes, 1572u);
  // received a1 128 + a2 128 + y 128.
  EXPECT_EQ(s1->pipeline.micro_batch_bytes, 384u);
}

// Four micro-batches under 1F1B, p = 2. The batch stays resident whole: x 4 * 128 = 512,
// labels 4 * 32 = 128. Stage 0 holds min(2 - 0, 4) = 2 micro-batches in flight; the steady
// micro-batch (gradients exist) peaks when h.1's backward makes W1's new gradient before
// adding it to the existing one:
//   W0, W1 512 + x 512 + grads 512 + a0 128 + handle 4 + grad a1 128 + grad a0 128
//   + new grad W1 256                                                         = 2180
// and the next micro-batch's forward has run (1F1B: F(k+1) before B(k)): its a0 128 and
// handle 4 are alive too: 2180 + 132                                         = 2312.
// Stage 1 holds min(2 - 1, 4) = 1: its peak is the simulated one, the steady micro-batch at
// h.3's backward: W2, W3 512 + labels 128 + grads 512 + received a1 128 + a2 128 + y 128
//   + loss 4 + grad a2 128 + grad y 128 + new grad W3 256                    = 2052.
TEST(PipelineBytes, OneFOneBStageZeroHoldsTheNextMicroBatchByHand) {
  auto s0 = RunStage(2, 0, 4);
  ASSERT_TRUE(s0.ok()) << s0.error().message;
  EXPECT_EQ(s0->pipeline.in_flight.num, 2u);
  EXPECT_EQ(s0->peak.peak_bytes, 2312u);
  auto s1 = RunStage(2, 1, 4);
  ASSERT_TRUE(s1.ok()) << s1.error().message;
  EXPECT_EQ(s1->pipeline.in_flight.num, 1u);
  EXPECT_EQ(s1->peak.peak_bytes, 2052u);
  // GPipe holds all four: stage 1's steady micro-batch has min(4, 4 - 1) - 1 = 2 others
  // (384 each) beside it: 2052 + 768 = 2820. (The first micro-batch, no gradients yet, has
  // 3 others: its one-in-flight peak 1572 - labels 32 + labels 128 = 1668, + 3 * 384 = 2820
  // as well.)
  auto g1 = RunStage(2, 1, 4, "gpipe");
  ASSERT_TRUE(g1.ok()) << g1.error().message;
  EXPECT_EQ(g1->peak.peak_bytes, 2820u);
}

TEST(PipelineFlags, BadValuesAreOneClearError) {
  EstimateFlags f;
  f.pipeline_parallel = 0;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
  f.pipeline_parallel = 2;
  f.schedule = "zigzag";
  auto o = ParseEstimateFlags(f);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().message.find("1f1b"), std::string::npos);
  f.schedule = "1f1b";
  f.virtual_stages = 2;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());  // virtual stages need interleaved
  f.schedule = "interleaved";
  f.accum = 1;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());  // fewer micro-batches than stages
  f.accum = 4;
  EXPECT_TRUE(ParseEstimateFlags(f).ok());
  f.pipeline_stage = 2;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
}

// Model states per rank (parameters, gradients, optimizer state alive when the optimizer
// step starts) against the ZeRO paper's closed forms (Rajbhandari et al. 2020, Sec. 5.1:
// baseline (P + G + K) psi; P_os (P + G) psi + K psi / N; P_os+g P psi + (G + K) psi / N;
// P_os+g+p (P + G + K) psi / N), with Megatron's pipeline split (each stage holds its own
// layers' psi / pp; theoretical_memory_usage.py divides the parameters by the pipeline size).
// Four blocks of W [128,128] fp32 (psi = 4 * 16384 = 65536 parameters), momentum SGD (one
// state buffer: K = 4 bytes), fp32 gradients (G = 4), parameters P = 4; N = 4 ranks: every
// shard (16384 / 4 elements = 16 KiB) is a multiple of the 512-byte rounding.
void FourWideBlocks(ModelBuilder& m) {
  m.Input("x", kF32, {4, 128});
  const char* ins[] = {"x", "a0", "a1", "a2"};
  const char* outs[] = {"a0", "a1", "a2", "y"};
  const char* weights[] = {"W0", "W1", "W2", "W3"};
  const char* names[] = {"/h.0/fc/Gemm", "/h.1/fc/Gemm", "/h.2/fc/Gemm", "/h.3/fc/Gemm"};
  for (int k = 0; k < 4; ++k) {
    m.Initializer(weights[k], kF32, {128, 128});
    m.Node("Gemm", {ins[k], weights[k]}, {outs[k]}, names[k]).Int("transB", 1);
  }
  m.Output("y");
}

uint64_t ModelStateBytes(int zero, const std::string& fsdp, int pp, int gpus_per_node = 8) {
  ModelBuilder m;
  FourWideBlocks(m);
  auto g = ImportModelProto(m.proto());
  EXPECT_TRUE(g.ok());
  EstimateFlags f;
  f.optimizer = "momentum";
  f.data_parallel = 4;
  f.zero = zero;
  f.fsdp = fsdp;
  f.gpus_per_node = gpus_per_node;
  f.pipeline_parallel = pp;
  f.pipeline_stage = pp > 1 ? 0 : -1;
  auto o = ParseEstimateFlags(f);
  EXPECT_TRUE(o.ok()) << o.error().message;
  auto e = RunEstimate(*g, *o);
  EXPECT_TRUE(e.ok()) << e.error().message;
  return e.ok() ? ModelStatesAtOptimizerStart(e->trace, 512) : 0;
}

TEST(ModelStates, ZeroStagesAndFsdpModesMatchTheClosedFormsTimesPipeline) {
  const double P = 4, G = 4, K = 4, N = 4;
  for (int pp : {1, 2}) {
    const double psi = 65536.0 / pp;  // stage 0 holds h.0, h.1 when pp = 2
    auto is = [&](double bytes) { return static_cast<uint64_t>(bytes); };
    EXPECT_EQ(ModelStateBytes(0, "", pp), is((P + G + K) * psi)) << "pp " << pp;
    EXPECT_EQ(ModelStateBytes(2, "", pp), is(P * psi + (G + K) * psi / N)) << "pp " << pp;
    EXPECT_EQ(ModelStateBytes(3, "", pp), is((P + G + K) * psi / N)) << "pp " << pp;
    // FSDP: FULL_SHARD and SHARD_GRAD_OP shard all three at rest (the gathered parameters
    // are freed by the optimizer step); HYBRID_SHARD over 2 GPUs per node shards over 2.
    EXPECT_EQ(ModelStateBytes(0, "full", pp), is((P + G + K) * psi / N)) << "pp " << pp;
    EXPECT_EQ(ModelStateBytes(0, "shard-grad-op", pp), is((P + G + K) * psi / N)) << pp;
    EXPECT_EQ(ModelStateBytes(0, "hybrid", pp, 2), is((P + G + K) * psi / 2)) << "pp " << pp;
  }
}

TEST(ModelStates, ZeroOneKeepsFullParametersAndShardsTheOptimizerState) {
  // P_os: (P + G) psi + K psi / N, or with the gradients reduced to the partition when the
  // backward ends (vramsim's ZeRO 1, policies/sharding.h): P psi + (G + K) psi / N.
  const double P = 4, G = 4, K = 4, N = 4, psi = 65536;
  uint64_t b = ModelStateBytes(1, "", 1);
  EXPECT_TRUE(b == static_cast<uint64_t>((P + G) * psi + K * psi / N) ||
              b == static_cast<uint64_t>(P * psi + (G + K) * psi / N))
      << b;
}

TEST(ModelStates, FsdpFlagsAreOneClearError) {
  EstimateFlags f;
  f.fsdp = "full";
  EXPECT_FALSE(ParseEstimateFlags(f).ok());  // no data parallelism
  f.data_parallel = 4;
  f.zero = 2;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());  // --zero and --fsdp
  f.zero = 0;
  f.fsdp = "fully";
  auto o = ParseEstimateFlags(f);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().message.find("shard-grad-op"), std::string::npos);
  f.fsdp = "hybrid";
  f.gpus_per_node = 1;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
}

// --offload optimizer (ZeRO-Offload, Ren et al. 2021 Sec. 4): the optimizer state leaves the
// GPU; parameters and gradients stay. Same four wide blocks, momentum (K = 4 per parameter):
//   one GPU: (P + G) psi = 8 * 65536 = 524288 instead of (P + G + K) psi = 786432;
//   ZeRO 2 over 4 ranks (ZeRO-Offload's setting): P psi + G psi / 4 = 262144 + 65536 = 327680.
TEST(ModelStates, OffloadOptimizerLeavesParametersAndGradients) {
  ModelBuilder m;
  FourWideBlocks(m);
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok());
  auto states = [&](int dp, int zero, const std::string& offload) -> uint64_t {
    EstimateFlags f;
    f.optimizer = "momentum";
    f.data_parallel = dp;
    f.zero = zero;
    f.offload = offload;
    auto o = ParseEstimateFlags(f);
    EXPECT_TRUE(o.ok()) << o.error().message;
    auto e = RunEstimate(*g, *o);
    EXPECT_TRUE(e.ok()) << e.error().message;
    return e.ok() ? ModelStatesAtOptimizerStart(e->trace, 512) : 0;
  };
  EXPECT_EQ(states(1, 0, ""), 786432u);
  EXPECT_EQ(states(1, 0, "optimizer"), 524288u);
  EXPECT_EQ(states(4, 2, "optimizer"), 327680u);
  EstimateFlags f;
  f.offload = "params";
  auto o = ParseEstimateFlags(f);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().message.find("not modelled"), std::string::npos);
  f.offload = "disk";
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
}

}  // namespace
}  // namespace vramsim

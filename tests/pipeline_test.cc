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

// Interleaved, p = 2, V = 2, two micro-batches: one block per chunk, stage 0 runs h.0 and h.2,
// stage 1 runs h.1 and h.3 (and the loss). Each chunk sends its output when it ends; the
// send's 4-byte handle goes to the next chunk's receive, whose backward makes the handle's
// gradient: a chunk's output gradient is received when the backward reaches the chunk.
// Stage 0, sgd on the CPU: W0, W2 512 + x (whole batch, 2 x 128) 256              = 768.
//   forward: a0 128, sent (freed after the send, handle 4); received a1 128 (saved by h.2,
//   the handle freed); a2 128 sent (freed; its handle 4 held as the stage's output).
//   A = received a1 128 + handle 4 = 132.
//   The second micro-batch (gradients W0, W2 512 exist) at h.2's backward: 768 + 512 +
//   received a1 128 + handle 4 + grad a2 128 (received when the backward starts) + grad of the
//   received a1 128 + new grad W2 256 (before it is added)                         = 1924.
//   a0's gradient comes only after h.2's backward has sent a1's back: 128 more if it were
//   received when the backward starts (2052).
//   In flight: min((2 - 0 - 1) 2 + (2 - 1) 2 + 1, 2 x 2) / 2 = 2: the first micro-batch has
//   one other beside it: its peak at h.2's backward 768 + 128 + 4 + 128 + 128 + 256 = 1412,
//   + A = 1544 < 1924; the second has min(2, 2 - 1) - 1 = 0 others.
// Stage 1: W1, W3 512 + labels (2 x [4] int64) 64 = 576. Forward: received a0 128 (saved by
//   h.1), a1 128 sent (freed, its handle 4 goes to the receive of a2 and is freed), received
//   a2 128 (saved by h.3), y 128 (held by the script). The second micro-batch at h.3's
//   backward: 576 + grads W1, W3 512 + received a0 128 + received a2 128 + y 128 + loss 4 +
//   grad y 128 + grad of the received a2 128 + new grad W3 256                     = 1988.
//   (The first micro-batch, A = 384 and (3 - 2) / 2 of one more beside it: 576 + 128 + 128 +
//   128 + 4 + 128 + 128 + 256 = 1476, + 192 = 1668.) W1 has a gradient: h.1's output a1 is
//   sent to stage 0 and its gradient comes back.
TEST(PipelineBytes, InterleavedChunkReceivesItsGradientWhenTheBackwardReachesItByHand) {
  ModelBuilder m;
  FourBlocks(m);
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok());
  auto run = [&](int stage) {
    EstimateFlags f;
    f.optimizer = "sgd";
    f.target = "torch-cpu";
    f.accum = 2;
    f.pipeline_parallel = 2;
    f.pipeline_stage = stage;
    f.schedule = "interleaved";
    f.virtual_stages = 2;
    auto o = ParseEstimateFlags(f);
    EXPECT_TRUE(o.ok()) << o.error().message;
    return RunEstimate(*g, *o);
  };
  auto s0 = run(0);
  ASSERT_TRUE(s0.ok()) << s0.error().message;
  EXPECT_EQ(s0->pipeline.first_blocks, (std::vector<std::string>{"h.0", "h.2"}));
  EXPECT_EQ(s0->pipeline.micro_batch_bytes, 132u);
  EXPECT_EQ(s0->pipeline.in_flight.num, 4u);
  EXPECT_EQ(s0->pipeline.in_flight.den, 2u);
  EXPECT_EQ(s0->peak.peak_bytes, 1924u);
  auto s1 = run(1);
  ASSERT_TRUE(s1.ok()) << s1.error().message;
  EXPECT_EQ(s1->pipeline.first_blocks, (std::vector<std::string>{"h.1", "h.3"}));
  EXPECT_EQ(s1->pipeline.micro_batch_bytes, 384u);
  EXPECT_EQ(s1->peak.peak_bytes, 1988u);
  EXPECT_EQ(Cat(s1->peak, Category::kGradients), 512u);  // W1's and W3's
  int w1 = 0;
  for (const Buffer& b : s1->trace.buffers) w1 += b.name == "grad of W1";
  EXPECT_GE(w1, 1);
}

// Under autocast a stage's received activation is data, typed as the export has it: a
// residual block (y = x + Gemm(x)) adds the bf16 Gemm output to the fp32 stream, which stays
// fp32 (type promotion); stage 1 receives it as fp32 (128 bytes), not retyped to the bf16 it
// meets as if it were a constant mask.
TEST(PipelineBytes, ReceivedResidualStaysFloat32UnderAutocast) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  const char* ins[] = {"x", "a0", "a1", "a2"};
  const char* mids[] = {"g0", "g1", "g2", "g3"};
  const char* outs[] = {"a0", "a1", "a2", "y"};
  const char* weights[] = {"W0", "W1", "W2", "W3"};
  const char* gemms[] = {"/h.0/fc/Gemm", "/h.1/fc/Gemm", "/h.2/fc/Gemm", "/h.3/fc/Gemm"};
  const char* adds[] = {"/h.0/Add", "/h.1/Add", "/h.2/Add", "/h.3/Add"};
  for (int k = 0; k < 4; ++k) {
    m.Initializer(weights[k], kF32, {8, 8});
    m.Node("Gemm", {ins[k], weights[k]}, {mids[k]}, gemms[k]).Int("transB", 1);
    m.Node("Add", {ins[k], mids[k]}, {outs[k]}, adds[k]);
  }
  m.Output("y");
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok());
  EstimateFlags f;
  f.optimizer = "sgd";
  f.precision = "amp-bf16";
  f.pipeline_parallel = 2;
  f.pipeline_stage = 1;
  auto o = ParseEstimateFlags(f);
  ASSERT_TRUE(o.ok()) << o.error().message;
  auto e = RunEstimate(*g, *o);
  ASSERT_TRUE(e.ok()) << e.error().message;
  int received = 0;
  for (const Buffer& b : e->trace.buffers) {
    if (b.name.rfind("received ", 0) != 0) continue;
    ++received;
    EXPECT_EQ(b.dtype, DType::kFloat32) << b.name;
    EXPECT_EQ(b.bytes, 128u) << b.name;
  }
  EXPECT_GE(received, 1);
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
    // ZeRO 1 keeps whole gradients until the step (DeepSpeed stage 1, ZeroRedundancyOptimizer).
    EXPECT_EQ(ModelStateBytes(1, "", pp), is((P + G) * psi + K * psi / N)) << "pp " << pp;
    EXPECT_EQ(ModelStateBytes(2, "", pp), is(P * psi + (G + K) * psi / N)) << "pp " << pp;
    EXPECT_EQ(ModelStateBytes(3, "", pp), is((P + G + K) * psi / N)) << "pp " << pp;
    // FSDP: FULL_SHARD and SHARD_GRAD_OP shard all three at rest (the gathered parameters
    // are freed by the optimizer step); HYBRID_SHARD over 2 GPUs per node shards over 2.
    EXPECT_EQ(ModelStateBytes(0, "full", pp), is((P + G + K) * psi / N)) << "pp " << pp;
    EXPECT_EQ(ModelStateBytes(0, "shard-grad-op", pp), is((P + G + K) * psi / N)) << pp;
    EXPECT_EQ(ModelStateBytes(0, "hybrid", pp, 2), is((P + G + K) * psi / 2)) << "pp " << pp;
  }
}

Result<Estimate> WideEstimate(int dp, int zero, const std::string& fsdp,
                              const std::string& offload) {
  ModelBuilder m;
  FourWideBlocks(m);
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  EstimateFlags f;
  f.optimizer = "momentum";
  f.data_parallel = dp;
  f.zero = zero;
  f.fsdp = fsdp;
  f.offload = offload;
  auto o = ParseEstimateFlags(f);
  if (!o) return o.error();
  return RunEstimate(*g, *o);
}

// "backward /h.0/fc/Gemm": the phase and the step's name.
std::string PeakStepName(const Estimate& e) {
  const Step& s = e.trace.steps[e.peak.peak_step];
  return std::string(PhaseName(s.phase)) + " " + s.name;
}

// ZeRO 1 (P_os) as DeepSpeed's stage 1 and PyTorch's ZeroRedundancyOptimizer hold it: whole
// parameters, whole gradients until the step (DeepSpeed frees the other ranks' portions
// inside step(); ZeroRedundancyOptimizer keeps them to zero_grad), the optimizer state of the
// rank's 1/N partition: (P + G) psi + K psi / N = 8 * 65536 + 4 * 65536 / 4 = 589824.
// The peak, the four wide blocks on CUDA (512-byte blocks): the flat buffer 262144 (this
// rank's partition 65536 + the rest 196608), momentum of the partition 65536, x [4,128] 2048,
// labels [4] int64 512; forward a0..a2 2048 each saved, y 2048 held by the script, loss 512.
// The backward adds each W's gradient 65536; at h.0's (the last) the gradients of all four
// are alive with grad a0 2048 (a0, a1, a2 and grad y are gone):
//   589824 + x 2048 + labels 512 + y 2048 + loss 512 + grad a0 2048              = 596992,
// the model states then being exactly the closed form. Nothing is reduced into a new buffer
// after the backward, and the step (momentum, in place) allocates nothing.
TEST(ModelStates, ZeroOneIsTheClosedFormAtThePeak) {
  const double P = 4, G = 4, K = 4, N = 4, psi = 65536;
  auto e = WideEstimate(4, 1, "", "");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const uint64_t states = static_cast<uint64_t>((P + G) * psi + K * psi / N);
  EXPECT_EQ(states, 589824u);
  EXPECT_EQ(ModelStatesAtOptimizerStart(e->trace, 512), states);
  EXPECT_EQ(e->peak.peak_bytes, 596992u);
  EXPECT_EQ(PeakStepName(*e), "backward /h.0/fc/Gemm");
  EXPECT_EQ(Cat(e->peak, Category::kParameters), static_cast<uint64_t>(P * psi));
  EXPECT_EQ(Cat(e->peak, Category::kGradients), static_cast<uint64_t>(G * psi));
  EXPECT_EQ(Cat(e->peak, Category::kOptimizerState), static_cast<uint64_t>(K * psi / N));
}

// FSDP FULL_SHARD with BACKWARD_PRE prefetch, the four wide blocks over 4 ranks (one unit per
// block), momentum, CUDA. At rest: four shards 4 * 16384 = 65536, their momentum 65536, x 2048,
// labels 512 = 133632. Each unit is gathered (65536) for its forward and freed after it. In
// the backward, unit k's parameters are gathered again and unit k-1's prefetched while its
// backward runs; when the unit's backward ends its gradient is reduce-scattered into the
// shard's (16384) and the whole one (65536) freed. At h.1's backward:
//   133632 + y 2048 + loss 512 + a0 2048 (saved by h.1) + grad a1 2048
//   + shard gradients of h.3 and h.2 32768 + h.1 gathered 65536 + h.0 prefetched 65536
//   + grad a0 2048 + grad W1 65536                                                = 371712,
// above h.3's (133632 + a0..a2 6144 + y 2048 + loss 512 + grad y 2048 + 131072 + grad a2
// 2048 + grad W3 65536 = 343040) and h.2's (357376); h.0's has no unit before it to prefetch.
TEST(FsdpBytes, PeakHoldsTheRunningUnitAndThePrefetchedNextByHand) {
  auto e = WideEstimate(4, 0, "full", "");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->peak.peak_bytes, 371712u);
  EXPECT_EQ(PeakStepName(*e), "backward /h.1/fc/Gemm");
  // The two gathered units are the backward's workspace of h.1's Gemm.
  uint64_t gathered = 0;
  for (BufferId b : e->peak.live_at_peak) {
    if (e->trace.buffers[b].name == "/h.1/fc/Gemm:backward workspace") {
      gathered += e->trace.buffers[b].bytes;
    }
  }
  EXPECT_EQ(gathered, 2u * 65536u);
}

// --offload params (FSDP CPUOffload(offload_params=True)): the same FSDP run with shards,
// their gradients and the momentum on the host. At rest the GPU holds x 2048 + labels 512.
// The forward's gather of h.3 holds the three saved activations 6144, the gathered unit 65536
// and the shard copied in from the host 16384: 2560 + 6144 + 65536 + 16384 = 90624. The
// backward of h.3 holds what the FSDP run held there less the shards and the momentum:
//   2560 + a0..a2 6144 + y 2048 + loss 512 + grad y 2048 + h.3 gathered and h.2 prefetched
//   131072 + grad a2 2048 + grad W3 65536                                          = 211968;
// h.2's: 2560 + a0, a1 4096 + y 2048 + loss 512 + grad a2 2048 + 131072 + grad a1 2048 +
// grad W2 65536 = 209920 (no shard gradient stays: each is copied out, a 16384-byte
// partition beside the unit's 65536 gradient while its reduce-scatter runs, 93184 at most).
// At the step nothing of the model is on the GPU.
TEST(ModelStates, OffloadParamsStagesUnitsInByHand) {
  auto e = WideEstimate(4, 0, "full", "params");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->peak.peak_bytes, 211968u);
  EXPECT_EQ(PeakStepName(*e), "backward /h.3/fc/Gemm");
  EXPECT_EQ(ModelStatesAtOptimizerStart(e->trace, 512), 0u);
  EXPECT_EQ(Cat(e->peak, Category::kParameters), 0u);
  EXPECT_EQ(Cat(e->peak, Category::kOptimizerState), 0u);
  // The forward's staging buffer: the gather of h.3 with its shard copied in.
  uint64_t forward_high = 0, live = 0;
  for (const Event& ev : e->trace.events) {
    const uint64_t b = RoundUp(e->trace.buffers[ev.buffer].bytes, 512);
    live = ev.kind == Event::Kind::kAlloc ? live + b : live - b;
    if (e->trace.steps[ev.step].phase == Phase::kForward)
      forward_high = std::max(forward_high, live);
  }
  EXPECT_EQ(forward_high, 90624u);
  // ZeRO 3 is the same; without it, one clear line.
  auto z3 = WideEstimate(4, 3, "", "params");
  ASSERT_TRUE(z3.ok()) << z3.error().message;
  for (auto [dp, zero] : {std::pair{4, 2}, {4, 1}, {4, 0}, {1, 0}}) {
    auto bad = WideEstimate(dp, zero, "", "params");
    ASSERT_FALSE(bad.ok()) << dp << " " << zero;
    EXPECT_NE(bad.error().message.find("--fsdp"), std::string::npos) << bad.error().message;
    EXPECT_EQ(bad.error().message.find('\n'), std::string::npos);
  }
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
// GPU, and each unit's gradient partition is copied to the host as its reduce-scatter ends:
// at the step the GPU holds the parameters only. Same four wide blocks, momentum (K = 4):
//   one GPU, no offload: (P + G + K) psi = 12 * 65536 = 786432;
//   one GPU (ZeRO-Offload's single-GPU setting), ZeRO 1, 2 or 3 over 4 ranks: P psi = 262144
//   (ZeRO 3: P psi / 4 = 65536).
// The peak on one GPU: a unit's gradient leaves after its backward. At rest W0..W3 262144 +
// x 2048 + labels 512 = 264704; at h.3's backward: + a0..a2 6144 + y 2048 + loss 512 +
// grad y 2048 + grad a2 2048 + grad W3 65536 = 343040; the copy-out of W3's gradient then
// holds its partition (one rank: the whole gradient, 65536) beside it, grad y and a2 gone:
//   264704 + a0, a1 4096 + y 2048 + loss 512 + grad a2 2048 + grad W3 65536 + 65536 = 404480;
// h.2's backward, W3's gradient gone, holds 340992, its copy-out 402432.
TEST(ModelStates, OffloadOptimizerLeavesOnlyParameters) {
  auto states = [&](int dp, int zero, const std::string& offload) -> uint64_t {
    auto e = WideEstimate(dp, zero, "", offload);
    EXPECT_TRUE(e.ok()) << e.error().message;
    return e.ok() ? ModelStatesAtOptimizerStart(e->trace, 512) : 0;
  };
  EXPECT_EQ(states(1, 0, ""), 786432u);
  EXPECT_EQ(states(1, 0, "optimizer"), 262144u);
  EXPECT_EQ(states(4, 1, "optimizer"), 262144u);
  EXPECT_EQ(states(4, 2, "optimizer"), 262144u);
  EXPECT_EQ(states(4, 3, "optimizer"), 65536u);
  auto one = WideEstimate(1, 0, "", "optimizer");
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(one->peak.peak_bytes, 404480u);
  EXPECT_EQ(PeakStepName(*one), "backward gradients to the host of h.3");
  // DDP over several ranks (not ZeRO-Offload: DeepSpeed offloads with ZeRO only) keeps its
  // all-reduced gradients until the step copies them out: (P + G) psi = 524288.
  EXPECT_EQ(states(4, 0, "optimizer"), 524288u);
  EstimateFlags f;
  f.offload = "disk";
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
}

}  // namespace
}  // namespace vramsim

// fit and max-batch against full simulations on small artificial devices, the device
// profiles, and ZeRO sharding against the ZeRO paper's model-state formulas.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/fit_cmd.h"
#include "devices/devices.h"
#include "policies/sharding.h"
#include "simulator/allocator.h"
#include "simulator/simulate.h"
#include "tests/model_builder.h"

namespace vramsim {
namespace {

constexpr uint64_t MiB = 1024 * 1024;
const std::string kExamples = VRAMSIM_EXAMPLES;

EstimateOptions Options(const std::string& precision = "fp32", int accum = 1) {
  EstimateFlags f;
  f.precision = precision;
  f.accum = accum;
  auto o = ParseEstimateFlags(f);
  EXPECT_TRUE(o.ok());
  return *o;
}

FitOptions Device(const std::string& gpu, uint64_t capacity, bool expandable = false) {
  auto f = MakeFitOptions(gpu, capacity, expandable);
  EXPECT_TRUE(f.ok());
  return *f;
}

// ---- device profiles -----------------------------------------------------------------------

TEST(Devices, EveryNamedProfileExists) {
  for (const char* name : {"a100-40gb", "a100-80gb", "h100-80gb", "h200", "l4", "t4", "rtx4090"}) {
    auto d = FindDevice(name);
    ASSERT_TRUE(d.ok()) << name;
    EXPECT_GT(d->capacity_bytes, d->context_bytes) << name;
    EXPECT_FALSE(d->sources.empty()) << name;
  }
  EXPECT_FALSE(FindDevice("v100").ok());
  EXPECT_EQ(FindDevice("h100-80gb")->capacity_bytes, 81559 * MiB);  // nvidia-smi memory.total
  EXPECT_EQ(FindDevice("t4")->capacity_bytes, 15360 * MiB);
  EXPECT_FALSE(FindDevice("t4")->bf16);
  // cuBLAS workspace: 4096 KiB x 2 + 16 KiB x 8 before Hopper, 32 MiB on sm_90.
  EXPECT_EQ(FindDevice("a100-80gb")->cublas_workspace_bytes, 8519680u);
  EXPECT_EQ(FindDevice("h200")->cublas_workspace_bytes, 32 * MiB);
  auto ws = LibraryWorkspaces(*FindDevice("l4"));
  ASSERT_EQ(ws.size(), 4u);  // cuBLAS and cuBLASLt, forward and backward threads
  EXPECT_EQ(ws[0].phase, Phase::kForward);
  EXPECT_EQ(ws[2].phase, Phase::kBackward);
}

// ---- max-batch -----------------------------------------------------------------------------

struct Case {
  const char* model;
  std::map<std::string, int64_t> dims;  // besides the batch
  uint64_t capacity;
  int accum;
  bool expandable;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << " on " << c.capacity / MiB << " MiB, accum " << c.accum
      << (c.expandable ? ", expandable segments" : "");
}

class MaxBatchTest : public ::testing::TestWithParam<Case> {};

TEST_P(MaxBatchTest, AgreesWithFullSimulationsAtTheAnswerAndTheNextBatch) {
  const Case& c = GetParam();
  const std::string model = kExamples + "/" + c.model + ".onnx";
  EstimateOptions options = Options("fp32", c.accum);
  FitOptions fit = Device("a100-80gb", c.capacity, c.expandable);
  auto r = MaxBatch(model, c.dims, options, fit);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_GT(r->max_batch, 0);
  EXPECT_EQ(r->max_batch % c.accum, 0);
  // Far fewer simulations than batches.
  EXPECT_LT(r->simulations(), 30);
  EXPECT_LT(r->simulations(), r->max_batch);

  auto dims = c.dims;
  dims["batch"] = r->max_batch;
  auto at = EvaluateFit(model, dims, options, fit);
  ASSERT_TRUE(at.ok());
  EXPECT_TRUE(at->fits);
  dims["batch"] = r->max_batch + c.accum;
  auto above = EvaluateFit(model, dims, options, fit);
  ASSERT_TRUE(above.ok());
  EXPECT_FALSE(above->fits);
  EXPECT_GT(above->allocator.max_reserved, above->budget.usable);

  // Without relying on PyTorch freeing its cache: reserved within the usable memory.
  const int64_t strict = r->max_batch_without_cache_flush;
  ASSERT_GT(strict, 0);
  EXPECT_LE(strict, r->max_batch);
  dims["batch"] = strict;
  auto at_strict = EvaluateFit(model, dims, options, fit);
  ASSERT_TRUE(at_strict.ok());
  EXPECT_GE(at_strict->headroom, 0);
  dims["batch"] = strict + c.accum;
  auto above_strict = EvaluateFit(model, dims, options, fit);
  ASSERT_TRUE(above_strict.ok());
  EXPECT_LT(above_strict->headroom, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Models, MaxBatchTest,
    ::testing::Values(Case{"resnet18", {}, 576 * MiB + 1024 * MiB, 1, false},
                      Case{"resnet18", {}, 576 * MiB + 1024 * MiB, 1, true},
                      Case{"resnet18", {}, 576 * MiB + 700 * MiB, 2, false},
                      Case{"gpt", {{"seq", 128}}, 512 * MiB + 600 * MiB, 1, false},
                      Case{"gpt", {{"seq", 128}}, 512 * MiB + 600 * MiB, 4, true}),
    [](const auto& info) {
      return std::string(info.param.model) + "_accum" + std::to_string(info.param.accum) +
             (info.param.expandable ? "_expandable" : "");
    });

TEST(MaxBatch, NoBatchFitsOnATinyDevice) {
  auto r = MaxBatch(kExamples + "/resnet18.onnx", {}, Options(), Device("l4", 600 * MiB));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->max_batch, 0);
  EXPECT_EQ(r->simulations(), 1);
}

// ---- fit -----------------------------------------------------------------------------------

TEST(Fit, FitsWithHeadroomOnALargeDevice) {
  auto r = Fit(kExamples + "/resnet18.onnx", {{"batch", 16}}, Options(), Device("h100-80gb", 0));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->base.fits);
  EXPECT_FALSE(r->base.needs_cache_flush);
  EXPECT_EQ(r->simulations, 1);
  const FitEvaluation& e = r->base;
  EXPECT_EQ(e.budget.usable, 81559 * MiB - 512 * MiB - 64 * MiB);  // context, cuDNN allowance
  EXPECT_EQ(e.headroom, static_cast<int64_t>(e.budget.usable - e.allocator.max_reserved));
  // max allocated: the tensors plus two cuBLAS (32 MiB on Hopper) and cuBLASLt workspaces.
  EXPECT_EQ(e.workspace_bytes, 2 * (32 + 1) * MiB);
  EXPECT_GE(e.allocator.max_allocated, e.peak_bytes);
}

TEST(Fit, SuggestsTheSmallestChangesThatFit) {
  const std::string model = kExamples + "/gpt.onnx";
  std::map<std::string, int64_t> dims = {{"batch", 64}, {"seq", 128}};
  FitOptions fit = Device("a100-40gb", 512 * MiB + 700 * MiB);
  auto r = Fit(model, dims, Options(), fit);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(r->base.fits);
  EXPECT_LT(r->base.headroom, 0);
  ASSERT_FALSE(r->fitting.empty());
  for (const FitChange& c : r->fitting) {
    EXPECT_LE(c.changes(), r->fitting.front().changes());
    // The change fits when simulated on its own.
    EstimateOptions o = Options(c.precision.empty() ? "fp32" : c.precision, std::max(c.accum, 1));
    o.checkpoint = c.checkpoint;
    auto e = EvaluateFit(model, dims, o, fit);
    ASSERT_TRUE(e.ok());
    EXPECT_TRUE(e->fits) << c.Args();
    // Accumulation is the smallest K that fits: the next smaller divisor of the batch does not.
    if (c.accum > 0 && c.changes() == 1) {
      int smaller = 0;
      for (int k = 2; k < c.accum; ++k) {
        if (64 % k == 0) smaller = k;
      }
      if (smaller) {
        auto s = EvaluateFit(model, dims, Options("fp32", smaller), fit);
        ASSERT_TRUE(s.ok());
        EXPECT_FALSE(s->fits) << "--accum " << smaller;
      }
    }
    if (!c.checkpoint.empty()) {
      EXPECT_EQ(c.checkpoint, (std::vector<std::string>{"h.0", "h.1", "h.2", "h.3"}));
    }
  }
}

TEST(Fit, UsesFp16WhereTheGpuHasNoBf16) {
  auto r = Fit(kExamples + "/gpt.onnx", {{"batch", 64}, {"seq", 128}}, Options(),
               Device("t4", 512 * MiB + 700 * MiB));
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->base.fits);
  for (const FitChange& c : r->fitting) {
    EXPECT_EQ(c.precision.find("bf16"), std::string::npos) << c.Args();
  }
}

// ---- the CLI -------------------------------------------------------------------------------

struct CliRun {
  int code = -1;
  std::string out;
};

CliRun Vramsim(const std::string& args) {
  CliRun r;
  std::string cmd = std::string(VRAMSIM_BIN) + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(FitCli, ExitCodesAndJson) {
  const std::string resnet = kExamples + "/resnet18.onnx";
  EXPECT_EQ(Vramsim("fit " + resnet + " --dim batch=8 --gpu h100-80gb").code, 0);
  CliRun no = Vramsim("fit " + resnet + " --dim batch=256 --gpu t4 --gpu-memory 1073741824 --json");
  EXPECT_EQ(no.code, 1);
  auto j = nlohmann::json::parse(no.out);
  EXPECT_FALSE(j["fits"].get<bool>());
  EXPECT_LT(j["headroom_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(Vramsim("fit " + resnet + " --dim batch=8 --gpu v100").code, 2);
  EXPECT_EQ(Vramsim("fit " + resnet + " --dim batch=8 --gpu t4 --target torch-cpu").code, 2);
  EXPECT_EQ(Vramsim("fit /nonexistent.onnx --gpu t4").code, 2);

  CliRun mb = Vramsim("max-batch " + resnet + " --gpu l4 --gpu-memory 2147483648 --json");
  EXPECT_EQ(mb.code, 0);
  auto m = nlohmann::json::parse(mb.out);
  int64_t best = m["max_batch"].get<int64_t>();
  EXPECT_GT(best, 0);
  EXPECT_TRUE(m["at_max"]["fits"].get<bool>());
  EXPECT_FALSE(m["above_max"]["fits"].get<bool>());
  EXPECT_EQ(m["above_max"]["dims"]["batch"].get<int64_t>(), best + 1);
  EXPECT_EQ(Vramsim("max-batch " + resnet + " --gpu l4 --dim batch=4").code, 2);
  EXPECT_EQ(Vramsim("max-batch " + resnet + " --gpu l4 --gpu-memory 629145600").code, 1);
}

// ---- ZeRO ----------------------------------------------------------------------------------

// Figure 1 of the ZeRO paper: Psi = 7.5B parameters, N_d = 64 ranks, K = 12 (mixed-precision
// Adam: fp32 master parameters, momentum and variance), 2 + 2 bytes of fp16 parameters and
// gradients per parameter.
TEST(Zero, PaperFigure1) {
  const double psi = 7.5e9, k = 12;
  const int nd = 64;
  EXPECT_DOUBLE_EQ(ZeroModelStates(psi, 2, 2, k, nd, 0).total(), 120e9);  // (2 + 2 + K) Psi
  // P_os: 2 Psi + 2 Psi + K Psi / N_d = 15e9 + 15e9 + 1.40625e9 ("31.4GB")
  EXPECT_DOUBLE_EQ(ZeroModelStates(psi, 2, 2, k, nd, 1).total(), 31.40625e9);
  // P_os+g: 2 Psi + (2 + K) Psi / N_d = 15e9 + 1.640625e9 ("16.6GB")
  EXPECT_DOUBLE_EQ(ZeroModelStates(psi, 2, 2, k, nd, 2).total(), 16.640625e9);
  // P_os+g+p: (2 + 2 + K) Psi / N_d ("1.9GB")
  EXPECT_DOUBLE_EQ(ZeroModelStates(psi, 2, 2, k, nd, 3).total(), 1.875e9);
}

TEST(Zero, DdpBucketsFollowTheCaps) {
  // In reverse order: 0.5 + 0.75 MiB reach the first bucket's 1 MiB; 10 + 10 MiB stay under
  // 25 MiB; the 3 MiB tensor of another dtype fills its own first bucket; 30 MiB more close
  // the open one at 50 MiB.
  std::vector<std::pair<uint64_t, int>> g = {{30 * MiB, 0}, {3 * MiB, 1},     {10 * MiB, 0},
                                             {10 * MiB, 0}, {3 * MiB / 4, 0}, {MiB / 2, 0}};
  auto b = DdpBuckets(g);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0], 5 * MiB / 4);
  EXPECT_EQ(b[1], 3 * MiB);
  EXPECT_EQ(b[2], 50 * MiB);
}

// Live bytes of a category just before the first event of the first step matching `at`.
template <class Pred>
uint64_t LiveAt(const Trace& t, Category c, Pred at) {
  std::vector<bool> live(t.buffers.size(), false);
  uint64_t bytes = 0;
  for (const Event& e : t.events) {
    if (at(t.steps[e.step])) break;
    const Buffer& b = t.buffers[e.buffer];
    if (b.category != c) continue;
    bool alloc = e.kind == Event::Kind::kAlloc;
    live[e.buffer] = alloc;
    bytes = alloc ? bytes + b.bytes : bytes - b.bytes;
  }
  return bytes;
}

uint64_t Allocated(const Trace& t, Category c) {
  uint64_t bytes = 0;
  for (const Event& e : t.events) {
    if (e.kind == Event::Kind::kAlloc && t.buffers[e.buffer].category == c) {
      bytes += t.buffers[e.buffer].bytes;
    }
  }
  return bytes;
}

// GPT in fp32 with foreach Adam: P = 4 and G = 4 bytes per parameter, K = 8 (exp_avg and
// exp_avg_sq; the step counters stay on the CPU). N_d = 4 ranks.
TEST(Zero, PerRankModelStatesMatchThePaperFormulas) {
  const std::string model = kExamples + "/gpt.onnx";
  std::map<std::string, int64_t> dims = {{"batch", 4}, {"seq", 128}};
  auto single = EstimateModel(model, dims, Options());
  ASSERT_TRUE(single.ok());
  const double psi = static_cast<double>(Allocated(single->trace, Category::kParameters)) / 4;
  // GPTConfig(): wte 512 x 256, wpe 256 x 256, per block ln_1 512 + c_attn 256 x 768 + 768 +
  // c_proj 256 x 256 + 256 + ln_2 512 + c_fc 256 x 1024 + 1024 + c_proj 1024 x 256 + 256
  // = 789760, 4 blocks, ln_f 512, lm_head 256 x 512 (no bias):
  // 131072 + 65536 + 4 x 789760 + 512 + 131072 = 3487232.
  ASSERT_EQ(psi, 3487232.0);
  const int nd = 4;
  auto at_optimizer = [](const Step& s) { return s.phase == Phase::kOptimizer; };
  for (int stage = 0; stage <= 3; ++stage) {
    SCOPED_TRACE("zero " + std::to_string(stage));
    EstimateOptions o = Options();
    o.data_parallel = nd;
    o.zero_stage = stage;
    auto e = EstimateModel(model, dims, o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    const Trace& t = e->trace;
    ModelStates want = ZeroModelStates(psi, 4, 4, 8, nd, stage);
    EXPECT_EQ(Allocated(t, Category::kParameters), want.params);
    EXPECT_EQ(Allocated(t, Category::kOptimizerState), want.optimizer);
    // The gradients the optimizer step reads (P_os: whole until the step, as DeepSpeed's
    // stage 1 and ZeroRedundancyOptimizer keep them; policies/sharding.h).
    EXPECT_EQ(LiveAt(t, Category::kGradients, at_optimizer), want.grads);
    if (stage == 0) {
      // DDP's buckets: one more copy of the gradients.
      uint64_t buckets = 0;
      for (const Buffer& b : t.buffers) {
        if (b.name.rfind("DDP gradient bucket", 0) == 0) buckets += b.bytes;
      }
      EXPECT_EQ(buckets, 4 * psi);
    }
  }
}

TEST(Zero, OneRankChangesNothingAndZeroNeedsRanks) {
  const std::string model = kExamples + "/resnet18.onnx";
  auto a = EstimateModel(model, {{"batch", 4}}, Options());
  ASSERT_TRUE(a.ok());
  EstimateFlags f;
  f.data_parallel = 1;
  f.zero = 2;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
  f.data_parallel = 8;
  f.zero = 4;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
}

TEST(Zero, ShardingLowersThePeakAndGathersOneBlockAtATime) {
  const std::string model = kExamples + "/gpt48.onnx";
  std::map<std::string, int64_t> dims = {{"batch", 2}, {"seq", 128}};
  uint64_t previous = 0;
  for (int stage : {0, 1, 3}) {
    EstimateOptions o = Options();
    o.data_parallel = 8;
    o.zero_stage = stage;
    auto e = EstimateModel(model, dims, o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    if (previous) {
      EXPECT_LT(e->peak.peak_bytes, previous) << "zero " << stage;
    }
    previous = e->peak.peak_bytes;
    if (stage != 3) continue;
    // At most one block's gathered parameters (plus the outermost unit's) at any time.
    uint64_t live = 0, most = 0, block = 0;
    for (const Event& ev : e->trace.events) {
      const Buffer& b = e->trace.buffers[ev.buffer];
      bool gathered =
          b.name.rfind("all-gathered params of h.", 0) == 0 || b.name.rfind("params of h.", 0) == 0;
      if (!gathered) continue;
      block = std::max(block, b.bytes);
      live = ev.kind == Event::Kind::kAlloc ? live + b.bytes : live - b.bytes;
      most = std::max(most, live);
    }
    EXPECT_GT(block, 0u);
    EXPECT_EQ(most, block);
  }
}

// ---- gradient accumulation: two simulated micro-batches stand for K -----------------------

// Micro-batches 2..K start from the same memory, so simulating 1 and 2 gives the peak of all K:
// the old K-pass simulation (every_micro_batch) agrees on the peak, what it is made of and,
// through the caching allocator, the reserved memory.
TEST(Accumulation, TwoSimulatedMicroBatchesGiveThePeakOfAllK) {
  struct C {
    const char* model;
    std::map<std::string, int64_t> dims;
    int k;
    const char* precision;
    const char* checkpoint;
  };
  for (const C& c : {C{"gpt", {{"batch", 8}, {"seq", 32}}, 4, "fp32", ""},
                     C{"gpt", {{"batch", 12}, {"seq", 16}}, 3, "amp-bf16", "h.1,h.2"},
                     C{"resnet18", {{"batch", 8}}, 4, "fp32", ""},
                     C{"mobilenet_v2", {{"batch", 4}}, 4, "amp-fp16", ""}}) {
    SCOPED_TRACE(std::string(c.model) + " accum " + std::to_string(c.k) + " " + c.precision);
    EstimateFlags f;
    f.accum = c.k;
    f.precision = c.precision;
    f.checkpoint = c.checkpoint;
    auto o = ParseEstimateFlags(f);
    ASSERT_TRUE(o.ok()) << o.error().message;
    auto e = EstimateModel(kExamples + "/" + c.model + ".onnx", c.dims, *o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    auto all = Simulate(e->plan, SimulateOptions{.every_micro_batch = true});
    ASSERT_TRUE(all.ok()) << all.error().message;
    PeakReport every = FindPeak(*all, e->plan.target.round_bytes);
    EXPECT_EQ(e->peak.peak_bytes, every.peak_bytes);
    EXPECT_EQ(e->peak.by_category, every.by_category);
    EXPECT_LT(e->trace.steps.size(), all->steps.size());
    AllocatorReplayOptions ro;
    auto two = ReplayCachingAllocator(e->trace, ro);
    auto k = ReplayCachingAllocator(*all, ro);
    ASSERT_TRUE(two.ok() && k.ok());
    EXPECT_EQ(two->max_allocated, k->max_allocated);
    // Reserved memory depends on the cache's history of segments, which differs by at most a
    // small-pool segment or two (2 MiB each) after more passes; it does not converge with the
    // number of passes either (gpt fp32: K = 4 reserves one segment more than K = 2, 3 or 8).
    const uint64_t diff = two->max_reserved > k->max_reserved ? two->max_reserved - k->max_reserved
                                                              : k->max_reserved - two->max_reserved;
    EXPECT_LE(diff, 4 * MiB);
  }
}

// The simulated step does not grow with K, and FLOPs count every micro-batch: accumulating 4
// micro-batches of 2 is the work of one batch of 8.
TEST(Accumulation, CostIndependentOfKAndFlopsCountEveryMicroBatch) {
  const std::string gpt = kExamples + "/gpt.onnx";
  // The same micro-batch of 16, accumulated 4 and 64 times.
  auto k4 = EstimateModel(gpt, {{"batch", 64}, {"seq", 16}}, Options("fp32", 4));
  auto k64 = EstimateModel(gpt, {{"batch", 1024}, {"seq", 16}}, Options("fp32", 64));
  ASSERT_TRUE(k4.ok() && k64.ok());
  EXPECT_EQ(k4->trace.steps.size(), k64->trace.steps.size());
  EXPECT_EQ(k4->trace.events.size(), k64->trace.events.size());
  auto micro = EstimateModel(gpt, {{"batch", 2}, {"seq", 16}}, Options("fp32", 1));
  auto k4b = EstimateModel(gpt, {{"batch", 8}, {"seq", 16}}, Options("fp32", 4));
  ASSERT_TRUE(micro.ok() && k4b.ok());
  EXPECT_GT(micro->step_flops, 0u);
  EXPECT_EQ(k4b->step_flops, micro->step_flops);  // per micro-batch (the planner's unit)
  EXPECT_EQ(micro->step_flops_all, micro->step_flops);
  EXPECT_EQ(k4b->step_flops_all, 4 * micro->step_flops);
  EXPECT_EQ(EstimateJson(*k4b)["step_flops"].get<uint64_t>(), 4 * micro->step_flops);
  // With checkpointing, the recompute of every micro-batch too; the share is unchanged.
  EstimateOptions ck = Options("fp32", 4);
  ck.checkpoint = {"h.0", "h.1"};
  auto r4 = EstimateModel(gpt, {{"batch", 8}, {"seq", 16}}, ck);
  ck.micro_batches = 1;
  auto r1 = EstimateModel(gpt, {{"batch", 2}, {"seq", 16}}, ck);
  ASSERT_TRUE(r4.ok() && r1.ok());
  EXPECT_GT(r1->recompute_flops, 0u);
  EXPECT_EQ(r4->recompute_flops_all, 4 * r1->recompute_flops);
  EXPECT_DOUBLE_EQ(r4->overhead_pct(), r1->overhead_pct());
}

TEST(Accumulation, FlagIsBounded) {
  EstimateFlags f;
  f.accum = 0;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
  f.accum = (1 << 30) + 1;
  EXPECT_FALSE(ParseEstimateFlags(f).ok());
  f.accum = 1 << 30;
  EXPECT_TRUE(ParseEstimateFlags(f).ok());
}

// ---- fit's bounded search -------------------------------------------------------------------

TEST(Fit, AccumulationCandidatesAreFewDivisors) {
  EXPECT_EQ(AccumulationCandidates(64, 1), (std::vector<int64_t>{2, 4, 8, 16, 32, 64}));
  EXPECT_EQ(AccumulationCandidates(12, 2), (std::vector<int64_t>{3, 4, 6, 12}));
  EXPECT_TRUE(AccumulationCandidates(1, 1).empty());
  EXPECT_TRUE(AccumulationCandidates(2305843009213693951, 1).empty());  // prime over 2^30
  // 2^38: powers of two up to the --accum bound, not 2^38 candidates.
  auto p = AccumulationCandidates(int64_t{1} << 38, 1);
  ASSERT_EQ(p.size(), 30u);
  EXPECT_EQ(p.front(), 2);
  EXPECT_EQ(p.back(), int64_t{1} << 30);
  // 720720 has 240 divisors: those near powers of two, ascending divisors, the largest kept.
  auto d = AccumulationCandidates(720720, 1);
  EXPECT_LE(d.size(), 64u);
  EXPECT_TRUE(std::is_sorted(d.begin(), d.end()));
  for (int64_t k : d) EXPECT_EQ(720720 % k, 0) << k;
  EXPECT_EQ(d.back(), 720720);
  // Near 2^63 with a large prime factor: fast, and divisors only.
  auto big = AccumulationCandidates(int64_t{9223372036854775783} - 1, 1);
  for (int64_t k : big) EXPECT_EQ((int64_t{9223372036854775783} - 1) % k, 0) << k;
}

// A batch of 2^38 answers at once (it simulated up to a million micro-batches per divisor).
TEST(Fit, HugeBatchIsAnsweredQuickly) {
  auto start = std::chrono::steady_clock::now();
  auto r = Fit(kExamples + "/gpt.onnx", {{"batch", int64_t{1} << 38}, {"seq", 128}}, Options(),
               Device("h200", 0));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(s, 5.0);
  if (r.ok()) {
    EXPECT_FALSE(r->base.fits);
  }
  // Bundled examples at large batches: a handful of simulations each.
  for (auto [model, dims] : std::vector<std::pair<std::string, std::map<std::string, int64_t>>>{
           {"gpt", {{"batch", 4096}, {"seq", 256}}},
           {"resnet18", {{"batch", 65536}}},
           {"mobilenet_v2", {{"batch", 8192}}}}) {
    auto f = Fit(kExamples + "/" + model + ".onnx", dims, Options(), Device("t4", 0));
    ASSERT_TRUE(f.ok()) << model << ": " << f.error().message;
    EXPECT_LE(f->simulations, 16) << model;
  }
}

// Parameters, gradients and Adam state of a 2^14 x 2^14 layer take 4 GiB in fp32 and 2 GiB in
// pure fp16: more than a 2 GiB device's 1.4 GiB usable either way. fit says so at once.
TEST(Fit, ModelStatesAloneExceedTheDevice) {
  testing::ModelBuilder m(17);
  m.Input("x", DType::kFloat32, {"batch", 16384});
  m.Initializer("fc.weight", DType::kFloat32, {16384, 16384});
  m.Node("MatMul", {"x", "fc.weight"}, {"y"}, "/fc/MatMul");
  m.Output("y");
  testing::TempDir dir;
  const std::string path = dir.Write("wide.onnx", m);
  EstimateFlags f;
  f.loss = "mse";
  auto o = ParseEstimateFlags(f);
  ASSERT_TRUE(o.ok());
  auto r = Fit(path, {{"batch", 64}}, *o, Device("t4", 2048 * MiB));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->model_states_exceed);
  EXPECT_FALSE(r->base.fits);
  EXPECT_TRUE(r->fitting.empty());
  EXPECT_GE(r->base.model_state_bytes, 4 * (uint64_t{1} << 30));
  EXPECT_LE(r->simulations, 2);
  std::string text = FitReportText(*r, Device("t4", 2048 * MiB));
  EXPECT_NE(text.find("model states alone exceed"), std::string::npos) << text;
  // On 3 GiB (2.4 GiB usable) pure fp16's 2 GiB fit: only changes with it are suggested.
  auto p = Fit(path, {{"batch", 64}}, *o, Device("t4", 3072 * MiB));
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_FALSE(p->model_states_exceed);
  for (const FitChange& c : p->fitting) EXPECT_EQ(c.precision, "fp16") << c.Args();
}

// max-batch on a model whose inputs have no 'batch' dim: an error, not "max batch: 16777216".
TEST(MaxBatch, ModelWithoutTheBatchDimension) {
  testing::ModelBuilder m(17);
  m.Input("x", DType::kFloat32, {4, 8});
  m.Initializer("fc.weight", DType::kFloat32, {8, 8});
  m.Node("MatMul", {"x", "fc.weight"}, {"y"}, "/fc/MatMul");
  m.Output("y");
  testing::TempDir dir;
  const std::string fixed = dir.Write("fixed.onnx", m);
  auto r = MaxBatch(fixed, {}, Options(), Device("t4", 0));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("the model has no dimension 'batch'; its inputs have fixed "
                                   "shapes"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("dynamic_axes"), std::string::npos);
  CliRun cli = Vramsim("max-batch " + fixed + " --gpu t4");
  EXPECT_EQ(cli.code, 2);
  EXPECT_EQ(cli.out.find("16777216"), std::string::npos) << cli.out;
  // Another named dim: the message says which, and --dim-name picks it.
  testing::ModelBuilder n(17);
  n.Input("x", DType::kFloat32, {"n", 8});
  n.Initializer("fc.weight", DType::kFloat32, {8, 8});
  n.Node("MatMul", {"x", "fc.weight"}, {"y"}, "/fc/MatMul");
  n.Output("y");
  const std::string named = dir.Write("named.onnx", n);
  auto q = MaxBatch(named, {}, Options(), Device("t4", 0));
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.error().message.find("named dims: n"), std::string::npos) << q.error().message;
}

}  // namespace
}  // namespace vramsim

// `vramsim layout` (engine/layout.h) on the small GPT example: what it enumerates, that the
// batch adds up, and that its top answer fits by vramsim's own per-rank simulation.
#include "engine/layout.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>

#include "engine/estimate.h"

namespace vramsim {
namespace {

const std::string kGpt = std::string(VRAMSIM_EXAMPLES) + "/gpt.onnx";
const std::string kGpt48 = std::string(VRAMSIM_EXAMPLES) + "/gpt48.onnx";

LayoutOptions Options() {
  LayoutOptions o;
  o.gpus = 8;
  o.gpu = "a100-40gb";
  o.global_batch = 64;
  o.dims = {{"seq", 256}};
  o.threads = 2;
  return o;
}

LayoutOptions Options48() {
  LayoutOptions o = Options();
  o.global_batch = 16;
  o.base.precision = "bf16";
  return o;
}

TEST(Layout, EnumeratesEveryTpPpPairAndTheBatchAddsUp) {
  auto r = SearchLayouts(kGpt, Options());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->blocks, 4);  // h.0 .. h.3
  // 8 GPUs, tp <= 8 within a node, pp <= 4 blocks, pp dividing 8 / tp:
  //   tp 1: pp 1, 2, 4 (8 > 4 blocks); tp 2: pp 1, 2, 4; tp 4: pp 1, 2; tp 8: pp 1 = 9 pairs.
  std::set<std::pair<int, int>> pairs;
  for (const LayoutCandidate& c : r->candidates) {
    pairs.insert({c.tp, c.pp});
    EXPECT_EQ(c.tp * c.pp * c.dp, 8);
    if (c.simulated) {
      EXPECT_EQ(c.dp * c.micro * c.accum, 64) << c.tp << " " << c.pp << " " << c.dp;
    }
  }
  EXPECT_EQ(pairs.size(), 9u);
}

// The flags `estimate` takes for a layout: the search's base flags, and every block
// (h.0 .. h.N-1 in these GPT exports) checkpointed when it checkpoints.
EstimateFlags FlagsOf(const LayoutCandidate& c, const LayoutOptions& o, int blocks) {
  EstimateFlags f = o.base;
  if (c.checkpoint) {
    for (int b = 0; b < blocks; ++b) f.checkpoint += (b ? ",h." : "h.") + std::to_string(b);
  }
  f.data_parallel = c.dp;
  f.zero = 0;
  switch (c.sharding) {
    case DpSharding::kFsdpFull:
      f.fsdp = "full";
      break;
    case DpSharding::kFsdpShardGradOp:
      f.fsdp = "shard-grad-op";
      break;
    case DpSharding::kFsdpHybrid:
      f.fsdp = "hybrid";
      break;
    default:
      f.zero = c.zero;
  }
  f.gpus_per_node = o.gpus_per_node / c.tp;
  f.offload = c.offload ? "optimizer" : "";
  f.pipeline_parallel = c.pp;
  if (c.virtual_stages > 1) {
    f.schedule = "interleaved";
    f.virtual_stages = c.virtual_stages;
  }
  f.accum = c.accum;
  // Tensor parallelism where the build has it (a generic lambda: no hard error without).
  auto set_tp = [&](auto& flags) {
    if constexpr (requires { flags.tensor_parallel; }) {
      flags.tensor_parallel = c.tp;
      flags.sequence_parallel = c.sequence_parallel;
    }
  };
  set_tp(f);
  return f;
}

// Communicators by hand: one per parallel dimension of more than one rank; FSDP hybrid has a
// shard and a replicate group (2 when both have more than one rank).
int Communicators(const LayoutCandidate& c) {
  int dp = c.dp > 1 ? 1 : 0;
  if (c.sharding == DpSharding::kFsdpHybrid) dp = (c.shard > 1) + (c.dp / c.shard > 1);
  return (c.tp > 1) + (c.pp > 1) + dp;
}

void ExpectFitsByEstimate(const LayoutResult& r, const LayoutCandidate& best,
                          const LayoutOptions& options, const std::string& model, int64_t seq) {
  auto o = ParseEstimateFlags(FlagsOf(best, options, r.blocks));
  ASSERT_TRUE(o.ok()) << o.error().message;
  auto e = EstimateModel(model, {{"batch", best.micro * best.accum}, {"seq", seq}}, *o);
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->peak.peak_bytes, best.peak_bytes);
  const uint64_t usable = r.budget.usable - r.workspace_bytes;
  // NCCL's buffers: 16 channels x 2 peers x 4 MiB = 128 MiB per communicator.
  const uint64_t nccl = uint64_t{128} * 1024 * 1024 * Communicators(best);
  EXPECT_EQ(best.nccl.bytes, nccl);
  EXPECT_EQ(e->nccl.bytes, nccl);
  EXPECT_LE(e->peak.peak_bytes + nccl, usable);
}

TEST(Layout, TopAnswerFitsByThePerRankSimulation) {
  auto r = SearchLayouts(kGpt, Options());
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(r->candidates.empty());
  const LayoutCandidate& best = r->candidates.front();
  ASSERT_TRUE(best.fits);
  EXPECT_TRUE(best.verified);
  // The same layout through the estimate every front end runs, every pipeline stage.
  ExpectFitsByEstimate(*r, best, Options(), kGpt, 256);
  // Ranked: no fitting layout below the first has a lower modelled step time.
  for (const LayoutCandidate& c : r->candidates) {
    if (c.fits) {
      EXPECT_GE(c.step_seconds, best.step_seconds);
    }
  }
}

TEST(Layout, EnumeratesFsdpModesOffloadAndTheInterleavedSchedule) {
  LayoutOptions o = Options();
  o.gpus_per_node = 4;  // dp 8 spans two nodes: FSDP hybrid shards over 4, replicates over 2
  auto r = SearchLayouts(kGpt, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::set<DpSharding> shardings;
  bool offload = false, interleaved = false;
  for (const LayoutCandidate& c : r->candidates) {
    shardings.insert(c.sharding);
    offload = offload || c.offload;
    if (c.virtual_stages > 1) {
      interleaved = true;
      // 4 blocks: 2 virtual stages only where 2 pp divides 4, i.e. pp 2.
      EXPECT_EQ(c.pp, 2);
      EXPECT_EQ(c.virtual_stages, 2);
    }
    if (c.sharding == DpSharding::kFsdpHybrid) {
      EXPECT_EQ(c.shard, 4 / c.tp);
    }
  }
  EXPECT_EQ(shardings.size(), 7u);  // ZeRO 0-3, FSDP full, shard-grad-op, hybrid
  EXPECT_TRUE(offload);
  EXPECT_TRUE(interleaved);
  // Interleaving: bubble (pp - 1) / (m V) = 1 / (2 m) at pp 2, and twice 1F1B's pipeline bytes
  // (each micro-batch crosses the stages V = 2 times each way) at the same micro-batches.
  int pairs = 0;
  for (const LayoutCandidate& a : r->candidates) {
    if (!a.simulated || a.virtual_stages != 2 || a.status.rfind("error", 0) == 0) continue;
    EXPECT_DOUBLE_EQ(a.bubble, 1.0 / (2.0 * a.accum));
    for (const LayoutCandidate& b : r->candidates) {
      if (b.simulated && b.virtual_stages == 1 && b.pp == a.pp && b.tp == a.tp &&
          b.micro == a.micro && b.accum == a.accum && b.status.rfind("error", 0) != 0) {
        EXPECT_DOUBLE_EQ(a.pp_bytes, 2 * b.pp_bytes);
        EXPECT_DOUBLE_EQ(b.bubble, 1.0 / b.accum);
        ++pairs;
      }
    }
  }
  EXPECT_GT(pairs, 0);
}

TEST(Layout, ASmallDeviceShardsOrOffloadsAndTheAnswerStillFitsByEstimate) {
  // A device too small for the first layouts tried: the ladder goes on to sharding, offload
  // or checkpointing.
  LayoutOptions o = Options48();
  // 900 MiB: 369.75 MiB left after the 512 MiB context and 18.25 MiB of cuBLAS workspaces;
  // the best layout on 40 GB (pp 8 interleaved, ZeRO 0: a 277.29 MiB peak + 128 MiB of NCCL
  // buffers) does not fit in it.
  o.capacity_bytes = uint64_t{900} << 20;
  auto r = SearchLayouts(kGpt48, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(r->candidates.empty());
  const LayoutCandidate& best = r->candidates.front();
  ASSERT_TRUE(best.fits) << best.status;
  EXPECT_TRUE(best.verified);
  ExpectFitsByEstimate(*r, best, o, kGpt48, 256);
  bool beyond_zero0 = false;
  for (const LayoutCandidate& c : r->candidates) {
    beyond_zero0 = beyond_zero0 ||
                   (c.simulated && (c.sharding != DpSharding::kZero0 || c.offload || c.checkpoint));
  }
  EXPECT_TRUE(beyond_zero0);
}

TEST(Layout, AProfileWithoutSpeedsIsRefusedInOneLine) {
  LayoutOptions o = Options();
  o.gpu = "l4";  // no NVLink: no speeds in its profile
  auto r = SearchLayouts(kGpt, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("l4"), std::string::npos);
  EXPECT_NE(r.error().message.find("peak bf16 FLOP/s"), std::string::npos);
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
}

TEST(Layout, BadInputIsOneClearError) {
  LayoutOptions o = Options();
  o.global_batch = 0;
  EXPECT_FALSE(SearchLayouts(kGpt, o).ok());
  o = Options();
  o.dims["batch"] = 4;  // the layout chooses the batch
  auto r = SearchLayouts(kGpt, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("--global-batch"), std::string::npos);
  o = Options();
  o.gpu = "no-such-gpu";
  EXPECT_FALSE(SearchLayouts(kGpt, o).ok());
}

}  // namespace
}  // namespace vramsim

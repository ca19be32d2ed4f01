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

LayoutOptions Options() {
  LayoutOptions o;
  o.gpus = 8;
  o.gpu = "a100-40gb";
  o.global_batch = 64;
  o.dims = {{"seq", 256}};
  o.threads = 2;
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

TEST(Layout, TopAnswerFitsByThePerRankSimulation) {
  auto r = SearchLayouts(kGpt, Options());
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(r->candidates.empty());
  const LayoutCandidate& best = r->candidates.front();
  ASSERT_TRUE(best.fits);
  EXPECT_TRUE(best.verified);
  // The same layout through the estimate every front end runs, every pipeline stage.
  EstimateFlags f;
  f.data_parallel = best.dp;
  f.zero = best.zero;
  f.pipeline_parallel = best.pp;
  f.accum = best.accum;
  // Tensor parallelism where the build has it (a generic lambda: no hard error without).
  auto set_tp = [&](auto& flags) {
    if constexpr (requires { flags.tensor_parallel; }) {
      flags.tensor_parallel = best.tp;
      flags.sequence_parallel = best.sequence_parallel;
    }
  };
  set_tp(f);
  auto o = ParseEstimateFlags(f);
  ASSERT_TRUE(o.ok()) << o.error().message;
  auto e = EstimateModel(kGpt, {{"batch", best.micro * best.accum}, {"seq", 256}}, *o);
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->peak.peak_bytes, best.peak_bytes);
  const uint64_t usable = r->budget.usable - r->workspace_bytes;
  // NCCL's buffers: 16 channels x 2 peers x 4 MiB = 128 MiB per communicator in use.
  const uint64_t nccl =
      uint64_t{128} * 1024 * 1024 * ((best.tp > 1) + (best.dp > 1) + (best.pp > 1));
  EXPECT_EQ(best.nccl_bytes, nccl);
  EXPECT_LE(e->peak.peak_bytes + nccl, usable);
  // Ranked: no fitting layout below the first has a lower modelled step time.
  for (const LayoutCandidate& c : r->candidates) {
    if (c.fits) {
      EXPECT_GE(c.step_seconds, best.step_seconds);
    }
  }
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

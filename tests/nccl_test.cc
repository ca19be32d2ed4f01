// NCCL's communication buffers as a device-profile term (devices.h NcclBuffers): counted per
// communicator a rank is in, reported by `estimate` beside the peak (outside the caching
// allocator) and taken off the usable memory by `fit`. Expected values are worked out by hand:
// NCCL_BUFFSIZE 4 MiB x 16 channels x 2 ring peers = 128 MiB per communicator.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "devices/devices.h"
#include "engine/estimate.h"
#include "engine/fit.h"

namespace vramsim {
namespace {

constexpr uint64_t MiB = 1024 * 1024;
const std::string kGpt = std::string(VRAMSIM_EXAMPLES) + "/gpt.onnx";
const std::map<std::string, int64_t> kDims = {{"batch", 8}, {"seq", 128}};

ParallelGroups Groups(int dp, int tp, int pp = 1, int cp = 1) {
  ParallelGroups g;
  g.data_parallel = dp;
  g.tensor_parallel = tp;
  g.pipeline_parallel = pp;
  g.context_parallel = cp;
  return g;
}

TEST(Nccl, ProfilesCarryTheBufferSizeChannelsAndPeersWithTheirSource) {
  for (const DeviceProfile& d : DeviceProfiles()) {
    EXPECT_EQ(d.nccl_buffsize_bytes, 4194304u) << d.name;  // NCCL_BUFFSIZE's default
    EXPECT_EQ(d.nccl_channels, 16) << d.name;
    EXPECT_EQ(d.nccl_peers, 2) << d.name;
    EXPECT_NE(d.nccl_sources.find("NCCL_BUFFSIZE"), std::string::npos) << d.name;
    EXPECT_NE(d.nccl_sources.find("estimate"), std::string::npos) << d.name;
  }
}

TEST(Nccl, OneCommunicatorPerGroupOfMoreThanOneRank) {
  const DeviceProfile& d = DeviceProfiles().front();
  // tp 2 x dp 4: 2 communicators x 16 channels x 2 peers x 4 MiB = 256 MiB.
  NcclTerm t = NcclBuffers(d, Groups(4, 2));
  EXPECT_EQ(t.communicators.size(), 2u);
  EXPECT_EQ(t.bytes, 2 * 16 * 2 * 4 * MiB);
  EXPECT_EQ(t.bytes, 256 * MiB);
  // dp 2 x tp 2 x pp 4 x cp 2: 4 communicators x 128 MiB = 512 MiB.
  EXPECT_EQ(NcclBuffers(d, Groups(2, 2, 4, 2)).bytes, 4 * 128 * MiB);
  // dp 8 alone: 128 MiB; one rank: nothing.
  EXPECT_EQ(NcclBuffers(d, Groups(8, 1)).bytes, 128 * MiB);
  EXPECT_EQ(NcclBuffers(d, Groups(1, 1)).bytes, 0u);
  EXPECT_TRUE(NcclBuffers(d, Groups(1, 1)).communicators.empty());
  // FSDP hybrid over dp 16 with 8 GPUs per node: a shard group of 8 and a replicate group of 2,
  // 2 communicators = 256 MiB; within one node (dp 8) the replicate group has one rank: 128.
  ParallelGroups h = Groups(16, 1);
  h.fsdp_hybrid = true;
  h.gpus_per_node = 8;
  NcclTerm ht = NcclBuffers(d, h);
  ASSERT_EQ(ht.communicators.size(), 2u);
  EXPECT_EQ(ht.communicators[0].ranks, 8);
  EXPECT_EQ(ht.communicators[1].ranks, 2);
  EXPECT_EQ(ht.bytes, 256 * MiB);
  h.data_parallel = 8;
  EXPECT_EQ(NcclBuffers(d, h).bytes, 128 * MiB);
}

EstimateOptions Flags(int dp, int tp, const std::string& target = "torch-cuda") {
  EstimateFlags f;
  f.data_parallel = dp;
  f.tensor_parallel = tp;
  f.target = target;
  auto o = ParseEstimateFlags(f);
  EXPECT_TRUE(o.ok()) << o.error().message;
  return *o;
}

TEST(Nccl, EstimateReportsItBesideThePeakOnCudaOnly) {
  auto e = EstimateModel(kGpt, kDims, Flags(4, 2));
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->nccl.bytes, 256 * MiB);  // tp 2 x dp 4, as above
  nlohmann::json j = EstimateJson(*e);
  EXPECT_EQ(j["nccl_buffer_bytes"], 256 * MiB);
  EXPECT_EQ(j["outside_allocator"]["nccl_buffers"]["channels"], 16);
  EXPECT_EQ(j["outside_allocator"]["nccl_buffers"]["communicators"].size(), 2u);
  // Outside the caching allocator: not in the peak, not in its breakdown.
  uint64_t sum = 0;
  for (const auto& [name, bytes] : j["breakdown"].items()) sum += bytes.get<uint64_t>();
  EXPECT_EQ(sum, e->peak.peak_bytes);
  // One rank: nothing; torch-cpu (gloo): nothing whatever the layout.
  auto one = EstimateModel(kGpt, kDims, Flags(1, 1));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->nccl.bytes, 0u);
  EXPECT_FALSE(EstimateJson(*one).contains("nccl_buffer_bytes"));
  auto cpu = EstimateModel(kGpt, kDims, Flags(4, 1, "torch-cpu"));
  ASSERT_TRUE(cpu.ok()) << cpu.error().message;
  EXPECT_EQ(cpu->nccl.bytes, 0u);
  EXPECT_FALSE(EstimateJson(*cpu).contains("nccl_buffer_bytes"));
}

TEST(Nccl, FitTakesItOffTheUsableMemory) {
  const EstimateOptions o = Flags(4, 2);
  auto big = MakeFitOptions("a100-40gb", 0, false);
  ASSERT_TRUE(big.ok());
  auto e = EvaluateFit(kGpt, kDims, o, *big);
  ASSERT_TRUE(e.ok()) << e.error().message;
  // 40960 MiB - 512 MiB context - 256 MiB NCCL (2 communicators x 128 MiB).
  EXPECT_EQ(e->budget.nccl, 256 * MiB);
  EXPECT_EQ(e->budget.usable, (40960 - 512 - 256) * MiB);
  // A device where the step's reserved memory (126 MiB here) would fit with 192 MiB to spare
  // without NCCL's buffers: capacity = reserved + 512 MiB context + 192 MiB. With NCCL's
  // 256 MiB taken off, usable = reserved - 64 MiB: 64 MiB short.
  const uint64_t reserved = e->allocator.max_reserved;
  ASSERT_GT(reserved, 64 * MiB);
  auto tight = MakeFitOptions("a100-40gb", reserved + 512 * MiB + 192 * MiB, false);
  ASSERT_TRUE(tight.ok());
  auto t = EvaluateFit(kGpt, kDims, o, *tight);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->budget.usable, reserved - 64 * MiB);
  EXPECT_EQ(t->headroom, -static_cast<int64_t>(64 * MiB));
  // The same model on one rank has no NCCL term: the whole capacity less the context.
  auto single = EvaluateFit(kGpt, kDims, Flags(1, 1), *big);
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->budget.nccl, 0u);
  EXPECT_EQ(single->budget.usable, (40960 - 512) * MiB);
}

}  // namespace
}  // namespace vramsim

// The caching-allocator model on hand-made request sequences and event streams, with the
// reserved bytes worked out by hand from the rules in docs/allocator.md.
#include "simulator/allocator.h"

#include <gtest/gtest.h>

#include "cli/estimate.h"
#include "simulator/peak.h"

namespace vramsim {
namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * 1024;

TEST(CachingAllocator, RoundsRequestsTo512Bytes) {
  EXPECT_EQ(CachingAllocator::RoundSize(0), 512u);
  EXPECT_EQ(CachingAllocator::RoundSize(1), 512u);
  EXPECT_EQ(CachingAllocator::RoundSize(512), 512u);
  EXPECT_EQ(CachingAllocator::RoundSize(513), 1024u);
  EXPECT_EQ(CachingAllocator::AllocationSize(1 * MiB), 2 * MiB);         // small: 2 MiB
  EXPECT_EQ(CachingAllocator::AllocationSize(1 * MiB + 512), 20 * MiB);  // 1-10 MiB: 20 MiB
  EXPECT_EQ(CachingAllocator::AllocationSize(10 * MiB - 512), 20 * MiB);
  EXPECT_EQ(CachingAllocator::AllocationSize(10 * MiB), 10 * MiB);  // >= 10 MiB: 2 MiB steps
  EXPECT_EQ(CachingAllocator::AllocationSize(10 * MiB + 512), 12 * MiB);
}

TEST(CachingAllocator, ZeroBytesAllocateNothing) {
  CachingAllocator a;
  EXPECT_EQ(a.Malloc(0), std::optional<uint64_t>(0));
  a.Free(0);
  EXPECT_EQ(a.reserved(), 0u);
  EXPECT_EQ(a.allocated(), 0u);
}

TEST(CachingAllocator, SmallRequestsShareA2MiBSegment) {
  CachingAllocator a;
  auto x = a.Malloc(1);     // 512 B block, new 2 MiB small segment
  auto y = a.Malloc(1000);  // 1024 B, split off the same segment's remainder
  ASSERT_TRUE(x && y);
  EXPECT_EQ(*y, *x + 512);
  EXPECT_EQ(a.allocated(), 1536u);
  EXPECT_EQ(a.reserved(), 2 * MiB);
  EXPECT_EQ(a.reserved_small(), 2 * MiB);
  EXPECT_EQ(a.segments_allocated(), 1u);
}

TEST(CachingAllocator, SmallAndLargePoolsDoNotShare) {
  CachingAllocator a;
  auto x = a.Malloc(1 * MiB);  // small (<= 1 MiB): 2 MiB segment
  a.Free(*x);
  auto y = a.Malloc(1 * MiB + 1);  // large: the cached small block cannot serve it: 20 MiB
  ASSERT_TRUE(y);
  EXPECT_EQ(a.reserved_small(), 2 * MiB);
  EXPECT_EQ(a.reserved_large(), 20 * MiB);
  EXPECT_EQ(a.reserved(), 22 * MiB);
}

TEST(CachingAllocator, LargePoolSplitsOnlyRemaindersAbove1MiB) {
  CachingAllocator a;
  auto x = a.Malloc(2 * MiB);  // 20 MiB segment, 18 MiB remainder split off
  ASSERT_TRUE(x);
  EXPECT_EQ(a.BlockSize(*x), 2 * MiB);
  auto y = a.Malloc(17 * MiB + 512 * KiB);  // the 18 MiB block; 512 KiB left: not split
  ASSERT_TRUE(y);
  EXPECT_EQ(*y, *x + 2 * MiB);
  EXPECT_EQ(a.BlockSize(*y), 18 * MiB);
  EXPECT_EQ(a.reserved(), 20 * MiB);
  EXPECT_EQ(a.allocated(), 20 * MiB);  // memory_allocated counts the whole block
  EXPECT_EQ(a.requested(), 19 * MiB + 512 * KiB);

  // A request of 11 MiB + 1 B rounds to 11 MiB + 512 B, its segment to 12 MiB; the
  // remainder (1 MiB - 512 B) is not split, so 12 MiB count as allocated.
  CachingAllocator b;
  auto z = b.Malloc(11 * MiB + 1);
  ASSERT_TRUE(z);
  EXPECT_EQ(b.reserved(), 12 * MiB);
  EXPECT_EQ(b.allocated(), 12 * MiB);
  EXPECT_EQ(b.requested(), 11 * MiB + 512);
}

TEST(CachingAllocator, SmallPoolSplitsAnyRemainderOf512Bytes) {
  CachingAllocator a;
  auto p = a.Malloc(1 * MiB);  // 2 MiB small segment: 1 MiB block, 1 MiB free
  auto q = a.Malloc(1 * MiB - 512);
  auto r = a.Malloc(512);  // the last 512 B of the segment
  ASSERT_TRUE(p && q && r);
  EXPECT_EQ(*r, *p + 2 * MiB - 512);
  EXPECT_EQ(a.reserved(), 2 * MiB);
  EXPECT_EQ(a.allocated(), 2 * MiB);
}

TEST(CachingAllocator, BestFitTakesTheSmallestBlockThenTheLowestAddress) {
  CachingAllocator a;
  auto b12 = a.Malloc(12 * MiB);  // each >= 10 MiB request gets its own exact segment
  auto b14 = a.Malloc(14 * MiB);
  auto b16 = a.Malloc(16 * MiB);
  auto b12b = a.Malloc(12 * MiB);
  ASSERT_TRUE(b12 && b14 && b16 && b12b);
  EXPECT_EQ(a.reserved(), 54 * MiB);
  a.Free(*b16);
  a.Free(*b14);
  a.Free(*b12b);
  a.Free(*b12);
  auto r = a.Malloc(13 * MiB);  // 14 MiB is the smallest that holds it; 1 MiB left: no split
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, *b14);
  EXPECT_EQ(a.BlockSize(*r), 14 * MiB);
  auto s = a.Malloc(12 * MiB);  // two free 12 MiB blocks: the lower address wins
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, std::min(*b12, *b12b));
  EXPECT_EQ(a.reserved(), 54 * MiB);
}

TEST(CachingAllocator, FreeBlocksCoalesceWithFreeNeighbours) {
  CachingAllocator a;
  auto x = a.Malloc(512 * KiB);  // one 2 MiB small segment: x y z, 512 KiB left
  auto y = a.Malloc(512 * KiB);
  auto z = a.Malloc(512 * KiB);
  ASSERT_TRUE(x && y && z);
  a.Free(*x);
  a.Free(*y);  // merges with x: a 1 MiB free block at x
  auto w = a.Malloc(1 * MiB);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, *x);
  EXPECT_EQ(a.reserved(), 2 * MiB);

  CachingAllocator b;  // large pool: 20 MiB segment, three 4 MiB blocks and 8 MiB free
  auto p = b.Malloc(4 * MiB);
  auto q = b.Malloc(4 * MiB);
  auto r = b.Malloc(4 * MiB);
  b.Free(*p);
  b.Free(*r);  // merges with the 8 MiB tail
  b.Free(*q);  // merges both sides: the whole segment is free again
  auto s = b.Malloc(20 * MiB);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, *p);
  EXPECT_EQ(b.reserved(), 20 * MiB);
  EXPECT_EQ(b.segments_allocated(), 1u);
}

TEST(CachingAllocator, SegmentsStayReservedAfterFree) {
  CachingAllocator a;
  auto x = a.Malloc(100 * MiB);
  a.Free(*x);
  EXPECT_EQ(a.allocated(), 0u);
  EXPECT_EQ(a.reserved(), 100 * MiB);
}

TEST(CachingAllocator, ExpandableSegmentsGrowByPages) {
  CachingAllocatorConfig c;
  c.expandable_segments = true;
  CachingAllocator a(c);
  auto x = a.Malloc(30 * MiB);  // large pool pages are 20 MiB: 2 pages mapped
  ASSERT_TRUE(x);
  EXPECT_EQ(a.reserved(), 40 * MiB);
  auto y = a.Malloc(30 * MiB);  // the 10 MiB free tail plus one more page
  ASSERT_TRUE(y);
  EXPECT_EQ(*y, *x + 30 * MiB);
  EXPECT_EQ(a.reserved(), 60 * MiB);
  a.Free(*x);
  a.Free(*y);  // one free 60 MiB block
  auto z = a.Malloc(32 * MiB);
  ASSERT_TRUE(z);
  EXPECT_EQ(*z, *x);
  EXPECT_EQ(a.reserved(), 60 * MiB);
  auto s = a.Malloc(1000);  // small pool pages are 2 MiB
  ASSERT_TRUE(s);
  EXPECT_EQ(a.reserved_small(), 2 * MiB);
  EXPECT_EQ(a.reserved(), 62 * MiB);

  // The same requests with ordinary segments: 30 + 30, then a new 32 MiB one.
  CachingAllocator b;
  auto p = b.Malloc(30 * MiB);
  auto q = b.Malloc(30 * MiB);
  b.Free(*p);
  b.Free(*q);
  ASSERT_TRUE(b.Malloc(32 * MiB));
  EXPECT_EQ(b.reserved(), 92 * MiB);
}

TEST(CachingAllocator, ExpandableSegmentsPreferOtherBlocksToTheTail) {
  CachingAllocatorConfig c;
  c.expandable_segments = true;
  CachingAllocator a(c);
  auto x = a.Malloc(6 * MiB);  // one 20 MiB page: [x 6][y 10][tail 4 | unmapped ...]
  auto y = a.Malloc(10 * MiB);
  ASSERT_TRUE(x && y);
  a.Free(*x);
  // Free: the 4 MiB tail and x's 6 MiB block. The tail is the smallest, but it counts as
  // the size it can grow to, so x's block is taken.
  auto z = a.Malloc(3 * MiB);
  ASSERT_TRUE(z);
  EXPECT_EQ(*z, *x);
  EXPECT_EQ(a.reserved(), 20 * MiB);
  // Without expandable segments best fit takes the smaller block.
  CachingAllocator b;
  auto p = b.Malloc(6 * MiB);  // 20 MiB segment: [p 6][q 10][4]
  auto q = b.Malloc(10 * MiB);
  ASSERT_TRUE(p && q);
  b.Free(*p);
  auto r = b.Malloc(3 * MiB);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, *q + 10 * MiB);
}

TEST(CachingAllocator, ACapacityFreesCachedSegmentsBeforeFailing) {
  CachingAllocatorConfig c;
  c.capacity_bytes = 40 * MiB;
  CachingAllocator a(c);
  auto x = a.Malloc(12 * MiB);
  a.Free(*x);                   // cached: 12 MiB reserved, nothing allocated
  auto y = a.Malloc(30 * MiB);  // 12 + 30 > 40: frees the cached segment, then succeeds
  ASSERT_TRUE(y);
  EXPECT_EQ(a.alloc_retries(), 1u);
  EXPECT_EQ(a.reserved(), 30 * MiB);
  EXPECT_FALSE(a.Malloc(12 * MiB));  // 30 + 12 > 40 and nothing cached: out of memory
}

// Random requests of every size class, with the bookkeeping checked after each call.
TEST(CachingAllocator, RandomRequestsKeepTheBookkeepingConsistent) {
  for (bool expandable : {false, true}) {
    for (uint64_t capacity : {uint64_t{0}, 300 * MiB}) {
      CachingAllocatorConfig c;
      c.expandable_segments = expandable;
      c.capacity_bytes = capacity;
      CachingAllocator a(c);
      uint64_t state = 12345;
      auto next = [&]() {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return state >> 33;
      };
      std::vector<uint64_t> live;
      for (int i = 0; i < 4000; ++i) {
        if (!live.empty() && next() % 100 < 45) {
          size_t k = next() % live.size();
          a.Free(live[k]);
          live[k] = live.back();
          live.pop_back();
        } else {
          uint64_t kind = next() % 4;
          uint64_t bytes = kind == 0   ? 1 + next() % (64 * KiB)
                           : kind == 1 ? 1 + next() % (1 * MiB)
                           : kind == 2 ? 1 * MiB + next() % (9 * MiB)
                                       : 10 * MiB + next() % (40 * MiB);
          auto p = a.Malloc(bytes);
          if (p) live.push_back(*p);
          EXPECT_TRUE(p || capacity) << "out of memory without a capacity";
        }
        std::string bad = a.CheckInvariants();
        ASSERT_EQ(bad, "") << "after call " << i << (expandable ? " (expandable)" : "");
        if (capacity) {
          ASSERT_LE(a.reserved(), capacity);
        }
        ASSERT_GE(a.reserved(), a.allocated());
      }
      for (uint64_t p : live) a.Free(p);
      EXPECT_EQ(a.allocated(), 0u);
      EXPECT_EQ(a.requested(), 0u);
      EXPECT_EQ(a.CheckInvariants(), "");
    }
  }
}

// ---- event streams -------------------------------------------------------------------------

class TraceBuilder {
 public:
  StepId Step(Phase phase) {
    trace_.steps.push_back({phase, "s" + std::to_string(trace_.steps.size()), "", "", 0});
    return static_cast<StepId>(trace_.steps.size()) - 1;
  }
  BufferId Alloc(uint64_t bytes, Category c = Category::kTransient) {
    trace_.buffers.push_back(
        {"b" + std::to_string(trace_.buffers.size()), bytes, c, DType::kFloat32, {}, "", ""});
    BufferId b = static_cast<BufferId>(trace_.buffers.size()) - 1;
    trace_.events.push_back({Event::Kind::kAlloc, b, Now()});
    return b;
  }
  void Free(BufferId b) { trace_.events.push_back({Event::Kind::kFree, b, Now()}); }
  const Trace& trace() const { return trace_; }

 private:
  StepId Now() const { return static_cast<StepId>(trace_.steps.size()) - 1; }
  Trace trace_;
};

// Parameter P 12 MiB and optimizer state S 16 MiB; the forward makes X 16 MiB, the backward
// G 12 MiB and frees X, the optimizer a 12 MiB temporary T; zero_grad frees G.
Trace WarmupTrace() {
  TraceBuilder t;
  t.Step(Phase::kSetup);
  t.Alloc(12 * MiB, Category::kParameters);
  t.Alloc(16 * MiB, Category::kOptimizerState);
  t.Step(Phase::kForward);
  BufferId x = t.Alloc(16 * MiB, Category::kSavedActivations);
  t.Step(Phase::kBackward);
  BufferId g = t.Alloc(12 * MiB, Category::kGradients);
  t.Free(x);
  t.Step(Phase::kOptimizer);
  BufferId tmp = t.Alloc(12 * MiB);
  t.Free(tmp);
  t.Step(Phase::kOptimizer);
  t.Free(g);
  return t.trace();
}

TEST(AllocatorReplay, OneStepAsTheTraceStands) {
  AllocatorReplayOptions o;
  o.warmup_step = false;
  auto r = ReplayCachingAllocator(WarmupTrace(), o);
  ASSERT_TRUE(r.ok());
  // P 12, S 16, X 16, G 12 segments; T takes X's freed 16 MiB block (split: 4 MiB left).
  EXPECT_EQ(r->max_reserved, 56 * MiB);
  EXPECT_EQ(r->max_allocated, 56 * MiB);
  EXPECT_EQ(r->max_allocated, FindPeak(WarmupTrace(), 512).peak_bytes);
  EXPECT_EQ(r->fragmentation_bytes, 0u);
  EXPECT_FALSE(r->warmup_applied);
}

TEST(AllocatorReplay, TheFirstStepCreatesTheOptimizerStateLazily) {
  auto r = ReplayCachingAllocator(WarmupTrace());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->warmup_applied);
  // Step 1: P 12, X 16, G 12 segments; X freed; S takes X's 16 MiB block, T a new 12 MiB
  // segment (52 MiB). Step 2: X finds only 12 MiB blocks free: a new 16 MiB segment (68).
  EXPECT_EQ(r->max_reserved, 68 * MiB);
  EXPECT_FALSE(r->reserved_peak_in_warmup);
  // Step 2's allocated peak is the stream's: P + S + X + G.
  EXPECT_EQ(r->max_allocated, 56 * MiB);
  EXPECT_EQ(r->max_requested, FindPeak(WarmupTrace(), 512).peak_bytes);
  // The reserved peak is reached when X gets its segment: P + S + X allocated then.
  EXPECT_EQ(r->allocated_at_max_reserved, 44 * MiB);
  EXPECT_EQ(r->fragmentation_bytes, 12 * MiB);  // 68 reserved, at most 56 allocated
}

TEST(AllocatorReplay, ExtraAllocationsComeBeforeTheirPhase) {
  AllocatorReplayOptions o;
  o.warmup_step = false;
  o.extra.push_back({"cublas workspace", 8519680, Phase::kForward});  // 8 MiB + 128 KiB
  auto r = ReplayCachingAllocator(WarmupTrace(), o);
  ASSERT_TRUE(r.ok());
  // The workspace (< 10 MiB) gets a 20 MiB segment; its 11.875 MiB rest is too small for X
  // (16) and G (12): P 12, S 16, workspace 20, X 16, G 12 MiB; T reuses X's block.
  EXPECT_EQ(r->max_reserved, 76 * MiB);
  EXPECT_EQ(r->max_allocated, 56 * MiB + 8519680);
}

TEST(AllocatorReplay, CapacityReportsOutOfMemory) {
  AllocatorReplayOptions o;
  o.warmup_step = false;
  o.allocator.capacity_bytes = 50 * MiB;
  auto r = ReplayCachingAllocator(WarmupTrace(), o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->oom);
  EXPECT_EQ(r->oom_request_bytes, 12 * MiB);  // G: 12 + 16 + 16 + 12 > 50
}

TEST(AllocatorReplay, TheMaxAllocatedOfRealModelsMatchesFindPeak) {
  for (const char* model : {"resnet18", "gpt"}) {
    std::map<std::string, int64_t> dims = {{"batch", 8}};
    if (std::string(model) == "gpt") dims["seq"] = 128;
    EstimateFlags flags;
    auto options = ParseEstimateFlags(flags);
    ASSERT_TRUE(options.ok());
    auto e = EstimateModel(std::string(VRAMSIM_EXAMPLES) + "/" + model + ".onnx", dims, *options);
    ASSERT_TRUE(e.ok()) << e.error().message;
    for (bool warm : {false, true}) {
      AllocatorReplayOptions o;
      o.warmup_step = warm;
      auto r = ReplayCachingAllocator(e->trace, o);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->max_requested, e->peak.peak_bytes) << model;
      // Blocks handed out whole (an unsplit remainder) count in full: at most 1 MiB each.
      EXPECT_GE(r->max_allocated, r->max_requested) << model;
      EXPECT_LE(r->max_allocated, r->max_requested + r->max_requested / 50) << model;
      EXPECT_GE(r->max_reserved, r->max_allocated) << model;
      EXPECT_EQ(r->warmup_applied, warm) << model;
    }
  }
}

}  // namespace
}  // namespace vramsim

// Consumer: replays the event stream through a model of PyTorch's CUDA caching allocator
// (c10/cuda/CUDACachingAllocator.cpp, DeviceCachingAllocator) to predict what
// torch.cuda.max_memory_allocated() and torch.cuda.max_memory_reserved() report, and the
// fragmentation between them. docs/allocator.md lists each rule with its source.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "importer/status.h"
#include "simulator/trace.h"

namespace vramsim {

// Constants of CUDACachingAllocator.cpp.
inline constexpr uint64_t kCudaMinBlockSize = 512;        // kMinBlockSize: sizes round up to it
inline constexpr uint64_t kCudaSmallSize = 1 << 20;       // kSmallSize: largest small request
inline constexpr uint64_t kCudaSmallBuffer = 2 << 20;     // kSmallBuffer: small-pool segments
inline constexpr uint64_t kCudaMinLargeAlloc = 10 << 20;  // kMinLargeAlloc
inline constexpr uint64_t kCudaLargeBuffer = 20 << 20;    // kLargeBuffer: 1-10 MiB requests
inline constexpr uint64_t kCudaRoundLarge = 2 << 20;      // kRoundLarge: larger segments round

struct CachingAllocatorConfig {
  // PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: one growing segment per pool, mapped in
  // pages of kSmallBuffer (small pool) or kLargeBuffer (large pool).
  bool expandable_segments = false;
  // Bytes the allocator may reserve from the device (0: unlimited). A cudaMalloc (or page
  // map) that would exceed it fails; the allocator then frees its cached, unsplit segments
  // and retries, as release_cached_blocks() does, and reports out of memory if that fails.
  uint64_t capacity_bytes = 0;
};

// The allocator's block and segment bookkeeping for one device and one stream.
class CachingAllocator {
 public:
  explicit CachingAllocator(CachingAllocatorConfig config = {});

  // The block's address, 0 for a zero-byte request (no block, as in PyTorch's allocate()),
  // nullopt when out of memory.
  std::optional<uint64_t> Malloc(uint64_t bytes);
  // Frees the block at this address (0 is ignored).
  void Free(uint64_t address);
  // The size of the block handed out at this address (a rounded request, or more when the
  // remainder was too small to split).
  uint64_t BlockSize(uint64_t address) const;

  uint64_t allocated() const { return allocated_; }  // memory_allocated(): block sizes
  uint64_t requested() const { return requested_; }  // requests rounded to 512 bytes
  uint64_t reserved() const { return reserved_; }    // memory_reserved()
  uint64_t reserved_small() const { return reserved_pool_[1]; }
  uint64_t reserved_large() const { return reserved_pool_[0]; }
  uint64_t segments_allocated() const { return segments_allocated_; }  // cudaMalloc / map calls
  uint64_t segments_freed() const { return segments_freed_; }
  uint64_t alloc_retries() const { return retries_; }  // cache flushes after a failed cudaMalloc
  uint64_t free_cached_bytes() const { return reserved_ - allocated_; }
  // Checks the bookkeeping (blocks tile their segments, free sets and counters agree);
  // an empty string when it holds. For tests.
  std::string CheckInvariants() const;

  static uint64_t RoundSize(uint64_t bytes);         // round_size()
  static uint64_t AllocationSize(uint64_t rounded);  // get_allocation_size()
  static bool IsSmall(uint64_t rounded) { return rounded <= kCudaSmallSize; }
  uint64_t PageSize(bool small) const { return small ? kCudaSmallBuffer : kCudaLargeBuffer; }

 private:
  struct Block {
    uint64_t addr = 0;
    uint64_t size = 0;
    int prev = -1, next = -1;  // neighbours in the same segment
    bool small = false;        // pool
    bool allocated = false;
    bool mapped = true;       // expandable segments: backed by physical pages
    bool expandable = false;  // lives in an expandable segment
    int segment = -1;         // expandable segment index
  };
  struct Pool {
    std::set<std::pair<uint64_t, uint64_t>> free;  // (size, addr): best fit, ties by address
    std::set<uint64_t> unmapped;                   // addresses of unmapped blocks
  };
  struct Expandable {
    uint64_t base = 0, size = 0, page = 0;
    std::vector<bool> pages;  // mapped pages
  };

  int NewBlock(const Block& b);
  void DeleteBlock(int i);
  Pool& PoolOf(const Block& b) { return pools_[b.small ? 1 : 0]; }
  void InsertFree(int i);
  void EraseFree(int i);
  int GetFreeBlock(bool small, uint64_t size);
  int AllocBlock(bool small, uint64_t size, uint64_t alloc_size);
  int TryAllocateExpandable(bool small, uint64_t size);
  int FindExpandableBlock(bool small, uint64_t size);
  bool MapBlock(int i, uint64_t size);
  void UnmapBlock(int i);
  bool ShouldSplit(const Block& b, uint64_t size) const;
  uint64_t TryMerge(int dst, int src);
  void FreeBlock(int i);
  void ReleaseCachedBlocks();
  bool CanReserve(uint64_t bytes) const {
    return config_.capacity_bytes == 0 || reserved_ + bytes <= config_.capacity_bytes;
  }

  CachingAllocatorConfig config_;
  std::vector<Block> blocks_;
  std::vector<int> free_ids_;
  std::unordered_map<uint64_t, int> by_addr_;  // every live block (free, allocated, unmapped)
  std::unordered_map<uint64_t, int> allocated_blocks_;  // handed-out blocks
  std::unordered_map<uint64_t, uint64_t> requested_of_;
  Pool pools_[2];  // [0] large, [1] small
  std::vector<Expandable> expandable_;
  uint64_t next_addr_ = uint64_t{1} << 40;
  uint64_t allocated_ = 0, requested_ = 0, reserved_ = 0;
  uint64_t reserved_pool_[2] = {0, 0};
  uint64_t segments_allocated_ = 0, segments_freed_ = 0, retries_ = 0;
};

// An allocation made outside the model's trace that goes through the same allocator
// (cuBLAS / cuBLASLt workspaces): made before the first event of `phase` in the first step
// and kept.
struct ExtraAllocation {
  std::string name;
  uint64_t bytes = 0;
  Phase phase = Phase::kForward;
};

struct AllocatorReplayOptions {
  CachingAllocatorConfig allocator;
  // Replay a first training step before the measured one, as a real run does: parameters,
  // buffers and the batch exist, the optimizer state is created inside the first
  // optimizer.step() (lazily), and the allocator keeps the segments that step left cached.
  // The measured step's stats are then reset like torch.cuda.reset_peak_memory_stats().
  // Off: the trace is replayed once, as it stands.
  bool warmup_step = true;
  std::vector<ExtraAllocation> extra;
};

struct AllocatorReport {
  // Over the measured step (after the warm-up when there is one).
  uint64_t max_allocated = 0;  // torch.cuda.max_memory_allocated(): block sizes
  uint64_t max_requested = 0;  // the same with each request rounded to 512 B (= FindPeak)
  uint64_t max_reserved = 0;   // torch.cuda.max_memory_reserved()
  // Reserved memory the step never had allocated at once: max_reserved - max_allocated.
  // (At the instant the reserved peak is reached the allocated bytes can be far lower: a
  // late small segment, say for an optimizer temporary, sets the reserved peak after the
  // activations are gone. That figure is allocated_at_max_reserved.)
  uint64_t fragmentation_bytes = 0;
  uint64_t allocated_at_max_reserved = 0;
  StepId reserved_peak_step = -1;  // the step whose allocation first reached max_reserved
  bool reserved_peak_in_warmup = false;
  uint64_t reserved_small = 0, reserved_large = 0;  // at the end
  uint64_t segments = 0;                            // cudaMalloc calls (or page maps)
  uint64_t alloc_retries = 0;  // cache flushes forced by the capacity (slow in PyTorch)
  bool warmup_applied = false;
  // Out of memory under capacity_bytes: the failing request and where.
  bool oom = false;
  uint64_t oom_request_bytes = 0;
  StepId oom_step = -1;
  bool oom_in_warmup = false;
};

Result<AllocatorReport> ReplayCachingAllocator(const Trace& trace,
                                               const AllocatorReplayOptions& options = {});

}  // namespace vramsim

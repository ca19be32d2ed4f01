#include "simulator/allocator.h"

#include <algorithm>
#include <cassert>

namespace vramsim {
namespace {

uint64_t RoundUpTo(uint64_t bytes, uint64_t multiple) {
  return (bytes + multiple - 1) / multiple * multiple;
}

// Address space reserved for one expandable segment when the capacity is unlimited
// (PyTorch reserves 1 1/8 of the device's memory).
constexpr uint64_t kUnlimitedAddressSpace = uint64_t{1} << 42;

}  // namespace

CachingAllocator::CachingAllocator(CachingAllocatorConfig config) : config_(config) {}

uint64_t CachingAllocator::RoundSize(uint64_t bytes) {
  if (bytes < kCudaMinBlockSize) return kCudaMinBlockSize;
  return RoundUpTo(bytes, kCudaMinBlockSize);
}

uint64_t CachingAllocator::AllocationSize(uint64_t rounded) {
  if (rounded <= kCudaSmallSize) return kCudaSmallBuffer;
  if (rounded < kCudaMinLargeAlloc) return kCudaLargeBuffer;
  return RoundUpTo(rounded, kCudaRoundLarge);
}

int CachingAllocator::NewBlock(const Block& b) {
  int i;
  if (!free_ids_.empty()) {
    i = free_ids_.back();
    free_ids_.pop_back();
    blocks_[i] = b;
  } else {
    i = static_cast<int>(blocks_.size());
    blocks_.push_back(b);
  }
  by_addr_[b.addr] = i;
  return i;
}

void CachingAllocator::DeleteBlock(int i) {
  auto it = by_addr_.find(blocks_[i].addr);
  if (it != by_addr_.end() && it->second == i) by_addr_.erase(it);
  blocks_[i] = Block{};
  free_ids_.push_back(i);
}

void CachingAllocator::InsertFree(int i) {
  PoolOf(blocks_[i]).free.insert({blocks_[i].size, blocks_[i].addr});
}

void CachingAllocator::EraseFree(int i) {
  PoolOf(blocks_[i]).free.erase({blocks_[i].size, blocks_[i].addr});
}

// should_split(): the small pool (and every pool with expandable segments) splits off any
// remainder of at least kMinBlockSize; the large pool only one above kSmallSize.
bool CachingAllocator::ShouldSplit(const Block& b, uint64_t size) const {
  uint64_t remaining = b.size - size;
  if (b.small || config_.expandable_segments) return remaining >= kCudaMinBlockSize;
  return remaining > kCudaSmallSize;
}

// get_free_block(): the smallest free block of the pool that holds `size`, ties by address.
// With expandable segments a block followed by unmapped space counts as the size it can grow
// to, so other blocks of the same or larger size are preferred to the segment's tail.
int CachingAllocator::GetFreeBlock(bool small, uint64_t size) {
  Pool& pool = pools_[small ? 1 : 0];
  auto it = pool.free.lower_bound({size, 0});
  if (it == pool.free.end()) return -1;
  if (config_.expandable_segments) {
    auto expandable_size = [&](const std::pair<uint64_t, uint64_t>& key) {
      const Block& b = blocks_[by_addr_.at(key.second)];
      return b.size + (b.next >= 0 && !blocks_[b.next].mapped ? blocks_[b.next].size : 0);
    };
    auto next = std::next(it);
    while (next != pool.free.end() && expandable_size(*next) < expandable_size(*it)) {
      it = next++;
    }
  }
  int i = by_addr_.at(it->second);
  pool.free.erase(it);
  return i;
}

// alloc_block(): a new segment of get_allocation_size() bytes from cudaMalloc, or (expandable
// segments) more pages mapped into the pool's segment.
int CachingAllocator::AllocBlock(bool small, uint64_t size, uint64_t alloc_size) {
  if (config_.expandable_segments) return TryAllocateExpandable(small, size);
  if (!CanReserve(alloc_size)) return -1;
  Block b;
  b.addr = next_addr_;
  b.size = alloc_size;
  b.small = small;
  next_addr_ += RoundUpTo(alloc_size, kCudaRoundLarge);
  int i = NewBlock(b);
  reserved_ += alloc_size;
  reserved_pool_[small ? 1 : 0] += alloc_size;
  ++segments_allocated_;
  return i;
}

// find_expandable_block(): the lowest address where free and unmapped blocks together hold
// `size`: an unmapped block, or the free block right before it. Else a new segment.
int CachingAllocator::FindExpandableBlock(bool small, uint64_t size) {
  Pool& pool = pools_[small ? 1 : 0];
  auto allocatable = [&](int b) { return b >= 0 && !blocks_[b].allocated; };
  auto has_space = [&](int b) {
    uint64_t bytes = 0;
    while (bytes < size && allocatable(b)) {
      bytes += blocks_[b].size;
      b = blocks_[b].next;
    }
    return bytes >= size;
  };
  for (uint64_t a : pool.unmapped) {
    int c = by_addr_.at(a);
    if (allocatable(blocks_[c].prev)) c = blocks_[c].prev;
    if (has_space(c)) return c;
  }
  Expandable e;
  e.page = PageSize(small);
  uint64_t space = config_.capacity_bytes ? config_.capacity_bytes + config_.capacity_bytes / 8
                                          : kUnlimitedAddressSpace;
  e.size = RoundUpTo(std::max(space, size), e.page);
  e.base = RoundUpTo(next_addr_, e.page);
  next_addr_ = e.base + e.size + e.page;
  expandable_.push_back(e);
  Block b;
  b.addr = e.base;
  b.size = e.size;
  b.small = small;
  b.mapped = false;
  b.expandable = true;
  b.segment = static_cast<int>(expandable_.size()) - 1;
  int i = NewBlock(b);
  pool.unmapped.insert(b.addr);
  return i;
}

// map_block(): maps whole pages covering the first `size` bytes of an unmapped block, leaves
// the rest unmapped and merges the mapped part with free neighbours.
bool CachingAllocator::MapBlock(int i, uint64_t size) {
  assert(!blocks_[i].mapped && size <= blocks_[i].size);
  const Expandable& e = expandable_[blocks_[i].segment];
  uint64_t mapped = std::min(RoundUpTo(size, e.page), blocks_[i].size);
  if (!CanReserve(mapped)) return false;
  Pool& pool = PoolOf(blocks_[i]);
  pool.unmapped.erase(blocks_[i].addr);
  blocks_[i].mapped = true;
  if (mapped < blocks_[i].size) {
    Block rest = blocks_[i];
    rest.addr += mapped;
    rest.size -= mapped;
    rest.mapped = false;
    rest.prev = i;
    int r = NewBlock(rest);
    if (blocks_[r].next >= 0) blocks_[blocks_[r].next].prev = r;
    blocks_[i].next = r;
    blocks_[i].size = mapped;
    pool.unmapped.insert(blocks_[r].addr);
  }
  TryMerge(i, blocks_[i].prev);
  TryMerge(i, blocks_[i].next);
  InsertFree(i);
  reserved_ += mapped;
  reserved_pool_[blocks_[i].small ? 1 : 0] += mapped;
  ++segments_allocated_;
  return true;
}

// try_allocate_expandable_block(): maps pages until the candidate holds `size`.
int CachingAllocator::TryAllocateExpandable(bool small, uint64_t size) {
  int c = FindExpandableBlock(small, size);
  if (!blocks_[c].mapped && !MapBlock(c, std::min(blocks_[c].size, size))) return -1;
  while (blocks_[c].size < size) {
    uint64_t remaining = size - blocks_[c].size;
    int next = blocks_[c].next;
    if (!MapBlock(next, std::min(remaining, blocks_[next].size))) return -1;
    c = next;  // merged with the free block before it
  }
  EraseFree(c);
  return c;
}

// unmap_block(): unmaps the whole pages inside a free block of an expandable segment.
void CachingAllocator::UnmapBlock(int i) {
  const Expandable& e = expandable_[blocks_[i].segment];
  Block b = blocks_[i];
  uint64_t offset = b.addr - e.base;
  uint64_t begin = (offset + e.page - 1) / e.page, end = (offset + b.size) / e.page;
  if (begin >= end) return;
  EraseFree(i);
  uint64_t start = e.base + begin * e.page, length = (end - begin) * e.page;
  if (start > b.addr) {
    Block before = b;
    before.size = start - b.addr;
    before.next = i;
    int k = NewBlock(before);
    if (before.prev >= 0) blocks_[before.prev].next = k;
    blocks_[i].prev = k;
    InsertFree(k);
  }
  uint64_t after_size = b.size - (start - b.addr) - length;
  if (after_size > 0) {
    Block after = b;
    after.addr = start + length;
    after.size = after_size;
    after.prev = i;
    int k = NewBlock(after);
    if (after.next >= 0) blocks_[after.next].prev = k;
    blocks_[i].next = k;
    InsertFree(k);
  }
  if (blocks_[i].addr != start) {
    auto it = by_addr_.find(blocks_[i].addr);
    if (it != by_addr_.end() && it->second == i) by_addr_.erase(it);
    blocks_[i].addr = start;
    by_addr_[start] = i;
  }
  blocks_[i].size = length;
  blocks_[i].mapped = false;
  reserved_ -= length;
  reserved_pool_[b.small ? 1 : 0] -= length;
  ++segments_freed_;
  TryMerge(i, blocks_[i].prev);
  TryMerge(i, blocks_[i].next);
  PoolOf(blocks_[i]).unmapped.insert(blocks_[i].addr);
}

// try_merge_blocks(): absorbs a free neighbour (same mapped state) into dst. dst is in no set.
uint64_t CachingAllocator::TryMerge(int dst, int src) {
  if (src < 0) return 0;
  const Block s = blocks_[src];
  if (s.allocated || s.mapped != blocks_[dst].mapped) return 0;
  Pool& pool = PoolOf(s);
  if (s.mapped) {
    pool.free.erase({s.size, s.addr});
  } else {
    pool.unmapped.erase(s.addr);
  }
  Block& d = blocks_[dst];
  if (d.prev == src) {
    by_addr_.erase(d.addr);
    d.addr = s.addr;
    d.prev = s.prev;
    if (d.prev >= 0) blocks_[d.prev].next = dst;
  } else {
    d.next = s.next;
    if (d.next >= 0) blocks_[d.next].prev = dst;
  }
  d.size += s.size;
  DeleteBlock(src);
  by_addr_[blocks_[dst].addr] = dst;
  return s.size;
}

// free_block(): merge with free neighbours of the same segment, back into the pool.
void CachingAllocator::FreeBlock(int i) {
  TryMerge(i, blocks_[i].prev);
  TryMerge(i, blocks_[i].next);
  InsertFree(i);
}

// release_cached_blocks(): cudaFree every free segment that is not split (whole), and with
// expandable segments unmap every free page.
void CachingAllocator::ReleaseCachedBlocks() {
  for (Pool& pool : pools_) {
    std::vector<int> victims;
    for (const auto& [size, addr] : pool.free) {
      int i = by_addr_.at(addr);
      if (blocks_[i].expandable || (blocks_[i].prev < 0 && blocks_[i].next < 0)) {
        victims.push_back(i);
      }
    }
    for (int i : victims) {
      if (blocks_[i].expandable) {
        UnmapBlock(i);
        continue;
      }
      EraseFree(i);
      reserved_ -= blocks_[i].size;
      reserved_pool_[blocks_[i].small ? 1 : 0] -= blocks_[i].size;
      ++segments_freed_;
      DeleteBlock(i);
    }
  }
}

std::optional<uint64_t> CachingAllocator::Malloc(uint64_t bytes) {
  if (bytes == 0) return 0;
  uint64_t size = RoundSize(bytes);
  bool small = IsSmall(size);
  int b = GetFreeBlock(small, size);
  if (b < 0) {
    uint64_t alloc_size = AllocationSize(size);
    b = AllocBlock(small, size, alloc_size);
    if (b < 0) {
      // release_available_cached_blocks() does nothing with the default max_split_size.
      ReleaseCachedBlocks();
      ++retries_;
      b = AllocBlock(small, size, alloc_size);
    }
    if (b < 0) return std::nullopt;
  }
  if (ShouldSplit(blocks_[b], size)) {
    Block head = blocks_[b];
    head.size = size;
    head.next = b;
    int h = NewBlock(head);  // takes over the address
    if (head.prev >= 0) blocks_[head.prev].next = h;
    blocks_[b].prev = h;
    blocks_[b].addr += size;
    blocks_[b].size -= size;
    by_addr_[blocks_[b].addr] = b;
    InsertFree(b);
    b = h;
  }
  Block& block = blocks_[b];
  block.allocated = true;
  allocated_ += block.size;
  requested_ += size;
  allocated_blocks_[block.addr] = b;
  requested_of_[block.addr] = size;
  return block.addr;
}

void CachingAllocator::Free(uint64_t address) {
  if (address == 0) return;
  auto it = allocated_blocks_.find(address);
  assert(it != allocated_blocks_.end());
  int i = it->second;
  allocated_blocks_.erase(it);
  allocated_ -= blocks_[i].size;
  requested_ -= requested_of_[address];
  requested_of_.erase(address);
  blocks_[i].allocated = false;
  FreeBlock(i);
}

std::string CachingAllocator::CheckInvariants() const {
  uint64_t allocated = 0, mapped = 0, free_count = 0, unmapped_count = 0;
  std::vector<bool> is_free_id(blocks_.size(), false);
  for (int i : free_ids_) is_free_id[i] = true;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (is_free_id[i]) continue;
    const Block& b = blocks_[i];
    auto at = by_addr_.find(b.addr);
    if (at == by_addr_.end() || at->second != static_cast<int>(i)) return "address map is stale";
    if (b.next >= 0) {
      const Block& n = blocks_[b.next];
      if (n.prev != static_cast<int>(i)) return "next/prev links disagree";
      if (n.addr != b.addr + b.size) return "blocks of a segment do not tile it";
    }
    if (b.mapped) mapped += b.size;
    if (b.allocated) {
      allocated += b.size;
      if (!allocated_blocks_.count(b.addr)) return "an allocated block is not handed out";
    } else if (b.mapped) {
      ++free_count;
      if (!pools_[b.small ? 1 : 0].free.count({b.size, b.addr})) return "a free block is lost";
      if (b.prev >= 0 && !blocks_[b.prev].allocated && blocks_[b.prev].mapped)
        return "two free neighbours were not merged";
    } else {
      ++unmapped_count;
      if (!pools_[b.small ? 1 : 0].unmapped.count(b.addr)) return "an unmapped block is lost";
    }
  }
  if (allocated != allocated_) return "allocated bytes disagree";
  if (mapped != reserved_) return "reserved bytes disagree";
  if (reserved_pool_[0] + reserved_pool_[1] != reserved_) return "pool reserved bytes disagree";
  if (pools_[0].free.size() + pools_[1].free.size() != free_count) return "stale free entries";
  if (pools_[0].unmapped.size() + pools_[1].unmapped.size() != unmapped_count)
    return "stale unmapped entries";
  return "";
}

uint64_t CachingAllocator::BlockSize(uint64_t address) const {
  auto it = allocated_blocks_.find(address);
  return it == allocated_blocks_.end() ? 0 : blocks_[it->second].size;
}

Result<AllocatorReport> ReplayCachingAllocator(const Trace& trace,
                                               const AllocatorReplayOptions& options) {
  CachingAllocator a(options.allocator);
  AllocatorReport r;
  const size_t n = trace.buffers.size();
  std::vector<uint64_t> addr(n, 0);
  std::vector<uint8_t> live(n, 0);
  auto phase = [&](const Event& e) { return trace.steps[e.step].phase; };
  for (const Event& e : trace.events) {
    if (e.buffer < 0 || static_cast<size_t>(e.buffer) >= n || e.step < 0 ||
        static_cast<size_t>(e.step) >= trace.steps.size()) {
      return Error{"allocator replay: an event refers to a buffer or step that does not exist"};
    }
  }

  // The step can be replayed twice when it frees everything it allocates and never frees
  // what the setup made.
  bool balanced = true;
  {
    std::vector<int8_t> state(n, 0);  // 1 setup-live, 2 step-live
    for (const Event& e : trace.events) {
      if (e.kind == Event::Kind::kAlloc) {
        state[e.buffer] = phase(e) == Phase::kSetup ? 1 : 2;
      } else {
        if (state[e.buffer] != 2) balanced = false;
        state[e.buffer] = 0;
      }
    }
    for (int8_t s : state) balanced = balanced && s != 2;
  }
  const bool warm = options.warmup_step && balanced;
  r.warmup_applied = warm;

  bool measuring = !warm;
  std::vector<bool> extra_done(options.extra.size(), false);
  std::vector<uint64_t> extra_addr(options.extra.size(), 0);

  auto note = [&](StepId step) {
    if (measuring) {
      r.max_allocated = std::max(r.max_allocated, a.allocated());
      r.max_requested = std::max(r.max_requested, a.requested());
    }
    if (a.reserved() > r.max_reserved) {
      r.max_reserved = a.reserved();
      r.allocated_at_max_reserved = a.allocated();
      r.reserved_peak_step = step;
      r.reserved_peak_in_warmup = !measuring;
    }
  };
  auto malloc = [&](uint64_t bytes, StepId step) -> std::optional<uint64_t> {
    auto p = a.Malloc(bytes);
    if (!p) {
      r.oom = true;
      r.oom_request_bytes = bytes;
      r.oom_step = step;
      r.oom_in_warmup = !measuring;
      return std::nullopt;
    }
    note(step);
    return p;
  };
  auto extras_before = [&](const Event& e) {
    for (size_t k = 0; k < options.extra.size(); ++k) {
      if (extra_done[k] || options.extra[k].phase != phase(e)) continue;
      extra_done[k] = true;
      auto p = malloc(options.extra[k].bytes, e.step);
      if (!p) return false;
      extra_addr[k] = *p;
    }
    return true;
  };
  auto apply = [&](const Event& e) {
    if (e.kind == Event::Kind::kFree) {
      a.Free(addr[e.buffer]);
      addr[e.buffer] = 0;
      live[e.buffer] = 0;
      return true;
    }
    auto p = malloc(trace.buffers[e.buffer].bytes, e.step);
    if (!p) return false;
    addr[e.buffer] = *p;
    live[e.buffer] = 1;
    return true;
  };
  auto finish = [&]() {
    r.reserved_small = a.reserved_small();
    r.reserved_large = a.reserved_large();
    r.segments = a.segments_allocated();
    r.alloc_retries = a.alloc_retries();
    r.fragmentation_bytes = r.max_reserved - std::min(r.max_reserved, r.max_allocated);
    return r;
  };

  if (warm) {
    // Step 1: the optimizer state is created inside the first optimizer.step().
    std::vector<BufferId> state;
    size_t i = 0;
    for (; i < trace.events.size() && phase(trace.events[i]) == Phase::kSetup; ++i) {
      const Event& e = trace.events[i];
      if (e.kind == Event::Kind::kAlloc &&
          trace.buffers[e.buffer].category == Category::kOptimizerState) {
        state.push_back(e.buffer);
        continue;
      }
      if (!apply(e)) return finish();
    }
    const size_t first_step_event = i;
    bool state_made = false;
    auto make_state = [&](StepId step) {
      state_made = true;
      for (BufferId b : state) {
        auto p = malloc(trace.buffers[b].bytes, step);
        if (!p) return false;
        addr[b] = *p;
        live[b] = 1;
      }
      return true;
    };
    for (; i < trace.events.size(); ++i) {
      const Event& e = trace.events[i];
      if (phase(e) == Phase::kSetup) {
        if (!apply(e)) return finish();
        continue;
      }
      if (!state_made && phase(e) == Phase::kOptimizer && !make_state(e.step)) return finish();
      if (!extras_before(e) || !apply(e)) return finish();
    }
    if (!state_made && !make_state(trace.steps.empty() ? 0 : StepId(trace.steps.size() - 1))) {
      return finish();
    }
    // torch.cuda.reset_peak_memory_stats(), then step 2.
    measuring = true;
    r.max_allocated = a.allocated();
    r.max_requested = a.requested();
    for (i = first_step_event; i < trace.events.size(); ++i) {
      if (phase(trace.events[i]) == Phase::kSetup) continue;
      if (!apply(trace.events[i])) return finish();
    }
  } else {
    for (const Event& e : trace.events) {
      if (!extras_before(e) || !apply(e)) return finish();
    }
  }
  // Extras whose phase never came (no backward, say) are made at the end.
  for (size_t k = 0; k < options.extra.size(); ++k) {
    if (extra_done[k]) continue;
    extra_done[k] = true;
    if (!malloc(options.extra[k].bytes, trace.steps.empty() ? 0 : StepId(trace.steps.size() - 1)))
      return finish();
  }
  return finish();
}

}  // namespace vramsim

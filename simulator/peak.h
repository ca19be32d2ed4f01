// Consumer: live bytes over the event stream and their maximum, with what makes it up.
#pragma once

#include "simulator/trace.h"

namespace vramsim {

struct PeakReport {
  uint64_t peak_bytes = 0;
  StepId peak_step = -1;
  size_t peak_event = 0;  // index of the allocation that reached the peak
  std::array<uint64_t, kCategoryCount> by_category{};
  std::vector<BufferId> live_at_peak;  // largest first, ties by id
};

// round_bytes: each allocation is counted rounded up to a multiple of this (1 = exact);
// PyTorch's CUDA caching allocator counts 512-byte blocks in max_memory_allocated.
PeakReport FindPeak(const Trace& trace, uint64_t round_bytes = 1);

uint64_t RoundUp(uint64_t bytes, uint64_t multiple);

// Parameters, gradients and optimizer state alive when the (first) optimizer step starts,
// each rounded up to round_bytes: no batch size, accumulation or checkpointing goes below it.
uint64_t ModelStatesAtOptimizerStart(const Trace& trace, uint64_t round_bytes = 1);

}  // namespace vramsim

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

// The least any checkpoint plan of this step can peak at (op-level or block, recomputing any
// value any number of times), read off the trace of the step without checkpointing. A plan
// runs the same ops (forward once at least, the same backward ops in the same order) and
// changes only how long activations live, so at each step it still holds, at once:
//   - the step's working set: the activations and activation gradients the step allocates,
//     and those it frees (it reads them: a backward op frees its saved inputs and the
//     incoming gradient), counted at the moment of each allocation as the trace orders them;
//   - what no plan changes: parameters, buffers, parameter gradients, optimizer state and the
//     batch alive then (a plan may keep the batch longer, never shorter).
// The floor is the largest such sum; a budget below it cannot be met by checkpointing.
struct StepFloor {
  uint64_t bytes = 0;
  StepId step = -1;               // where it is reached (the first such step)
  uint64_t invariant_bytes = 0;   // parameters, gradients, optimizer state, buffers, batch
  std::vector<BufferId> working;  // the step's working set then, largest first
};
StepFloor RecomputeFloor(const Trace& trace, uint64_t round_bytes = 1);

}  // namespace vramsim

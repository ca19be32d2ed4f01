// TrainingPlan -> event stream: one steady-state training step (the optimizer state already
// exists, gradients start as None): forward in schedule order, the loss, the backward in
// reverse order, the optimizer step, zero_grad(set_to_none=True). A tensor is allocated when
// its producer runs and freed after its last reader; saved tensors live until their op's
// backward has run; storage shared by views is freed with its last view.
#pragma once

#include <cstdint>
#include <vector>

#include "importer/status.h"
#include "simulator/plan.h"
#include "simulator/trace.h"

namespace vramsim {

// Gradient accumulation (plan.micro_batches = K > 1): micro-batches 2..K start from the same
// memory (the parameter gradients exist, the previous micro-batch's activations are gone, its
// outputs and loss are still held), so micro-batch 1 and one steady micro-batch are simulated
// and stand for all K: the same peak, at a cost independent of K.
struct SimulateOptions {
  bool every_micro_batch = false;  // simulate all K (tests compare it with the default)
};

// The micro-batches Simulate runs through for this plan: min(K, 2), or K with every_micro_batch.
int SimulatedMicroBatches(const TrainingPlan& plan, const SimulateOptions& options = {});

// Refuses a step whose allocations add up to more than 2^62 bytes (the sums would overflow).
Result<Trace> Simulate(const TrainingPlan& plan, const SimulateOptions& options = {});

// What the forward leaves allocated when it ends, for hypothetical checkpoint regions, without
// simulating the step: Simulate's own runtime runs the first micro-batch's forward (setup,
// forward, end of forward) with tracing off and `regions` (each a list of indices into
// plan.ops) checkpointed in place of plan.regions: ops inside a region save nothing, each
// region keeps its inputs and one RNG state of rng_state_bytes. The result is the bytes (each
// storage rounded up to round_bytes, as the peak counts them) of the storages the forward
// allocated that are still allocated when it ends; parameters, buffers, the batch and
// optimizer state are the same for every region set and not counted, so the difference
// between two region sets is the difference in live bytes the simulator shows at the loss.
// The checkpoint planner derives each block's savings from it.
Result<uint64_t> ForwardHeldBytes(const TrainingPlan& plan,
                                  const std::vector<std::vector<int>>& regions,
                                  uint64_t rng_state_bytes, uint64_t round_bytes);

}  // namespace vramsim

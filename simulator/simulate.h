// TrainingPlan -> event stream: one steady-state training step (the optimizer state already
// exists, gradients start as None): forward in schedule order, the loss, the backward in
// reverse order, the optimizer step, zero_grad(set_to_none=True). A tensor is allocated when
// its producer runs and freed after its last reader; saved tensors live until their op's
// backward has run; storage shared by views is freed with its last view.
#pragma once

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

}  // namespace vramsim

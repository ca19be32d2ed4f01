// What the forward leaves allocated when it ends, for hypothetical checkpoint regions, without
// simulating the step.
//
// A replay of the simulator's forward (simulate.cc: Setup, Forward, EndForward of the first
// micro-batch), counting tensor storages by reference as it does, with the checkpoint regions
// given as op-index lists in place of plan.regions: ops inside a region save nothing, each
// region keeps its inputs and one RNG state. Only what the forward allocates is counted
// (parameters, buffers, the batch, gradients and optimizer state are the same for every region
// set), so the difference between two region sets is the difference in live bytes the
// simulator shows at the loss. The checkpoint planner derives each block's savings from it and
// checks it against simulated steps (planners/checkpoint_planner.cc); tests compare it with
// the simulator on the examples.
#pragma once

#include <cstdint>
#include <vector>

#include "simulator/plan.h"

namespace vramsim {

// Bytes (each storage rounded up to round_bytes, as the peak counts them) of the storages the
// forward allocated that are still allocated when it ends, with `regions` checkpointed (each a
// list of indices into plan.ops; plan.regions and PlanOp::region are ignored).
uint64_t ForwardHeldBytes(const TrainingPlan& plan, const std::vector<std::vector<int>>& regions,
                          uint64_t rng_state_bytes, uint64_t round_bytes);

}  // namespace vramsim

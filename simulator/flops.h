// Cost model: floating-point operations per op, forward and backward, so checkpointing plans
// can report recompute overhead as a share of the step. Multiply-adds count as 2 FLOPs.
#pragma once

#include "simulator/plan.h"

namespace vramsim {

// Fills forward_flops and backward_flops of every op in the plan.
void EstimateFlops(TrainingPlan& plan);

// Forward + backward FLOPs of the whole step (the denominator of recompute overhead).
uint64_t StepFlops(const TrainingPlan& plan);

}  // namespace vramsim

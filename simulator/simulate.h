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

Result<Trace> Simulate(const TrainingPlan& plan);

}  // namespace vramsim

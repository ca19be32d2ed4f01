// Offload (--offload optimizer), DeepSpeed ZeRO-Offload's model (Ren et al., "ZeRO-Offload:
// Democratizing Billion-Scale Model Training", USENIX ATC 2021, Sec. 4): the optimizer state
// (and the fp32 master weights of mixed precision) live in host memory and the optimizer step
// runs on the CPU (DeepSpeedCPUAdam). The GPU keeps the parameters in the training precision
// and computes the gradients, which are copied to the host as they are reduced; after the
// host's step the updated parameters are copied back into the GPU's parameter tensors.
//
// On the device that leaves: the parameters, the gradients (counted until the step, as they
// are until copied out: an upper bound, DeepSpeed streams them out bucket by bucket), the
// activations; no optimizer state, no step temporaries, no step counters. The copies back are
// into the existing parameter storage: nothing new is allocated.
//
// --offload params (ZeRO-Infinity's parameter offload) is not modelled: it is refused.
#pragma once

#include <string>

#include "policies/policy.h"

namespace vramsim {

enum class OffloadKind { kNone, kOptimizer };
Result<OffloadKind> ParseOffload(const std::string& name);

class OffloadPolicy : public Policy {
 public:
  explicit OffloadPolicy(OffloadKind kind) : kind_(kind) {}
  std::string_view name() const override { return "offload"; }
  Status Apply(TrainingPlan& plan) const override;

 private:
  OffloadKind kind_;
};

}  // namespace vramsim

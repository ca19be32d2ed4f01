#include "policies/offload.h"

namespace vramsim {

Result<OffloadKind> ParseOffload(const std::string& name) {
  if (name.empty() || name == "none") return OffloadKind::kNone;
  if (name == "optimizer") return OffloadKind::kOptimizer;
  if (name == "params") {
    return Error{
        "--offload params (parameters in host memory, ZeRO-Infinity) is not modelled; "
        "--offload optimizer is"};
  }
  return Error{"unknown --offload '" + name + "' (optimizer)"};
}

Status OffloadPolicy::Apply(TrainingPlan& plan) const {
  if (kind_ == OffloadKind::kNone) return {};
  // The host keeps the state and runs the step.
  plan.optimizer.state_per_param = 0;
  plan.optimizer.step_temporaries = 0;
  plan.optimizer.step_counter_bytes = 0;
  return {};
}

}  // namespace vramsim

#include "policies/offload.h"

namespace vramsim {

Result<OffloadKind> ParseOffload(const std::string& name) {
  if (name.empty() || name == "none") return OffloadKind::kNone;
  if (name == "optimizer") return OffloadKind::kOptimizer;
  if (name == "params") return OffloadKind::kParams;
  return Error{"unknown --offload '" + name + "' (optimizer, params)"};
}

Status ValidateOffload(OffloadKind kind, int zero_stage) {
  if (kind == OffloadKind::kParams && zero_stage != 3) {
    return Error{
        "--offload params stages each FSDP unit's shard in from the host: give --fsdp "
        "full|shard-grad-op|hybrid or --zero 3 (with --data-parallel N)"};
  }
  return {};
}

Status OffloadPolicy::Apply(TrainingPlan& plan) const {
  if (kind_ == OffloadKind::kNone) return {};
  // The host keeps the state and runs the step (the gradients leave with the sharding policy,
  // ShardingOptions::offload_gradients).
  plan.optimizer.state_per_param = 0;
  plan.optimizer.step_temporaries = 0;
  plan.optimizer.step_counter_bytes = 0;
  return {};
}

}  // namespace vramsim

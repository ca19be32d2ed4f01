// Offload (--offload optimizer|params): what leaves the GPU for host memory and what is staged
// back.
//
// --offload optimizer, DeepSpeed ZeRO-Offload's model (Ren et al., "ZeRO-Offload:
// Democratizing Billion-Scale Model Training", USENIX ATC 2021, Sec. 4; DeepSpeed's
// zero_optimization.offload_optimizer, ZeRO stages 1-3): the optimizer state (and the fp32
// master weights of mixed precision) live in host memory and the optimizer step runs on the
// CPU (DeepSpeedCPUAdam). The GPU keeps the parameters in the training precision and computes
// the gradients; each unit's gradients are reduce-scattered as its backward ends (ZeRO 1: all
// at the backward's end) and the rank's partition is copied to the host and freed
// (ShardingOptions::offload_gradients): no gradient is on the GPU at the step. After the
// host's step the updated parameters are copied back into the GPU's parameter tensors
// (nothing new is allocated). One GPU is ZeRO-Offload's single-GPU setting (ZeRO 2 over one
// rank). DDP (--zero 0 over several ranks; DeepSpeed offers offload with ZeRO only) keeps its
// all-reduced gradients until the step, which copies them to the host.
//
// --offload params, ZeRO-3 parameter offload as PyTorch FSDP runs it with
// CPUOffload(offload_params=True) (and DeepSpeed ZeRO-Infinity's offload_param to the CPU):
// parameters, gradients and the optimizer step all on the host. On the GPU: a unit's shard
// copied in (a shard-sized staging buffer) and all-gathered into its unsharded parameters
// while the unit runs (with BACKWARD_PRE, the next unit's too during a backward); its
// gradients until their reduce-scatter, and the reduced partition until it is copied out.
// Needs ZeRO 3 (--fsdp or --zero 3).
#pragma once

#include <string>

#include "policies/policy.h"

namespace vramsim {

enum class OffloadKind { kNone, kOptimizer, kParams };
Result<OffloadKind> ParseOffload(const std::string& name);

// Refuses what the offload modes do not run on: --offload params without ZeRO 3 (zero_stage
// after --fsdp is applied).
Status ValidateOffload(OffloadKind kind, int zero_stage);

class OffloadPolicy : public Policy {
 public:
  explicit OffloadPolicy(OffloadKind kind) : kind_(kind) {}
  std::string_view name() const override { return "offload"; }
  Status Apply(TrainingPlan& plan) const override;

 private:
  OffloadKind kind_;
};

}  // namespace vramsim

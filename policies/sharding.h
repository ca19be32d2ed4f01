// Data parallelism and ZeRO sharding, per rank (--data-parallel N --zero 0|1|2|3).
//
//  - ZeRO 0 (DistributedDataParallel): every rank keeps all parameters, gradients and
//    optimizer state, plus DDP's gradient buckets: flat tensors that together hold one copy
//    of every gradient (gradient_as_bucket_view=False), the first capped at 1 MiB, the others
//    at 25 MiB (bucket_cap_mb), filled in reverse parameter order, one dtype per bucket.
//  - ZeRO 1 (optimizer state partitioning, P_os): parameters stay whole; each rank owns 1/N
//    of them as one flat partition (part of the flat parameter buffer, not a copy) and keeps
//    optimizer state only for it. Gradients stay whole until the optimizer step: DeepSpeed's
//    stage 1 (runtime/zero/stage_1_and_2.py) reduces them when the backward ends into the
//    parameters' own .grad tensors and frees the other ranks' portions only inside step()
//    (free_grad_in_param_list(params_not_in_partition)); PyTorch's ZeroRedundancyOptimizer
//    keeps every gradient until zero_grad. Per rank at the step: (P + G) psi + K psi / N.
//  - ZeRO 2 (+ gradient partitioning, P_os+g): as 1, but the gradients of each sharding unit
//    (a repeated module block, the rest of the model being one more unit) are
//    reduce-scattered when the unit's backward ends; only the rank's partition is kept.
//  - ZeRO 3 (+ parameter partitioning, P_os+g+p, FSDP FULL_SHARD): each rank keeps 1/N of
//    every unit's parameters; a unit's parameters are all-gathered into one flat buffer
//    before its forward and freed after it, and gathered again for its backward (one unit at
//    a time); the outermost unit stays gathered from its first use to its backward.
//
// The policy rewrites the TrainingPlan: for ZeRO >= 1 each unit gets a flat shard tensor (a
// trained parameter of ceil(numel/N) elements, so the simulator gives it 1/N gradients and
// optimizer state) and an op before the unit's first reader whose outputs replace the
// parameters (views of the full parameters for 1-2, of the all-gathered buffer for 3) and
// whose backward turns their full gradients into the shard's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "policies/policy.h"

namespace vramsim {

inline constexpr uint64_t kDdpFirstBucketBytes = 1 << 20;  // dist._DEFAULT_FIRST_BUCKET_BYTES
inline constexpr uint64_t kDdpBucketBytes = 25 << 20;      // DistributedDataParallel bucket_cap_mb

struct ShardingOptions {
  int world_size = 1;  // --data-parallel N
  int zero_stage = 0;  // --zero
  uint64_t bucket_bytes = kDdpBucketBytes;
  // Module scopes that are sharding units; empty: the repeated blocks (RepeatedBlocks).
  std::vector<std::string> units;
  // FSDP (ApplyFsdpMode): ZeRO 3 frees a unit's gathered parameters after its forward and
  // gathers them again for its backward; SHARD_GRAD_OP keeps them from forward to backward.
  bool reshard_after_forward = true;
  // backward_prefetch=BACKWARD_PRE: the next unit's parameters are gathered while the current
  // unit's backward runs (two units gathered at once).
  bool backward_prefetch = false;
  // ZeRO 1 as PyTorch runs it on torch-cpu (measured, validation/distributed.json):
  // torch.distributed.optim.ZeroRedundancyOptimizer over DDP. DDP's buckets stay; each rank
  // owns whole parameters (largest first, each to the rank with the fewest elements so far)
  // and keeps optimizer state and step temporaries only for them; every gradient stays
  // whole until zero_grad. The rank reported is the one owning the most elements.
  bool zero_redundancy_optimizer = false;
  int zero_rank = -1;  // that rank reported instead (--zero-rank), 0..world_size-1
  // --offload optimizer or params (policies/offload.h): each unit's reduced gradient
  // partition is copied to the host as its reduce-scatter finishes (DeepSpeed ZeRO-Offload,
  // FSDP CPUOffload): the GPU holds the unit's whole gradients until then and the reduced
  // partition while it is copied out, no gradient at the step. With one rank, ZeRO-Offload's
  // single-GPU setting: ZeRO 2 over one rank (the units' gradients leave after their
  // backward). DDP (ZeRO 0 over several ranks) keeps its gradients until the step.
  bool offload_gradients = false;
  // --offload params (ZeRO 3 only): the shards live on the host; a unit's shard is copied in
  // (a shard-sized staging buffer beside the all-gather's output) when it is gathered.
  bool offload_params = false;
};

Status ValidateSharding(const ShardingOptions& options);

// PyTorch FSDP's sharding strategies (--fsdp), as ZeRO 3 with these settings (ApplyFsdpMode):
//  - full (FULL_SHARD): parameters, gradients and optimizer state sharded over the ranks;
//    reshard_after_forward; backward_prefetch=BACKWARD_PRE (PyTorch's default).
//  - shard-grad-op (SHARD_GRAD_OP): as full, but a unit's parameters stay gathered from its
//    forward to its backward (reshard_after_forward=False).
//  - hybrid (HYBRID_SHARD): FULL_SHARD within a node of --gpus-per-node ranks, replicated
//    across nodes: the shards are 1/min(N, gpus-per-node).
// Wrapping units are the module scopes of ShardingOptions::units (default: every repeated
// block, the rest of the model being the root unit).
enum class FsdpMode { kNone, kFullShard, kShardGradOp, kHybridShard };
Result<FsdpMode> ParseFsdpMode(const std::string& name);
// Sets zero_stage 3, the world size of the shards and the two settings for `mode`; errors for
// --fsdp with --zero or without data parallelism.
Status ApplyFsdpMode(FsdpMode mode, int gpus_per_node, ShardingOptions* options);

class ShardingPolicy : public Policy {
 public:
  explicit ShardingPolicy(ShardingOptions options) : options_(std::move(options)) {}
  std::string_view name() const override { return "sharding"; }
  Status Apply(TrainingPlan& plan) const override;

 private:
  ShardingOptions options_;
};

// Per-rank model states in the ZeRO paper's notation (Rajbhandari et al., "ZeRO: Memory
// Optimizations Toward Training Trillion Parameter Models", SC 2020, Sec. 5.1 and Fig. 1):
// psi parameters, param_bytes and grad_bytes per parameter (2 and 2 in mixed precision), K
// bytes of optimizer state per parameter (12 for mixed-precision Adam), N_d ranks.
//   baseline (stage 0): (P + G + K) psi;   P_os (1): (P + G) psi + K psi / N
//   P_os+g (2): P psi + (G + K) psi / N;   P_os+g+p (3): (P + G + K) psi / N
struct ModelStates {
  double params = 0, grads = 0, optimizer = 0;
  double total() const { return params + grads + optimizer; }
};
ModelStates ZeroModelStates(double psi, double param_bytes, double grad_bytes, double k, int n,
                            int stage);

// DDP's bucket sizes for these gradient tensors (bytes per tensor and a dtype key), in the
// order the buckets are filled (reverse parameter order).
std::vector<uint64_t> DdpBuckets(const std::vector<std::pair<uint64_t, int>>& grads,
                                 uint64_t first_cap = kDdpFirstBucketBytes,
                                 uint64_t cap = kDdpBucketBytes);

// The outermost repeated module blocks: module paths whose last component ends in a number
// ("layer1", "h.0", "encoder_layer_11", "features.3") and that have a sibling with the same
// stem; nested repeats inside a chosen block are not listed. In order of first use.
std::vector<std::string> RepeatedBlocks(const TrainingPlan& plan);

}  // namespace vramsim

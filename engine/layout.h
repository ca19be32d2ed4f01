// `vramsim layout`: which way to lay a training job out over G GPUs. Enumerates tensor (tp),
// pipeline (pp) and data (dp) parallel degrees with tp x pp x dp = G, the pipeline schedule
// (1F1B, and interleaved 1F1B with 2 virtual stages when pp x 2 divides the blocks), sequence
// parallelism, how the data-parallel ranks shard (ZeRO 0 / 1 / 2 / 3, FSDP full,
// shard-grad-op, hybrid over --gpus-per-node), --offload optimizer, the micro-batch size and
// accumulation (global batch = dp x micro x accum), and checkpointing (none / every repeated
// block); keeps what fits one rank by vramsim's own per-rank simulation (its peak within the
// GPU's memory less the CUDA context, the cuBLAS workspaces and NCCL's buffers for the rank's
// communicators, devices.h) and ranks it by a simple cost model:
//
//   step time = (compute + tp time + pp time) x (1 + bubble) + dp time + offload time
//   compute   = FLOPs per GPU / (peak bf16 FLOP/s x 0.5)
//   bubble    = (pp - 1) / (m V)   (1F1B: V = 1; interleaved: V = 2; m micro-batches)
//
//  - FLOPs per GPU: the estimate's step and recompute FLOPs of the worst rank (the pipeline's
//    first stage), all micro-batches.
//  - dp bytes per GPU, psi the rank's parameter bytes (ZeRO paper Sec. 7; PyTorch FSDP):
//    ZeRO 0-2: 2 psi (dp - 1) / dp (all-reduce, or reduce-scatter + all-gather, once a step);
//    ZeRO 3 and FSDP full: (2 m + 1) psi (dp - 1) / dp (parameters gathered for every
//    micro-batch's forward and again for its backward, gradients reduce-scattered);
//    FSDP shard-grad-op: (m + 1) psi (dp - 1) / dp (gathered once per micro-batch, kept until
//    its backward); FSDP hybrid over s ranks of a node and r = dp / s replicas: (2 m + 1) psi
//    (s - 1) / s within the node plus 2 (psi / s) (r - 1) / r across nodes (the shards'
//    all-reduce). Over NVLink when the group is within a node, else the network.
//  - tp bytes: 4 all-reduces (2 forward, 2 backward; Megatron-LM, Shoeybi et al. 2019 Sec. 3)
//    of one block's output per block per micro-batch, each 2 (tp - 1) / tp of it (sequence
//    parallelism's all-gather + reduce-scatter move the same bytes), over NVLink.
//  - pp bytes: a block output sent forward and its gradient back per micro-batch and model
//    chunk: 2 V x the block output per micro-batch (interleaving sends V times as often).
//  - offload bytes (--offload optimizer): the rank's gradients to the host and the updated
//    parameters back, 2 psi / (the ranks the optimizer state is sharded over), over PCIe in
//    one direction's bandwidth; the CPU's optimizer step is not counted (ZeRO-Offload overlaps
//    it with the next step's forward).
//  - peak FLOP/s, NVLink, network and PCIe bandwidths per GPU from the device profile
//    (devices.h, with their sources); a profile without them is refused.
//
// Pruning, so that hundreds of layouts take seconds (each simulated layout is one or two
// per-rank simulations): sequence parallelism is always on with tp > 1 when the build has it
// (same communication, less activation memory). For each (tp, pp, schedule) the variants
// (offload, checkpointing) are tried in the order none, offload, checkpointing, both, and in
// each the sharding ladder: the lowest of ZeRO 0 / 1 / 2 that fits (they move the same
// bytes); FSDP hybrid beside it when dp spans nodes (it moves fewer bytes across nodes);
// and, only when none of ZeRO 0-2 fits, FSDP shard-grad-op, ZeRO 3 and (when ZeRO 3 fits)
// FSDP full at the same micro-batch. Once ZeRO 0-2 fits, the later variants (more FLOPs or
// PCIe traffic, no fewer bytes) are not simulated. pp = 1 takes the largest micro-batch that
// fits (binary search: the peak grows with it), pp > 1 the smallest (most micro-batches: least
// bubble; interleaving needs m a multiple of pp). A pipeline layout is screened by its first
// and last stages (the first holds the most micro-batches in flight and the embedding, the
// last the head and the loss); the best few are then simulated stage by stage (`verified`).
// Layouts left out are listed in --json with the reason.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "devices/devices.h"
#include "engine/estimate.h"

namespace vramsim {

struct LayoutOptions {
  int gpus = 8;
  int gpus_per_node = 8;
  std::string gpu = "h100-80gb";
  uint64_t capacity_bytes = 0;  // 0: the profile's (a smaller device for tests)
  int64_t global_batch = 0;
  std::map<std::string, int64_t> dims;  // the other dims (seq=4096)
  EstimateFlags base;                   // precision, optimizer, ...; parallel fields are set
  int threads = 0;  // worker threads; 0: one per core (std::thread::hardware_concurrency)
  int max_tp = 8;
  int verify = 3;  // the best this many are simulated stage by stage
};

// How the data-parallel ranks shard parameters, gradients and optimizer state.
enum class DpSharding { kZero0, kZero1, kZero2, kZero3, kFsdpFull, kFsdpShardGradOp, kFsdpHybrid };
std::string_view DpShardingName(DpSharding s);  // "zero 1", "fsdp full", ...

struct LayoutCandidate {
  int tp = 1, pp = 1, dp = 1;
  int virtual_stages = 1;  // 2: the interleaved 1F1B schedule
  bool sequence_parallel = false;
  DpSharding sharding = DpSharding::kZero0;
  int zero = 0;          // the ZeRO stage (3 for every FSDP mode)
  int shard = 1;         // ranks the model states are sharded over (FSDP hybrid: within a node)
  bool offload = false;  // --offload optimizer
  int64_t micro = 1;
  int accum = 1;
  bool checkpoint = false;
  // "fits", "does not fit", "not simulated: ..." or an error
  std::string status;
  bool simulated = false, fits = false, verified = false;
  uint64_t peak_bytes = 0;
  NcclTerm nccl;  // NCCL's buffers beside the peak (devices.h NcclBuffers)
  std::vector<uint64_t> stage_peaks;
  double flops_per_gpu = 0;  // all micro-batches, recompute included
  double comm_bytes = 0;     // per GPU per step: dp + tp + pp
  double dp_bytes = 0, tp_bytes = 0, pp_bytes = 0;
  double offload_bytes = 0;  // over PCIe
  double bubble = 0;
  double step_seconds = 0;  // the cost model's
  std::string why;
};

struct LayoutResult {
  std::vector<LayoutCandidate> candidates;  // fitting ones first, best first
  DeviceProfile device;                     // with the speeds the cost model used
  DeviceBudget budget;                      // without NCCL's buffers (each layout has its own)
  uint64_t workspace_bytes = 0;             // cuBLAS workspaces counted beside the peak
  int simulations = 0;
  double seconds = 0;
  int blocks = 0;
  bool sequence_parallel_available = false;
};

Status ValidateLayout(const LayoutOptions& options);
Result<LayoutResult> SearchLayouts(const std::string& model_path, const LayoutOptions& options);
nlohmann::json LayoutJson(const LayoutResult& result);
std::string LayoutText(const LayoutResult& result, size_t top);

}  // namespace vramsim

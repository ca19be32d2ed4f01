// `vramsim layout`: which way to lay a training job out over G GPUs. Enumerates tensor (tp),
// pipeline (pp) and data (dp) parallel degrees with tp x pp x dp = G, sequence parallelism,
// the ZeRO stage, the micro-batch size and accumulation (global batch = dp x micro x accum),
// and checkpointing (none / every repeated block); keeps what fits one rank by vramsim's own
// per-rank simulation (its peak plus NCCL's buffers, devices.h, within the GPU's memory less
// the CUDA context and cuBLAS workspaces) and ranks it by a simple cost model:
//
//   step time = (FLOPs per GPU / (peak FLOP/s x 0.5)
//               + tp bytes / NVLink bandwidth + (dp + pp) bytes / network bandwidth)
//               x (1 + bubble),   bubble = (pp - 1) / m (1F1B, m micro-batches)
//
//  - FLOPs per GPU: the estimate's step and recompute FLOPs of the worst rank (the pipeline's
//    first stage), all micro-batches.
//  - dp bytes per GPU: 2 psi (dp - 1) / dp for ZeRO 0-2 (all-reduce or reduce-scatter +
//    all-gather of the gradients, once per step), (2 m + 1) psi (dp - 1) / dp for ZeRO 3
//    (parameters gathered for every micro-batch's forward and backward, gradients
//    reduce-scattered); psi the rank's parameter bytes (ZeRO paper Sec. 7).
//  - tp bytes: 4 all-reduces (2 forward, 2 backward; Megatron-LM, Shoeybi et al. 2019 Sec. 3)
//    of one block's output per block per micro-batch, each 2 (tp - 1) / tp of it (sequence
//    parallelism's all-gather + reduce-scatter move the same bytes).
//  - pp bytes: a block output sent forward and its gradient back per micro-batch.
//  - bandwidths and peak FLOP/s by GPU family (layout.cc), tp within a node.
//
// Pruning, so that hundreds of layouts take seconds (each simulated layout is one or two
// per-rank simulations): sequence parallelism is always on with tp > 1 when the build has it
// (same communication, less activation memory); for each (tp, pp) the lowest ZeRO stage that
// fits is kept (ZeRO 0-2 move the same bytes; 3 moves more); checkpointing only when nothing
// fits without it; pp = 1 takes the largest micro-batch that fits (binary search: peak grows
// with the micro-batch), pp > 1 the smallest (most micro-batches: least bubble). A pipeline
// layout is screened by its first and last stages (the first holds the most micro-batches in
// flight and the embedding, the last the head and the loss); the best few are then simulated
// stage by stage (`verified`). Layouts left out are listed in --json with the reason.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "devices/devices.h"
#include "engine/estimate.h"

namespace vramsim {

struct LayoutOptions {
  int gpus = 8;
  int gpus_per_node = 8;
  std::string gpu = "h100-80gb";
  int64_t global_batch = 0;
  std::map<std::string, int64_t> dims;  // the other dims (seq=4096)
  EstimateFlags base;                   // precision, optimizer, ...; parallel fields are set
  int threads = 2;
  int max_tp = 8;
  int verify = 3;  // the best this many are simulated stage by stage
};

struct LayoutCandidate {
  int tp = 1, pp = 1, dp = 1;
  bool sequence_parallel = false;
  int zero = 0;
  int64_t micro = 1;
  int accum = 1;
  bool checkpoint = false;
  // "fits", "does not fit", "not simulated: ..." or an error
  std::string status;
  bool simulated = false, fits = false, verified = false;
  uint64_t peak_bytes = 0;
  uint64_t nccl_bytes = 0;  // NCCL's buffers beside the peak (devices.h NcclBufferBytes)
  std::vector<uint64_t> stage_peaks;
  double flops_per_gpu = 0;  // all micro-batches, recompute included
  double comm_bytes = 0;     // per GPU per step
  double bubble = 0;
  double step_seconds = 0;  // the cost model's
  std::string why;
};

struct LayoutResult {
  std::vector<LayoutCandidate> candidates;  // fitting ones first, best first
  DeviceBudget budget;
  uint64_t workspace_bytes = 0;  // cuBLAS workspaces counted beside the peak
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

// The library layer's estimate: import -> training-step plan -> policies -> simulate -> peak,
// with its options validated from text (the CLI's flags and the Python keywords are the same
// strings, so both get the same messages). Front ends (cli/, bindings/) call this; nothing
// below it (importer, simulator, policies, planners, reports) includes a front end.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "devices/devices.h"
#include "importer/graph.h"
#include "importer/status.h"
#include "policies/offload.h"
#include "policies/pipeline.h"
#include "policies/precision.h"
#include "policies/sharding.h"
#include "policies/trainable.h"
#include "simulator/attention.h"
#include "simulator/peak.h"
#include "simulator/plan.h"
#include "simulator/trace.h"

namespace vramsim {

// Options as text, as given on the command line or as Python keywords; ParseEstimateFlags
// validates them into EstimateOptions.
struct EstimateFlags {
  std::string optimizer = "adam";
  std::string optimizer_impl;  // empty: the target's default
  std::string target = "torch-cuda";
  std::string loss = "cross-entropy";
  std::string precision = "fp32";
  // The SDPA kernel recognized attention runs with (simulator/attention.h).
  std::string attention = "auto";
  std::string torch_version = "2";      // autocast's op lists (policies/precision.h)
  std::string loss_precision = "fp32";  // pure bf16/fp16: upcast the logits before the loss
  int accum = 1;
  int cpu_threads = 1;  // torch-cpu: intra-op threads (oneDNN scratch per thread)
  std::string dim_name = "batch";
  std::string checkpoint;  // comma-separated scopes
  int data_parallel = 1;   // ranks (policies/sharding.h)
  int zero = 0;            // ZeRO stage
  int zero_rank = -1;      // --zero-rank: torch-cpu ZeRO 1's rank to report (-1: owning the most)
  // Tensor, sequence and context parallelism (policies/tensor_parallel.h): --tp N,
  // --sequence-parallel, --cp N.
  int tensor_parallel = 1;
  bool sequence_parallel = false;
  int context_parallel = 1;
  bool allow_constant_weights = false;  // ImportOptions::allow_constant_weights
  // --freeze / --trainable: repeatable, each a pattern or a comma list (policies/trainable.h).
  std::vector<std::string> freeze;
  std::vector<std::string> trainable;
  // Pipeline parallelism (policies/pipeline.h): --pp, --schedule, --virtual-stages, --stages
  // (comma list of the blocks where stages 1.. begin), --pp-stage (report one stage; -1: all,
  // the answer being the worst).
  int pipeline_parallel = 1;
  std::string schedule = "1f1b";
  int virtual_stages = 1;
  std::string stages;
  int pipeline_stage = -1;
  // PyTorch FSDP (policies/sharding.h): --fsdp full|shard-grad-op|hybrid, --gpus-per-node.
  std::string fsdp;
  int gpus_per_node = 8;
  std::string offload;  // --offload optimizer (policies/offload.h)
};

struct EstimateOptions {
  TargetSpec target;
  LossKind loss = LossKind::kCrossEntropy;
  std::string optimizer = "adam";
  OptimizerImpl optimizer_impl = OptimizerImpl::kForeach;
  std::string precision = "fp32";
  AttentionImpl attention = AttentionImpl::kAuto;
  LossPrecision loss_precision = LossPrecision::kFp32;
  int micro_batches = 1;
  std::string batch_dim = "batch";
  std::vector<std::string> checkpoint;
  int data_parallel = 1;  // per-rank memory of data parallelism (policies/sharding.h)
  int zero_stage = 0;
  int zero_rank = -1;  // ShardingOptions::zero_rank
  // One rank's share under tensor / sequence / context parallelism
  // (policies/tensor_parallel.h); 1, false, 1: none.
  int tensor_parallel = 1;
  bool sequence_parallel = false;
  int context_parallel = 1;
  bool allow_constant_weights = false;  // ImportOptions::allow_constant_weights
  // Which parameters train; the patterns are matched against the graph by RunEstimate, and
  // one that matches no parameter is an error there.
  TrainableOptions trainable;
  PipelineOptions pipeline;                  // stages = 1: no pipeline
  int pipeline_stage = -1;                   // -1: every stage, the estimate being the worst one's
  FsdpMode fsdp = FsdpMode::kNone;           // ZeRO 3 as FSDP runs it (policies/sharding.h)
  int gpus_per_node = 8;                     // --fsdp hybrid shards within a node
  OffloadKind offload = OffloadKind::kNone;  // optimizer state on the host
};

Result<EstimateOptions> ParseEstimateFlags(const EstimateFlags& flags);

// Parameters of an imported graph under the flags: how many there are and how many train.
struct TrainableCount {
  uint64_t parameters = 0, parameter_bytes = 0;  // every parameter tensor
  uint64_t trainable = 0, trainable_bytes = 0;   // those that get a gradient
  uint64_t parameter_elements = 0, trainable_elements = 0;
};
Result<TrainableCount> CountTrainable(const Graph& graph, const TrainableOptions& options);

struct Estimate {
  TrainingPlan plan;
  Trace trace;
  PeakReport peak;
  // Parameters and those that train (--freeze / --trainable), bytes in the step's precision
  // (whole tensors, before any sharding).
  TrainableCount parameters;
  uint64_t step_flops = 0;       // forward + backward of the model, one micro-batch
  uint64_t recompute_flops = 0;  // forward FLOPs run again by checkpointing, one micro-batch
  // The same for the whole step: all K micro-batches run (only their memory repeats).
  uint64_t step_flops_all = 0;
  uint64_t recompute_flops_all = 0;
  // Pipeline parallelism: the stage this estimate is of, and every stage's peak.
  PipelineStageReport pipeline;
  std::vector<uint64_t> stage_peaks;
  // Which rank of which layout the figures are of ("one rank of 8 GPUs: ..."); empty on one.
  std::string per_rank;
  // The process groups this rank is in, and NCCL's buffers for them (devices.h): a term beside
  // the peak, outside PyTorch's caching allocator (like the CUDA context), only on CUDA targets
  // with more than one rank (gloo on torch-cpu has no such buffers). Not in peak_bytes.
  ParallelGroups groups;
  NcclTerm nccl;
  double overhead_pct() const {
    return step_flops
               ? 100.0 * static_cast<double>(recompute_flops) / static_cast<double>(step_flops)
               : 0.0;
  }
};

// The process groups of one rank under these options (data, tensor, pipeline, context
// parallel; FSDP hybrid's shard and replicate groups).
ParallelGroups GroupsOf(const EstimateOptions& options);
// NCCL's buffers for those groups on `device`; nothing on torch-cpu or on one rank.
NcclTerm NcclTermOf(const EstimateOptions& options, const DeviceProfile& device);

// On an imported graph (already at the micro-batch size when accumulating).
Result<Estimate> RunEstimate(const Graph& graph, const EstimateOptions& options);
// Import at the micro-batch dims (the batch dim divided by the accumulation count).
Result<Graph> ImportForEstimate(const std::string& path, const std::map<std::string, int64_t>& dims,
                                const EstimateOptions& options);
// Import (dividing the batch dim for accumulation) and estimate.
Result<Estimate> EstimateModel(const std::string& path, const std::map<std::string, int64_t>& dims,
                               const EstimateOptions& options);

nlohmann::json EstimateJson(const Estimate& e, size_t largest = 20);

std::string FormatBytes(uint64_t bytes);

// "--dim NAME=VALUE" flags (every subcommand): VALUE an integer from 1 to 2^63-1; a name
// given twice, a missing "=", a non-integer, zero, negative or larger value is an error
// naming the flag.
Status ParseDimSpecs(const std::vector<std::string>& specs, std::map<std::string, int64_t>* dims);

// "batch=8 seq=128, adam (foreach), amp-bf16, torch-cuda" for titles.
std::string SummaryLine(const std::map<std::string, int64_t>& dims, const EstimateFlags& flags);

}  // namespace vramsim

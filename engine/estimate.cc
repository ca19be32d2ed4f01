#include "engine/estimate.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>

#include "importer/importer.h"
#include "importer/validate.h"
#include "policies/accumulation.h"
#include "policies/optimizer.h"
#include "policies/precision.h"
#include "policies/recompute.h"
#include "policies/sharding.h"
#include "policies/tensor_parallel.h"
#include "simulator/flops.h"
#include "simulator/module_frames.h"
#include "simulator/peak.h"
#include "simulator/plan_builder.h"
#include "simulator/simulate.h"

namespace vramsim {

std::string FormatBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.2f} {}", v, units[u]);
}

Status ParseDimSpecs(const std::vector<std::string>& specs, std::map<std::string, int64_t>* dims) {
  for (const std::string& spec : specs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return Error{"--dim takes NAME=VALUE, got '" + spec + "'"};
    }
    std::string name = spec.substr(0, eq), value = spec.substr(eq + 1);
    size_t used = 0;
    long long v = 0;
    bool too_large = false;
    try {
      v = std::stoll(value, &used);
    } catch (const std::out_of_range&) {
      too_large = value.find_first_not_of("+-0123456789") == std::string::npos;
      used = 0;
    } catch (const std::exception&) {
      used = 0;
    }
    // The importer's bound on one dimension (importer/validate.h), said the same way here.
    if ((too_large && value[0] != '-') || (!too_large && v > kMaxDimension)) {
      return Error{"--dim " + spec + ": dimensions must be from 1 to 2^48 (" +
                   std::to_string(kMaxDimension) + ")"};
    }
    if (too_large) return Error{"--dim " + spec + ": dimensions must be at least 1"};
    if (used != value.size() || value.empty() ||
        std::isspace(static_cast<unsigned char>(value[0]))) {
      return Error{"--dim " + name + ": '" + value + "' is not an integer"};
    }
    if (v < 1) return Error{"--dim " + spec + ": dimensions must be at least 1"};
    if (dims->count(name)) return Error{"--dim " + name + " is given twice"};
    (*dims)[name] = v;
  }
  return {};
}

Result<EstimateOptions> ParseEstimateFlags(const EstimateFlags& f) {
  EstimateOptions o;
  if (f.target == "torch-cuda") {
    o.target = {"torch-cuda", Device::kCuda, 512};
    o.optimizer_impl = OptimizerImpl::kForeach;
  } else if (f.target == "torch-cpu") {
    o.target = {"torch-cpu", Device::kCpu, 1};
    o.optimizer_impl = OptimizerImpl::kForLoop;
  } else {
    return Error{"unknown --target '" + f.target + "' (torch-cuda, torch-cpu)"};
  }
  if (f.loss == "cross-entropy") {
    o.loss = LossKind::kCrossEntropy;
  } else if (f.loss == "mse") {
    o.loss = LossKind::kMse;
  } else if (f.loss == "none") {
    o.loss = LossKind::kNone;
  } else {
    return Error{"unknown --loss '" + f.loss + "' (none, cross-entropy, mse)"};
  }
  if (auto p = ParsePrecision(f.precision); !p) return p.error();
  o.precision = f.precision;
  auto attention = ParseAttentionImpl(f.attention);
  if (!attention) return attention.error();
  o.attention = *attention;
  if (f.cpu_threads < 1 || f.cpu_threads > 4096) {
    return Error{"--cpu-threads must be between 1 and 4096"};
  }
  o.target.cpu_threads = f.cpu_threads;
  auto version = ParseTorchVersion(f.torch_version);
  if (!version) return version.error();
  o.target.torch_version = *version;
  auto loss_precision = ParseLossPrecision(f.loss_precision);
  if (!loss_precision) return loss_precision.error();
  o.loss_precision = *loss_precision;
  if (auto s = ValidateMicroBatches(f.accum); !s) return Error{s.message()};
  o.micro_batches = f.accum;
  o.allow_constant_weights = f.allow_constant_weights;
  o.batch_dim = f.dim_name;
  if (!f.checkpoint.empty()) {
    auto scopes = ParseScopes(f.checkpoint);
    if (!scopes) return scopes.error();
    o.checkpoint = *scopes;
  }
  auto kind = ParseOptimizerKind(f.optimizer);
  if (!kind) return kind.error();
  o.optimizer = f.optimizer;
  if (!f.optimizer_impl.empty()) {
    auto impl = ParseOptimizerImpl(f.optimizer_impl);
    if (!impl) return impl.error();
    o.optimizer_impl = *impl;
  }
  ShardingOptions sharding;
  sharding.world_size = f.data_parallel;
  sharding.zero_stage = f.zero;
  if (auto s = ValidateSharding(sharding); !s) return Error{s.message()};
  o.data_parallel = f.data_parallel;
  o.zero_stage = f.zero;
  if (f.zero_rank != -1) {
    if (f.zero != 1 || o.target.device != Device::kCpu) {
      return Error{
          "--zero-rank picks a rank of --zero 1 on --target torch-cpu "
          "(ZeroRedundancyOptimizer's partition by whole parameters); elsewhere every "
          "rank holds the same share"};
    }
    if (f.zero_rank < 0 || f.zero_rank >= f.data_parallel) {
      return Error{"--zero-rank must be between 0 and " + std::to_string(f.data_parallel - 1) +
                   " for --data-parallel " + std::to_string(f.data_parallel) + ", got " +
                   std::to_string(f.zero_rank)};
    }
  }
  o.zero_rank = f.zero_rank;
  TensorParallelOptions tensor_parallel{f.tensor_parallel, f.sequence_parallel, f.context_parallel};
  if (auto s = ValidateTensorParallel(tensor_parallel); !s) return Error{s.message()};
  o.tensor_parallel = f.tensor_parallel;
  o.sequence_parallel = f.sequence_parallel;
  o.context_parallel = f.context_parallel;
  PipelineOptions pipeline;
  pipeline.stages = f.pipeline_parallel;
  auto schedule = ParsePipelineSchedule(f.schedule);
  if (!schedule) return schedule.error();
  pipeline.schedule = *schedule;
  pipeline.virtual_stages = f.virtual_stages;
  for (size_t pos = 0; !f.stages.empty();) {
    size_t comma = f.stages.find(',', pos);
    pipeline.boundaries.push_back(
        f.stages.substr(pos, comma == std::string::npos ? comma : comma - pos));
    if (pipeline.boundaries.back().empty()) return Error{"--stages has an empty block name"};
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (auto s = ValidatePipeline(pipeline, f.accum); !s) return Error{s.message()};
  if (f.pipeline_stage < -1 || f.pipeline_stage >= pipeline.stages) {
    return Error{"--pp-stage must be from 0 to " + std::to_string(pipeline.stages - 1) +
                 " (or -1: every stage)"};
  }
  o.pipeline = pipeline;
  o.pipeline_stage = f.pipeline_stage;
  auto fsdp = ParseFsdpMode(f.fsdp);
  if (!fsdp) return fsdp.error();
  if (auto s = ApplyFsdpMode(*fsdp, f.gpus_per_node, &sharding); !s) return Error{s.message()};
  o.fsdp = *fsdp;
  o.gpus_per_node = f.gpus_per_node;
  auto offload = ParseOffload(f.offload);
  if (!offload) return offload.error();
  if (*offload != OffloadKind::kNone && o.target.device != Device::kCuda) {
    return Error{"--offload moves optimizer state from the GPU to the host: --target torch-cuda"};
  }
  o.offload = *offload;
  if (auto s = ValidateOffload(*offload, sharding.zero_stage); !s) {
    return Error{s.message()};
  }
  auto trainable = ParseParameterPatterns("--trainable", f.trainable);
  if (!trainable) return trainable.error();
  auto freeze = ParseParameterPatterns("--freeze", f.freeze);
  if (!freeze) return freeze.error();
  o.trainable = {*trainable, *freeze};
  return o;
}

Result<TrainableCount> CountTrainable(const Graph& graph, const TrainableOptions& options) {
  auto frozen = FrozenParameters(graph, options);
  if (!frozen) return frozen.error();
  TrainableCount c;
  for (size_t i = 0; i < graph.tensors.size(); ++i) {
    const Tensor& t = graph.tensors[i];
    if (t.role != TensorRole::kParameter) continue;
    ++c.parameters;
    c.parameter_bytes += t.bytes;
    c.parameter_elements += t.element_count();
    if (frozen->count(static_cast<TensorId>(i))) continue;
    ++c.trainable;
    c.trainable_bytes += t.bytes;
    c.trainable_elements += t.element_count();
  }
  return c;
}

namespace {

// Where PyTorch's backward() raises "element 0 of tensors does not require grad and does not
// have a grad_fn": no parameters at all, or a first output (the loss's input) no parameter
// feeds.
Status CheckTrainable(const TrainingPlan& plan) {
  if (plan.parameters.empty()) {
    return Error{
        "the model has no trainable parameters (no floating-point initializers): nothing to "
        "train"};
  }
  if (std::none_of(plan.parameters.begin(), plan.parameters.end(),
                   [&](PlanTensorId p) { return plan.tensors[p].requires_grad; })) {
    return Error{"--freeze / --trainable leave none of the model's " +
                 std::to_string(plan.parameters.size()) +
                 " parameters trainable: nothing to train"};
  }
  if (plan.outputs.empty()) return {};
  const PlanTensor& out = plan.tensors[plan.outputs[0]];
  if (out.metadata || !IsFloating(out.dtype) || out.requires_grad) return {};
  return Error{
      "the loss does not depend on any trainable parameter: nothing to train (no "
      "parameter feeds the first graph output '" +
      out.name +
      "'; PyTorch's backward() would raise \"element 0 of tensors does not require "
      "grad\")"};
}

}  // namespace

namespace {

// Every pipeline stage; the estimate returned is the worst stage's, with all stages' peaks.
Result<Estimate> RunPipelineStages(const Graph& graph, const EstimateOptions& options) {
  std::optional<Estimate> worst;
  std::vector<uint64_t> peaks;
  for (int i = 0; i < options.pipeline.stages; ++i) {
    EstimateOptions o = options;
    o.pipeline_stage = i;
    auto e = RunEstimate(graph, o);
    if (!e) return e.error();
    peaks.push_back(e->peak.peak_bytes);
    if (!worst || e->peak.peak_bytes > worst->peak.peak_bytes) worst = std::move(*e);
  }
  worst->stage_peaks = std::move(peaks);
  return std::move(*worst);
}

}  // namespace

namespace {

Result<Estimate> RunEstimateOfRank(const Graph& graph, const EstimateOptions& options);

// "one rank of 16 GPUs: data parallel 4 (ZeRO 1), tensor parallel 2 + sequence parallel, ..."
// for reports, so that a per-rank figure is never read as the whole job's; empty on one GPU.
std::string PerRankLine(const EstimateOptions& o) {
  std::vector<std::string> parts;
  if (o.data_parallel > 1) {
    std::string how = fmt::format("ZeRO {}", o.zero_stage);
    if (o.fsdp == FsdpMode::kFullShard) how = "FSDP full";
    if (o.fsdp == FsdpMode::kShardGradOp) how = "FSDP shard-grad-op";
    if (o.fsdp == FsdpMode::kHybridShard)
      how = fmt::format("FSDP hybrid, {} per node", o.gpus_per_node);
    parts.push_back(fmt::format("data parallel {} ({})", o.data_parallel, how));
  }
  if (o.tensor_parallel > 1) {
    parts.push_back(fmt::format("tensor parallel {}{}", o.tensor_parallel,
                                o.sequence_parallel ? " + sequence parallel" : ""));
  }
  if (o.context_parallel > 1)
    parts.push_back(fmt::format("context parallel {}", o.context_parallel));
  if (o.pipeline.stages > 1) parts.push_back(fmt::format("pipeline {} stages", o.pipeline.stages));
  if (parts.empty()) return "";
  const uint64_t gpus = static_cast<uint64_t>(o.data_parallel) * o.tensor_parallel *
                        o.context_parallel * o.pipeline.stages;
  return fmt::format("one rank of {} GPUs: {}", gpus, fmt::join(parts, ", "));
}

}  // namespace

ParallelGroups GroupsOf(const EstimateOptions& o) {
  ParallelGroups g;
  g.data_parallel = o.data_parallel;
  g.tensor_parallel = o.tensor_parallel;
  g.pipeline_parallel = o.pipeline.stages;
  g.context_parallel = o.context_parallel;
  g.fsdp_hybrid = o.fsdp == FsdpMode::kHybridShard;
  g.gpus_per_node = o.gpus_per_node;
  return g;
}

NcclTerm NcclTermOf(const EstimateOptions& o, const DeviceProfile& device) {
  NcclTerm t = NcclBuffers(device, GroupsOf(o));
  if (o.target.device != Device::kCuda) {
    t.communicators.clear();
    t.bytes = 0;
  }
  return t;
}

Result<Estimate> RunEstimate(const Graph& graph, const EstimateOptions& options) {
  auto e = RunEstimateOfRank(graph, options);
  if (e) {
    e->per_rank = PerRankLine(options);
    e->groups = GroupsOf(options);
    e->nccl = NcclTermOf(options, DefaultNcclProfile());
  }
  return e;
}

namespace {

Result<Estimate> RunEstimateOfRank(const Graph& graph, const EstimateOptions& options) {
  if (options.pipeline.stages > 1 && options.pipeline_stage < 0) {
    return RunPipelineStages(graph, options);
  }
  PlanOptions po;
  po.target = options.target;
  po.loss = options.loss;
  auto frozen = FrozenParameters(graph, options.trainable);
  if (!frozen) return frozen.error();
  po.frozen = *frozen;
  // Attention kernels are chosen for the type attention will compute in (after precision).
  po.attention.impl = options.attention;
  if (Precision p = *ParsePrecision(options.precision); p != Precision::kFp32) {
    bool bf16 = p == Precision::kBf16 || p == Precision::kAmpBf16;
    po.attention.dtype = bf16 ? DType::kBFloat16 : DType::kFloat16;
  }
  auto plan = BuildPlan(graph, po);
  if (!plan) return plan.error();
  if (auto s = CheckTrainable(*plan); !s) return Error{s.message()};
  // Pipeline parallelism: only this stage's ops (policies/pipeline.h), and only the
  // checkpoint scopes that have ops in it.
  std::vector<std::string> checkpoint = options.checkpoint;
  PipelineStageReport stage_report;
  if (options.pipeline.stages > 1) {
    auto assignment = AssignStages(*plan, options.pipeline);
    if (!assignment) return assignment.error();
    const int stage = options.pipeline_stage;
    if (auto s = KeepStage(*plan, *assignment, stage, options.pipeline.stages); !s) {
      return Error{s.message()};
    }
    std::erase_if(checkpoint, [&](const std::string& spec) {
      for (size_t pos = 0;;) {
        size_t plus = spec.find('+', pos);
        std::string part = spec.substr(pos, plus == std::string::npos ? plus : plus - pos);
        if (std::none_of(plan->ops.begin(), plan->ops.end(),
                         [&](const PlanOp& op) { return InScope(op, part); })) {
          return true;
        }
        if (plus == std::string::npos) return false;
        pos = plus + 1;
      }
    });
    stage_report.stage = stage;
    stage_report.stages = options.pipeline.stages;
    stage_report.schedule = options.pipeline.schedule;
    stage_report.in_flight =
        InFlightMicroBatches(options.pipeline.schedule, options.pipeline.stages,
                             options.pipeline.virtual_stages, options.micro_batches, stage);
    const int chunks = static_cast<int>(assignment->chunk_first_block.size());
    for (int c = stage; c < chunks; c += options.pipeline.stages) {
      const int first = assignment->chunk_first_block[c];
      const int end = c + 1 < chunks ? assignment->chunk_first_block[c + 1]
                                     : static_cast<int>(assignment->blocks.size());
      stage_report.first_blocks.push_back(assignment->blocks[first]);
      stage_report.block_count += end - first;
    }
  }
  // Tensor / sequence / context parallelism (policies/tensor_parallel.h): one rank's share of
  // the plan, before the other policies size anything from it.
  {
    TensorParallelOptions tp{options.tensor_parallel, options.sequence_parallel,
                             options.context_parallel};
    if (auto s = TensorParallelPolicy(tp).Apply(*plan); !s) return Error{s.message()};
  }
  const std::vector<PlanTensorId> parameters = plan->parameters;  // before sharding
  AddModuleArgumentHolds(*plan);
  OptimizerOptions oo;
  oo.kind = *ParseOptimizerKind(options.optimizer);
  oo.impl = options.optimizer_impl;
  oo.device = options.target.device;
  PrecisionOptions precision{*ParsePrecision(options.precision), options.target.device,
                             options.target.torch_version, options.loss_precision};
  AccumulationOptions accumulation{options.micro_batches, options.batch_dim};
  // Precision first: the optimizer's state takes the parameters' final type.
  std::vector<std::unique_ptr<Policy>> policies;
  policies.push_back(std::make_unique<PrecisionPolicy>(precision));
  RecomputeOptions recompute{checkpoint, options.target.device == Device::kCpu ? 5056u : 0u};
  policies.push_back(std::make_unique<RecomputePolicy>(recompute));
  policies.push_back(std::make_unique<OptimizerPolicy>(oo));
  policies.push_back(std::make_unique<OffloadPolicy>(options.offload));
  policies.push_back(std::make_unique<AccumulationPolicy>(accumulation));
  ShardingOptions sharding;
  sharding.world_size = options.data_parallel;
  sharding.zero_stage = options.zero_stage;
  if (auto s = ApplyFsdpMode(options.fsdp, options.gpus_per_node, &sharding); !s) {
    return Error{s.message()};
  }
  // torch-cpu's ZeRO 1 is PyTorch's ZeroRedundancyOptimizer over DDP (policies/sharding.h).
  sharding.zero_redundancy_optimizer = options.target.device == Device::kCpu;
  sharding.zero_rank = options.zero_rank;
  sharding.offload_gradients = options.offload != OffloadKind::kNone;
  sharding.offload_params = options.offload == OffloadKind::kParams;
  policies.push_back(std::make_unique<ShardingPolicy>(sharding));
  Status status;
  for (const auto& p : policies) {
    if (status) status = p->Apply(*plan);
  }
  if (!status) return Error{status.message()};
  EstimateFlops(*plan);
  auto trace = Simulate(*plan);
  if (!trace) return trace.error();
  Estimate e{
      std::move(plan.value()), std::move(trace.value()), {}, {}, 0, 0, 0, 0, {}, {}, {}, {}, {}};
  for (PlanTensorId p : parameters) {
    const PlanTensor& t = e.plan.tensors[p];
    uint64_t elements = 1;
    for (int64_t d : t.shape) elements *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
    const uint64_t bytes = TensorBytes(t);
    ++e.parameters.parameters;
    e.parameters.parameter_bytes += bytes;
    e.parameters.parameter_elements += elements;
    if (!t.requires_grad) continue;
    ++e.parameters.trainable;
    e.parameters.trainable_bytes += bytes;
    e.parameters.trainable_elements += elements;
  }
  e.peak = FindPeak(e.trace, e.plan.target.round_bytes);
  if (options.pipeline.stages > 1) {
    // The other micro-batches in flight add their activations over the forward and backward.
    const uint64_t round = e.plan.target.round_bytes;
    stage_report.micro_batch_bytes = ForwardLeftBytes(e.trace, round);
    const InFlight f = stage_report.in_flight;
    // Others in flight beside the first micro-batch (f - 1) and beside a later one
    // (min(f, m - 1) - 1), as num / den micro-batches (policies/pipeline.h).
    const uint64_t m = static_cast<uint64_t>(std::max(options.micro_batches, 1));
    const uint64_t later_num = std::min(f.num, (m > 1 ? m - 1 : 0) * f.den);
    const unsigned __int128 a = stage_report.micro_batch_bytes;
    const unsigned __int128 first = a * (f.num > f.den ? f.num - f.den : 0) / f.den;
    const unsigned __int128 later = a * (later_num > f.den ? later_num - f.den : 0) / f.den;
    if (first > (uint64_t{1} << 62)) return Error{"the pipeline's in-flight bytes overflow"};
    stage_report.extra_bytes = static_cast<uint64_t>(first);
    stage_report.extra_later_bytes = static_cast<uint64_t>(later);
    stage_report.simulated_peak = e.peak.peak_bytes;
    e.peak = PipelinePeak(e.trace, round, stage_report.extra_bytes, stage_report.extra_later_bytes);
  }
  e.pipeline = std::move(stage_report);
  e.step_flops = StepFlops(e.plan);
  for (const CheckpointRegion& r : e.plan.regions) {
    // An op-level region runs again only what its backward needs (simulator/plan.h).
    const std::vector<bool> run = RegionSchedule(e.plan, r).run;
    for (size_t k = 0; k < r.ops.size(); ++k)
      if (run[k]) e.recompute_flops += e.plan.ops[r.ops[k]].forward_flops;
  }
  // One micro-batch's FLOPs, times K: every micro-batch runs (only their memory repeats).
  const uint64_t k = static_cast<uint64_t>(std::max(e.plan.micro_batches, 1));
  if (!CheckedMul(e.step_flops, k, &e.step_flops_all) ||
      !CheckedMul(e.recompute_flops, k, &e.recompute_flops_all)) {
    return Error{"the step's FLOP count overflows 64 bits; use smaller dims"};
  }
  return e;
}

}  // namespace

Result<Graph> ImportForEstimate(const std::string& path, const std::map<std::string, int64_t>& dims,
                                const EstimateOptions& options) {
  auto micro = MicroBatchDims(dims, {options.micro_batches, options.batch_dim});
  if (!micro) return micro.error();
  ImportOptions io;
  io.dims = *micro;
  io.allow_constant_weights = options.allow_constant_weights;
  return ImportModel(path, io);
}

Result<Estimate> EstimateModel(const std::string& path, const std::map<std::string, int64_t>& dims,
                               const EstimateOptions& options) {
  auto graph = ImportForEstimate(path, dims, options);
  if (!graph) return graph.error();
  auto e = RunEstimate(*graph, options);
  if (!e) return Error{path + ": " + e.error().message};
  return e;
}

std::string SummaryLine(const std::map<std::string, int64_t>& dims, const EstimateFlags& f) {
  std::vector<std::string> d;
  for (const auto& [k, v] : dims) d.push_back(fmt::format("{}={}", k, v));
  std::string s = fmt::format("{}, {}{}, {}, {}", fmt::join(d, " "), f.optimizer,
                              f.optimizer_impl.empty() ? "" : " (" + f.optimizer_impl + ")",
                              f.precision, f.target);
  if (f.torch_version != "2") s += fmt::format(", torch {}", f.torch_version);
  if (f.loss_precision != "fp32" && (f.precision == "bf16" || f.precision == "fp16")) {
    s += fmt::format(", loss in {}", f.precision);
  }
  if (f.attention != "auto") s += fmt::format(", attention {}", f.attention);
  if (f.accum > 1) s += fmt::format(", accum {}", f.accum);
  if (f.data_parallel > 1) s += fmt::format(", {} ranks, zero {}", f.data_parallel, f.zero);
  if (f.tensor_parallel > 1) {
    s += fmt::format(", tp {}{}", f.tensor_parallel, f.sequence_parallel ? " + sp" : "");
  }
  if (f.context_parallel > 1) s += fmt::format(", cp {}", f.context_parallel);
  if (!f.fsdp.empty() && f.fsdp != "none") s += fmt::format(", fsdp {}", f.fsdp);
  if (!f.offload.empty() && f.offload != "none") s += fmt::format(", offload {}", f.offload);
  if (f.pipeline_parallel > 1) {
    s += fmt::format(", pp {} ({}{})", f.pipeline_parallel, f.schedule,
                     f.virtual_stages > 1 ? fmt::format(" x{}", f.virtual_stages) : "");
  }
  if (!f.trainable.empty()) s += fmt::format(", trainable {}", fmt::join(f.trainable, ","));
  if (!f.freeze.empty()) s += fmt::format(", frozen {}", fmt::join(f.freeze, ","));
  return s;
}

nlohmann::json EstimateJson(const Estimate& e, size_t largest) {
  nlohmann::json j;
  j["peak_bytes"] = e.peak.peak_bytes;
  if (!e.per_rank.empty()) j["per_rank"] = e.per_rank;
  // NCCL's buffers: beside peak_bytes, outside the caching allocator (not in "breakdown").
  if (e.nccl.bytes) {
    nlohmann::json comms = nlohmann::json::array();
    for (const NcclCommunicator& c : e.nccl.communicators)
      comms.push_back({{"group", c.name}, {"ranks", c.ranks}});
    j["nccl_buffer_bytes"] = e.nccl.bytes;
    j["outside_allocator"] = {{"nccl_buffers",
                               {{"bytes", e.nccl.bytes},
                                {"communicators", comms},
                                {"channels", e.nccl.channels},
                                {"peers", e.nccl.peers},
                                {"buffsize_bytes", e.nccl.buffsize},
                                {"estimate", true},
                                {"sources", e.nccl.sources}}}};
  }
  j["target"] = e.plan.target.name;
  j["torch_version"] = std::string(TorchVersionName(e.plan.target.torch_version));
  if (e.plan.loss != LossKind::kNone && !e.plan.outputs.empty()) {
    // The type the loss computes in (the logits' unless upcast).
    j["loss_dtype"] = std::string(DTypeName(e.plan.loss_dtype == DType::kUndefined
                                                ? e.plan.tensors[e.plan.outputs[0]].dtype
                                                : e.plan.loss_dtype));
  }
  j["optimizer"] = e.plan.optimizer.name;
  j["optimizer_impl"] = std::string(OptimizerImplName(e.plan.optimizer.impl));
  j["micro_batches"] = e.plan.micro_batches;
  j["parameters"] = {{"tensors", e.parameters.parameters},
                     {"elements", e.parameters.parameter_elements},
                     {"bytes", e.parameters.parameter_bytes}};
  j["trainable_parameters"] = {{"tensors", e.parameters.trainable},
                               {"elements", e.parameters.trainable_elements},
                               {"bytes", e.parameters.trainable_bytes}};
  // Micro-batches 2..K are identical in memory: the simulation runs 1 and one of them.
  j["micro_batches_simulated"] = SimulatedMicroBatches(e.plan);
  j["step_flops"] = e.step_flops_all;  // all micro-batches
  j["recompute_flops"] = e.recompute_flops_all;
  j["overhead_pct"] = e.overhead_pct();
  nlohmann::json ck = nlohmann::json::array();
  for (const CheckpointRegion& r : e.plan.regions) ck.push_back(r.scope);
  j["checkpoint"] = ck;
  if (e.peak.peak_step >= 0) {
    const Step& s = e.trace.steps[e.peak.peak_step];
    j["peak_op"] = {{"phase", std::string(PhaseName(s.phase))},
                    {"name", s.name},
                    {"type", s.op_type},
                    {"scope", s.scope}};
  }
  nlohmann::json breakdown = nlohmann::json::object();
  for (size_t c = 0; c < kCategoryCount; ++c) {
    breakdown[std::string(CategoryName(static_cast<Category>(c)))] = e.peak.by_category[c];
  }
  j["breakdown"] = breakdown;
  nlohmann::json live = nlohmann::json::array();
  for (size_t i = 0; i < e.peak.live_at_peak.size() && i < largest; ++i) {
    const Buffer& b = e.trace.buffers[e.peak.live_at_peak[i]];
    live.push_back({{"name", b.name},
                    {"bytes", b.bytes},
                    {"category", std::string(CategoryName(b.category))},
                    {"dtype", std::string(DTypeName(b.dtype))},
                    {"shape", b.shape},
                    {"scope", b.scope},
                    {"why", b.why}});
  }
  j["largest_at_peak"] = live;
  j["live_tensors_at_peak"] = e.peak.live_at_peak.size();
  // What the HTML page's module table shows, for scripts: every module's bytes at the peak by
  // category, rounded as the peak is (so they add up to peak_bytes), largest first.
  struct Module {
    std::array<uint64_t, kCategoryCount> bytes{};
    uint64_t total = 0, tensors = 0;
  };
  std::map<std::string, Module> modules;
  const uint64_t round = std::max<uint64_t>(e.plan.target.round_bytes, 1);
  for (BufferId id : e.peak.live_at_peak) {
    const Buffer& b = e.trace.buffers[id];
    Module& m = modules[BufferModule(b)];
    uint64_t bytes = RoundUp(b.bytes, round);
    m.bytes[static_cast<size_t>(b.category)] += bytes;
    m.total += bytes;
    ++m.tensors;
  }
  std::vector<std::pair<std::string, Module>> rows(modules.begin(), modules.end());
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.second.total > b.second.total; });
  nlohmann::json by_module = nlohmann::json::array();
  for (const auto& [name, m] : rows) {
    nlohmann::json cats = nlohmann::json::object();
    for (size_t c = 0; c < kCategoryCount; ++c) {
      if (m.bytes[c]) cats[std::string(CategoryName(static_cast<Category>(c)))] = m.bytes[c];
    }
    by_module.push_back(
        {{"module", name}, {"bytes", m.total}, {"tensors", m.tensors}, {"by_category", cats}});
  }
  j["by_module_at_peak"] = by_module;
  if (e.pipeline.stages > 1) {
    const PipelineStageReport& p = e.pipeline;
    j["pipeline"] = {{"stages", p.stages},
                     {"schedule", std::string(PipelineScheduleName(p.schedule))},
                     {"stage", p.stage},
                     {"stage_first_blocks", p.first_blocks},
                     {"stage_blocks", p.block_count},
                     {"in_flight_micro_batches",
                      static_cast<double>(p.in_flight.num) / static_cast<double>(p.in_flight.den)},
                     {"micro_batch_activation_bytes", p.micro_batch_bytes},
                     {"in_flight_extra_bytes", p.extra_bytes},
                     {"one_micro_batch_peak_bytes", p.simulated_peak},
                     {"stage_peak_bytes", e.stage_peaks}};
  }
  return j;
}

}  // namespace vramsim

#include "cli/estimate.h"

#include <fmt/format.h>

#include <string>

#include "policies/accumulation.h"
#include "policies/optimizer.h"

namespace vramsim {

void AddTrainableFlags(CLI::App* app, std::vector<std::string>* freeze,
                       std::vector<std::string>* trainable) {
  app->add_option("--trainable", *trainable,
                  "Train only the parameters matching these patterns (repeatable, PATTERN[,PATTERN]"
                  "...): a module path (layer4, h.0.attn) or a glob over the name ('*.lora_*')")
      ->allow_extra_args(false);
  app->add_option("--freeze", *freeze,
                  "Freeze the parameters matching these patterns (repeatable, comma lists): no "
                  "gradient, no optimizer state; applied after --trainable")
      ->allow_extra_args(false);
}

void AddAllowConstantWeightsFlag(CLI::App* app, bool* allow) {
  app->add_flag("--allow-constant-weights", *allow,
                "Answer even for an export whose weights became constants; they are then "
                "counted as constants, not trainable");
}

void AddTrainingFlags(CLI::App* app, EstimateFlags* f) {
  app->add_option("--optimizer", f->optimizer, "sgd, momentum, adam, adamw")->capture_default_str();
  app->add_option("--optimizer-impl", f->optimizer_impl,
                  "for-loop, foreach, fused (default: the target's)");
  app->add_option("--target", f->target, "torch-cuda, torch-cpu")->capture_default_str();
  app->add_option("--loss", f->loss, "none, cross-entropy, mse")->capture_default_str();
  app->add_option("--precision", f->precision, "fp32, bf16, fp16, amp-bf16, amp-fp16")
      ->capture_default_str();
  app->add_option("--torch-version", f->torch_version,
                  "PyTorch release whose autocast op lists apply: 2 (current 2.x) or 1.13")
      ->capture_default_str();
  app->add_option("--loss-precision", f->loss_precision,
                  "Under bf16/fp16: fp32 upcasts the logits before the cross-entropy "
                  "(logits.float(), as Hugging Face models do); model keeps the model's type")
      ->capture_default_str();
  app->add_option("--attention", f->attention,
                  "auto, eager, math, flash, mem-efficient: the SDPA kernel recognized attention "
                  "runs with (auto: hand-written attention eager, the exporter's SDPA what "
                  "PyTorch picks)")
      ->capture_default_str();
  app->add_option("--accum", f->accum,
                  "Gradient accumulation: micro-batches per step (1 to " +
                      std::to_string(kMaxMicroBatches) + ")")
      ->capture_default_str();
  app->add_option("--cpu-threads", f->cpu_threads,
                  "torch-cpu: intra-op threads (torch.get_num_threads()); oneDNN's scratch is "
                  "per thread")
      ->capture_default_str();
  app->add_option("--dim-name", f->dim_name, "The symbolic dim that is the batch")
      ->capture_default_str();
  app->add_option("--checkpoint", f->checkpoint,
                  "Checkpoint these module scopes (SCOPE[,SCOPE]...: layer1, h.0, h.0-31 for "
                  "h.0..h.31, /layer1/); op-level: SCOPE:save=A|B keeps what ops A, B (node "
                  "names, op types, @matmul) make and recomputes only what the backward needs; "
                  "sac-matmul or sac-matmul:SCOPES saves @matmul");
  app->add_option("--data-parallel", f->data_parallel,
                  "Data-parallel ranks: report one rank's memory (DDP, or ZeRO with --zero)")
      ->capture_default_str();
  app->add_option("--zero", f->zero,
                  "ZeRO stage: 1 shards optimizer state, 2 + gradients, 3 + parameters")
      ->capture_default_str();
  app->add_option("--zero-rank", f->zero_rank,
                  "torch-cpu --zero 1 (ZeroRedundancyOptimizer owns whole parameters per rank): "
                  "the rank to report (default: the one owning the most)");
  app->add_option("--tp", f->tensor_parallel,
                  "Tensor-parallel ranks (Megatron): report one rank's memory, the attention and "
                  "MLP Linears of each block split column- then row-parallel, the embedding and "
                  "LM head over the vocabulary")
      ->capture_default_str();
  app->add_flag("--sequence-parallel", f->sequence_parallel,
                "With --tp: norms, dropout and residuals hold 1/N of the sequence (all-gather "
                "before, reduce-scatter after the split Linears)");
  app->add_option("--cp", f->context_parallel,
                  "Context-parallel ranks: each holds 1/N of the sequence; attention exchanges K "
                  "and V around the ring")
      ->capture_default_str();
  AddAllowConstantWeightsFlag(app, &f->allow_constant_weights);
  AddTrainableFlags(app, &f->freeze, &f->trainable);
  app->add_option("--pp", f->pipeline_parallel,
                  "Pipeline stages: the repeated blocks split over N ranks; micro-batches are "
                  "--accum; every stage's peak is reported, the answer being the worst")
      ->capture_default_str();
  app->add_option("--schedule", f->schedule, "Pipeline schedule: 1f1b, interleaved, gpipe")
      ->capture_default_str();
  app->add_option("--virtual-stages", f->virtual_stages,
                  "Interleaved schedule: model chunks per pipeline rank")
      ->capture_default_str();
  app->add_option("--stages", f->stages,
                  "Pipeline split: the blocks where stages 1.. begin (h.8,h.16,h.24); default: "
                  "balanced by memory");
  app->add_option("--fsdp", f->fsdp,
                  "PyTorch FSDP over the --data-parallel ranks: full (FULL_SHARD), shard-grad-op "
                  "(parameters stay gathered from forward to backward), hybrid (shard within a "
                  "node, replicate across); wrapping units: the repeated blocks");
  app->add_option("--gpus-per-node", f->gpus_per_node, "GPUs per node (--fsdp hybrid)")
      ->capture_default_str();
  app->add_option("--offload", f->offload,
                  "optimizer: optimizer state in host memory, the step on the CPU, gradient "
                  "partitions copied out as reduced (DeepSpeed ZeRO-Offload); params: also the "
                  "parameters (FSDP CPUOffload, needs --fsdp or --zero 3), each unit staged in");
  app->add_option("--pp-stage", f->pipeline_stage,
                  "Report this pipeline stage (0-based) only; -1: every stage, the worst shown")
      ->capture_default_str();
}

std::string EstimateText(const Estimate& e, size_t largest) {
  std::string out;
  out += fmt::format("peak: {} ({} bytes), target {}, optimizer {} ({})\n",
                     FormatBytes(e.peak.peak_bytes), e.peak.peak_bytes, e.plan.target.name,
                     e.plan.optimizer.name, OptimizerImplName(e.plan.optimizer.impl));
  if (!e.per_rank.empty()) out += e.per_rank + "\n";
  if (e.nccl.bytes) {
    out += fmt::format("beside the peak, outside PyTorch's allocator: NCCL buffers {} = {}\n",
                       FormatBytes(e.nccl.bytes), NcclTermText(e.nccl));
  }
  if (e.parameters.trainable < e.parameters.parameters) {
    out += fmt::format(
        "trainable: {} of {} parameters ({} of {} tensors, {} of {}); the rest are frozen\n",
        e.parameters.trainable_elements, e.parameters.parameter_elements, e.parameters.trainable,
        e.parameters.parameters, FormatBytes(e.parameters.trainable_bytes),
        FormatBytes(e.parameters.parameter_bytes));
  }
  if (e.plan.micro_batches > 2) {
    out += fmt::format(
        "accumulation: {} micro-batches; simulated micro-batch 1 and micro-batch 2, which stands "
        "for micro-batches 2..{} (identical in memory)\n",
        e.plan.micro_batches, e.plan.micro_batches);
  } else if (e.plan.micro_batches == 2) {
    out += "accumulation: 2 micro-batches, both simulated\n";
  }
  if (!e.plan.regions.empty()) {
    out += fmt::format("checkpointed {} regions; recompute {:.2f} GFLOP, {:.1f}% of the step\n",
                       e.plan.regions.size(), static_cast<double>(e.recompute_flops_all) / 1e9,
                       e.overhead_pct());
  }
  if (e.pipeline.stages > 1) {
    const PipelineStageReport& p = e.pipeline;
    out += fmt::format(
        "pipeline: {} stages ({}); this is stage {} ({} blocks from {}), holding {:.4g} "
        "micro-batches in flight ({} of activations each; one in flight peaks at {})\n",
        p.stages, PipelineScheduleName(p.schedule), p.stage, p.block_count,
        fmt::join(p.first_blocks, ", "),
        static_cast<double>(p.in_flight.num) / static_cast<double>(p.in_flight.den),
        FormatBytes(p.micro_batch_bytes), FormatBytes(p.simulated_peak));
    if (!e.stage_peaks.empty()) {
      std::vector<std::string> peaks;
      for (uint64_t b : e.stage_peaks) peaks.push_back(FormatBytes(b));
      out += fmt::format("stage peaks: {} (the worst is shown)\n", fmt::join(peaks, ", "));
    }
  }
  if (e.peak.peak_step >= 0) {
    const Step& s = e.trace.steps[e.peak.peak_step];
    out += "at: " + DescribeStep(s) + "\n";
  }
  out += "made of:\n";
  for (size_t c = 0; c < kCategoryCount; ++c) {
    uint64_t b = e.peak.by_category[c];
    if (!b) continue;
    out += fmt::format("  {:<18} {:>12}  {:5.1f}%\n", CategoryName(static_cast<Category>(c)),
                       FormatBytes(b),
                       100.0 * static_cast<double>(b) / static_cast<double>(e.peak.peak_bytes));
  }
  out += fmt::format("largest of the {} tensors alive then:\n", e.peak.live_at_peak.size());
  for (size_t i = 0; i < e.peak.live_at_peak.size() && i < largest; ++i) {
    const Buffer& b = e.trace.buffers[e.peak.live_at_peak[i]];
    out += fmt::format("  {:>11}  {:<17} {:<8} [{}]  {}  ({})\n", FormatBytes(b.bytes),
                       CategoryName(b.category), DTypeName(b.dtype), fmt::join(b.shape, ","),
                       b.name, b.why);
  }
  return out;
}

}  // namespace vramsim

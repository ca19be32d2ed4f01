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
                  "h.0..h.31, /layer1/)");
  app->add_option("--data-parallel", f->data_parallel,
                  "Data-parallel ranks: report one rank's memory (DDP, or ZeRO with --zero)")
      ->capture_default_str();
  app->add_option("--zero", f->zero,
                  "ZeRO stage: 1 shards optimizer state, 2 + gradients, 3 + parameters")
      ->capture_default_str();
  AddAllowConstantWeightsFlag(app, &f->allow_constant_weights);
  AddTrainableFlags(app, &f->freeze, &f->trainable);
}

std::string EstimateText(const Estimate& e, size_t largest) {
  std::string out;
  out += fmt::format("peak: {} ({} bytes), target {}, optimizer {} ({})\n",
                     FormatBytes(e.peak.peak_bytes), e.peak.peak_bytes, e.plan.target.name,
                     e.plan.optimizer.name, OptimizerImplName(e.plan.optimizer.impl));
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

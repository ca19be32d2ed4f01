#include "cli/layout_cmd.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/estimate.h"
#include "engine/layout.h"

namespace vramsim {
namespace {

struct LayoutCli {
  std::string model;
  std::vector<std::string> dims;
  LayoutOptions options;
  bool json = false;
  size_t top = 5;
};

[[noreturn]] void Exit(int code) {
  std::cout.flush();
  std::fflush(stdout);
  std::fflush(stderr);
  std::exit(code);
}

void Run(const LayoutCli& c) {
  LayoutOptions o = c.options;
  if (auto s = ParseDimSpecs(c.dims, &o.dims); !s) {
    std::fprintf(stderr, "vramsim: error: %s\n", s.message().c_str());
    Exit(2);
  }
  auto r = SearchLayouts(c.model, o);
  if (!r) {
    std::fprintf(stderr, "vramsim: error: %s\n", r.error().message.c_str());
    Exit(2);
  }
  if (c.json) {
    std::cout << LayoutJson(*r).dump(1) << "\n";
  } else {
    std::cout << LayoutText(*r, c.top);
  }
  bool fits = !r->candidates.empty() && r->candidates.front().fits;
  Exit(fits ? 0 : 1);
}

}  // namespace

void AddLayoutCommand(CLI::App* app) {
  auto c = std::make_shared<LayoutCli>();
  CLI::App* sub = app->add_subcommand(
      "layout",
      "Lay a training job out over many GPUs: tp x pp (1F1B or interleaved) x dp, sequence "
      "parallelism, ZeRO stage or FSDP mode, optimizer offload, micro-batch, accumulation and "
      "checkpointing that fit one rank, ranked by a cost model");
  sub->add_option("model", c->model, "ONNX file")->required();
  sub->add_option("--dim", c->dims,
                  "Bind a symbolic dimension other than the batch, NAME=VALUE (repeatable)");
  sub->add_option("--gpus", c->options.gpus, "GPUs in all")->required();
  sub->add_option("--gpus-per-node", c->options.gpus_per_node,
                  "GPUs per node (tensor parallelism stays within one; FSDP hybrid shards within "
                  "one)")
      ->capture_default_str();
  sub->add_option("--gpu", c->options.gpu, "Device profile: " + DeviceNames())
      ->capture_default_str();
  sub->add_option("--global-batch", c->options.global_batch,
                  "Samples per optimizer step over all GPUs (dp x micro-batch x accumulation)")
      ->required();
  sub->add_option("--max-tp", c->options.max_tp, "Largest tensor-parallel degree to try")
      ->capture_default_str();
  sub->add_option("--threads", c->options.threads, "Worker threads (0: one per core)")
      ->capture_default_str();
  sub->add_option("--top", c->top, "How many layouts to print")->capture_default_str();
  sub->add_flag("--json", c->json, "Print one JSON object with every layout considered");
  EstimateFlags& f = c->options.base;
  sub->add_option("--optimizer", f.optimizer, "sgd, momentum, adam, adamw")->capture_default_str();
  sub->add_option("--optimizer-impl", f.optimizer_impl, "for-loop, foreach, fused");
  sub->add_option("--precision", f.precision, "fp32, bf16, fp16, amp-bf16, amp-fp16")
      ->capture_default_str();
  sub->add_option("--loss", f.loss, "none, cross-entropy, mse")->capture_default_str();
  sub->add_option("--attention", f.attention, "auto, eager, math, flash, mem-efficient")
      ->capture_default_str();
  sub->add_option("--dim-name", f.dim_name, "The symbolic dim that is the batch")
      ->capture_default_str();
  AddAllowConstantWeightsFlag(sub, &f.allow_constant_weights);
  AddTrainableFlags(sub, &f.freeze, &f.trainable);
  sub->callback([c] { Run(*c); });
}

}  // namespace vramsim

#include "cli/fit_cmd.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace vramsim {

namespace {

constexpr int kExitFits = 0, kExitDoesNotFit = 1, kExitBadInput = 2;

struct FitCli {
  std::string model;
  std::vector<std::string> dims;
  EstimateFlags flags;
  std::string gpu;
  int64_t gpu_memory = 0;  // 0: the profile's
  bool expandable = false;
  bool json = false;
};

void AddCommonOptions(CLI::App* sub, FitCli* c) {
  sub->add_option("model", c->model, "ONNX file")->required();
  sub->add_option("--dim", c->dims, "Bind a symbolic dimension, NAME=VALUE (repeatable)");
  sub->add_option("--gpu", c->gpu, "Device profile: " + DeviceNames())->required();
  // Hidden: replaces the profile's capacity (tests use small devices).
  sub->add_option("--gpu-memory", c->gpu_memory, "")->group("");
  sub->add_flag("--expandable-segments", c->expandable,
                "Model PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True");
  sub->add_flag("--json", c->json, "Print one JSON object");
  AddTrainingFlags(sub, &c->flags);  // with --allow-constant-weights
}

[[noreturn]] void Exit(int code) {
  std::cout.flush();
  std::fflush(stdout);
  std::fflush(stderr);
  std::exit(code);
}

[[noreturn]] void BadInput(const std::string& message) {
  std::fprintf(stderr, "vramsim: error: %s\n", message.c_str());
  Exit(kExitBadInput);
}

struct Prepared {
  std::map<std::string, int64_t> dims;
  EstimateOptions options;
  FitOptions fit;
};

Prepared Prepare(const FitCli& c) {
  Prepared p;
  if (auto s = ParseDimSpecs(c.dims, &p.dims); !s) BadInput(s.message());
  auto o = ParseEstimateFlags(c.flags);
  if (!o) BadInput(o.error().message);
  p.options = *o;
  if (p.options.target.device != Device::kCuda) {
    BadInput("fit and max-batch model a CUDA device: use --target torch-cuda");
  }
  if (c.gpu_memory < 0 || c.gpu_memory > (int64_t{1} << 50)) {
    BadInput("--gpu-memory must be a byte count from 1 to 2^50, got " +
             std::to_string(c.gpu_memory));
  }
  auto f = MakeFitOptions(c.gpu, static_cast<uint64_t>(c.gpu_memory), c.expandable);
  if (!f) BadInput(f.error().message);
  p.fit = *f;
  return p;
}

}  // namespace

void AddFitCommands(CLI::App* app) {
  auto fit_cli = std::make_shared<FitCli>();
  auto* fit = app->add_subcommand(
      "fit", "Does one training step fit on a GPU? If not, the smallest change that makes it");
  AddCommonOptions(fit, fit_cli.get());
  fit->callback([fit_cli]() {
    Prepared p = Prepare(*fit_cli);
    auto r = Fit(fit_cli->model, p.dims, p.options, p.fit);
    if (!r) BadInput(r.error().message);
    if (fit_cli->json) {
      std::cout << FitReportJson(*r, p.fit).dump(1) << "\n";
    } else {
      std::cout << FitReportText(*r, p.fit);
    }
    Exit(r->base.fits ? kExitFits : kExitDoesNotFit);
  });

  auto mb_cli = std::make_shared<FitCli>();
  auto* mb = app->add_subcommand(
      "max-batch",
      "The largest batch whose training step fits on a GPU (--dim-name picks the dim)");
  AddCommonOptions(mb, mb_cli.get());
  mb->callback([mb_cli]() {
    Prepared p = Prepare(*mb_cli);
    if (p.dims.count(p.options.batch_dim)) {
      BadInput("max-batch chooses " + p.options.batch_dim + " itself; do not bind it with --dim");
    }
    auto r = MaxBatch(mb_cli->model, p.dims, p.options, p.fit);
    if (!r) BadInput(r.error().message);
    if (mb_cli->json) {
      std::cout << MaxBatchJson(*r, p.fit).dump(1) << "\n";
    } else {
      std::cout << MaxBatchText(*r, p.fit);
    }
    Exit(r->max_batch > 0 ? kExitFits : kExitDoesNotFit);
  });
}

}  // namespace vramsim

// vramsim: how much memory will training this model take?
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "cli/estimate.h"
#include "cli/fit_cmd.h"
#include "cli/layout_cmd.h"
#include "engine/inspect.h"
#include "engine/snapshot.h"
#include "importer/importer.h"
#include "reports/report.h"

namespace {

constexpr int kExitBadInput = 2;

int Fail(const std::string& message) {
  std::fprintf(stderr, "vramsim: error: %s\n", message.c_str());
  return kExitBadInput;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vramsim: training-step memory from an ONNX export"};
  app.require_subcommand(1);

  std::string model_path;
  std::vector<std::string> dim_specs;
  bool json = false;
  auto* inspect = app.add_subcommand("inspect", "Import a model and show its typed, shaped graph");
  inspect->add_option("model", model_path, "ONNX file")->required();
  inspect->add_option("--dim", dim_specs, "Bind a symbolic dimension, NAME=VALUE (repeatable)");
  inspect->add_flag("--json", json, "Print one JSON object");
  bool inspect_allow_constant_weights = false;
  vramsim::AddAllowConstantWeightsFlag(inspect, &inspect_allow_constant_weights);
  std::vector<std::string> inspect_freeze, inspect_trainable;
  vramsim::AddTrainableFlags(inspect, &inspect_freeze, &inspect_trainable);

  vramsim::EstimateFlags flags;
  auto* estimate =
      app.add_subcommand("estimate", "Peak memory of one training step, and what makes it up");
  estimate->add_option("model", model_path, "ONNX file")->required();
  estimate->add_option("--dim", dim_specs, "Bind a symbolic dimension, NAME=VALUE (repeatable)");
  vramsim::AddTrainingFlags(estimate, &flags);
  std::string trace_path, html_path;
  estimate->add_option("--trace", trace_path, "Write the step as Chrome trace / Perfetto JSON");
  estimate->add_option("--html", html_path, "Write a self-contained HTML report");
  estimate->add_flag("--json", json, "Print one JSON object");
  size_t top = 12;
  estimate->add_option("--top", top, "How many of the largest tensors alive at the peak to list")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{1} << 20));
  std::string snapshot_path;
  vramsim::SnapshotOptions snapshot;
  estimate->add_option("--snapshot", snapshot_path,
                       "Write the step as a PyTorch memory snapshot (torch.cuda.memory."
                       "_dump_snapshot() pickle, for pytorch.org/memory_viz)");
  estimate->add_option("--snapshot-gpu", snapshot.gpu,
                       "Device profile whose cuBLAS workspaces the snapshot includes");

  // vramsim compare: a real run's snapshot against the prediction for the same step.
  std::string compare_snapshot;
  vramsim::EstimateFlags compare_flags;
  vramsim::CompareOptions compare_options;
  auto* compare = app.add_subcommand(
      "compare", "Hold a PyTorch memory snapshot of a real step against the prediction");
  compare->add_option("snapshot", compare_snapshot, "torch.cuda.memory._dump_snapshot() pickle")
      ->required();
  compare->add_option("model", model_path, "ONNX file")->required();
  compare->add_option("--dim", dim_specs, "Bind a symbolic dimension, NAME=VALUE (repeatable)");
  vramsim::AddTrainingFlags(compare, &compare_flags);
  compare->add_option("--gpu", compare_options.snapshot.gpu,
                      "Device profile whose cuBLAS workspaces the prediction includes");
  compare
      ->add_option(
          "--threshold", compare_options.divergence_fraction,
          "The timelines part where they differ by this share of the larger peak, in (0, 1)")
      ->capture_default_str();
  compare->add_flag(
      "--no-warmup", [&](int64_t) { compare_options.snapshot.warmup_step = false; },
      "The snapshot recorded the first step (default: the second, after a warm-up)");
  compare->add_flag("--json", json, "Print one JSON object");

  // Subcommands defined in their own files register here and run below when chosen.
  void RegisterPlanStrategiesCommands(CLI::App&);  // cli/plan_cmd.cc: plan, strategies;
  RegisterPlanStrategiesCommands(app);             // each runs from its callback when chosen
  vramsim::AddFitCommands(&app);    // fit, max-batch: each runs from its callback (cli/fit_cmd.cc)
  vramsim::AddLayoutCommand(&app);  // layout: runs from its callback (cli/layout_cmd.cc)

  // Bare `vramsim`: the usage on stdout, then the one-line error (exit 2: nothing ran).
  if (argc <= 1) {
    std::fputs(app.help().c_str(), stdout);
    std::fflush(stdout);
    return Fail("a subcommand is required (usage above; vramsim SUBCOMMAND --help for its flags)");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Fail(e.what());
  }

  vramsim::ImportOptions options;
  if (auto s = vramsim::ParseDimSpecs(dim_specs, &options.dims); !s) return Fail(s.message());
  if (inspect->parsed()) {
    options.allow_constant_weights = inspect_allow_constant_weights;
    auto trainable = vramsim::ParseParameterPatterns("--trainable", inspect_trainable);
    if (!trainable) return Fail(trainable.error().message);
    auto freeze = vramsim::ParseParameterPatterns("--freeze", inspect_freeze);
    if (!freeze) return Fail(freeze.error().message);
    auto graph = vramsim::ImportModel(model_path, options);
    if (!graph) return Fail(graph.error().message);
    auto count = vramsim::CountTrainable(*graph, {*trainable, *freeze});
    if (!count) return Fail(count.error().message);
    if (json) {
      nlohmann::json j = vramsim::InspectJson(*graph);
      j["trainable_parameters"] = vramsim::TrainableJson(*count);
      std::cout << j.dump(1) << "\n";
    } else {
      std::cout << vramsim::InspectText(*graph) << vramsim::TrainableText(*count);
    }
    return 0;
  }
  if (estimate->parsed()) {
    auto eo = vramsim::ParseEstimateFlags(flags);
    if (!eo) return Fail(eo.error().message);
    auto e = vramsim::EstimateModel(model_path, options.dims, *eo);
    if (!e) return Fail(e.error().message);
    vramsim::ReportInput report{model_path, vramsim::SummaryLine(options.dims, flags), &e->plan,
                                &e->trace, &e->peak};
    if (!trace_path.empty()) {
      if (auto s = vramsim::WriteChromeTrace(report, trace_path); !s) return Fail(s.message());
      std::cerr << "vramsim: trace written to " << trace_path << "\n";
    }
    if (!html_path.empty()) {
      if (auto s = vramsim::WriteHtmlReport(report, html_path); !s) return Fail(s.message());
      std::cerr << "vramsim: report written to " << html_path << "\n";
    }
    if (!snapshot_path.empty()) {
      auto s = vramsim::WriteEstimateSnapshot(*e, snapshot_path, snapshot);
      if (!s) return Fail(s.error().message);
      std::cerr << "vramsim: memory snapshot written to " << snapshot_path << "\n";
    }
    if (json) {
      std::cout << vramsim::EstimateJson(*e, top).dump(1) << "\n";
    } else {
      std::cout << vramsim::EstimateText(*e, top);
    }
    return 0;
  }
  if (compare->parsed()) {
    auto eo = vramsim::ParseEstimateFlags(compare_flags);
    if (!eo) return Fail(eo.error().message);
    auto c = vramsim::CompareSnapshotWithModel(compare_snapshot, model_path, options.dims, *eo,
                                               compare_options);
    if (!c) return Fail(c.error().message);
    if (json) {
      std::cout << vramsim::SnapshotComparisonJson(*c).dump(1) << "\n";
    } else {
      std::cout << vramsim::RenderSnapshotComparison(*c);
    }
    return 0;
  }
  return 0;
}

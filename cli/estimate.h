// `vramsim estimate`: import -> training-step plan -> policies -> simulate -> peak report.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "importer/graph.h"
#include "importer/status.h"
#include "simulator/peak.h"
#include "simulator/plan.h"
#include "simulator/trace.h"

namespace vramsim {

// Flags as given on the command line; Parse validates them.
struct EstimateFlags {
  std::string optimizer = "adam";
  std::string optimizer_impl;  // empty: the target's default
  std::string target = "torch-cuda";
  std::string loss = "cross-entropy";
};

struct EstimateOptions {
  TargetSpec target;
  LossKind loss = LossKind::kCrossEntropy;
  std::string optimizer = "adam";
  OptimizerImpl optimizer_impl = OptimizerImpl::kForeach;
};

Result<EstimateOptions> ParseEstimateFlags(const EstimateFlags& flags);

struct Estimate {
  TrainingPlan plan;
  Trace trace;
  PeakReport peak;
};

Result<Estimate> RunEstimate(const Graph& graph, const EstimateOptions& options);

nlohmann::json EstimateJson(const Estimate& e, size_t largest = 20);
std::string EstimateText(const Estimate& e, size_t largest = 12);

std::string FormatBytes(uint64_t bytes);

}  // namespace vramsim

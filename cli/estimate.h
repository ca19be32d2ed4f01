// `vramsim estimate` and the training flags every subcommand shares: CLI11 registration of
// the engine's options (engine/estimate.h validates them) and the text report.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "engine/estimate.h"

namespace vramsim {

// The training flags shared by estimate, fit, max-batch and plan (and strategies), with
// --allow-constant-weights.
void AddTrainingFlags(CLI::App* app, EstimateFlags* flags);

// --allow-constant-weights, for every subcommand that imports an ONNX model.
void AddAllowConstantWeightsFlag(CLI::App* app, bool* allow);

// --freeze and --trainable (repeatable, comma lists), for every subcommand that estimates and
// for inspect.
void AddTrainableFlags(CLI::App* app, std::vector<std::string>* freeze,
                       std::vector<std::string>* trainable);

// The estimate as text: the peak, its phase and op, the breakdown, the largest live tensors.
std::string EstimateText(const Estimate& e, size_t largest = 12);

}  // namespace vramsim

// `vramsim plan` and `vramsim strategies`: their flags (CLI11), which call engine/plan.h and
// print its reports.
//
//   vramsim plan MODEL.onnx --budget 6GiB [training flags] [--strategy NAME] [--json]
//   vramsim plan GRAPH.json --budget-fraction 0.8 [--time-limit S] [--json]
//   vramsim strategies MODEL.onnx --budgets 4GiB,6GiB [training flags] [--html FILE] [--json]
#pragma once

#include <CLI/CLI.hpp>

#include "engine/plan.h"

namespace vramsim {

// Adds both subcommands to the app. The chosen one runs from its callback once the command line
// is parsed; a non-zero exit status (1: nothing fits, 2: bad input) ends the process there.
void RegisterPlanCommands(CLI::App& app);

}  // namespace vramsim

// The same, at global scope, for cli/main.cc to declare at its registration line.
void RegisterPlanStrategiesCommands(CLI::App& app);

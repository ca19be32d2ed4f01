// `vramsim fit` and `vramsim max-batch`: their flags (CLI11), which call engine/fit.h and print
// its reports.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/estimate.h"
#include "engine/fit.h"

namespace vramsim {

// Registers `fit` and `max-batch` on the app; each runs when chosen (from its CLI11
// callback) and ends the process with its exit code: 0 fits, 1 does not, 2 bad input.
void AddFitCommands(CLI::App* app);

}  // namespace vramsim

// `vramsim plan` and `vramsim strategies`: choosing what to checkpoint under a memory budget.
//
//   vramsim plan MODEL.onnx --budget 6GiB [training flags] [--strategy NAME] [--json]
//   vramsim plan GRAPH.json --budget-fraction 0.8 [--time-limit S] [--json]
//   vramsim strategies MODEL.onnx --budgets 4GiB,6GiB [training flags] [--html FILE] [--json]
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "importer/status.h"

namespace vramsim {

// Adds both subcommands to the app. The chosen one runs from its callback once the command line
// is parsed; a non-zero exit status (1: nothing fits, 2: bad input) ends the process there.
void RegisterPlanCommands(CLI::App& app);

// "6GiB", "512MiB", "1.5GB", "1000000": bytes (KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB
// of 1000; units are case-insensitive).
Result<uint64_t> ParseByteSize(const std::string& text, const std::string& flag);

}  // namespace vramsim

// The same, at global scope, for cli/main.cc to declare at its registration line.
void RegisterPlanStrategiesCommands(CLI::App& app);

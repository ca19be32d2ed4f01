// `vramsim layout`: its flags (CLI11), which call engine/layout.h and print its report.
#pragma once

#include <CLI/CLI.hpp>

namespace vramsim {

// Registers `layout` on the app; it runs from its CLI11 callback when chosen and ends the
// process: 0 something fits, 1 nothing does, 2 bad input.
void AddLayoutCommand(CLI::App* app);

}  // namespace vramsim

// `vramsim inspect`: what the importer made of a model, for people and as JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "importer/graph.h"

namespace vramsim {

nlohmann::json InspectJson(const Graph& graph);
std::string InspectText(const Graph& graph, size_t largest = 10);

}  // namespace vramsim

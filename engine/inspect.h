// What the importer made of a model, for people and as JSON (`vramsim inspect`,
// vramsim.inspect).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "importer/graph.h"

namespace vramsim {

nlohmann::json InspectJson(const Graph& graph);
std::string InspectText(const Graph& graph, size_t largest = 10);

struct TrainableCount;  // engine/estimate.h
// How many parameters train under --freeze / --trainable: a JSON object and a text line.
nlohmann::json TrainableJson(const TrainableCount& count);
std::string TrainableText(const TrainableCount& count);

}  // namespace vramsim

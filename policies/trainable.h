// Which parameters train: --trainable and --freeze, as fine-tuning code sets requires_grad.
// Every floating initializer the importer marks as a parameter trains unless the flags say
// otherwise. If any --trainable pattern is given, only the parameters matching one of them
// train; then every parameter matching a --freeze pattern is frozen. A frozen parameter is
// still allocated (a parameter like any other) but gets no gradient and no optimizer state,
// and no op keeps an activation for it (simulator/plan_builder.cc: requires_grad flows from
// the trainable parameters only).
//
// A pattern is either
//  - a glob over the initializer name, when it has one of * ? [ (fnmatch(3) without flags:
//    "*" also crosses dots): "*.lora_*", "*bias", "h.[01].attn.*";
//  - a module path: it matches a parameter whose name is the path or starts with "path."
//    ("layer1" matches "layer1.0.conv1.weight", not "layer10.weight"); a parameter whose name
//    is no module path (an exporter name such as "onnx::MatMul_123") matches when every op
//    that reads it lies in the module (the node names' scopes, as --checkpoint reads them).
//    A path starting with "/" is a node-name prefix as exported ("/layer1/"), matched against
//    the reading ops only.
// A pattern that matches no parameter is an error naming it.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "importer/graph.h"
#include "importer/status.h"

namespace vramsim {

struct TrainableOptions {
  std::vector<std::string> trainable;  // empty: every parameter starts trainable
  std::vector<std::string> freeze;     // removed from the trainable ones
  bool empty() const { return trainable.empty() && freeze.empty(); }
};

// The values of a repeatable flag, each possibly a comma list ("layer4,fc"), as patterns.
// `flag` names the flag in errors ("--freeze"). An empty pattern is an error.
Result<std::vector<std::string>> ParseParameterPatterns(const std::string& flag,
                                                        const std::vector<std::string>& values);

// Whether the pattern is a glob (has * ? or [).
bool IsGlobPattern(const std::string& pattern);

// Whether `pattern` matches parameter `id` of the graph (the rules above).
bool MatchesParameter(const Graph& graph, TensorId id, const std::string& pattern);

// The parameters the options freeze (TensorIds of the graph), or an error naming a pattern
// that matches no parameter. Empty options freeze nothing.
Result<std::set<TensorId>> FrozenParameters(const Graph& graph, const TrainableOptions& options);

}  // namespace vramsim

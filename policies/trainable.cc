#include "policies/trainable.h"

#include <fnmatch.h>

#include <algorithm>

namespace vramsim {

Result<std::vector<std::string>> ParseParameterPatterns(const std::string& flag,
                                                        const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& value : values) {
    size_t pos = 0;
    while (pos <= value.size()) {
      size_t comma = value.find(',', pos);
      if (comma == std::string::npos) comma = value.size();
      std::string p = value.substr(pos, comma - pos);
      if (p.empty()) return Error{flag + " has an empty pattern in '" + value + "'"};
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
      pos = comma + 1;
    }
  }
  return out;
}

bool IsGlobPattern(const std::string& pattern) {
  return pattern.find_first_of("*?[") != std::string::npos;
}

namespace {

bool InModule(const Op& op, const std::string& path) {
  if (path[0] == '/') return op.name.rfind(path, 0) == 0;
  return op.module == path ||
         (op.module.size() > path.size() && op.module.compare(0, path.size(), path) == 0 &&
          op.module[path.size()] == '.');
}

// A name that reads as a module path: dotted identifiers, as named_parameters() writes them.
bool IsModulePathName(const std::string& name) {
  if (name.empty() || name.front() == '.' || name.back() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return c == '.' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
  });
}

}  // namespace

bool MatchesParameter(const Graph& graph, TensorId id, const std::string& pattern) {
  const Tensor& t = graph.tensors[id];
  if (pattern.empty()) return false;
  if (IsGlobPattern(pattern)) return fnmatch(pattern.c_str(), t.name.c_str(), 0) == 0;
  if (pattern[0] != '/') {
    if (t.name == pattern ||
        (t.name.size() > pattern.size() && t.name.compare(0, pattern.size(), pattern) == 0 &&
         t.name[pattern.size()] == '.')) {
      return true;
    }
    if (IsModulePathName(t.name)) return false;  // its name says which module it belongs to
  }
  if (t.consumers.empty()) return false;
  return std::all_of(t.consumers.begin(), t.consumers.end(),
                     [&](OpId o) { return InModule(graph.ops[o], pattern); });
}

Result<std::set<TensorId>> FrozenParameters(const Graph& graph, const TrainableOptions& options) {
  std::set<TensorId> frozen;
  if (options.empty()) return frozen;
  std::vector<TensorId> params;
  for (size_t i = 0; i < graph.tensors.size(); ++i) {
    if (graph.tensors[i].role == TensorRole::kParameter) params.push_back(static_cast<TensorId>(i));
  }
  auto matching = [&](const std::string& flag,
                      const std::string& pattern) -> Result<std::vector<TensorId>> {
    std::vector<TensorId> hit;
    for (TensorId p : params) {
      if (MatchesParameter(graph, p, pattern)) hit.push_back(p);
    }
    if (!hit.empty()) return hit;
    std::string example =
        params.empty() ? "" : ", such as '" + graph.tensors[params.front()].name + "'";
    return Error{flag + " '" + pattern + "' matches no parameter (of " +
                 std::to_string(params.size()) + " parameters" + example +
                 "; a pattern is a module path like 'layer1' or a glob like '*.bias')"};
  };
  std::set<TensorId> trainable;
  if (options.trainable.empty()) trainable.insert(params.begin(), params.end());
  for (const std::string& p : options.trainable) {
    auto hit = matching("--trainable", p);
    if (!hit) return hit.error();
    trainable.insert(hit->begin(), hit->end());
  }
  for (const std::string& p : options.freeze) {
    auto hit = matching("--freeze", p);
    if (!hit) return hit.error();
    for (TensorId t : *hit) trainable.erase(t);
  }
  for (TensorId p : params) {
    if (!trainable.count(p)) frozen.insert(p);
  }
  return frozen;
}

}  // namespace vramsim

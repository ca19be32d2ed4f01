#include "importer/graph.h"

namespace vramsim {

std::string_view RoleName(TensorRole role) {
  switch (role) {
    case TensorRole::kDataInput:
      return "input";
    case TensorRole::kParameter:
      return "parameter";
    case TensorRole::kBuffer:
      return "buffer";
    case TensorRole::kConstant:
      return "constant";
    case TensorRole::kActivation:
      return "activation";
    case TensorRole::kGraphOutput:
      return "output";
  }
  return "activation";
}

uint64_t Tensor::element_count() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);  // checked when the shape was set
  return n;
}

void BuildDataflow(Graph& graph) {
  auto df = std::make_shared<Dataflow>(graph.ops.size() + graph.tensors.size());
  for (size_t i = 0; i < graph.ops.size(); ++i) {
    (*df)[i] = Vertex{true, static_cast<int32_t>(i)};
  }
  for (size_t t = 0; t < graph.tensors.size(); ++t) {
    (*df)[graph.tensor_vertex(static_cast<TensorId>(t))] = Vertex{false, static_cast<int32_t>(t)};
  }
  for (size_t i = 0; i < graph.ops.size(); ++i) {
    for (TensorId in : graph.ops[i].inputs) {
      if (in != kNoTensor) boost::add_edge(graph.tensor_vertex(in), i, *df);
    }
    for (TensorId out : graph.ops[i].outputs) {
      if (out != kNoTensor) boost::add_edge(i, graph.tensor_vertex(out), *df);
    }
  }
  graph.dataflow = std::move(df);
}

void SplitScope(const std::string& node_name, std::string* scope, std::string* module) {
  scope->clear();
  module->clear();
  if (node_name.empty() || node_name[0] != '/') return;
  size_t last = node_name.rfind('/');
  *scope = node_name.substr(0, last + 1);
  // Exporters write each level either as an attribute name ("conv1") or as a name qualified by
  // its parent ("layer1.0" under "layer1"); the latter replaces the last path element.
  std::vector<std::string> path;
  size_t pos = 1;
  while (pos <= last) {
    size_t next = node_name.find('/', pos);
    std::string part = node_name.substr(pos, next - pos);
    pos = next + 1;
    if (part.empty()) continue;
    if (!path.empty() && part.size() > path.back().size() &&
        part.compare(0, path.back().size() + 1, path.back() + ".") == 0) {
      path.back() = part;
    } else {
      path.push_back(part);
    }
  }
  for (size_t i = 0; i < path.size(); ++i) {
    if (i) *module += '.';
    *module += path[i];
  }
}

}  // namespace vramsim

// The typed, shaped dataflow graph the importer produces and everything downstream reads.
// Ops and tensors are both vertices of one Boost.Graph (bipartite: op -> tensor -> op), so
// graph algorithms (orders, reachability) run on it directly; the vectors hold the payloads,
// indexed by stable ids that follow the file's order.
#pragma once

#include <boost/graph/adjacency_list.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "importer/dtype.h"

namespace vramsim {

using TensorId = int32_t;
using OpId = int32_t;
inline constexpr TensorId kNoTensor = -1;

enum class TensorRole {
  kDataInput,    // fed per step (images, token ids)
  kParameter,    // trainable weight
  kBuffer,       // persistent non-trainable state (BatchNorm running stats, masks)
  kConstant,     // exporter-made constant (Constant nodes, onnx:: initializers)
  kActivation,   // produced by an op during the step
  kGraphOutput,  // an activation that is also a graph output
};
std::string_view RoleName(TensorRole role);

// Values of a small tensor that the shape engine evaluated (shape arithmetic); integers and
// bool in `ints`, floating types in `floats`.
struct ConstValue {
  DType dtype = DType::kUndefined;
  std::vector<int64_t> shape;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;  // kString

  size_t size() const {
    return dtype == DType::kString ? strings.size()
           : IsFloating(dtype)     ? floats.size()
                                   : ints.size();
  }
  double at(size_t i) const { return IsFloating(dtype) ? floats[i] : static_cast<double>(ints[i]); }
};

// Element type and shape, as of one tensor in a sequence.
struct TypeShape {
  DType dtype = DType::kUndefined;
  std::vector<int64_t> shape;
  bool operator==(const TypeShape&) const = default;
};

struct Tensor {
  std::string name;
  DType dtype = DType::kUndefined;
  std::vector<int64_t> shape;
  uint64_t bytes = 0;  // element count * element size, overflow-checked
  TensorRole role = TensorRole::kActivation;
  OpId producer = -1;
  std::vector<OpId> consumers;      // in schedule order; an op reading twice appears twice
  std::optional<ConstValue> value;  // known only for small evaluated tensors
  // ONNX sequences (SplitToSequence, SequenceConstruct): the elements' types and shapes;
  // dtype is then the element type, shape is empty and bytes the elements' sum.
  bool is_sequence = false;
  std::vector<TypeShape> elements;

  uint64_t element_count() const;
};

struct Attribute {
  enum class Kind { kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor, kOther };
  Kind kind = Kind::kOther;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::optional<ConstValue> tensor;  // kTensor, when small enough to keep its values
};

struct Op {
  std::string name;
  std::string type;
  std::string domain;
  std::string scope;             // node-name prefix as exported, e.g. "/layer1/layer1.0/conv1/"
  std::string module;            // the PyTorch module path it implies, e.g. "layer1.0.conv1"
  std::vector<TensorId> inputs;  // kNoTensor for an omitted optional input
  std::vector<TensorId> outputs;
  std::map<std::string, Attribute> attrs;

  const Attribute* attr(const std::string& key) const {
    auto it = attrs.find(key);
    return it == attrs.end() ? nullptr : &it->second;
  }
  int64_t attr_int(const std::string& key, int64_t fallback) const {
    const Attribute* a = attr(key);
    return a && a->kind == Attribute::Kind::kInt ? a->i : fallback;
  }
};

struct Vertex {
  bool is_op = false;
  int32_t index = 0;  // OpId or TensorId
};
using Dataflow = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, Vertex>;

struct Graph {
  std::string name;
  int64_t opset = 0;  // of the default domain
  std::vector<Tensor> tensors;
  std::vector<Op> ops;            // in a valid topological order (the file's order when it is one)
  std::vector<TensorId> inputs;   // data inputs, in file order
  std::vector<TensorId> outputs;  // graph outputs, in file order
  std::map<std::string, int64_t> dims;  // symbolic dims as bound
  // Vertex v < ops.size() is op v; else tensor v - ops.size(). Shared and immutable once
  // built: Boost 1.74's adjacency_list has no move constructor (its swap copies), so a Graph
  // holding one by value copied every vertex and edge list whenever it was returned.
  std::shared_ptr<const Dataflow> dataflow;

  size_t op_vertex(OpId op) const { return static_cast<size_t>(op); }
  size_t tensor_vertex(TensorId t) const { return ops.size() + static_cast<size_t>(t); }
};

// Fills graph.dataflow from ops' inputs and outputs.
void BuildDataflow(Graph& graph);

// "/layer1/layer1.0/conv1/Conv" -> scope "/layer1/layer1.0/conv1/", module "layer1.0.conv1".
void SplitScope(const std::string& node_name, std::string* scope, std::string* module);

}  // namespace vramsim

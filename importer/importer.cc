#include "importer/importer.h"

#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <queue>
#include <set>
#include <unordered_map>

#include "importer/const_eval.h"
#include "importer/shape_rules.h"
#include "importer/validate.h"

namespace vramsim {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

std::string NodeLabel(const onnx::NodeProto& node, int index) {
  std::string label = "node ";
  if (node.name().empty()) {
    label += '#';
    label += std::to_string(index);
  } else {
    label += '\'';
    label += node.name();
    label += '\'';
  }
  label += " (";
  label += node.op_type();
  label += ')';
  return label;
}

bool IsDefaultDomain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

// Bytes of a tensor, with every step checked: dims from a hostile file can be anything.
std::optional<uint64_t> TensorBytes(DType dtype, const std::vector<int64_t>& shape) {
  auto esize = ElementBytes(dtype);
  if (!esize) return std::nullopt;
  uint64_t n = *esize;
  for (int64_t d : shape) {
    if (d < 0 || !CheckedMul(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

Attribute ConvertAttribute(const onnx::AttributeProto& a) {
  Attribute out;
  using A = onnx::AttributeProto;
  switch (a.type()) {
    case A::INT:
      out.kind = Attribute::Kind::kInt;
      out.i = a.i();
      break;
    case A::FLOAT:
      out.kind = Attribute::Kind::kFloat;
      out.f = a.f();
      break;
    case A::STRING:
      out.kind = Attribute::Kind::kString;
      out.s = a.s();
      break;
    case A::INTS:
      out.kind = Attribute::Kind::kInts;
      out.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case A::FLOATS:
      out.kind = Attribute::Kind::kFloats;
      out.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case A::STRINGS:
      out.kind = Attribute::Kind::kStrings;
      out.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case A::TENSOR:
      out.kind = Attribute::Kind::kTensor;
      out.tensor = ValueFromTensorProto(a.t());
      break;
    default:
      break;
  }
  return out;
}

class Importer {
 public:
  Importer(onnx::ModelProto model, const ImportOptions& options)
      : model_(std::move(model)), options_(options) {}

  Result<Graph> Run() {
    if (auto s = ReadOpsets(); !s) return Error{s.message()};
    onnx::GraphProto& g = *model_.mutable_graph();
    graph_.name = g.name();
    graph_.opset = opset_;
    // Reserved up front: growing these one tensor at a time was a tenth of a large import.
    size_t tensors =
        static_cast<size_t>(g.initializer_size()) + static_cast<size_t>(g.input_size());
    for (const auto& n : g.node()) tensors += static_cast<size_t>(n.output_size());
    graph_.tensors.reserve(tensors);
    graph_.ops.reserve(static_cast<size_t>(g.node_size()));
    types_.reserve(tensors);
    protos_.reserve(tensors);
    runtime_.reserve(tensors);
    by_name_.reserve(tensors);
    if (auto s = AddInitializers(g); !s) return Error{s.message()};
    if (auto s = AddInputs(g); !s) return Error{s.message()};
    if (auto s = AddNodes(g); !s) return Error{s.message()};
    if (auto s = Order(); !s) return Error{s.message()};
    for (OpId op : order_) {
      if (auto s = Infer(op); !s) return Error{s.message()};
    }
    if (auto s = Finish(g); !s) return Error{s.message()};
    return std::move(graph_);
  }

 private:
  Status ReadOpsets() {
    bool found = false;
    for (const auto& imp : model_.opset_import()) {
      opsets_[imp.domain()] = imp.version();
      if (IsDefaultDomain(imp.domain())) {
        opset_ = imp.version();
        found = true;
      }
    }
    bool uses_default = false;
    for (const auto& n : model_.graph().node()) {
      uses_default = uses_default || IsDefaultDomain(n.domain());
    }
    if (!found && uses_default) {
      return Error{"the model imports no opset of the default ONNX domain"};
    }
    if (found && (opset_ < kMinOpset || opset_ > kMaxOpset)) {
      return Error{"opset " + std::to_string(opset_) + " of the default domain is not supported (" +
                   std::to_string(kMinOpset) + " to " + std::to_string(kMaxOpset) + ")"};
    }
    if (model_.functions_size() > 0) {
      std::set<std::string> fns;
      for (const auto& f : model_.functions()) fns.insert(f.domain() + ":" + f.name());
      for (const auto& n : model_.graph().node()) {
        if (fns.count(n.domain() + ":" + n.op_type())) {
          return Error{"node '" + n.name() + "' calls model-local function '" + n.op_type() +
                       "'; export without export_modules_as_functions"};
        }
      }
    }
    return {};
  }

  TensorId NewTensor(const std::string& name) {
    TensorId id = static_cast<TensorId>(graph_.tensors.size());
    graph_.tensors.emplace_back();
    graph_.tensors.back().name = name;
    types_.emplace_back();
    protos_.emplace_back();
    runtime_.push_back(0);
    by_name_[name] = id;
    return id;
  }

  // Sets dtype and shape, checking the byte count fits 64 bits.
  Status SetType(TensorId id, DType dtype, std::vector<int64_t> shape, const std::string& where) {
    Tensor& t = graph_.tensors[id];
    if (shape.size() > kMaxRank) {
      return Error{where + ": tensor '" + t.name + "' has " + std::to_string(shape.size()) +
                   " dimensions, over the limit of " + std::to_string(kMaxRank)};
    }
    for (int64_t d : shape) {
      if (d < 0) {
        return Error{where + ": tensor '" + t.name + "' has negative dimension " +
                     ShapeString(shape)};
      }
      if (d > kMaxDimension) {
        return Error{where + ": tensor '" + t.name + "' of shape " + ShapeString(shape) +
                     " has a dimension over 2^48; is a dimension bound absurdly?"};
      }
    }
    if (dtype == DType::kString) {
      t.bytes = 0;  // strings have no fixed size; they never appear in training graphs
    } else {
      auto bytes = TensorBytes(dtype, shape);
      if (!bytes) {
        return Error{where + ": tensor '" + t.name + "' of shape " + ShapeString(shape) + " " +
                     (ElementBytes(dtype) ? "overflows a 64-bit byte count"
                                          : "has unsupported element type")};
      }
      if (*bytes > kMaxTensorBytes) {
        return Error{where + ": tensor '" + t.name + "' of shape " + ShapeString(shape) +
                     " would take " + std::to_string(*bytes) +
                     " bytes, over the limit of 2^48 (256 TiB); is a dimension bound absurdly?"};
      }
      t.bytes = *bytes;
    }
    t.dtype = dtype;
    t.shape = std::move(shape);
    auto* tt = types_[id].mutable_tensor_type();
    tt->set_elem_type(static_cast<int32_t>(dtype));
    auto* sp = tt->mutable_shape();
    sp->clear_dim();
    for (int64_t d : t.shape) sp->add_dim()->set_dim_value(d);
    return {};
  }

  Status SetSequence(TensorId id, DType dtype, const std::vector<TypeShape>& elements,
                     const std::string& where) {
    uint64_t total = 0;
    for (const TypeShape& e : elements) {
      if (auto s = SetType(id, e.dtype, e.shape, where); !s) return s;
      if (!CheckedAdd(total, graph_.tensors[id].bytes, &total)) {
        return Error{where + ": sequence '" + graph_.tensors[id].name + "' overflows 64 bits"};
      }
    }
    Tensor& t = graph_.tensors[id];
    t.is_sequence = true;
    t.dtype = dtype;
    t.shape.clear();
    t.elements = elements;
    t.bytes = total;
    types_[id].Clear();
    types_[id].mutable_sequence_type()->mutable_elem_type()->mutable_tensor_type()->set_elem_type(
        static_cast<int32_t>(dtype));
    return {};
  }

  Status AddInitializers(const onnx::GraphProto& g) {
    for (const auto& init : g.initializer()) {
      if (by_name_.count(init.name()))
        return Error{"initializer '" + init.name() + "' is defined twice"};
      TensorId id = NewTensor(init.name());
      auto dtype = DTypeFromOnnx(init.data_type());
      if (!dtype) {
        return Error{"initializer '" + init.name() + "' has unknown data type " +
                     std::to_string(init.data_type())};
      }
      std::vector<int64_t> dims(init.dims().begin(), init.dims().end());
      if (auto s = SetType(id, *dtype, dims, "initializer"); !s) return s;
      graph_.tensors[id].value = ValueFromTensorProto(init);
      initializer_.insert(id);
      runtime_[id] = IsFloating(*dtype) && init.name().rfind("onnx::", 0) != 0;
    }
    return {};
  }

  Status AddInputs(const onnx::GraphProto& g) {
    for (const auto& [name, value] : options_.dims) {
      // Zero is a valid ONNX size (empty tensors); a training step refuses it later.
      if (value < 0 || value > kMaxDimension) {
        return Error{"--dim " + name + "=" + std::to_string(value) +
                     ": a dimension must be bound to a value from 0 to 2^48"};
      }
    }
    std::map<std::string, std::vector<std::string>> unbound;  // dim -> inputs using it
    for (const auto& in : g.input()) {
      if (by_name_.count(in.name())) {
        if (initializer_.count(by_name_[in.name()])) continue;  // initializer listed as input
        return Error{"graph input '" + in.name() + "' is declared twice"};
      }
      TensorId id = NewTensor(in.name());
      graph_.tensors[id].role = TensorRole::kDataInput;
      graph_.inputs.push_back(id);
      if (in.type().has_sequence_type()) {
        auto seq = options_.input_sequences.find(in.name());
        auto dtype = DTypeFromOnnx(in.type().sequence_type().elem_type().tensor_type().elem_type());
        if (seq == options_.input_sequences.end() || !dtype) {
          return Error{"graph input '" + in.name() +
                       "' is a sequence of unknown length; "
                       "sequence inputs are supported only with their element shapes bound"};
        }
        if (auto s = SetSequence(id, *dtype, seq->second, "graph input"); !s) return s;
        continue;
      }
      if (!in.type().has_tensor_type()) {
        return Error{"graph input '" + in.name() +
                     "' is not a tensor (map and optional inputs "
                     "are not supported)"};
      }
      const auto& tt = in.type().tensor_type();
      auto dtype = DTypeFromOnnx(tt.elem_type());
      if (!dtype) return Error{"graph input '" + in.name() + "' has no element type"};
      if (!tt.has_shape()) return Error{"graph input '" + in.name() + "' has no shape"};
      std::vector<int64_t> shape;
      for (int i = 0; i < tt.shape().dim_size(); ++i) {
        const auto& d = tt.shape().dim(i);
        if (d.has_dim_value()) {
          shape.push_back(d.dim_value());
        } else if (d.has_dim_param() && !d.dim_param().empty()) {
          auto it = options_.dims.find(d.dim_param());
          if (it == options_.dims.end()) {
            unbound[d.dim_param()].push_back(in.name());
            shape.push_back(0);
          } else {
            shape.push_back(it->second);
            graph_.dims[it->first] = it->second;
          }
        } else {
          return Error{"graph input '" + in.name() + "' dimension " + std::to_string(i) +
                       " has neither a size nor a name"};
        }
      }
      if (unbound.empty()) {
        if (auto s = SetType(id, *dtype, shape, "graph input"); !s) return s;
        if (auto v = options_.input_values.find(in.name()); v != options_.input_values.end()) {
          if (v->second.shape != shape) {
            return Error{"value bound to input '" + in.name() + "' has shape " +
                         ShapeString(v->second.shape) + ", the input has " + ShapeString(shape)};
          }
          graph_.tensors[id].value = v->second;
          graph_.tensors[id].value->dtype = *dtype;
        }
      }
    }
    if (!unbound.empty()) {
      std::string msg = "unbound dimension";
      msg += unbound.size() > 1 ? "s: " : ": ";
      bool first = true;
      for (const auto& [dim, inputs] : unbound) {
        if (!first) msg += ", ";
        msg += dim;
        msg += " (used by ";
        std::set<std::string> uniq(inputs.begin(), inputs.end());
        bool f2 = true;
        for (const auto& i : uniq) {
          if (!f2) msg += ", ";
          msg += i;
          f2 = false;
        }
        msg += ")";
        first = false;
      }
      return Error{msg + "; bind with --dim NAME=VALUE"};
    }
    // A name the inputs do not use would be silently ignored: the answer would be for the
    // export's own sizes under a title that claims another.
    std::set<std::string> declared;
    for (const auto& in : g.input()) {
      if (!in.type().has_tensor_type() || !in.type().tensor_type().has_shape()) continue;
      for (const auto& d : in.type().tensor_type().shape().dim()) {
        if (d.has_dim_param() && !d.dim_param().empty()) declared.insert(d.dim_param());
      }
    }
    for (const auto& [name, value] : options_.dims) {
      if (declared.count(name)) continue;
      std::string msg = "--dim " + name + "=" + std::to_string(value) +
                        ": the model has no dimension named '" + name + "'";
      if (declared.empty()) {
        msg += "; its inputs have fixed shapes (re-export with dynamic_axes to vary them)";
      } else {
        msg += "; its dimensions are:";
        for (const auto& d : declared) msg += " " + d;
      }
      return Error{msg};
    }
    return {};
  }

  Status AddNodes(const onnx::GraphProto& g) {
    if (static_cast<size_t>(g.node_size()) > kMaxNodes ||
        static_cast<size_t>(g.initializer_size() + g.input_size()) > kMaxNodes) {
      return Error{"the graph has " + std::to_string(g.node_size()) + " nodes and " +
                   std::to_string(g.initializer_size()) + " initializers, over the limit of " +
                   std::to_string(kMaxNodes)};
    }
    // Register every output first, so inputs may refer to nodes listed later in the file.
    for (int i = 0; i < g.node_size(); ++i) {
      const auto& node = g.node(i);
      Op op;
      op.name = node.name();
      op.type = node.op_type();
      op.domain = node.domain();
      SplitScope(op.name, &op.scope, &op.module);
      for (const auto& out : node.output()) {
        if (out.empty()) {
          op.outputs.push_back(kNoTensor);
          continue;
        }
        if (by_name_.count(out)) {
          return Error{NodeLabel(node, i) + " writes tensor '" + out +
                       "', which already has a producer"};
        }
        TensorId id = NewTensor(out);
        graph_.tensors[id].producer = i;
        op.outputs.push_back(id);
      }
      graph_.ops.push_back(std::move(op));
    }
    for (int i = 0; i < g.node_size(); ++i) {
      const auto& node = g.node(i);
      for (const auto& in : node.input()) {
        if (in.empty()) {
          graph_.ops[i].inputs.push_back(kNoTensor);
          continue;
        }
        auto it = by_name_.find(in);
        if (it == by_name_.end()) {
          return Error{NodeLabel(node, i) + " reads tensor '" + in +
                       "', which no node, input or initializer defines"};
        }
        graph_.ops[i].inputs.push_back(it->second);
      }
      for (const auto& a : node.attribute()) {
        if (a.has_g() || a.graphs_size() > 0 || a.type() == onnx::AttributeProto::GRAPH ||
            a.type() == onnx::AttributeProto::GRAPHS) {
          return Error{NodeLabel(node, i) +
                       " has a subgraph; control flow (If, Loop, Scan) is "
                       "not supported"};
        }
        graph_.ops[i].attrs[a.name()] = ConvertAttribute(a);
      }
    }
    return {};
  }

  // Kahn's algorithm on the Boost dataflow graph, smallest file index first: the file's own
  // order when it is already topological (as ONNX requires), a deterministic one otherwise.
  Status Order() {
    BuildDataflow(graph_);
    const Dataflow& df = *graph_.dataflow;
    size_t nv = boost::num_vertices(df);
    std::vector<size_t> pending(nv);
    for (size_t v = 0; v < nv; ++v) pending[v] = boost::in_degree(v, df);
    // A ready tensor goes first (it only releases its readers); among ready ops the one listed
    // first in the file runs next. So a weight-only op (the Transpose of a Linear's weight)
    // runs where the exporter wrote it, next to its reader, as PyTorch runs it, and its
    // backward right after the reader's: the weight's gradient lands in .grad when produced.
    using Key = std::pair<int64_t, size_t>;  // (-1 for tensors, else file index; vertex)
    auto key = [&df](size_t v) -> Key { return {df[v].is_op ? df[v].index : -1, v}; };
    std::priority_queue<Key, std::vector<Key>, std::greater<>> ready;
    for (size_t v = 0; v < nv; ++v) {
      if (pending[v] == 0) ready.push(key(v));
    }
    while (!ready.empty()) {
      size_t v = ready.top().second;
      ready.pop();
      if (df[v].is_op) order_.push_back(df[v].index);
      for (auto [e, end] = boost::out_edges(v, df); e != end; ++e) {
        size_t w = boost::target(*e, df);
        if (--pending[w] == 0) ready.push(key(w));
      }
    }
    if (order_.size() != graph_.ops.size()) {
      // Every unscheduled vertex has an unscheduled predecessor: walk back until one repeats.
      size_t v = 0;
      while (pending[v] == 0) ++v;
      std::vector<bool> seen(nv, false);
      while (!seen[v]) {
        seen[v] = true;
        for (auto [e, end] = boost::in_edges(v, df); e != end; ++e) {
          if (pending[boost::source(*e, df)] != 0) {
            v = boost::source(*e, df);
            break;
          }
        }
      }
      if (!df[v].is_op) v = static_cast<size_t>(graph_.tensors[df[v].index].producer);
      return Error{NodeLabel(model_.graph().node(static_cast<int>(v)), static_cast<int>(v)) +
                   " is part of a cycle"};
    }
    return {};
  }

  const onnx::TensorProto* ProtoOf(TensorId id) {
    Tensor& t = graph_.tensors[id];
    if (!t.value) return nullptr;
    if (!protos_[id]) protos_[id] = ValueToTensorProto(*t.value, t.name);
    return &*protos_[id];
  }

  Status SetOutputsFromValues(OpId op, std::vector<ConstValue> values, const std::string& where) {
    const auto& outs = graph_.ops[op].outputs;
    for (size_t k = 0; k < outs.size() && k < values.size(); ++k) {
      if (outs[k] == kNoTensor) continue;
      if (auto s = SetType(outs[k], values[k].dtype, values[k].shape, where); !s) return s;
      graph_.tensors[outs[k]].value = std::move(values[k]);
    }
    return {};
  }

  // Shapes of one node's outputs, then the checks ONNX's inference does not make.
  Status Infer(OpId op_id) {
    if (auto s = InferOutputs(op_id); !s) return s;
    const Op& op = graph_.ops[op_id];
    // What is computed from a parameter or buffer is a tensor at run time, never shape
    // arithmetic: its values (of a small inline weight) must not make it a folded constant.
    if (ReadsRuntimeTensor(op)) {
      for (TensorId t : op.outputs) {
        if (t == kNoTensor) continue;
        runtime_[t] = 1;
        graph_.tensors[t].value.reset();
        protos_[t].reset();
      }
    }
    std::vector<const Tensor*> ins, outs;
    for (TensorId t : op.inputs) ins.push_back(t == kNoTensor ? nullptr : &graph_.tensors[t]);
    for (TensorId t : op.outputs) outs.push_back(t == kNoTensor ? nullptr : &graph_.tensors[t]);
    if (!IsDefaultDomain(op.domain)) return {};
    if (auto s = CheckOutputs(op, ins, outs); !s) {
      return Error{NodeLabel(model_.graph().node(op_id), op_id) + ": " + s.message()};
    }
    return {};
  }

  // Shape and Size read only metadata, so their results stay shape arithmetic.
  bool ReadsRuntimeTensor(const Op& op) const {
    if (op.type == "Shape" || op.type == "Size") return false;
    return std::any_of(op.inputs.begin(), op.inputs.end(),
                       [&](TensorId t) { return t != kNoTensor && runtime_[t]; });
  }

  // Why inputs do not broadcast, in the user's terms: the two sizes that disagree, the bound
  // dimension behind one of them and the model tensor (a buffer such as a causal mask of
  // length 256) behind the other, which limits that dimension. Empty when no two inputs
  // disagree on an axis.
  std::string ExplainShapeConflict(const Op& op) const {
    std::vector<TensorId> ins;
    for (TensorId t : op.inputs) {
      if (t != kNoTensor && !graph_.tensors[t].is_sequence) ins.push_back(t);
    }
    for (size_t i = 0; i < ins.size(); ++i) {
      for (size_t j = i + 1; j < ins.size(); ++j) {
        const auto& a = graph_.tensors[ins[i]].shape;
        const auto& b = graph_.tensors[ins[j]].shape;
        for (size_t k = 1; k <= std::min(a.size(), b.size()); ++k) {
          int64_t x = a[a.size() - k], y = b[b.size() - k];
          if (x == y || x == 1 || y == 1) continue;
          std::string text = "; inputs '" + Printable(graph_.tensors[ins[i]].name) + "' " +
                             ShapeString(a) + " and '" + Printable(graph_.tensors[ins[j]].name) +
                             "' " + ShapeString(b) + " differ on axis -" + std::to_string(k) +
                             " (" + std::to_string(x) + " vs " + std::to_string(y) + ")";
          // The side whose size is a bound dimension, and the model tensor behind the other.
          for (int side = 0; side < 2; ++side) {
            int64_t bound = side == 0 ? x : y, fixed = side == 0 ? y : x;
            TensorId from = side == 0 ? ins[j] : ins[i];
            std::string names;
            for (const auto& [name, value] : options_.dims) {
              if (value == bound) names += (names.empty() ? "" : "/") + name;
            }
            if (names.empty()) continue;
            TensorId source = ModelTensorWithSize(from, fixed);
            if (source == kNoTensor) {
              return text + ": is '" + names + "' (bound to " + std::to_string(bound) +
                     ") limited to " + std::to_string(fixed) + " by the model?";
            }
            const Tensor& src = graph_.tensors[source];
            return text + ": the " + std::to_string(fixed) + " comes from '" + Printable(src.name) +
                   "' " + ShapeString(src.shape) +
                   ", a tensor stored in the model, which limits '" + names + "' (bound to " +
                   std::to_string(bound) + ") to at most " + std::to_string(fixed);
          }
          return text;
        }
      }
    }
    return "";
  }

  // A parameter, buffer or constant with a dimension of `size` upstream of `t` (a few ops
  // back), or kNoTensor.
  TensorId ModelTensorWithSize(TensorId t, int64_t size) const {
    std::vector<TensorId> frontier{t};
    std::set<TensorId> seen{t};
    for (int depth = 0; depth < 8 && !frontier.empty(); ++depth) {
      std::vector<TensorId> next;
      for (TensorId f : frontier) {
        const Tensor& x = graph_.tensors[f];
        // Roles are assigned after inference: an initializer or a Constant's output.
        bool model = (x.producer < 0 && initializer_.count(f)) ||
                     (x.producer >= 0 && graph_.ops[x.producer].type == "Constant");
        if (model && std::find(x.shape.begin(), x.shape.end(), size) != x.shape.end()) return f;
        if (x.producer < 0) continue;
        for (TensorId in : graph_.ops[x.producer].inputs) {
          if (in != kNoTensor && seen.insert(in).second) next.push_back(in);
        }
      }
      frontier = std::move(next);
    }
    return kNoTensor;
  }

  Status InferOutputs(OpId op_id) {
    onnx::NodeProto& node = *model_.mutable_graph()->mutable_node(op_id);
    const Op& op = graph_.ops[op_id];
    std::string where = NodeLabel(node, op_id);
    std::string domain = IsDefaultDomain(node.domain()) ? "" : node.domain();
    auto ov = opsets_.find(domain.empty() ? (opsets_.count("") ? "" : "ai.onnx") : domain);
    if (ov == opsets_.end()) {
      return Error{where + " uses domain '" + node.domain() + "', which the model does not import"};
    }
    if (!domain.empty() && domain != "ai.onnx.ml" && domain != "ai.onnx.preview.training") {
      return Error{where + " uses unknown domain '" + node.domain() + "'"};
    }
    const auto* schema =
        onnx::OpSchemaRegistry::Schema(node.op_type(), static_cast<int>(ov->second), domain);
    if (!schema && !(domain.empty() && OwnRuleWithoutSchema(node.op_type(), ov->second))) {
      return Error{where + ": unknown op '" + node.op_type() + "' in domain '" + node.domain() +
                   "' at opset " + std::to_string(ov->second)};
    }
    bool axes_input = domain.empty() && ov->second >= 18 &&
                      node.op_type().rfind("Reduce", 0) == 0 && node.op_type() != "ReduceSum";
    if (schema && !axes_input) {
      size_t n_in = 0;
      for (TensorId t : op.inputs) n_in += t != kNoTensor;
      if (n_in < static_cast<size_t>(schema->min_input()) ||
          op.inputs.size() > static_cast<size_t>(schema->max_input())) {
        return Error{where + " has " + std::to_string(op.inputs.size()) +
                     " inputs; its schema allows " + std::to_string(schema->min_input()) + " to " +
                     std::to_string(schema->max_input())};
      }
    }

    std::vector<const Tensor*> ins;
    for (TensorId t : op.inputs) ins.push_back(t == kNoTensor ? nullptr : &graph_.tensors[t]);

    if (domain.empty()) {
      if (auto s = ValidateOp(op, ins, schema); !s) return Error{where + ": " + s.message()};
    }
    if (op.type == "Constant" && domain.empty()) return InferConstant(op_id, node, where);
    if (domain.empty() && !ReadsRuntimeTensor(op)) {
      if (auto values = EvaluateOp(op, ov->second, ins)) {
        return SetOutputsFromValues(op_id, std::move(*values), where);
      }
    }
    if (auto rule = OwnShapeRule(op, ov->second, ins)) {
      if (!*rule) return Error{where + ": " + rule->error().message};
      const auto& results = rule->value();
      for (size_t k = 0; k < op.outputs.size() && k < results.size(); ++k) {
        if (op.outputs[k] == kNoTensor) continue;
        if (results[k].is_sequence) {
          if (auto s = SetSequence(op.outputs[k], results[k].dtype, results[k].elements, where);
              !s) {
            return s;
          }
        } else if (auto s = SetType(op.outputs[k], results[k].dtype, results[k].shape, where); !s) {
          return s;
        }
      }
      // SequenceLength is a shape-like constant once the elements are known.
      if (op.type == "SequenceLength" && op.outputs[0] != kNoTensor) {
        ConstValue v;
        v.dtype = DType::kInt64;
        v.ints = {static_cast<int64_t>(ins[0]->elements.size())};
        graph_.tensors[op.outputs[0]].value = v;
      }
      return {};
    }

    if (!schema) return Error{where + " has no input to take its shape from"};
    std::unordered_map<std::string, onnx::TypeProto*> types;
    std::unordered_map<std::string, const onnx::TensorProto*> data;
    for (TensorId t : op.inputs) {
      if (t == kNoTensor) continue;
      types[graph_.tensors[t].name] = &types_[t];
      if (const auto* p = ProtoOf(t)) data[graph_.tensors[t].name] = p;
    }
    onnx::shape_inference::InferenceContextImpl ctx(node, types, data, {});
    try {
      if (schema->has_type_and_shape_inference_function()) {
        schema->GetTypeAndShapeInferenceFunction()(ctx);
      } else if (schema->HasFunction()) {
        onnx::shape_inference::InferShapeForFunctionNode(*schema->GetFunction(),
                                                         onnx::OpSchemaRegistry::Instance(), ctx);
      }
    } catch (const std::exception& e) {
      std::string msg = e.what();
      if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
      return Error{where + ": shape inference failed: " + msg + ExplainShapeConflict(op)};
    }
    for (size_t k = 0; k < op.outputs.size(); ++k) {
      TensorId out = op.outputs[k];
      if (out == kNoTensor) continue;
      const onnx::TypeProto& type = ctx.allOutputTypes_[k];
      if (!type.has_tensor_type()) {
        return Error{where + ": output '" + graph_.tensors[out].name +
                     "' is not a tensor or its type could not be inferred"};
      }
      const auto& tt = type.tensor_type();
      auto dtype = DTypeFromOnnx(tt.elem_type());
      if (!dtype) {
        return Error{where + ": could not infer the element type of '" + graph_.tensors[out].name +
                     "'"};
      }
      if (!tt.has_shape()) {
        return Error{where + ": could not infer the shape of '" + graph_.tensors[out].name +
                     "' (it depends on values the model computes at run time)"};
      }
      std::vector<int64_t> shape;
      for (const auto& d : tt.shape().dim()) {
        if (!d.has_dim_value()) {
          return Error{where + ": could not infer dimension of '" + graph_.tensors[out].name +
                       "' (it depends on values the model computes at run time)"};
        }
        shape.push_back(d.dim_value());
      }
      if (auto s = SetType(out, *dtype, shape, where); !s) return s;
    }
    return {};
  }

  Status InferConstant(OpId op_id, const onnx::NodeProto& node, const std::string& where) {
    TensorId out = graph_.ops[op_id].outputs.empty() ? kNoTensor : graph_.ops[op_id].outputs[0];
    if (out == kNoTensor) return {};
    graph_.tensors[out].role = TensorRole::kConstant;
    for (const auto& a : node.attribute()) {
      ConstValue v;
      if (a.name() == "value") {
        auto dtype = DTypeFromOnnx(a.t().data_type());
        if (!dtype) return Error{where + ": constant has unknown data type"};
        std::vector<int64_t> dims(a.t().dims().begin(), a.t().dims().end());
        if (auto s = SetType(out, *dtype, dims, where); !s) return s;
        graph_.tensors[out].value = ValueFromTensorProto(a.t());
        return {};
      }
      if (a.name() == "value_int" || a.name() == "value_ints") {
        v.dtype = DType::kInt64;
        if (a.name() == "value_int") {
          v.ints = {a.i()};
        } else {
          v.ints.assign(a.ints().begin(), a.ints().end());
          v.shape = {static_cast<int64_t>(v.ints.size())};
        }
      } else if (a.name() == "value_float" || a.name() == "value_floats") {
        v.dtype = DType::kFloat32;
        if (a.name() == "value_float") {
          v.floats = {a.f()};
        } else {
          v.floats.assign(a.floats().begin(), a.floats().end());
          v.shape = {static_cast<int64_t>(v.floats.size())};
        }
      } else if (a.name() == "sparse_value") {
        auto dtype = DTypeFromOnnx(a.sparse_tensor().values().data_type());
        if (!dtype) return Error{where + ": sparse constant has unknown data type"};
        std::vector<int64_t> dims(a.sparse_tensor().dims().begin(), a.sparse_tensor().dims().end());
        return SetType(out, *dtype, dims, where);
      } else if (a.name() == "value_string" || a.name() == "value_strings") {
        std::vector<int64_t> dims;
        if (a.name() == "value_strings") dims = {a.strings_size()};
        return SetType(out, DType::kString, dims, where);
      } else {
        continue;
      }
      if (auto s = SetType(out, v.dtype, v.shape, where); !s) return s;
      graph_.tensors[out].value = std::move(v);
      return {};
    }
    return Error{where + ": Constant has no value attribute"};
  }

  Status Finish(const onnx::GraphProto& g) {
    // Which initializers BatchNormalization reads as running statistics.
    std::set<TensorId> bn_stats;
    for (const Op& op : graph_.ops) {
      if (op.type == "BatchNormalization") {
        for (size_t k = 3; k < op.inputs.size() && k < 5; ++k) bn_stats.insert(op.inputs[k]);
      }
    }
    for (TensorId id : initializer_) {
      Tensor& t = graph_.tensors[id];
      bool exporter_made = t.name.rfind("onnx::", 0) == 0;
      if (IsFloating(t.dtype) && !bn_stats.count(id) && !exporter_made) {
        t.role = TensorRole::kParameter;
      } else if (exporter_made) {
        t.role = TensorRole::kConstant;
      } else {
        t.role = TensorRole::kBuffer;
      }
    }
    if (auto s = CheckFoldedWeights(); !s) return s;
    uint64_t total = 0;
    for (const Tensor& t : graph_.tensors) {
      if (!CheckedAdd(total, t.bytes, &total)) {
        return Error{"the model's tensors together overflow a 64-bit byte count"};
      }
    }
    for (const auto& out : g.output()) {
      auto it = by_name_.find(out.name());
      if (it == by_name_.end()) {
        return Error{"graph output '" + out.name() + "' is not produced by any node"};
      }
      graph_.outputs.push_back(it->second);
      Tensor& t = graph_.tensors[it->second];
      if (t.role == TensorRole::kActivation) t.role = TensorRole::kGraphOutput;
    }
    // Schedule order: ops renumbered so that index order is a topological order.
    std::vector<OpId> new_id(graph_.ops.size());
    for (size_t i = 0; i < order_.size(); ++i) new_id[order_[i]] = static_cast<OpId>(i);
    std::vector<Op> ops(graph_.ops.size());
    for (size_t i = 0; i < order_.size(); ++i) ops[i] = std::move(graph_.ops[order_[i]]);
    graph_.ops = std::move(ops);
    for (Tensor& t : graph_.tensors) {
      if (t.producer >= 0) t.producer = new_id[t.producer];
      t.consumers.clear();
    }
    for (size_t i = 0; i < graph_.ops.size(); ++i) {
      for (TensorId in : graph_.ops[i].inputs) {
        if (in != kNoTensor) graph_.tensors[in].consumers.push_back(static_cast<OpId>(i));
      }
    }
    BuildDataflow(graph_);
    return {};
  }

  // torch.onnx.export's defaults fold weights into constants: an inference-mode export fuses
  // BatchNorm into `onnx::Conv_*` weights, and constant folding turns each Linear's W.t() into
  // an `onnx::MatMul_*` initializer. Estimated as they are, those weights would get no
  // gradients or optimizer state: a confident answer for a model with almost no parameters.
  // A weight input (Conv, Gemm, MatMul, RNNs) fed by a floating constant the exporter made,
  // directly or through ops on constants only, is refused unless the caller allows it.
  Status CheckFoldedWeights() {
    if (options_.allow_constant_weights) return {};
    std::vector<char> folded(graph_.tensors.size(), 0), constant(graph_.tensors.size(), 0);
    for (TensorId id : initializer_) {
      const Tensor& t = graph_.tensors[id];
      constant[id] = 1;
      folded[id] = t.role == TensorRole::kConstant && IsFloating(t.dtype) && !t.shape.empty();
    }
    size_t count = 0;
    uint64_t bytes = 0;
    std::string example;
    for (OpId op_id : order_) {
      const Op& op = graph_.ops[op_id];
      bool all_constant = !op.inputs.empty(), any_folded = false;
      for (TensorId in : op.inputs) {
        if (in == kNoTensor) continue;
        all_constant = all_constant && constant[in];
        any_folded = any_folded || folded[in];
      }
      bool constant_node = op.type == "Constant" && IsDefaultDomain(op.domain);
      for (TensorId out : op.outputs) {
        if (out == kNoTensor) continue;
        const Tensor& t = graph_.tensors[out];
        constant[out] = constant_node || all_constant;
        folded[out] = IsFloating(t.dtype) &&
                      ((constant_node && t.shape.size() >= 2) || (all_constant && any_folded));
      }
      if (!IsDefaultDomain(op.domain)) continue;
      std::vector<size_t> weights;
      if (op.type == "Conv" || op.type == "ConvTranspose") weights = {1};
      if (op.type == "Gemm" || op.type == "MatMul") weights = {0, 1};
      if (op.type == "LSTM" || op.type == "GRU" || op.type == "RNN") weights = {1, 2};
      if (all_constant) continue;  // arithmetic on constants alone is not a layer
      for (size_t k : weights) {
        if (k >= op.inputs.size() || op.inputs[k] == kNoTensor || !folded[op.inputs[k]]) continue;
        const Tensor& w = graph_.tensors[op.inputs[k]];
        ++count;
        CheckedAdd(bytes, w.bytes, &bytes);
        if (example.empty()) {
          example = "'" + w.name + "' " + ShapeString(w.shape) + " read by " + op.type + " '" +
                    op.name + "'";
        }
      }
    }
    if (count == 0) return {};
    return Error{"the export's weights were folded into constants (" + std::to_string(count) +
                 " weight inputs, " + std::to_string(bytes) + " bytes, e.g. " + example +
                 "), so they would get no gradients; re-export with torch.onnx.export(..., "
                 "training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False), or "
                 "pass --allow-constant-weights to count them as constants"};
  }

  onnx::ModelProto model_;
  const ImportOptions& options_;
  Graph graph_;
  int64_t opset_ = 0;
  std::map<std::string, int64_t> opsets_;
  std::unordered_map<std::string, TensorId> by_name_;
  std::vector<onnx::TypeProto> types_;
  std::vector<std::optional<onnx::TensorProto>> protos_;
  std::vector<char> runtime_;  // computed at run time from a parameter or buffer
  std::set<TensorId> initializer_;
  std::vector<OpId> order_;
};

}  // namespace

Result<Graph> ImportModelProto(onnx::ModelProto model, const ImportOptions& options) {
  if (!model.has_graph()) return Error{"the model has no graph"};
  auto graph = Importer(std::move(model), options).Run();
  // Names in messages come from the file: one printable line, whatever they hold.
  if (!graph) return Error{Printable(graph.error().message)};
  return graph;
}

Result<Graph> ImportModel(const std::string& path, const ImportOptions& options) {
  auto model = ReadModel(path, options.read);
  if (!model) return Error{Printable(model.error().message)};
  auto graph = ImportModelProto(std::move(model.value()), options);
  if (!graph) return Error{path + ": " + graph.error().message};
  return graph;
}

}  // namespace vramsim

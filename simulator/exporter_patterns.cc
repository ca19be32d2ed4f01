#include "simulator/exporter_patterns.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <set>

namespace vramsim {

namespace {

Attribute IntAttr(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}
Attribute FloatAttr(double v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  return a;
}
Attribute StringAttr(std::string v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = std::move(v);
  return a;
}

std::optional<double> ScalarValue(const Graph& g, TensorId t) {
  if (t == kNoTensor || !g.tensors[t].value || g.tensors[t].value->size() != 1) {
    return std::nullopt;
  }
  return g.tensors[t].value->at(0);
}

// ReduceMean's axes: an attribute before opset 18, an input from then on.
std::optional<std::vector<int64_t>> ReduceAxes(const Graph& g, const Op& op) {
  if (const Attribute* a = op.attr("axes")) return a->ints;
  if (op.inputs.size() > 1 && op.inputs[1] != kNoTensor && g.tensors[op.inputs[1]].value) {
    return g.tensors[op.inputs[1]].value->ints;
  }
  return std::nullopt;
}

std::map<std::string, Attribute> GeluNone(const Graph&, const PatternMatch&) {
  return {{"approximate", StringAttr("none")}};
}
std::map<std::string, Attribute> GeluTanh(const Graph&, const PatternMatch&) {
  return {{"approximate", StringAttr("tanh")}};
}

// native_layer_norm normalizes the trailing dims from `axis` on: both ReduceMeans must reduce
// exactly those.
std::map<std::string, Attribute> LayerNormAttrs(const Graph& g, const PatternMatch& m) {
  auto mean = ReduceAxes(g, g.ops[m.nodes.at("mean")]);
  auto var = ReduceAxes(g, g.ops[m.nodes.at("var")]);
  const Tensor& x = g.tensors[m.variables.at("x")];
  int64_t rank = static_cast<int64_t>(x.shape.size());
  if (!mean || !var || mean->empty() || rank == 0) return {};
  std::vector<int64_t> a = *mean, b = *var;
  for (auto* v : {&a, &b}) {
    for (int64_t& d : *v) d = d < 0 ? d + rank : d;
    std::sort(v->begin(), v->end());
  }
  if (a != b) return {};
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != rank - static_cast<int64_t>(a.size()) + static_cast<int64_t>(i)) return {};
  }
  std::map<std::string, Attribute> out = {{"axis", IntAttr(a.front() - rank)}};
  if (auto eps = ScalarValue(g, m.variables.at("eps"))) out["epsilon"] = FloatAttr(*eps);
  return out;
}

// native_group_norm: the groups are the second dim of the [N, G, -1] reshape.
std::map<std::string, Attribute> GroupNormAttrs(const Graph& g, const PatternMatch& m) {
  const Op& reshape = g.ops[m.nodes.at("grouped")];
  const Tensor& grouped = g.tensors[reshape.outputs[0]];
  if (grouped.shape.size() != 3 || grouped.shape[1] <= 0) return {};
  std::map<std::string, Attribute> out = {{"num_groups", IntAttr(grouped.shape[1])}};
  if (const Attribute* eps = g.ops[m.nodes.at("norm")].attr("epsilon")) {
    out["epsilon"] = FloatAttr(eps->f);
  }
  return out;
}

std::vector<PatternNode> LayerNormCore() {
  return {{"mean", "ReduceMean", {"x", "_"}},          {"centered", "Sub", {"x", "@mean"}},
          {"square", "Pow", {"@centered", "=2"}},      {"var", "ReduceMean", {"@square", "_"}},
          {"var_eps", "Add", {"@var", "eps"}},         {"std", "Sqrt", {"@var_eps"}},
          {"normalized", "Div", {"@centered", "@std"}}};
}

std::vector<PatternNode> GroupNormCore() {
  return {{"grouped", "Reshape", {"x", "_"}},
          {"norm", "InstanceNormalization", {"@grouped", "_", "_"}},
          {"ungrouped", "Reshape", {"@norm", "_"}}};
}

template <typename T>
std::vector<T> Concat(std::vector<T> a, const std::vector<T>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<ExporterPattern> MakeCatalogue() {
  std::vector<ExporterPattern> c;
  c.push_back({"silu",
               "Silu",
               "symbolic_opset9.silu, every opset",
               {{"sigmoid", "Sigmoid", {"x"}}, {"y", "Mul", {"x", "@sigmoid"}}},
               {"x"}});
  c.push_back({"mish",
               "Mish",
               "symbolic_opset9.mish, every opset (ONNX Mish is opset 18)",
               {{"softplus", "Softplus", {"x"}},
                {"tanh", "Tanh", {"@softplus"}},
                {"y", "Mul", {"x", "@tanh"}}},
               {"x"}});
  c.push_back({"hardswish",
               "HardSwish",
               "symbolic_opset9.hardswish, opset < 14",
               {{"hardsigmoid", "HardSigmoid", {"x"}, {{"alpha", 1.0 / 6}, {"beta", 0.5}}},
                {"y", "Mul", {"x", "@hardsigmoid"}}},
               {"x"}});
  c.push_back({"gelu",
               "Gelu",
               "symbolic_opset9.gelu approximate='none', opset < 20",
               {{"scaled", "Div", {"x", "=1.4142135623730951"}},
                {"erf", "Erf", {"@scaled"}},
                {"plus_one", "Add", {"@erf", "=1"}},
                {"times_x", "Mul", {"x", "@plus_one"}},
                {"y", "Mul", {"@times_x", "=0.5"}}},
               {"x"},
               GeluNone});
  c.push_back({"gelu",
               "Gelu",
               "symbolic_opset9.gelu approximate='tanh', opset < 20",
               {{"square", "Mul", {"x", "x"}},
                {"cube", "Mul", {"x", "@square"}},
                {"kappa_cube", "Mul", {"=0.044715", "@cube"}},
                {"inner", "Add", {"x", "@kappa_cube"}},
                {"scaled", "Mul", {"=0.7978845608028654", "@inner"}},
                {"tanh", "Tanh", {"@scaled"}},
                {"plus_one", "Add", {"=1", "@tanh"}},
                {"times_x", "Mul", {"x", "@plus_one"}},
                {"y", "Mul", {"=0.5", "@times_x"}}},
               {"x"},
               GeluTanh});
  c.push_back({"native_layer_norm",
               "LayerNormalization",
               "symbolic_opset9.native_layer_norm with weight and bias, opset < 17",
               Concat(LayerNormCore(), {{"scaled", "Mul", {"@normalized", "weight"}},
                                        {"y", "Add", {"@scaled", "bias"}}}),
               {"x", "weight", "bias"},
               LayerNormAttrs});
  c.push_back({"native_layer_norm",
               "LayerNormalization",
               "symbolic_opset9.native_layer_norm, elementwise_affine=False, opset < 17",
               LayerNormCore(),
               {"x"},
               LayerNormAttrs});
  c.push_back({"native_group_norm",
               "GroupNormalization",
               "symbolic_opset9.group_norm with weight and bias (every opset; ONNX "
               "GroupNormalization is opset 18 and not used by torch.onnx)",
               Concat(GroupNormCore(), {{"weight_view", "Unsqueeze", {"weight", "_"}},
                                        {"scaled", "Mul", {"@ungrouped", "@weight_view"}},
                                        {"bias_view", "Unsqueeze", {"bias", "_"}},
                                        {"y", "Add", {"@scaled", "@bias_view"}}}),
               {"x", "weight", "bias"},
               GroupNormAttrs});
  c.push_back({"native_group_norm",
               "GroupNormalization",
               "symbolic_opset9.group_norm, affine=False",
               GroupNormCore(),
               {"x"},
               GroupNormAttrs});
  return c;
}

// The ONNX defaults of the float attributes patterns check (absent means the default).
std::optional<double> OnnxDefault(const std::string& type, const std::string& attr) {
  if (type == "HardSigmoid") return attr == "alpha" ? 0.2 : attr == "beta" ? 0.5 : -1;
  return std::nullopt;
}

bool Commutative(const std::string& type) { return type == "Add" || type == "Mul"; }

class Matcher {
 public:
  Matcher(const Graph& g, const ExporterPattern& p) : g_(g), p_(p) {
    for (size_t k = 0; k < p.nodes.size(); ++k) index_[p.nodes[k].id] = k;
  }

  std::optional<PatternMatch> Match(OpId root) {
    nodes_.clear();
    vars_.clear();
    if (!MatchNode(p_.nodes.size() - 1, root)) return std::nullopt;
    PatternMatch m;
    m.pattern = &p_;
    m.root = root;
    m.nodes = nodes_;
    m.variables = vars_;
    std::set<OpId> inside;
    for (const auto& [id, op] : nodes_) inside.insert(op);
    // Every intermediate result is read only inside the match and is not a graph output.
    for (OpId op : inside) {
      if (op == root) continue;
      m.absorbed.push_back(op);
      for (TensorId t : g_.ops[op].outputs) {
        if (t == kNoTensor) continue;
        if (std::find(g_.outputs.begin(), g_.outputs.end(), t) != g_.outputs.end()) {
          return std::nullopt;
        }
        for (OpId c : g_.tensors[t].consumers) {
          if (!inside.count(c)) return std::nullopt;
        }
      }
    }
    for (const std::string& v : p_.fused_inputs) m.inputs.push_back(vars_.at(v));
    if (p_.attrs) {
      m.attrs = p_.attrs(g_, m);
      if (m.attrs.empty()) return std::nullopt;  // the nodes fit, their attributes do not
    }
    return m;
  }

 private:
  bool MatchNode(size_t k, OpId op) {
    const PatternNode& n = p_.nodes[k];
    const Op& o = g_.ops[op];
    if (auto it = nodes_.find(n.id); it != nodes_.end()) return it->second == op;
    if (o.type != n.type || (!o.domain.empty() && o.domain != "ai.onnx")) return false;
    if (o.inputs.size() > n.inputs.size()) return false;
    for (const auto& [name, want] : n.float_attrs) {
      const Attribute* a = o.attr(name);
      std::optional<double> have = a && a->kind == Attribute::Kind::kFloat
                                       ? std::optional<double>(a->f)
                                       : OnnxDefault(o.type, name);
      if (!have || !Near(*have, want)) return false;
    }
    std::vector<std::vector<size_t>> orders = {{}};
    for (size_t i = 0; i < n.inputs.size(); ++i) orders[0].push_back(i);
    if (Commutative(n.type) && n.inputs.size() == 2) orders.push_back({1, 0});
    for (const auto& order : orders) {
      auto saved_nodes = nodes_;
      auto saved_vars = vars_;
      nodes_[n.id] = op;
      bool ok = true;
      for (size_t i = 0; ok && i < n.inputs.size(); ++i) {
        size_t from = order[i];
        TensorId t = from < o.inputs.size() ? o.inputs[from] : kNoTensor;
        ok = MatchInput(n.inputs[i], t);
      }
      if (ok) return true;
      nodes_ = std::move(saved_nodes);
      vars_ = std::move(saved_vars);
    }
    return false;
  }

  bool MatchInput(const std::string& spec, TensorId t) {
    if (spec == "_") return true;
    if (t == kNoTensor) return false;
    if (spec[0] == '=') {
      auto v = ScalarValue(g_, t);
      return v && Near(*v, std::strtod(spec.c_str() + 1, nullptr));
    }
    if (spec[0] == '@') {
      OpId producer = g_.tensors[t].producer;
      auto it = index_.find(spec.substr(1));
      return producer >= 0 && it != index_.end() && MatchNode(it->second, producer);
    }
    auto [it, fresh] = vars_.emplace(spec, t);
    return fresh || it->second == t;
  }

  // Exporters write constants as float32: compare to six significant digits.
  static bool Near(double a, double b) {
    return std::fabs(a - b) <= 1e-6 * std::max(1.0, std::fabs(b));
  }

  const Graph& g_;
  const ExporterPattern& p_;
  std::map<std::string, size_t> index_;
  std::map<std::string, OpId> nodes_;
  std::map<std::string, TensorId> vars_;
};

}  // namespace

const std::vector<ExporterPattern>& ExporterPatterns() {
  static const std::vector<ExporterPattern> catalogue = MakeCatalogue();
  return catalogue;
}

std::vector<PatternMatch> MatchExporterPatterns(const Graph& graph) {
  std::vector<PatternMatch> out;
  std::vector<bool> claimed(graph.ops.size(), false);
  // From the last op back, so the largest decomposition claims its ops first (LayerNorm's
  // final Add before the Div that alone would be LayerNorm without affine).
  for (size_t i = graph.ops.size(); i-- > 0;) {
    if (claimed[i]) continue;
    for (const ExporterPattern& p : ExporterPatterns()) {
      if (p.nodes.back().type != graph.ops[i].type) continue;
      auto m = Matcher(graph, p).Match(static_cast<OpId>(i));
      if (!m) continue;
      bool free =
          std::none_of(m->absorbed.begin(), m->absorbed.end(), [&](OpId o) { return claimed[o]; });
      if (!free) continue;
      claimed[i] = true;
      for (OpId o : m->absorbed) claimed[o] = true;
      out.push_back(std::move(*m));
      break;
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace vramsim

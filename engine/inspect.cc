#include "engine/inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <numeric>

#include "engine/estimate.h"

namespace vramsim {
namespace {

nlohmann::json TensorJson(const Tensor& t) {
  return {{"name", t.name},
          {"dtype", std::string(DTypeName(t.dtype))},
          {"shape", t.shape},
          {"bytes", t.bytes},
          {"role", std::string(RoleName(t.role))}};
}

struct RoleTotals {
  uint64_t count = 0;  // tensors
  uint64_t elements = 0;
  uint64_t bytes = 0;
  struct DTypeTotals {
    uint64_t tensors = 0, elements = 0, bytes = 0;
  };
  std::map<std::string, DTypeTotals> by_dtype;
};

std::map<TensorRole, RoleTotals> Totals(const Graph& g) {
  std::map<TensorRole, RoleTotals> out;
  for (const Tensor& t : g.tensors) {
    RoleTotals& r = out[t.role];
    ++r.count;
    r.elements += t.element_count();
    r.bytes += t.bytes;
    auto& d = r.by_dtype[std::string(DTypeName(t.dtype))];
    ++d.tensors;
    d.elements += t.element_count();
    d.bytes += t.bytes;
  }
  return out;
}

std::string ShapeText(const std::vector<int64_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

std::vector<TensorId> Largest(const Graph& g, size_t n) {
  std::vector<TensorId> ids(g.tensors.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](TensorId a, TensorId b) { return g.tensors[a].bytes > g.tensors[b].bytes; });
  if (ids.size() > n) ids.resize(n);
  return ids;
}

}  // namespace

nlohmann::json InspectJson(const Graph& g) {
  nlohmann::json j;
  j["graph"] = g.name;
  j["opset"] = g.opset;
  j["dims"] = g.dims;
  j["op_count"] = g.ops.size();
  j["tensor_count"] = g.tensors.size();
  std::map<std::string, int> types;
  for (const Op& op : g.ops) ++types[op.type];
  j["op_types"] = types;
  auto totals = Totals(g);
  for (TensorRole role : {TensorRole::kParameter, TensorRole::kBuffer, TensorRole::kConstant}) {
    const RoleTotals& r = totals[role];
    nlohmann::json by_dtype = nlohmann::json::object();
    // "elements", not "count": a count read as tensors by users (it never was).
    for (const auto& [dt, d] : r.by_dtype)
      by_dtype[dt] = {{"tensors", d.tensors}, {"elements", d.elements}, {"bytes", d.bytes}};
    j[std::string(RoleName(role)) + "s"] = {
        {"tensors", r.count}, {"elements", r.elements}, {"bytes", r.bytes}, {"by_dtype", by_dtype}};
  }
  nlohmann::json inputs = nlohmann::json::array(), outputs = nlohmann::json::array(),
                 tensors = nlohmann::json::array();
  for (TensorId id : g.inputs) inputs.push_back(TensorJson(g.tensors[id]));
  for (TensorId id : g.outputs) outputs.push_back(TensorJson(g.tensors[id]));
  for (const Tensor& t : g.tensors) tensors.push_back(TensorJson(t));
  j["inputs"] = inputs;
  j["outputs"] = outputs;
  j["tensors"] = tensors;
  return j;
}

std::string InspectText(const Graph& g, size_t largest) {
  std::string out;
  out += fmt::format("graph {} (opset {})", g.name.empty() ? "(unnamed)" : g.name, g.opset);
  if (!g.dims.empty()) {
    std::vector<std::string> d;
    for (const auto& [k, v] : g.dims) d.push_back(fmt::format("{}={}", k, v));
    out += fmt::format(", dims {}", fmt::join(d, " "));
  }
  out += fmt::format("\n{} ops, {} tensors\n", g.ops.size(), g.tensors.size());
  auto totals = Totals(g);
  for (TensorRole role : {TensorRole::kParameter, TensorRole::kBuffer, TensorRole::kConstant}) {
    const RoleTotals& r = totals[role];
    std::vector<std::string> parts;
    for (const auto& [dt, d] : r.by_dtype) {
      parts.push_back(fmt::format("{} {} elements ({})", dt, d.elements, FormatBytes(d.bytes)));
    }
    out += fmt::format("{:<11} {} tensors, {} elements, {}{}{}\n",
                       std::string(RoleName(role)) + "s:", r.count, r.elements,
                       FormatBytes(r.bytes), parts.empty() ? "" : ": ", fmt::join(parts, ", "));
  }
  for (TensorId id : g.inputs) {
    const Tensor& t = g.tensors[id];
    out += fmt::format("input  {} {} {}\n", t.name, DTypeName(t.dtype), ShapeText(t.shape));
  }
  for (TensorId id : g.outputs) {
    const Tensor& t = g.tensors[id];
    out += fmt::format("output {} {} {}\n", t.name, DTypeName(t.dtype), ShapeText(t.shape));
  }
  std::map<std::string, int> types;
  for (const Op& op : g.ops) ++types[op.type];
  std::vector<std::string> tp;
  for (const auto& [t, n] : types) tp.push_back(fmt::format("{} {}", t, n));
  out += fmt::format("op types: {}\n", fmt::join(tp, ", "));
  out += fmt::format("largest tensors:\n");
  for (TensorId id : Largest(g, largest)) {
    const Tensor& t = g.tensors[id];
    std::string by = t.producer >= 0 ? g.ops[t.producer].name : "";
    out += fmt::format("  {:>10}  {:<10} {:<8} {:<20} {}{}\n", FormatBytes(t.bytes),
                       RoleName(t.role), DTypeName(t.dtype), ShapeText(t.shape), t.name,
                       by.empty() || by == t.name ? "" : "  <- " + by);
  }
  return out;
}

nlohmann::json TrainableJson(const TrainableCount& c) {
  return {{"tensors", c.trainable},
          {"elements", c.trainable_elements},
          {"bytes", c.trainable_bytes},
          {"frozen_tensors", c.parameters - c.trainable},
          {"frozen_elements", c.parameter_elements - c.trainable_elements},
          {"frozen_bytes", c.parameter_bytes - c.trainable_bytes}};
}

std::string TrainableText(const TrainableCount& c) {
  return fmt::format("trainable:  {} of {} parameter tensors, {} of {} elements, {} of {}\n",
                     c.trainable, c.parameters, c.trainable_elements, c.parameter_elements,
                     FormatBytes(c.trainable_bytes), FormatBytes(c.parameter_bytes));
}

}  // namespace vramsim

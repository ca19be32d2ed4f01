#include "importer/remat_graph.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <queue>
#include <set>
#include <sstream>

namespace vramsim {

namespace {

using nlohmann::json;

// A node id as networkx writes it: an integer or a string; compared by its JSON text.
Result<std::string> IdKey(const json& v, const std::string& where) {
  if (v.is_number_integer() || v.is_string()) return v.dump();
  return Error{where + " is not an integer or a string"};
}

Result<double> NonNegative(const json& node, const char* key, const std::string& where) {
  auto it = node.find(key);
  if (it == node.end()) return Error{where + " has no '" + key + "'"};
  if (!it->is_number()) return Error{where + ": '" + key + "' is not a number"};
  double v = it->get<double>();
  if (!std::isfinite(v) || v < 0)
    return Error{where + ": '" + key + "' must be a non-negative number, got " + it->dump()};
  return v;
}

// Limits that keep every sum and the planner's n x n stage matrices in range: the published
// graphs have at most a few hundred nodes, costs up to ~1e12 and outputs of a few GiB.
constexpr size_t kMaxNodes = 10000;
constexpr size_t kMaxLinks = 1000000;
constexpr size_t kMaxTextBytes = size_t{256} << 20;
constexpr double kMaxCost = 1e18;
constexpr double kMaxBytes = 1125899906842624.0;        // 2^50 (1 PiB) per node
constexpr uint64_t kMaxTotalBytes = uint64_t{1} << 60;  // outputs and parameters together

Result<double> Cost(const json& node, const char* key, const std::string& where) {
  auto v = NonNegative(node, key, where);
  if (!v) return v.error();
  if (*v > kMaxCost)
    return Error{where + ": '" + key + "' is " + node.at(key).dump() + ", more than 1e18"};
  return v;
}

Result<uint64_t> Bytes(const json& node, const char* key, const std::string& where) {
  auto v = NonNegative(node, key, where);
  if (!v) return v.error();
  if (*v > kMaxBytes)
    return Error{where + ": '" + key + "' is " + node.at(key).dump() +
                 " bytes, more than 2^50 (1 PiB)"};
  return static_cast<uint64_t>(std::llround(*v));
}

}  // namespace

size_t RematGraph::edge_count() const {
  size_t n = 0;
  for (const auto& d : deps) n += d.size();
  return n;
}

Result<RematGraph> MakeRematGraph(std::vector<RematNode> nodes,
                                  const std::vector<std::pair<int, int>>& edges, std::string name) {
  RematGraph g;
  g.name = std::move(name);
  int n = static_cast<int>(nodes.size());
  if (n == 0) return Error{g.name + ": the graph has no nodes"};
  if (nodes.size() > kMaxNodes)
    return Error{g.name + ": " + std::to_string(nodes.size()) + " nodes; at most " +
                 std::to_string(kMaxNodes) + " are supported"};
  uint64_t total = 0;
  for (const RematNode& node : nodes) {
    if (!std::isfinite(node.cost) || node.cost < 0 || node.cost > kMaxCost)
      return Error{g.name + ": node " + node.name + " has a cost outside [0, 1e18]"};
    if (node.memory > kMaxTotalBytes || node.param_bytes > kMaxTotalBytes ||
        (total += node.memory + node.param_bytes) > kMaxTotalBytes)
      return Error{g.name + ": the nodes' bytes add up to more than 2^60; too large"};
  }
  g.nodes = std::move(nodes);
  g.deps.assign(n, {});
  g.users.assign(n, {});
  std::set<std::pair<int, int>> seen;
  for (auto [s, t] : edges) {
    if (s < 0 || t < 0 || s >= n || t >= n)
      return Error{g.name + ": edge " + std::to_string(s) + "->" + std::to_string(t) +
                   " names a node that does not exist"};
    if (s >= t)
      return Error{g.name + ": edge " + std::to_string(s) + "->" + std::to_string(t) +
                   " goes against the topological order"};
    if (!seen.insert({s, t}).second) continue;
    g.deps[t].push_back(s);
    g.users[s].push_back(t);
  }
  for (auto& d : g.deps) std::sort(d.begin(), d.end());
  for (auto& u : g.users) std::sort(u.begin(), u.end());
  for (const RematNode& node : g.nodes) g.static_bytes += node.param_bytes;
  return g;
}

Result<RematGraph> ParseRematGraph(const std::string& text, const std::string& what) {
  if (text.size() > kMaxTextBytes)
    return Error{what + ": " + std::to_string(text.size() >> 20) +
                 " MiB of JSON; remat graphs up to 256 MiB are read"};
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Error{what + ": not valid JSON"};
  if (!doc.is_object()) return Error{what + ": expected a JSON object (networkx node-link data)"};
  auto nodes_it = doc.find("nodes");
  auto links_it = doc.find("links");
  if (links_it == doc.end()) links_it = doc.find("edges");
  if (nodes_it == doc.end() || !nodes_it->is_array())
    return Error{what + ": no 'nodes' array (expected networkx node-link data)"};
  if (links_it == doc.end() || !links_it->is_array())
    return Error{what + ": no 'links' array (expected networkx node-link data)"};
  const json& jnodes = *nodes_it;
  if (jnodes.empty()) return Error{what + ": the graph has no nodes"};
  if (jnodes.size() > kMaxNodes)
    return Error{what + ": " + std::to_string(jnodes.size()) + " nodes; at most " +
                 std::to_string(kMaxNodes) + " are supported"};
  if (links_it->size() > kMaxLinks)
    return Error{what + ": " + std::to_string(links_it->size()) + " links; at most " +
                 std::to_string(kMaxLinks) + " are supported"};
  std::string graph_name = what;
  json graph_attrs = json::object();
  if (auto g = doc.find("graph"); g != doc.end() && g->is_object()) {
    graph_attrs = *g;
    if (auto nm = g->find("name"); nm != g->end() && nm->is_string()) graph_name = *nm;
  }

  // Nodes: the id key is "id" (Checkmate) or "name" (Moccasin's node-link attrs).
  std::vector<RematNode> parsed;
  std::vector<std::string> keys;
  std::vector<const json*> ids;
  std::map<std::string, int> index;
  for (size_t i = 0; i < jnodes.size(); ++i) {
    const json& jn = jnodes[i];
    std::string where = what + ": node #" + std::to_string(i);
    if (!jn.is_object()) return Error{where + " is not an object"};
    const json* id = nullptr;
    if (auto it = jn.find("id"); it != jn.end()) {
      id = &*it;
    } else if (auto it2 = jn.find("name"); it2 != jn.end()) {
      id = &*it2;
    } else {
      return Error{where + " has neither 'id' nor 'name'"};
    }
    auto key = IdKey(*id, where + " id");
    if (!key) return key.error();
    if (!index.emplace(*key, static_cast<int>(i)).second)
      return Error{what + ": node id " + *key + " appears twice"};
    where = what + ": node " + *key;
    RematNode node;
    if (auto nm = jn.find("name"); nm != jn.end() && nm->is_string()) {
      node.name = *nm;
    } else {
      node.name = "n";
      node.name += id->is_string() ? id->get<std::string>() : id->dump();
    }
    bool checkmate = jn.contains("cost_cpu") || jn.contains("cost_ram");
    auto cost = Cost(jn, checkmate ? "cost_cpu" : "duration", where);
    if (!cost) return cost.error();
    auto mem = Bytes(jn, checkmate ? "cost_ram" : "out_cost", where);
    if (!mem) return mem.error();
    node.cost = *cost;
    node.memory = *mem;
    if (jn.contains("param_cost")) {
      auto p = Bytes(jn, "param_cost", where);
      if (!p) return p.error();
      node.param_bytes = *p;
    }
    if (auto b = jn.find("backward"); b != jn.end()) {
      if (!b->is_boolean()) return Error{where + ": 'backward' is not a boolean"};
      node.backward = *b;
    }
    parsed.push_back(std::move(node));
    keys.push_back(*key);
    ids.push_back(id);
  }
  int n = static_cast<int>(parsed.size());

  // Links: {source, target} or {"0", "1"}.
  std::vector<std::pair<int, int>> edges;
  for (size_t i = 0; i < links_it->size(); ++i) {
    const json& jl = (*links_it)[i];
    std::string where = what + ": link #" + std::to_string(i);
    if (!jl.is_object()) return Error{where + " is not an object"};
    const json* s = nullptr;
    const json* t = nullptr;
    if (jl.contains("source") && jl.contains("target")) {
      s = &jl["source"];
      t = &jl["target"];
    } else if (jl.contains("0") && jl.contains("1")) {
      s = &jl["0"];
      t = &jl["1"];
    } else {
      return Error{where + " has neither source/target nor \"0\"/\"1\""};
    }
    auto sk = IdKey(*s, where + " source");
    if (!sk) return sk.error();
    auto tk = IdKey(*t, where + " target");
    if (!tk) return tk.error();
    auto si = index.find(*sk), ti = index.find(*tk);
    if (si == index.end()) return Error{where + ": no node with id " + *sk};
    if (ti == index.end()) return Error{where + ": no node with id " + *tk};
    if (si->second == ti->second) return Error{where + ": self-loop on node " + *sk};
    edges.push_back({si->second, ti->second});
  }

  // The baseline order: graph.order, else ascending integer ids when topological, else Kahn's
  // order taking the smallest file position first.
  std::vector<std::vector<int>> out(n);
  std::vector<int> indeg(n, 0);
  for (auto [s, t] : edges) {
    out[s].push_back(t);
    ++indeg[t];
  }
  auto topological = [&](const std::vector<int>& order) {
    std::vector<int> pos(n, -1);
    for (int i = 0; i < n; ++i) pos[order[i]] = i;
    for (auto [s, t] : edges)
      if (pos[s] >= pos[t]) return false;
    return true;
  };
  std::vector<int> order;
  if (auto o = graph_attrs.find("order"); o != graph_attrs.end()) {
    if (!o->is_array()) return Error{what + ": graph.order is not a list"};
    std::vector<bool> seen(n, false);
    for (const json& v : *o) {
      auto k = IdKey(v, what + ": graph.order entry");
      if (!k) return k.error();
      auto it = index.find(*k);
      if (it == index.end()) return Error{what + ": graph.order names no node " + *k};
      if (seen[it->second]) return Error{what + ": graph.order lists node " + *k + " twice"};
      seen[it->second] = true;
      order.push_back(it->second);
    }
    if (static_cast<int>(order.size()) != n)
      return Error{what + ": graph.order lists " + std::to_string(order.size()) + " of the " +
                   std::to_string(n) + " nodes"};
    if (!topological(order)) return Error{what + ": graph.order is not a topological order"};
  } else {
    bool integer_ids =
        std::all_of(ids.begin(), ids.end(), [](const json* id) { return id->is_number_integer(); });
    if (integer_ids) {
      order.resize(n);
      for (int i = 0; i < n; ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return ids[a]->get<int64_t>() < ids[b]->get<int64_t>();
      });
      if (!topological(order)) order.clear();
    }
    if (order.empty()) {
      std::priority_queue<int, std::vector<int>, std::greater<>> ready;
      std::vector<int> deg = indeg;
      for (int i = 0; i < n; ++i)
        if (!deg[i]) ready.push(i);
      while (!ready.empty()) {
        int v = ready.top();
        ready.pop();
        order.push_back(v);
        for (int t : out[v])
          if (--deg[t] == 0) ready.push(t);
      }
      if (static_cast<int>(order.size()) != n) {
        std::string cyc;
        for (int i = 0; i < n && cyc.size() < 60; ++i)
          if (deg[i]) cyc += (cyc.empty() ? "" : ", ") + keys[i];
        return Error{what + ": the graph has a cycle (through nodes " + cyc + ")"};
      }
    }
  }
  std::vector<int> pos(n);
  std::vector<RematNode> ordered;
  for (int i = 0; i < n; ++i) {
    pos[order[i]] = i;
    ordered.push_back(std::move(parsed[order[i]]));
  }
  for (auto& [s, t] : edges) {
    s = pos[s];
    t = pos[t];
  }
  auto made = MakeRematGraph(std::move(ordered), edges, graph_name);
  if (!made) return made;
  made->ids.resize(n);
  for (int i = 0; i < n; ++i) made->ids[i] = keys[order[i]];
  return made;
}

Result<RematGraph> LoadRematGraph(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{path + ": cannot open"};
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error{path + ": cannot read"};
  return ParseRematGraph(ss.str(), path);
}

}  // namespace vramsim

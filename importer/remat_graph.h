// Rematerialization benchmark graphs: the networkx node-link JSON published with Checkmate
// (Jain et al., MLSys 2020) and Moccasin (Bartan et al., ICML 2023), read into a DAG whose nodes
// are numbered in the baseline topological order.
//
// Two variants are read:
// - Checkmate's training graphs: nodes {id, name, backward, cost_cpu, cost_ram}, links
//   {source, target}; the node ids give the baseline order.
// - Moccasin's random layered graphs: nodes {name, duration, out_cost, param_cost}, links
//   {"0", "1"}; graph.order, where present, is the baseline order (else the ids, or Kahn's
//   order with the smallest id first).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "importer/status.h"

namespace vramsim {

struct RematNode {
  std::string name;
  double cost = 0;           // compute cost (cost_cpu / duration)
  uint64_t memory = 0;       // bytes of its output (cost_ram / out_cost)
  uint64_t param_bytes = 0;  // param_cost: resident for the whole schedule
  bool backward = false;
};

struct RematGraph {
  std::string name;
  std::vector<RematNode> nodes;         // in baseline topological order
  std::vector<std::vector<int>> deps;   // inputs of each node, ascending
  std::vector<std::vector<int>> users;  // consumers of each node, ascending
  uint64_t static_bytes = 0;            // sum of param_bytes, resident throughout
  // Each node's id in the file as JSON text (12, "conv1"), in the order of `nodes`, so that a
  // schedule can name nodes as the file does; empty for graphs built by MakeRematGraph.
  std::vector<std::string> ids;
  size_t edge_count() const;
};

// Parses the JSON text; `what` names the source in error messages.
Result<RematGraph> ParseRematGraph(const std::string& text, const std::string& what = "graph");
Result<RematGraph> LoadRematGraph(const std::string& path);

// Builds a graph from nodes and edges (source, target) already in topological order
// (source < target); for tests and generators.
Result<RematGraph> MakeRematGraph(std::vector<RematNode> nodes,
                                  const std::vector<std::pair<int, int>>& edges,
                                  std::string name = "graph");

}  // namespace vramsim

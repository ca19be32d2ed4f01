// The decompositions torch.onnx writes for ops that eager PyTorch runs as one fused op (SiLU,
// Mish, Hardswish before opset 14, GELU erf and tanh before opset 20, LayerNorm before
// opset 17, GroupNorm through InstanceNormalization). Eager autograd saves what the fused op
// saves (silu: its input), not what each exported piece would save (sigmoid's result and both
// Mul operands), so the plan builder replaces each match by the fused op and its rule.
//
// A pattern is data: a small tree of ONNX nodes, written root last, whose inputs name pattern
// variables, earlier nodes or scalar constants. Adding one is one entry in Catalogue().
#pragma once

#include <map>
#include <string>
#include <vector>

#include "importer/graph.h"

namespace vramsim {

struct PatternNode {
  std::string id;    // names this node's output for later nodes ("@id")
  std::string type;  // ONNX op type
  // Per input position: "x" binds a pattern variable (the same name must be the same tensor),
  // "@id" the output of an earlier node of the pattern, "=0.5" a scalar constant of that value,
  // "_" anything (also an omitted trailing input).
  std::vector<std::string> inputs;
  std::map<std::string, double> float_attrs = {};  // e.g. HardSigmoid's alpha = 1/6
};

struct PatternMatch;
// The fused op's attributes, read from the matched nodes (LayerNorm's axis and epsilon).
using PatternAttrs = std::map<std::string, Attribute> (*)(const Graph&, const PatternMatch&);

struct ExporterPattern {
  std::string name;        // the eager op, as derivatives.yaml names it
  std::string fused_type;  // the op type whose gradient rule then applies
  std::string written_by;  // where the exporter writes this decomposition, and for which opsets
  std::vector<PatternNode> nodes;         // root last; its output is the fused op's output
  std::vector<std::string> fused_inputs;  // pattern variables, in the fused op's input order
  PatternAttrs attrs = nullptr;
};

struct PatternMatch {
  const ExporterPattern* pattern = nullptr;
  OpId root = -1;
  std::vector<OpId> absorbed;                 // the other matched ops, which disappear
  std::map<std::string, OpId> nodes;          // pattern node id -> op
  std::map<std::string, TensorId> variables;  // pattern variable -> tensor
  std::vector<TensorId> inputs;               // the fused op's inputs
  std::map<std::string, Attribute> attrs;     // the fused op's attributes
};

const std::vector<ExporterPattern>& ExporterPatterns();

// Every match in the graph, in op order, none overlapping. Each intermediate result is read
// only inside its match (otherwise eager PyTorch would have had to materialize it too).
std::vector<PatternMatch> MatchExporterPatterns(const Graph& graph);

}  // namespace vramsim

#include "simulator/trace.h"

#include <string>
#include <string_view>

namespace vramsim {

std::string_view CategoryName(Category c) {
  switch (c) {
    case Category::kParameters:
      return "parameters";
    case Category::kBuffers:
      return "buffers";
    case Category::kGradients:
      return "gradients";
    case Category::kOptimizerState:
      return "optimizer_state";
    case Category::kSavedActivations:
      return "saved_activations";
    case Category::kTransient:
      return "transient";
    case Category::kBatch:
      return "batch";
  }
  return "transient";
}

std::string_view PhaseName(Phase p) {
  switch (p) {
    case Phase::kSetup:
      return "setup";
    case Phase::kForward:
      return "forward";
    case Phase::kLoss:
      return "loss";
    case Phase::kBackward:
      return "backward";
    case Phase::kOptimizer:
      return "optimizer";
    case Phase::kEnd:
      return "end";
  }
  return "setup";
}

std::string DescribeStep(const Step& s) {
  std::string module = s.scope.empty() ? "" : ", module " + s.scope;
  // Backward steps of ops carry "<type> backward" as their type: the phase says it already.
  std::string type = s.op_type;
  const std::string suffix = " backward";
  if (type.size() > suffix.size() &&
      type.compare(type.size() - suffix.size(), suffix.size(), suffix) == 0) {
    type.resize(type.size() - suffix.size());
  }
  switch (s.phase) {
    case Phase::kSetup:
      return "setup: " + s.name + (s.op_type.empty() ? "" : " (" + s.op_type + ")");
    case Phase::kForward:
      if (s.op_type == "micro-batch") return "forward, start of " + s.name;
      return "forward of " + s.name + " (" + type + ")" + module;
    case Phase::kLoss:
      return "the loss (" + s.op_type + ")";
    case Phase::kBackward:
      if (s.name == "loss backward") return "the loss's backward (its gradient)";
      if (s.name == "backward done") return "the end of the backward (" + s.op_type + ")";
      if (s.op_type == "checkpoint recompute")
        return "backward, recomputing checkpointed " + s.scope;
      if (s.name.rfind("recompute ", 0) == 0)
        return "backward, recomputing " + s.name.substr(10) + " (" + type + ")" + module;
      return "backward of " + s.name + " (" + type + ")" + module;
    case Phase::kOptimizer:
      if (s.name == "optimizer step") return "the optimizer step (" + s.op_type + ")";
      return "after the optimizer: " + s.op_type;
    case Phase::kEnd:
      return "the end of the step (" + s.op_type + ")";
  }
  return s.name;
}

std::string BufferModule(const Buffer& buffer) {
  if (!buffer.scope.empty()) return buffer.scope;
  switch (buffer.category) {
    case Category::kParameters:
    case Category::kBuffers:
    case Category::kGradients:
    case Category::kOptimizerState: {
      std::string_view name = buffer.name;
      if (size_t of = name.rfind(" of "); of != std::string_view::npos) name = name.substr(of + 4);
      if (size_t dot = name.rfind('.'); dot != std::string_view::npos && dot > 0) {
        return std::string(name.substr(0, dot));
      }
      break;
    }
    default:
      break;
  }
  return "(none)";
}

}  // namespace vramsim

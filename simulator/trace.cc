#include "simulator/trace.h"

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

}  // namespace vramsim

// Graph -> TrainingPlan: applies the gradient rules, PyTorch's view and in-place behaviour,
// and recognizes exporter decompositions (simulator/exporter_patterns.h) so what is saved
// matches the single eager op.
#pragma once

#include <set>

#include "importer/graph.h"
#include "importer/status.h"
#include "simulator/attention.h"
#include "simulator/plan.h"

namespace vramsim {

struct PlanOptions {
  TargetSpec target;
  LossKind loss = LossKind::kCrossEntropy;
  // Parameters that do not train (--freeze / --trainable, policies/trainable.h): allocated as
  // parameters, but requires_grad is false, so they get no gradient and nothing is saved for
  // them.
  std::set<TensorId> frozen;
  // --attention: which SDPA kernel runs each recognized attention (simulator/attention.h).
  AttentionOptions attention;
};

Result<TrainingPlan> BuildPlan(const Graph& graph, const PlanOptions& options);

// PyTorch's rule for whether a reshape can be a view (ATen computeStride): the new strides,
// or nullopt when the data must be copied.
std::optional<std::vector<int64_t>> ViewStrides(const std::vector<int64_t>& shape,
                                                const std::vector<int64_t>& strides,
                                                const std::vector<int64_t>& new_shape);
std::vector<int64_t> ContiguousStrides(const std::vector<int64_t>& shape);

}  // namespace vramsim

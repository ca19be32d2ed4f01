#include "simulator/module_frames.h"

#include <algorithm>
#include <string>
#include <vector>

namespace vramsim {
namespace {

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// "/features/features.2/conv/Conv" -> "/features/", "/features/features.2/",
// "/features/features.2/conv/" (outermost first; the model's own "/" is left out).
std::vector<std::string> Frames(const std::string& name) {
  std::vector<std::string> out;
  if (name.empty() || name[0] != '/') return out;
  for (size_t slash = name.find('/', 1); slash != std::string::npos;
       slash = name.find('/', slash + 1)) {
    out.push_back(name.substr(0, slash + 1));
  }
  return out;
}

}  // namespace

void AddModuleArgumentHolds(TrainingPlan& plan) {
  const size_t n = plan.ops.size();
  std::vector<int> producer(plan.tensors.size(), -1);
  for (size_t i = 0; i < n; ++i) {
    for (PlanTensorId t : plan.ops[i].outputs) {
      if (t >= 0) producer[t] = static_cast<int>(i);
    }
  }
  auto makes_tensors = [&](const PlanOp& op) {
    if (!op.extras.empty()) return true;
    return std::any_of(op.outputs.begin(), op.outputs.end(),
                       [&](PlanTensorId t) { return t >= 0 && !plan.tensors[t].metadata; });
  };
  for (size_t i = 0; i < n; ++i) {
    const PlanOp& op = plan.ops[i];
    std::vector<std::string> frames = Frames(op.name);
    if (frames.empty()) continue;
    for (PlanTensorId t : op.inputs) {
      if (t < 0 || plan.tensors[t].metadata || plan.tensors[t].role != TensorRole::kActivation)
        continue;
      int p = producer[t];
      if (p < 0) continue;
      const std::string& made_by = plan.ops[p].name;
      auto outer = std::find_if(frames.begin(), frames.end(),
                                [&](const std::string& f) { return !StartsWith(made_by, f); });
      if (outer == frames.end()) continue;
      // The call's ops follow each other; shape arithmetic between them does not end it.
      size_t end = i;
      for (size_t k = i + 1; k < n; ++k) {
        if (StartsWith(plan.ops[k].name, *outer)) {
          end = k;
        } else if (makes_tensors(plan.ops[k])) {
          break;
        }
      }
      if (end == i) continue;
      std::vector<PlanTensorId>& r = plan.ops[end].frame_releases;
      if (std::find(r.begin(), r.end(), t) == r.end()) r.push_back(t);
    }
  }
}

}  // namespace vramsim

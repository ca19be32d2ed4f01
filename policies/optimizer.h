// Optimizers as PyTorch implements them: state kept per parameter and the temporaries of
// their update, per implementation (for-loop: one parameter at a time; foreach: all
// parameters at once; fused: none).
#pragma once

#include <string>

#include "policies/policy.h"

namespace vramsim {

enum class OptimizerKind { kSgd, kMomentum, kAdam, kAdamW };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdam;
  OptimizerImpl impl = OptimizerImpl::kForeach;
  Device device = Device::kCuda;  // where the step counters live depends on it
};

Result<OptimizerKind> ParseOptimizerKind(const std::string& name);
Result<OptimizerImpl> ParseOptimizerImpl(const std::string& name);
std::string_view OptimizerKindName(OptimizerKind kind);
std::string_view OptimizerImplName(OptimizerImpl impl);

class OptimizerPolicy : public Policy {
 public:
  explicit OptimizerPolicy(OptimizerOptions options) : options_(options) {}
  std::string_view name() const override { return "optimizer"; }
  Status Apply(TrainingPlan& plan) const override;

  // The spec alone, for tests and reports.
  OptimizerSpec Spec() const;

 private:
  OptimizerOptions options_;
};

}  // namespace vramsim

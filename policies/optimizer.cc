#include "policies/optimizer.h"

namespace vramsim {

Result<OptimizerKind> ParseOptimizerKind(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "momentum") return OptimizerKind::kMomentum;
  if (name == "adam") return OptimizerKind::kAdam;
  if (name == "adamw") return OptimizerKind::kAdamW;
  return Error{"unknown optimizer '" + name + "' (sgd, momentum, adam, adamw)"};
}

Result<OptimizerImpl> ParseOptimizerImpl(const std::string& name) {
  if (name == "for-loop") return OptimizerImpl::kForLoop;
  if (name == "foreach") return OptimizerImpl::kForeach;
  if (name == "fused") return OptimizerImpl::kFused;
  return Error{"unknown optimizer implementation '" + name + "' (for-loop, foreach, fused)"};
}

std::string_view OptimizerKindName(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kMomentum:
      return "momentum";
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kAdamW:
      return "adamw";
  }
  return "sgd";
}

std::string_view OptimizerImplName(OptimizerImpl impl) {
  switch (impl) {
    case OptimizerImpl::kForLoop:
      return "for-loop";
    case OptimizerImpl::kForeach:
      return "foreach";
    case OptimizerImpl::kFused:
      return "fused";
  }
  return "for-loop";
}

OptimizerSpec OptimizerPolicy::Spec() const {
  OptimizerSpec s;
  s.name = std::string(OptimizerKindName(options_.kind));
  s.impl = options_.impl;
  switch (options_.kind) {
    case OptimizerKind::kSgd:
      // param.add_(grad, alpha=-lr): in place, nothing kept.
      break;
    case OptimizerKind::kMomentum:
      // momentum_buffer per parameter, updated in place (mul_, add_).
      s.state_per_param = 1;
      break;
    case OptimizerKind::kAdam:
    case OptimizerKind::kAdamW:
      // exp_avg and exp_avg_sq per parameter. The update computes
      // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps): for-loop holds the
      // sqrt and the quotient of one parameter at once (2x its size); foreach (PyTorch 2.1+)
      // makes the sqrt list for all parameters and divides and adds in place (1x); fused
      // computes in registers.
      s.state_per_param = 2;
      s.step_temporaries = options_.impl == OptimizerImpl::kForLoop   ? 2
                           : options_.impl == OptimizerImpl::kForeach ? 1
                                                                      : 0;
      // state['step'] is a float32 scalar tensor; on CUDA it stays on the CPU unless fused.
      if (options_.device == Device::kCpu || options_.impl == OptimizerImpl::kFused) {
        s.step_counter_bytes = 4;
      }
      break;
  }
  return s;
}

Status OptimizerPolicy::Apply(TrainingPlan& plan) const {
  plan.optimizer = Spec();
  return {};
}

}  // namespace vramsim

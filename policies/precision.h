// Precision policies, as PyTorch runs them:
//  - fp32: nothing changes.
//  - bf16 / fp16 ("pure"): model.to(dtype): parameters, buffers, activations, gradients and
//    optimizer states in half precision; labels stay int64 and normalization statistics fp32.
//  - amp-bf16 / amp-fp16: torch.autocast. Parameters, gradients and optimizer states stay
//    fp32. Ops on the target's lower-precision list run in half and cast their fp32 inputs
//    (parameter casts are cached for the forward and saved for the backward, as autocast
//    does); ops on its fp32 list cast half inputs up; the rest follow their inputs. The lists
//    depend on the device and the PyTorch release (TorchVersion; sources in precision.cc).
//    The loss runs in fp32. amp-fp16 adds GradScaler's buffers.
// Floating tensors the model computes from no data, parameter or buffer (a causal mask made at
// run time with `torch.full(..., dtype=scores.dtype)`, exported as an fp32 ConstantOfShape
// chain) take the type of the data they are combined with instead of promoting it: the export
// was traced in fp32, where `dtype=x.dtype` and `dtype=torch.float32` look the same, and
// following the data is what model code does (Hugging Face's masks, GPT-style masked_fill).
#pragma once

#include <string>

#include "policies/policy.h"

namespace vramsim {

enum class Precision { kFp32, kBf16, kFp16, kAmpBf16, kAmpFp16 };

// Under pure bf16/fp16, where the cross-entropy runs: kFp32 upcasts the logits first
// (`logits.float()`, as Hugging Face's causal LMs do: an fp32 copy of the logits and an fp32
// log-softmax), kModel runs it on the half-precision logits. Autocast always runs it in fp32.
enum class LossPrecision { kFp32, kModel };

struct PrecisionOptions {
  Precision precision = Precision::kFp32;
  Device device = Device::kCuda;                  // selects autocast's op lists
  TorchVersion torch_version = TorchVersion::k2;  // and the release they come from
  LossPrecision loss_precision = LossPrecision::kFp32;
};

Result<Precision> ParsePrecision(const std::string& name);
std::string_view PrecisionName(Precision p);
Result<TorchVersion> ParseTorchVersion(const std::string& name);
std::string_view TorchVersionName(TorchVersion v);
Result<LossPrecision> ParseLossPrecision(const std::string& name);
std::string_view LossPrecisionName(LossPrecision p);

class PrecisionPolicy : public Policy {
 public:
  explicit PrecisionPolicy(PrecisionOptions options) : options_(options) {}
  std::string_view name() const override { return "precision"; }
  Status Apply(TrainingPlan& plan) const override;

 private:
  Status ApplyPure(TrainingPlan& plan, DType half) const;
  Status ApplyAutocast(TrainingPlan& plan, DType half) const;
  PrecisionOptions options_;
};

// Where autocast runs an op on this device and release: in the lower precision (casting fp32
// inputs down), in fp32 (casting half inputs up), or in the type its inputs promote to.
enum class AutocastCast { kFollow, kLowPrecision, kFp32 };
AutocastCast AutocastCastOf(const PlanOp& op, const TrainingPlan& plan, Device device,
                            TorchVersion version);

}  // namespace vramsim

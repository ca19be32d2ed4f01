// Precision policies, as PyTorch runs them:
//  - fp32: nothing changes.
//  - bf16 / fp16 ("pure"): model.to(dtype): parameters, buffers, activations, gradients and
//    optimizer states in half precision; labels stay int64 and normalization statistics fp32.
//  - amp-bf16 / amp-fp16: torch.autocast. Parameters, gradients and optimizer states stay
//    fp32. Ops on the target's lower-precision list run in half and cast their fp32 inputs
//    (parameter casts are cached for the forward and saved for the backward, as autocast
//    does); ops on its fp32 list cast half inputs up; the rest follow their inputs. The loss
//    runs in fp32. amp-fp16 adds GradScaler's buffers.
#pragma once

#include <string>

#include "policies/policy.h"

namespace vramsim {

enum class Precision { kFp32, kBf16, kFp16, kAmpBf16, kAmpFp16 };

struct PrecisionOptions {
  Precision precision = Precision::kFp32;
  Device device = Device::kCuda;  // selects autocast's op lists
};

Result<Precision> ParsePrecision(const std::string& name);
std::string_view PrecisionName(Precision p);

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

// Autocast's op lists for a device, by ONNX op type.
bool AutocastLowPrecision(const std::string& op_type, Device device);
bool AutocastFp32(const std::string& op_type, Device device);

}  // namespace vramsim

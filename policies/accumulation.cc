#include "policies/accumulation.h"

namespace vramsim {

Status ValidateMicroBatches(int64_t micro_batches) {
  if (micro_batches < 1 || micro_batches > kMaxMicroBatches) {
    return Error{"--accum must be between 1 and " + std::to_string(kMaxMicroBatches) + ", got " +
                 std::to_string(micro_batches)};
  }
  return {};
}

Result<std::map<std::string, int64_t>> MicroBatchDims(std::map<std::string, int64_t> dims,
                                                      const AccumulationOptions& o) {
  if (auto s = ValidateMicroBatches(o.micro_batches); !s) return Error{s.message()};
  if (o.micro_batches == 1) return dims;
  auto it = dims.find(o.batch_dim);
  if (it == dims.end()) {
    return Error{"--accum needs the batch dimension '" + o.batch_dim +
                 "' bound with --dim (or name it with --dim-name)"};
  }
  if (it->second % o.micro_batches != 0) {
    return Error{"--accum " + std::to_string(o.micro_batches) + " does not divide " + o.batch_dim +
                 "=" + std::to_string(it->second)};
  }
  it->second /= o.micro_batches;
  return dims;
}

Status AccumulationPolicy::Apply(TrainingPlan& plan) const {
  if (auto s = ValidateMicroBatches(options_.micro_batches); !s) return s;
  plan.micro_batches = options_.micro_batches;
  return {};
}

}  // namespace vramsim

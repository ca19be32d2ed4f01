#include "policies/accumulation.h"

namespace vramsim {

Result<std::map<std::string, int64_t>> MicroBatchDims(std::map<std::string, int64_t> dims,
                                                      const AccumulationOptions& o) {
  if (o.micro_batches < 1) return Error{"--accum must be at least 1"};
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
  if (options_.micro_batches < 1) return Error{"--accum must be at least 1"};
  plan.micro_batches = options_.micro_batches;
  return {};
}

}  // namespace vramsim

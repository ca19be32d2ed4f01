// Gradient accumulation: the batch is split into K micro-batches; K forward and backward
// passes run, parameter gradients persist across them, the optimizer steps once. The full
// batch stays resident (micro-batches are chunks of it). The caller imports the model at the
// micro-batch size (MicroBatchDims) so the graph's activations are per micro-batch. The
// simulator runs micro-batch 1 and one steady micro-batch, which stands for 2..K
// (simulator/simulate.h); FLOPs count all K.
#pragma once

#include <map>
#include <string>

#include "policies/policy.h"

namespace vramsim {

// --accum is at most this (the simulation's cost does not grow with K; the bound keeps
// K x micro-batch products far from overflow).
inline constexpr int kMaxMicroBatches = 1 << 30;

// "--accum must be between 1 and 1073741824, got K", or OK.
Status ValidateMicroBatches(int64_t micro_batches);

struct AccumulationOptions {
  int micro_batches = 1;
  std::string batch_dim = "batch";  // the symbolic dim that is the batch
};

// The dims to import with: the batch dim divided by K; an error if it does not divide.
Result<std::map<std::string, int64_t>> MicroBatchDims(std::map<std::string, int64_t> dims,
                                                      const AccumulationOptions& options);

class AccumulationPolicy : public Policy {
 public:
  explicit AccumulationPolicy(AccumulationOptions options) : options_(std::move(options)) {}
  std::string_view name() const override { return "accumulation"; }
  Status Apply(TrainingPlan& plan) const override;

 private:
  AccumulationOptions options_;
};

}  // namespace vramsim

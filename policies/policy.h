// A policy changes the training step the way a PyTorch setting does (optimizer, precision,
// accumulation, checkpointing). Each takes an Options struct validated when parsed, and
// transforms the TrainingPlan between the builder and the simulator; none reaches back into
// the importer.
#pragma once

#include <string_view>

#include "importer/status.h"
#include "simulator/plan.h"

namespace vramsim {

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string_view name() const = 0;
  virtual Status Apply(TrainingPlan& plan) const = 0;
};

}  // namespace vramsim

// Fit and max-batch, the library layer under `vramsim fit` / `vramsim max-batch` and the Python
// vramsim.fit / vramsim.max_batch: does a training step fit on a GPU (CUDA context, library
// workspaces and the caching allocator's reserved memory included), what is the smallest change
// that makes it fit, and what is the largest batch that does. Plain functions; the front ends
// parse their options into these and print what comes back.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "devices/devices.h"
#include "engine/estimate.h"
#include "simulator/allocator.h"

namespace vramsim {

struct FitOptions {
  DeviceProfile device;
  bool expandable_segments = false;
};

// FitOptions from a --gpu name, an optional capacity override (0: the profile's) and the
// allocator setting.
Result<FitOptions> MakeFitOptions(const std::string& gpu, uint64_t capacity_override,
                                  bool expandable_segments);

// One configuration at one set of dims on one device.
struct FitEvaluation {
  std::map<std::string, int64_t> dims;
  uint64_t peak_bytes = 0;       // FindPeak: the tensors alone (512-byte rounded)
  uint64_t workspace_bytes = 0;  // cuBLAS / cuBLASLt workspaces through the allocator
  AllocatorReport allocator;     // unlimited memory: what the step reserves
  // NCCL's buffers on this device for the rank's process groups (devices.h NcclBuffers): taken
  // off the usable memory like the CUDA context; none on one rank.
  NcclTerm nccl;
  DeviceBudget budget;
  int64_t headroom = 0;  // usable - max reserved (negative: short by that much)
  // Fits: the replay under the usable memory never runs out. When the reserved peak is above
  // it, PyTorch frees its cached segments and retries (needs_cache_flush), and may succeed.
  bool fits = false;
  bool needs_cache_flush = false;
  double recompute_pct = 0;
  std::vector<std::string> blocks;  // repeated module blocks (checkpointing candidates)
  bool has_convolutions = false;
  // Parameters, gradients and optimizer state alive when the optimizer step starts (with the
  // precision and sharding simulated): no batch size or accumulation goes below this.
  uint64_t model_state_bytes = 0;
};

Result<FitEvaluation> EvaluateFit(const std::string& model,
                                  const std::map<std::string, int64_t>& dims,
                                  const EstimateOptions& options, const FitOptions& fit);

// A change to the training flags that makes the step fit.
struct FitChange {
  std::string precision;                // empty: unchanged
  std::vector<std::string> checkpoint;  // empty: unchanged
  int accum = 0;                        // 0: unchanged
  FitEvaluation result;
  std::string Args() const;  // "--precision amp-bf16 --accum 4"
  int changes() const { return !precision.empty() + !checkpoint.empty() + (accum > 0); }
};

struct FitReport {
  FitEvaluation base;
  std::vector<FitChange> fitting;  // the smallest changes that fit, preferred first
  int simulations = 0;
  // The model states alone (parameters + gradients + optimizer state) exceed the usable memory
  // even in pure half precision: nothing was searched. base is then the evaluation at batch 1
  // when the requested batch could not be evaluated.
  bool model_states_exceed = false;
};

// The base evaluation and, when it does not fit, the smallest changes among precision,
// checkpointing of the repeated blocks and gradient accumulation that do: single changes
// first (amp, then accumulation, checkpointing, pure half precision), then pairs, then all.
// First, when the model states alone exceed the device, it says so at once; when only pure
// half precision brings them under, only changes with it are tried. Accumulation counts are
// divisors of the batch (those near powers of two when there are many), and since memory
// falls with K the smallest that fits is found by bisection: a few simulations, each of two
// micro-batches.
Result<FitReport> Fit(const std::string& model, const std::map<std::string, int64_t>& dims,
                      const EstimateOptions& options, const FitOptions& fit);

struct MaxBatchReport {
  int64_t max_batch = 0;  // 0: not even the smallest batch fits
  // The largest batch whose reserved peak stays within the usable memory (at most max_batch;
  // above it PyTorch must free its cached segments when cudaMalloc fails, which is slow).
  int64_t max_batch_without_cache_flush = 0;
  std::string dim_name;
  int step = 1;                                           // batches are multiples of this (--accum)
  std::vector<std::pair<int64_t, FitEvaluation>> probes;  // every batch simulated, in order
  std::optional<FitEvaluation> at_max, above_max;         // at max_batch and the next batch
  double slope_bytes = 0, intercept_bytes = 0;            // the affine model of reserved
  int simulations() const { return static_cast<int>(probes.size()); }
};

// The largest batch that fits, without simulating every batch: reserved memory is close to
// affine in the batch, so two small batches give a line, a third (at the line's answer)
// refines it, and a short search around the solution checks it with full simulations.
// An error when no graph input of the model has the dimension options.batch_dim.
Result<MaxBatchReport> MaxBatch(const std::string& model, std::map<std::string, int64_t> dims,
                                const EstimateOptions& options, const FitOptions& fit,
                                int64_t limit = int64_t{1} << 24);

// The accumulation counts fit tries for a batch: divisors above `current` and at most
// kMaxMicroBatches, all of them when there are few, else the smallest divisor at or above
// each power of two (and the largest), ascending.
std::vector<int64_t> AccumulationCandidates(int64_t batch, int64_t current);

// Nothing, or the error max-batch gives when no graph input of the model uses `dim`.
Status CheckBatchDim(const std::string& model, const std::string& dim);

nlohmann::json FitEvaluationJson(const FitEvaluation& e);
nlohmann::json FitReportJson(const FitReport& r, const FitOptions& fit);
nlohmann::json MaxBatchJson(const MaxBatchReport& r, const FitOptions& fit);
std::string FitReportText(const FitReport& r, const FitOptions& fit);
std::string MaxBatchText(const MaxBatchReport& r, const FitOptions& fit);

}  // namespace vramsim

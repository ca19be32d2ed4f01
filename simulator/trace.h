// The simulator's output: an allocate/free event stream over a schedule of steps. Consumers
// (peak finder, reports, allocator models) read it; none of them changes it. Ties are broken
// by stable ids, so the stream is deterministic.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "importer/dtype.h"

namespace vramsim {

enum class Category : uint8_t {
  kParameters,
  kBuffers,           // BatchNorm running stats, masks, constants kept on the device
  kGradients,         // parameter gradients (.grad)
  kOptimizerState,    // momentum buffers, Adam moments, step counters
  kSavedActivations,  // forward tensors kept for the backward
  kTransient,         // everything else: unsaved activations, activation gradients, temporaries
  kBatch,             // data inputs and labels
};
inline constexpr size_t kCategoryCount = 7;
std::string_view CategoryName(Category c);

enum class Phase : uint8_t { kSetup, kForward, kLoss, kBackward, kOptimizer, kEnd };
std::string_view PhaseName(Phase p);

struct Step;
struct Buffer;
// The module a buffer counts under in per-module breakdowns: the scope of the op that made
// it; for parameters, buffers, gradients and optimizer state the module their name names
// ("h.0.attn" for "adam state 0 of h.0.attn.c_attn.weight"); else "(none)".
std::string BufferModule(const Buffer& buffer);
// A step in words, naming its phase once: "forward of /h.0/attn/Softmax (Softmax), module
// h.0.attn", "backward of /conv1/Conv (Conv)", "the loss's backward (cross_entropy)", "the
// optimizer step (adam)".
std::string DescribeStep(const Step& s);

using BufferId = int32_t;
using StepId = int32_t;

// One storage allocation.
struct Buffer {
  std::string name;  // the tensor it holds (graph name, or a descriptive one)
  uint64_t bytes = 0;
  Category category = Category::kTransient;
  DType dtype = DType::kUndefined;
  std::vector<int64_t> shape;
  std::string scope;  // module path of the op that made it
  std::string why;    // why it is alive, for reports ("saved by /h.0/attn/Softmax")
};

struct Step {
  Phase phase = Phase::kSetup;
  std::string name;     // op name, or e.g. "loss", "optimizer step"
  std::string op_type;  // "Conv", "Conv backward", "adam"
  std::string scope;
  uint64_t flops = 0;
};

struct Event {
  enum class Kind : uint8_t { kAlloc, kFree };
  Kind kind = Kind::kAlloc;
  BufferId buffer = 0;
  StepId step = 0;
};

struct Trace {
  std::vector<Buffer> buffers;
  std::vector<Step> steps;
  std::vector<Event> events;
};

}  // namespace vramsim

// The training-step simulator on tiny hand-built graphs: the exact event stream of one step,
// peaks per optimizer and implementation, CUDA's 512-byte rounding, views sharing storage
// (and the copies PyTorch makes when a view is impossible), branches that need no gradient,
// parameter gradients and what is left at the end of the step, and determinism.
// Every expected byte count is worked out by hand in the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/estimate.h"
#include "importer/importer.h"
#include "policies/optimizer.h"
#include "simulator/peak.h"
#include "simulator/plan_builder.h"
#include "simulator/simulate.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::ModelBuilder;

namespace {

using Shape = std::vector<int64_t>;
constexpr DType kF32 = DType::kFloat32;

// ---------------------------------------------------------------------------------------------
// A recording consumer: the event stream as (alloc/free, "phase:step", buffer, bytes), and the
// live bytes per category after the last event.

struct Ev {
  char kind;         // 'A' alloc, 'F' free
  std::string step;  // "phase:step name"
  std::string name;  // buffer name
  uint64_t bytes;
  bool operator==(const Ev&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Ev& e) {
  return os << e.kind << " [" << e.step << "] " << e.name << " " << e.bytes;
}

struct Recording {
  std::vector<Ev> events;
  uint64_t live_bytes = 0;  // after the last event
  std::array<uint64_t, kCategoryCount> live_by_category{};
  std::vector<BufferId> live;  // after the last event, by id
};

std::string StepLabel(const Trace& t, StepId s) {
  return std::string(PhaseName(t.steps[s].phase)) + ":" + t.steps[s].name;
}

Recording Record(const Trace& t) {
  Recording r;
  std::vector<bool> live(t.buffers.size(), false);
  for (const Event& e : t.events) {
    const Buffer& b = t.buffers[e.buffer];
    bool alloc = e.kind == Event::Kind::kAlloc;
    EXPECT_NE(live[e.buffer], alloc) << (alloc ? "double alloc of " : "free of dead ") << b.name;
    live[e.buffer] = alloc;
    r.events.push_back({alloc ? 'A' : 'F', StepLabel(t, e.step), b.name, b.bytes});
    if (alloc) {
      r.live_bytes += b.bytes;
      r.live_by_category[static_cast<size_t>(b.category)] += b.bytes;
    } else {
      r.live_bytes -= b.bytes;
      r.live_by_category[static_cast<size_t>(b.category)] -= b.bytes;
    }
  }
  for (size_t b = 0; b < live.size(); ++b) {
    if (live[b]) r.live.push_back(static_cast<BufferId>(b));
  }
  return r;
}

uint64_t Cat(const std::array<uint64_t, kCategoryCount>& a, Category c) {
  return a[static_cast<size_t>(c)];
}

// Buffers named `name`, by id.
std::vector<BufferId> BuffersNamed(const Trace& t, const std::string& name) {
  std::vector<BufferId> out;
  for (size_t b = 0; b < t.buffers.size(); ++b) {
    if (t.buffers[b].name == name) out.push_back(static_cast<BufferId>(b));
  }
  return out;
}

// The step at which buffer b is allocated / freed (-1 if never).
StepId StepOf(const Trace& t, BufferId b, Event::Kind kind) {
  for (const Event& e : t.events) {
    if (e.buffer == b && e.kind == kind) return e.step;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Running the pipeline as `vramsim estimate` does.

Result<Estimate> RunStep(ModelBuilder& m, const std::string& optimizer, const std::string& impl,
                         const std::string& target, const std::string& loss = "cross-entropy") {
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  EstimateFlags flags;
  flags.optimizer = optimizer;
  flags.optimizer_impl = impl;
  flags.target = target;
  flags.loss = loss;
  auto o = ParseEstimateFlags(flags);
  if (!o) return o.error();
  return RunEstimate(*g, *o);
}

PlanTensorId Id(const TrainingPlan& p, const std::string& name) {
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    if (p.tensors[i].name == name) return static_cast<PlanTensorId>(i);
  }
  return -1;
}

const PlanOp* OpNamed(const TrainingPlan& p, const std::string& name) {
  for (const PlanOp& op : p.ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

// The MLP all the step tests use:
//   x [4,8] float32 data                             4*8*4   = 128 bytes
//   W1 [16,8] = 16*8*4 = 512, b1 [16] = 16*4 = 64, W2 [10,16] = 10*16*4 = 640, b2 [10] = 40;
//   parameters together 512+64+640+40 = 1256 bytes
//   h = Gemm(x, W1, b1, transB) [4,16]               4*16*4  = 256
//   r = Relu(h) [4,16], in place on h                0
//   y = Gemm(r, W2, b2, transB) [4,10]               4*10*4  = 160
//   cross-entropy labels [4] int64                   4*8     = 32
void Mlp(ModelBuilder& m) {
  m.Input("x", kF32, {4, 8});
  m.Initializer("W1", kF32, {16, 8});
  m.Initializer("b1", kF32, {16});
  m.Initializer("W2", kF32, {10, 16});
  m.Initializer("b2", kF32, {10});
  m.Node("Gemm", {"x", "W1", "b1"}, {"h"}, "gemm1").Int("transB", 1);
  m.Node("Relu", {"h"}, {"r"}, "relu");
  m.Node("Gemm", {"r", "W2", "b2"}, {"y"}, "gemm2").Int("transB", 1);
  m.Output("y");
}

// ---------------------------------------------------------------------------------------------
// The event stream

TEST(SimulatorEvents, MlpStepWithSgdOnCpuIsExactlyThisStream) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "sgd", "", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const std::vector<Ev> expected = {
      // Steady state: parameters, then the batch, then the labels (sgd keeps no state).
      {'A', "setup:steady state", "W1", 512},     // [16,8] f32 = 16*8*4
      {'A', "setup:steady state", "b1", 64},      // [16] f32 = 16*4
      {'A', "setup:steady state", "W2", 640},     // [10,16] f32 = 10*16*4
      {'A', "setup:steady state", "b2", 40},      // [10] f32 = 10*4
      {'A', "setup:steady state", "x", 128},      // [4,8] f32 = 4*8*4
      {'A', "setup:steady state", "labels", 32},  // [4] int64 = 4*8
      // Forward. gemm1 saves x (for W1's grad) but not W1 (x needs no grad).
      {'A', "forward:gemm1", "h", 256},  // [4,16] f32 = 4*16*4; saved via relu's result
      // relu runs in place on h: no event.
      {'A', "forward:gemm2", "y", 160},  // [4,10] f32 = 4*10*4
      // Loss: log_softmax (saved), nll_loss's total_weight (saved), the loss; scalars f32 = 4.
      {'A', "loss:loss", "log_softmax(y)", 160},  // [4,10] f32
      {'A', "loss:loss", "nll_loss total_weight", 4},
      {'A', "loss:loss", "loss", 4},
      // Backward of the loss.
      {'A', "backward:loss backward", "grad of loss", 4},
      {'A', "backward:loss backward", "grad of log_softmax", 160},
      {'F', "backward:loss backward", "grad of loss", 4},
      {'F', "backward:loss backward", "nll_loss total_weight", 4},
      {'A', "backward:loss backward", "grad of y", 160},
      {'F', "backward:loss backward", "grad of log_softmax", 160},
      {'F', "backward:loss backward", "log_softmax(y)", 160},
      // gemm2 backward: grads of r [4,16], W2 [10,16], b2 [10]; then y's grad goes.
      {'A', "backward:gemm2", "grad of r", 256},
      {'A', "backward:gemm2", "grad of W2", 640},
      {'A', "backward:gemm2", "grad of b2", 40},
      {'F', "backward:gemm2", "grad of y", 160},
      // relu backward: grad of h [4,16]; r's grad goes, and the saved result (h's storage).
      {'A', "backward:relu", "grad of h", 256},
      {'F', "backward:relu", "grad of r", 256},
      {'F', "backward:relu", "h", 256},
      // gemm1 backward: only W1 and b1 (x is data).
      {'A', "backward:gemm1", "grad of W1", 512},
      {'A', "backward:gemm1", "grad of b1", 64},
      {'F', "backward:gemm1", "grad of h", 256},
      // sgd updates in place; zero_grad(set_to_none) frees the gradients in param order.
      {'F', "optimizer:zero_grad", "grad of W1", 512},
      {'F', "optimizer:zero_grad", "grad of b1", 64},
      {'F', "optimizer:zero_grad", "grad of W2", 640},
      {'F', "optimizer:zero_grad", "grad of b2", 40},
      // The script drops the outputs and the loss.
      {'F', "end:end of step", "y", 160},
      {'F', "end:end of step", "loss", 4},
  };
  Recording r = Record(e->trace);
  EXPECT_EQ(r.events.size(), expected.size());
  for (size_t i = 0; i < std::min(r.events.size(), expected.size()); ++i) {
    EXPECT_EQ(r.events[i], expected[i]) << "event " << i;
  }
  // Left: parameters 1256 + x 128 + labels 32 = 1416.
  EXPECT_EQ(r.live_bytes, 1416u);
}

// ---------------------------------------------------------------------------------------------
// Peaks

// With sgd the peak is the last gradient allocation of the backward (gemm1's b1):
//   parameters 1256 + batch (x 128 + labels 32) 160
//   + transient: y 160 + loss 4 + grad of h 256 = 420
//   + gradients W2 640 + b2 40 + W1 512 + b1 64 = 1256
//   = 1256 + 160 + 420 + 1256 = 3092.
// (During the loss backward at most 2316: 1416 + h 256 + y 160 + loss 4 + log_softmax 160
//  + grad of log_softmax 160 + grad of y 160.)
TEST(SimulatorPeaks, MlpWithSgd) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "sgd", "", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->peak.peak_bytes, 3092u);
  EXPECT_EQ(StepLabel(e->trace, e->peak.peak_step), "backward:gemm1");
  EXPECT_EQ(Cat(e->peak.by_category, Category::kParameters), 1256u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kBatch), 160u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kTransient), 420u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kGradients), 1256u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kSavedActivations), 0u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kOptimizerState), 0u);
  // The largest live buffer at the peak is W2 or its gradient (640 each; W2 has the lower id).
  ASSERT_FALSE(e->peak.live_at_peak.empty());
  EXPECT_EQ(e->trace.buffers[e->peak.live_at_peak[0]].name, "W2");
  EXPECT_EQ(e->trace.buffers[e->peak.live_at_peak[1]].name, "grad of W2");
}

// Adam keeps exp_avg and exp_avg_sq per parameter (2 * 1256 = 2512) and, on the CPU, a
// float32 step tensor per parameter (4 * 4 = 16): 2528 bytes of state alive all step.
// After the backward: 1416 + y 160 + loss 4 + gradients 1256 + state 2528 = 5364.
TEST(SimulatorPeaks, MlpWithAdamForLoopHoldsTwoTemporariesOfTheLargestParameter) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "adam", "for-loop", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->plan.optimizer.impl, OptimizerImpl::kForLoop);
  // One parameter at a time with 2 param-sized temporaries; the largest is W2:
  // 5364 + 2*640 = 6644 (backward peak 3092 + 2528 = 5620 is lower).
  EXPECT_EQ(e->peak.peak_bytes, 6644u);
  EXPECT_EQ(StepLabel(e->trace, e->peak.peak_step), "optimizer:optimizer step");
  EXPECT_EQ(Cat(e->peak.by_category, Category::kOptimizerState), 2528u);
  // Transient at the peak: y 160 + loss 4 + W2's two temporaries 1280 = 1444.
  EXPECT_EQ(Cat(e->peak.by_category, Category::kTransient), 1444u);
  // The state buffers: W1's moments are 512 bytes each, its step 4.
  auto s0 = BuffersNamed(e->trace, "adam state 0 of W1");
  auto s1 = BuffersNamed(e->trace, "adam state 1 of W1");
  auto st = BuffersNamed(e->trace, "adam step of W1");
  ASSERT_EQ(s0.size(), 1u);
  ASSERT_EQ(s1.size(), 1u);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(e->trace.buffers[s0[0]].bytes, 512u);
  EXPECT_EQ(e->trace.buffers[s1[0]].bytes, 512u);
  EXPECT_EQ(e->trace.buffers[st[0]].bytes, 4u);
  // Eight temporaries, two per parameter, each freed in the optimizer step.
  size_t temps = 0;
  for (size_t b = 0; b < e->trace.buffers.size(); ++b) {
    if (e->trace.buffers[b].why != "optimizer step temporary") continue;
    ++temps;
    StepId freed = StepOf(e->trace, static_cast<BufferId>(b), Event::Kind::kFree);
    ASSERT_GE(freed, 0);
    EXPECT_EQ(StepLabel(e->trace, freed), "optimizer:optimizer step");
  }
  EXPECT_EQ(temps, 8u);
  // At the end: parameters 1256 + batch 160 + state 2528 = 3944.
  EXPECT_EQ(Record(e->trace).live_bytes, 3944u);
}

TEST(SimulatorPeaks, MlpWithAdamForeachHoldsOneTemporaryOfEveryParameterAtOnce) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "adam", "foreach", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  // 5364 + one temporary per parameter, all together: 512+64+640+40 = 1256 -> 6620.
  EXPECT_EQ(e->peak.peak_bytes, 6620u);
  EXPECT_EQ(StepLabel(e->trace, e->peak.peak_step), "optimizer:optimizer step");
  EXPECT_EQ(Cat(e->peak.by_category, Category::kTransient), 160u + 4u + 1256u);
}

TEST(SimulatorPeaks, MlpWithAdamFusedHasNoTemporaries) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "adam", "fused", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  // No temporaries: the backward peak 3092 + state 2528 = 5620 (> 5364 in the step).
  EXPECT_EQ(e->peak.peak_bytes, 5620u);
  EXPECT_EQ(StepLabel(e->trace, e->peak.peak_step), "backward:gemm1");
  for (const Buffer& b : e->trace.buffers) EXPECT_NE(b.why, "optimizer step temporary");
}

TEST(SimulatorPeaks, AdamStepCountersAreDeviceMemoryOnlyOnCpuOrWhenFused) {
  auto spec = [](OptimizerImpl impl, Device device) {
    return OptimizerPolicy({OptimizerKind::kAdam, impl, device}).Spec();
  };
  EXPECT_EQ(spec(OptimizerImpl::kForeach, Device::kCpu).step_counter_bytes, 4u);
  EXPECT_EQ(spec(OptimizerImpl::kForeach, Device::kCuda).step_counter_bytes, 0u);
  EXPECT_EQ(spec(OptimizerImpl::kFused, Device::kCuda).step_counter_bytes, 4u);
  EXPECT_EQ(spec(OptimizerImpl::kForLoop, Device::kCuda).step_temporaries, 2);
  EXPECT_EQ(spec(OptimizerImpl::kForeach, Device::kCuda).step_temporaries, 1);
  EXPECT_EQ(spec(OptimizerImpl::kFused, Device::kCuda).step_temporaries, 0);
  EXPECT_EQ(spec(OptimizerImpl::kFused, Device::kCuda).state_per_param, 2);
  OptimizerSpec sgd =
      OptimizerPolicy({OptimizerKind::kSgd, OptimizerImpl::kForeach, Device::kCuda}).Spec();
  EXPECT_EQ(sgd.state_per_param, 0);
  EXPECT_EQ(sgd.step_temporaries, 0);
  EXPECT_EQ(sgd.step_counter_bytes, 0u);
}

// ---------------------------------------------------------------------------------------------
// CUDA rounding

TEST(SimulatorPeaks, RoundUp) {
  EXPECT_EQ(RoundUp(0, 512), 0u);
  EXPECT_EQ(RoundUp(1, 512), 512u);
  EXPECT_EQ(RoundUp(512, 512), 512u);
  EXPECT_EQ(RoundUp(513, 512), 1024u);
  EXPECT_EQ(RoundUp(7, 1), 7u);
  EXPECT_EQ(RoundUp(7, 0), 7u);
}

// A hand-made stream where rounding moves the peak: A (1000 B) alone, then B, C, D (10 B each).
TEST(SimulatorPeaks, FindPeakRoundsEachAllocation) {
  Trace t;
  t.steps = {{Phase::kForward, "s0", "op", "", 0}, {Phase::kForward, "s1", "op", "", 0}};
  t.buffers = {{"A", 1000, Category::kTransient, kF32, {250}, "", ""},
               {"B", 10, Category::kTransient, DType::kUInt8, {10}, "", ""},
               {"C", 10, Category::kTransient, DType::kUInt8, {10}, "", ""},
               {"D", 10, Category::kGradients, DType::kUInt8, {10}, "", ""}};
  t.events = {{Event::Kind::kAlloc, 0, 0},
              {Event::Kind::kFree, 0, 0},
              {Event::Kind::kAlloc, 1, 1},
              {Event::Kind::kAlloc, 2, 1},
              {Event::Kind::kAlloc, 3, 1}};
  // Exact: 1000 at event 0 (then 10, 20, 30).
  PeakReport exact = FindPeak(t, 1);
  EXPECT_EQ(exact.peak_bytes, 1000u);
  EXPECT_EQ(exact.peak_event, 0u);
  EXPECT_EQ(exact.peak_step, 0);
  EXPECT_EQ(exact.live_at_peak, std::vector<BufferId>({0}));
  // Rounded to 512: A = 1024 at event 0; then 512, 1024, 1536 at event 4.
  PeakReport rounded = FindPeak(t, 512);
  EXPECT_EQ(rounded.peak_bytes, 1536u);
  EXPECT_EQ(rounded.peak_event, 4u);
  EXPECT_EQ(rounded.peak_step, 1);
  EXPECT_EQ(rounded.live_at_peak, std::vector<BufferId>({1, 2, 3}));  // equal sizes: by id
  EXPECT_EQ(Cat(rounded.by_category, Category::kTransient), 1024u);
  EXPECT_EQ(Cat(rounded.by_category, Category::kGradients), 512u);
}

// The MLP with sgd on torch-cuda: every allocation counts as a multiple of 512 bytes. All are
// <= 512 (one block) except W2 and its gradient, 640 -> 1024 (two). In blocks:
//   setup W1 1, b1 1, W2 2, b2 1, x 1, labels 1                      = 7
//   forward h 8, y 9; loss log_softmax 10, total_weight 11, loss 12
//   loss backward: +grad of loss 13, +grad of log_softmax 14, -1 13, -total_weight 12,
//                  +grad of y 13, -grad of log_softmax 12, -log_softmax 11
//   gemm2 backward: +grad of r 12, +grad of W2 14, +grad of b2 15  <- first reaches 15
//   relu: +grad of h 15, -grad of r 14, -h 13; gemm1: +W1 14, +b1 15, -grad of h 14
// Peak 15 * 512 = 7680 bytes, first reached in gemm2's backward (exact bytes peak in gemm1's).
TEST(SimulatorPeaks, TorchCudaRoundsEveryAllocationTo512Bytes) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "sgd", "", "torch-cuda");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->plan.target.round_bytes, 512u);
  EXPECT_EQ(e->peak.peak_bytes, 7680u);
  EXPECT_EQ(StepLabel(e->trace, e->peak.peak_step), "backward:gemm2");
  // At that peak: parameters W1 512 + b1 512 + W2 1024 + b2 512 = 2560; batch x + labels
  // 1024; saved h 512; transient y, loss, grad of y, grad of r 2048; grads W2 1024 + b2 512.
  EXPECT_EQ(Cat(e->peak.by_category, Category::kParameters), 2560u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kBatch), 1024u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kSavedActivations), 512u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kTransient), 2048u);
  EXPECT_EQ(Cat(e->peak.by_category, Category::kGradients), 1536u);
  // The same stream counted exactly peaks where the CPU one does: 3092 in gemm1's backward.
  PeakReport exact = FindPeak(e->trace, 1);
  EXPECT_EQ(exact.peak_bytes, 3092u);
  EXPECT_EQ(StepLabel(e->trace, exact.peak_step), "backward:gemm1");
}

// ---------------------------------------------------------------------------------------------
// Views

TEST(SimulatorViews, ViewStridesByHand) {
  auto vs = [](Shape shape, Shape strides, Shape target) {
    return ViewStrides(shape, strides, target);
  };
  // Contiguous [2,3,4] (strides [12,4,1]).
  EXPECT_EQ(vs({2, 3, 4}, {12, 4, 1}, {6, 4}), Shape({4, 1}));
  EXPECT_EQ(vs({2, 3, 4}, {12, 4, 1}, {24}), Shape({1}));
  EXPECT_EQ(vs({2, 3, 4}, {12, 4, 1}, {2, 12}), Shape({12, 1}));
  EXPECT_EQ(vs({2, 3, 4}, {12, 4, 1}, {2, 3, 2, 2}), Shape({12, 4, 2, 1}));
  // [2,3,4] transposed to [3,2,4] (strides [4,12,1]): splitting the last dim is a view.
  EXPECT_EQ(vs({3, 2, 4}, {4, 12, 1}, {3, 2, 2, 2}), Shape({4, 12, 2, 1}));
  // A transposed [4,3] (strides [1,4]): splitting dim 0 (stride 1) into 2x2 gives (2,1).
  EXPECT_EQ(vs({4, 3}, {1, 4}, {2, 2, 3}), Shape({2, 1, 4}));
  // Size-1 dims are skipped: [2,1,4] strides [4,4,1] -> [8], stride 1.
  EXPECT_EQ(vs({2, 1, 4}, {4, 4, 1}, {8}), Shape({1}));
  // A broadcast dim (stride 0) split stays stride 0: [3,4] strides [1,0] -> [3,2,2] = [1,0,0].
  EXPECT_EQ(vs({3, 4}, {1, 0}, {3, 2, 2}), Shape({1, 0, 0}));
  // A scalar reshaped to [1,1].
  EXPECT_EQ(vs({}, {}, {1, 1}), Shape({1, 1}));
  // Not viewable: merging dims whose strides do not chain.
  EXPECT_EQ(vs({2, 4, 3}, {12, 1, 4}, {2, 12}), std::nullopt);  // 1 != 3*4
  EXPECT_EQ(vs({4, 3}, {1, 4}, {12}), std::nullopt);            // 1 != 3*4
  EXPECT_EQ(vs({3, 4}, {1, 0}, {12}), std::nullopt);            // 1 != 4*0
  EXPECT_EQ(vs({2, 3, 4}, {12, 4, 1}, {5, 5}), std::nullopt);   // 24 elements, not 25

  EXPECT_EQ(ContiguousStrides({2, 3, 4}), Shape({12, 4, 1}));
  EXPECT_EQ(ContiguousStrides({5}), Shape({1}));
  EXPECT_EQ(ContiguousStrides({}), Shape({}));
}

// m = x * P [2,3,4] f32 = 2*3*4*4 = 96 bytes; r = Reshape(m, [6,4]) is a view of it.
TEST(SimulatorViews, ReshapeOfAContiguousTensorAllocatesNothing) {
  ModelBuilder m;
  m.Input("x", kF32, {2, 3, 4});
  m.Initializer("P", kF32, {2, 3, 4});
  m.Int64Initializer("onnx::shape", {2}, {6, 4});
  m.Node("Mul", {"x", "P"}, {"m"}, "mul");
  m.Node("Reshape", {"m", "onnx::shape"}, {"r"}, "reshape");
  m.Output("r");
  auto e = RunStep(m, "sgd", "", "torch-cpu", "mse");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const PlanTensor& r = e->plan.tensors[Id(e->plan, "r")];
  EXPECT_EQ(r.view_of, Id(e->plan, "m"));
  EXPECT_EQ(r.strides, Shape({4, 1}));
  EXPECT_EQ(r.bytes, 0u);
  const std::vector<Ev> expected = {
      {'A', "setup:steady state", "P", 96},
      {'A', "setup:steady state", "x", 96},
      {'A', "setup:steady state", "labels", 96},  // mse targets: r's [6,4] f32 = 96
      {'A', "forward:mul", "m", 96},              // the reshape adds nothing
      {'A', "loss:loss", "loss", 4},              // f32 scalar
      {'A', "backward:loss backward", "grad of loss", 4},
      {'A', "backward:loss backward", "grad of r", 96},
      {'F', "backward:loss backward", "grad of loss", 4},
      // The reshape's backward is a view of r's gradient: m's gradient is that buffer.
      {'A', "backward:mul", "grad of P", 96},
      {'F', "backward:mul", "grad of r", 96},
      {'F', "optimizer:zero_grad", "grad of P", 96},
      {'F', "end:end of step", "m", 96},  // freed with its last view, the output r
      {'F', "end:end of step", "loss", 4},
  };
  EXPECT_EQ(Record(e->trace).events, expected);
  EXPECT_TRUE(BuffersNamed(e->trace, "r").empty());
  EXPECT_TRUE(BuffersNamed(e->trace, "grad of m").empty());
}

// t = Transpose(m, [0,2,1]) is [2,4,3] with strides [12,1,4], a view; Reshape(t, [2,12])
// must merge dims of strides 1 and 4 (1 != 3*4): PyTorch copies, 2*12*4 = 96 bytes.
TEST(SimulatorViews, TransposeThenReshapeCopies) {
  ModelBuilder m;
  m.Input("x", kF32, {2, 3, 4});
  m.Initializer("P", kF32, {2, 3, 4});
  m.Int64Initializer("onnx::shape", {2}, {2, 12});
  m.Node("Mul", {"x", "P"}, {"m"}, "mul");
  m.Node("Transpose", {"m"}, {"t"}, "transpose").Ints("perm", {0, 2, 1});
  m.Node("Reshape", {"t", "onnx::shape"}, {"r"}, "reshape");
  m.Output("r");
  auto e = RunStep(m, "sgd", "", "torch-cpu", "mse");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const TrainingPlan& p = e->plan;
  EXPECT_EQ(p.tensors[Id(p, "t")].view_of, Id(p, "m"));
  EXPECT_EQ(p.tensors[Id(p, "t")].strides, Shape({12, 1, 4}));
  EXPECT_EQ(p.tensors[Id(p, "r")].view_of, -1);
  EXPECT_EQ(p.tensors[Id(p, "r")].bytes, 96u);
  EXPECT_FALSE(OpNamed(p, "reshape")->is_view);
  EXPECT_TRUE(BuffersNamed(e->trace, "t").empty());
  auto r = BuffersNamed(e->trace, "r");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(e->trace.buffers[r[0]].bytes, 96u);
  EXPECT_EQ(StepLabel(e->trace, StepOf(e->trace, r[0], Event::Kind::kAlloc)), "forward:reshape");
  // The copy's backward allocates a gradient of t's shape, 96 bytes.
  auto gt = BuffersNamed(e->trace, "grad of t");
  ASSERT_EQ(gt.size(), 1u);
  EXPECT_EQ(e->trace.buffers[gt[0]].bytes, 96u);
}

// torch.matmul of [2,3,4,5] @ [2,3,5,4] runs bmm on both reshaped to [6,n,m]. Made by
// transposing dims 1 and 2 of contiguous parameters, neither reshape can be a view (merging
// the batch dims needs stride[0] = 3*stride[1]: 60 != 15 and 60 != 12), so both are copied,
// and bmm saves the copies:
//   a = P[2,4,3,5]^T(1,2): [2,3,4,5] strides [60,5,15,1] -> copy [6,4,5] = 120 f32 = 480 B
//   b = Q[2,5,3,4]^T(1,2): [2,3,5,4] strides [60,4,12,1] -> copy [6,5,4] = 120 f32 = 480 B
TEST(SimulatorViews, MatMulOfTransposedTensorsSavesContiguousCopies) {
  ModelBuilder m;
  m.Initializer("P", kF32, {2, 4, 3, 5});
  m.Initializer("Q", kF32, {2, 5, 3, 4});
  m.Initializer("P2", kF32, {2, 3, 4, 5});
  m.Initializer("Q2", kF32, {2, 3, 5, 4});
  m.Node("Transpose", {"P"}, {"a"}, "ta").Ints("perm", {0, 2, 1, 3});
  m.Node("Transpose", {"Q"}, {"b"}, "tb").Ints("perm", {0, 2, 1, 3});
  m.Node("MatMul", {"a", "b"}, {"ab"}, "matmul");
  m.Node("MatMul", {"P2", "Q2"}, {"pq"}, "matmul_contiguous");
  m.Output("ab").Output("pq");
  auto e = RunStep(m, "sgd", "", "torch-cpu", "mse");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const TrainingPlan& p = e->plan;
  EXPECT_EQ(p.tensors[Id(p, "a")].strides, Shape({60, 5, 15, 1}));
  EXPECT_EQ(p.tensors[Id(p, "b")].strides, Shape({60, 4, 12, 1}));
  const PlanOp* mm = OpNamed(p, "matmul");
  ASSERT_NE(mm, nullptr);
  ASSERT_EQ(mm->copies.size(), 2u);
  const PlanTensor& ca = p.tensors[mm->copies[0]];
  const PlanTensor& cb = p.tensors[mm->copies[1]];
  EXPECT_EQ(ca.name, "a:contiguous");
  EXPECT_EQ(ca.shape, Shape({6, 4, 5}));
  EXPECT_EQ(ca.bytes, 480u);
  EXPECT_EQ(cb.name, "b:contiguous");
  EXPECT_EQ(cb.shape, Shape({6, 5, 4}));
  EXPECT_EQ(cb.bytes, 480u);
  EXPECT_EQ(mm->saved, mm->copies);
  for (const char* name : {"a:contiguous", "b:contiguous"}) {
    SCOPED_TRACE(name);
    auto ids = BuffersNamed(e->trace, name);
    ASSERT_EQ(ids.size(), 1u);
    const Buffer& b = e->trace.buffers[ids[0]];
    EXPECT_EQ(b.bytes, 480u);
    EXPECT_EQ(b.category, Category::kSavedActivations);
    EXPECT_EQ(StepLabel(e->trace, StepOf(e->trace, ids[0], Event::Kind::kAlloc)), "forward:matmul");
    EXPECT_EQ(StepLabel(e->trace, StepOf(e->trace, ids[0], Event::Kind::kFree)), "backward:matmul");
  }
  // The transposes themselves allocate nothing.
  EXPECT_TRUE(BuffersNamed(e->trace, "a").empty());
  EXPECT_TRUE(BuffersNamed(e->trace, "b").empty());
  // Contiguous operands fold to [6,4,5] / [6,5,4] as views: no copies, the inputs are saved.
  const PlanOp* mc = OpNamed(p, "matmul_contiguous");
  ASSERT_NE(mc, nullptr);
  EXPECT_TRUE(mc->copies.empty());
  EXPECT_EQ(mc->saved, std::vector<PlanTensorId>({Id(p, "P2"), Id(p, "Q2")}));
}

// ---------------------------------------------------------------------------------------------
// Branches that need no gradient

// The MLP plus ops on the data only: Shape(x) (metadata), xh = Cast(x, float16) and a second
// output s2 = Sigmoid(xh). Neither saves anything nor runs a backward.
//   xh [4,8] f16 = 4*8*2 = 64, freed once the sigmoid has read it
//   s2 [4,8] f16 = 64, held by the script to the end of the step
// Peak: the MLP's 3092 + s2 64 = 3156, in gemm1's backward.
TEST(SimulatorBranches, OpsOnDataOnlySaveNothingAndRunNoBackward) {
  ModelBuilder m;
  Mlp(m);
  m.Node("Shape", {"x"}, {"shp"}, "shape");
  m.Node("Cast", {"x"}, {"xh"}, "cast").Int("to", static_cast<int64_t>(DType::kFloat16));
  m.Node("Sigmoid", {"xh"}, {"s2"}, "sigmoid");
  m.Output("s2", DType::kFloat16);
  auto e = RunStep(m, "sgd", "", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  for (const char* name : {"shape", "cast", "sigmoid"}) {
    SCOPED_TRACE(name);
    const PlanOp* op = OpNamed(e->plan, name);
    ASSERT_NE(op, nullptr);
    EXPECT_FALSE(op->needs_backward);
    EXPECT_TRUE(op->saved.empty());
  }
  for (const Step& s : e->trace.steps) {
    if (s.phase == Phase::kBackward) {
      EXPECT_NE(s.name, "cast");
      EXPECT_NE(s.name, "sigmoid");
      EXPECT_NE(s.name, "shape");
    }
    EXPECT_NE(s.name, "shape") << "metadata op got a step";
  }
  auto xh = BuffersNamed(e->trace, "xh");
  auto s2 = BuffersNamed(e->trace, "s2");
  ASSERT_EQ(xh.size(), 1u);
  ASSERT_EQ(s2.size(), 1u);
  EXPECT_EQ(e->trace.buffers[xh[0]].bytes, 64u);
  EXPECT_EQ(e->trace.buffers[s2[0]].bytes, 64u);
  EXPECT_EQ(e->trace.buffers[xh[0]].category, Category::kTransient);
  EXPECT_EQ(e->trace.buffers[s2[0]].category, Category::kTransient);
  EXPECT_EQ(StepLabel(e->trace, StepOf(e->trace, xh[0], Event::Kind::kFree)), "forward:sigmoid");
  EXPECT_EQ(StepLabel(e->trace, StepOf(e->trace, s2[0], Event::Kind::kFree)), "end:end of step");
  EXPECT_TRUE(BuffersNamed(e->trace, "shp").empty());
  EXPECT_TRUE(BuffersNamed(e->trace, "grad of s2").empty());
  EXPECT_TRUE(BuffersNamed(e->trace, "grad of xh").empty());
  EXPECT_EQ(e->peak.peak_bytes, 3156u);
  EXPECT_EQ(StepLabel(e->trace, e->peak.peak_step), "backward:gemm1");
  EXPECT_EQ(Cat(e->peak.by_category, Category::kSavedActivations), 0u);
}

// ---------------------------------------------------------------------------------------------
// Parameter gradients and the end of the step

TEST(SimulatorGradients, ParameterGradientsLiveFromFirstAccumulationToZeroGrad) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "adam", "for-loop", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const Trace& t = e->trace;
  StepId opt_step = -1, zero_grad = -1;
  for (size_t s = 0; s < t.steps.size(); ++s) {
    if (t.steps[s].name == "optimizer step") opt_step = static_cast<StepId>(s);
    if (t.steps[s].name == "zero_grad") zero_grad = static_cast<StepId>(s);
  }
  ASSERT_GE(opt_step, 0);
  ASSERT_GT(zero_grad, opt_step);
  struct Want {
    const char* param;
    const char* backward_of;
    uint64_t bytes;
  };
  for (const Want& w : {Want{"W1", "backward:gemm1", 512}, Want{"b1", "backward:gemm1", 64},
                        Want{"W2", "backward:gemm2", 640}, Want{"b2", "backward:gemm2", 40}}) {
    SCOPED_TRACE(w.param);
    auto g = BuffersNamed(t, std::string("grad of ") + w.param);
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(t.buffers[g[0]].category, Category::kGradients);
    EXPECT_EQ(t.buffers[g[0]].bytes, w.bytes);
    EXPECT_EQ(StepLabel(t, StepOf(t, g[0], Event::Kind::kAlloc)), w.backward_of);
    EXPECT_EQ(StepOf(t, g[0], Event::Kind::kFree), zero_grad);
  }
}

// W [8,8] = 8*8*4 = 256 bytes, used twice: h1 = x @ W, h2 = h1 @ W. The second matmul's
// backward runs first and makes W's .grad (category gradients); the first matmul's
// contribution is a transient 256-byte buffer accumulated into it and freed at once.
TEST(SimulatorGradients, ASharedWeightAccumulatesIntoItsFirstGradient) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  m.Initializer("W", kF32, {8, 8});
  m.Node("MatMul", {"x", "W"}, {"h1"}, "mm1");
  m.Node("MatMul", {"h1", "W"}, {"h2"}, "mm2");
  m.Output("h2");
  auto e = RunStep(m, "sgd", "", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const Trace& t = e->trace;
  auto g = BuffersNamed(t, "grad of W");
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(t.buffers[g[0]].category, Category::kGradients);
  EXPECT_EQ(t.buffers[g[0]].bytes, 256u);
  EXPECT_EQ(StepLabel(t, StepOf(t, g[0], Event::Kind::kAlloc)), "backward:mm2");
  EXPECT_EQ(StepLabel(t, StepOf(t, g[0], Event::Kind::kFree)), "optimizer:zero_grad");
  EXPECT_EQ(t.buffers[g[1]].category, Category::kTransient);
  EXPECT_EQ(t.buffers[g[1]].bytes, 256u);
  EXPECT_EQ(StepLabel(t, StepOf(t, g[1], Event::Kind::kAlloc)), "backward:mm1");
  EXPECT_EQ(StepLabel(t, StepOf(t, g[1], Event::Kind::kFree)), "backward:mm1");
  // mm2 saves h1 and W; mm1 saves only x (W's gradient needs x; x needs none).
  EXPECT_EQ(OpNamed(e->plan, "mm1")->saved, std::vector<PlanTensorId>({Id(e->plan, "x")}));
  EXPECT_EQ(OpNamed(e->plan, "mm2")->saved.size(), 2u);
}

// Conv + BatchNorm + global average pool, adam for-loop on the CPU. At the end only these
// remain:
//   parameters: W [4,3,3,3] = 108 f32 = 432, scale [4] = 16, bias [4] = 16    -> 464
//   buffers: running mean [4] = 16, running var [4] = 16                      -> 32
//   batch: x [2,3,8,8] = 384 f32 = 1536, labels [2] int64 = 16                -> 1552
//   optimizer state: 2 moments * 464 = 928, 3 step tensors * 4 = 12           -> 940
//   total 464 + 32 + 1552 + 940 = 2988
TEST(SimulatorGradients, AtTheEndOnlyParametersBuffersStateAndBatchRemain) {
  ModelBuilder m;
  m.Input("x", kF32, {2, 3, 8, 8});
  m.Initializer("W", kF32, {4, 3, 3, 3});
  m.Initializer("scale", kF32, {4});
  m.Initializer("bias", kF32, {4});
  m.Initializer("running_mean", kF32, {4});
  m.Initializer("running_var", kF32, {4});
  m.Node("Conv", {"x", "W"}, {"c"}, "conv").Ints("kernel_shape", {3, 3}).Ints("pads", {1, 1, 1, 1});
  m.Node("BatchNormalization", {"c", "scale", "bias", "running_mean", "running_var"}, {"n"}, "bn");
  m.Node("Relu", {"n"}, {"r"}, "relu");
  m.Node("GlobalAveragePool", {"r"}, {"g"}, "gap");
  m.Node("Flatten", {"g"}, {"logits"}, "flatten").Int("axis", 1);
  m.Output("logits");
  auto e = RunStep(m, "adam", "for-loop", "torch-cpu");
  ASSERT_TRUE(e.ok()) << e.error().message;
  Recording r = Record(e->trace);
  EXPECT_EQ(r.live_bytes, 2988u);
  EXPECT_EQ(Cat(r.live_by_category, Category::kParameters), 464u);
  EXPECT_EQ(Cat(r.live_by_category, Category::kBuffers), 32u);
  EXPECT_EQ(Cat(r.live_by_category, Category::kBatch), 1552u);
  EXPECT_EQ(Cat(r.live_by_category, Category::kOptimizerState), 940u);
  EXPECT_EQ(Cat(r.live_by_category, Category::kGradients), 0u);
  EXPECT_EQ(Cat(r.live_by_category, Category::kSavedActivations), 0u);
  EXPECT_EQ(Cat(r.live_by_category, Category::kTransient), 0u);
  for (BufferId b : r.live) {
    Category c = e->trace.buffers[b].category;
    EXPECT_TRUE(c == Category::kParameters || c == Category::kBuffers || c == Category::kBatch ||
                c == Category::kOptimizerState)
        << e->trace.buffers[b].name << " is still live";
  }
  // The BatchNorm's save_mean/save_invstd ([4] f32 = 16 bytes each) are saved activations
  // that go in its backward.
  for (const char* name : {"bn:save_mean", "bn:save_invstd"}) {
    SCOPED_TRACE(name);
    auto ids = BuffersNamed(e->trace, name);
    ASSERT_EQ(ids.size(), 1u);
    EXPECT_EQ(e->trace.buffers[ids[0]].bytes, 16u);
    EXPECT_EQ(e->trace.buffers[ids[0]].category, Category::kSavedActivations);
    EXPECT_EQ(StepLabel(e->trace, StepOf(e->trace, ids[0], Event::Kind::kFree)), "backward:bn");
  }
}

// --loss none: no labels and no loss; the backward starts from a gradient of the output.
//   setup 1256 + x 128 = 1384; forward h 256, y 160 -> 1800
//   loss backward: grad of y 160 -> 1960; gemm2: grad of r 256, W2 640, b2 40 -> 2896, -160
//   relu: +256 -256 -256 (h); gemm1: W1 512 + b1 64 -> 2480 + 576 = 3056 <- peak
TEST(SimulatorEvents, LossNoneStartsTheBackwardFromTheOutputsGradient) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "sgd", "", "torch-cpu", "none");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const std::vector<Ev> expected = {
      {'A', "setup:steady state", "W1", 512},
      {'A', "setup:steady state", "b1", 64},
      {'A', "setup:steady state", "W2", 640},
      {'A', "setup:steady state", "b2", 40},
      {'A', "setup:steady state", "x", 128},
      {'A', "forward:gemm1", "h", 256},
      {'A', "forward:gemm2", "y", 160},
      {'A', "backward:loss backward", "grad of y", 160},
      {'A', "backward:gemm2", "grad of r", 256},
      {'A', "backward:gemm2", "grad of W2", 640},
      {'A', "backward:gemm2", "grad of b2", 40},
      {'F', "backward:gemm2", "grad of y", 160},
      {'A', "backward:relu", "grad of h", 256},
      {'F', "backward:relu", "grad of r", 256},
      {'F', "backward:relu", "h", 256},
      {'A', "backward:gemm1", "grad of W1", 512},
      {'A', "backward:gemm1", "grad of b1", 64},
      {'F', "backward:gemm1", "grad of h", 256},
      {'F', "optimizer:zero_grad", "grad of W1", 512},
      {'F', "optimizer:zero_grad", "grad of b1", 64},
      {'F', "optimizer:zero_grad", "grad of W2", 640},
      {'F', "optimizer:zero_grad", "grad of b2", 40},
      {'F', "end:end of step", "y", 160},
  };
  EXPECT_EQ(Record(e->trace).events, expected);
  EXPECT_EQ(e->peak.peak_bytes, 3056u);
  EXPECT_EQ(StepLabel(e->trace, e->peak.peak_step), "backward:gemm1");
}

// ---------------------------------------------------------------------------------------------
// Determinism

TEST(SimulatorDeterminism, TwoRunsGiveIdenticalStreams) {
  for (const char* target : {"torch-cpu", "torch-cuda"}) {
    SCOPED_TRACE(target);
    ModelBuilder m;
    Mlp(m);
    auto a = RunStep(m, "adam", "foreach", target);
    auto b = RunStep(m, "adam", "foreach", target);
    ASSERT_TRUE(a.ok()) << a.error().message;
    ASSERT_TRUE(b.ok()) << b.error().message;
    ASSERT_EQ(a->trace.events.size(), b->trace.events.size());
    for (size_t i = 0; i < a->trace.events.size(); ++i) {
      const Event& x = a->trace.events[i];
      const Event& y = b->trace.events[i];
      EXPECT_TRUE(x.kind == y.kind && x.buffer == y.buffer && x.step == y.step) << "event " << i;
    }
    EXPECT_EQ(Record(a->trace).events, Record(b->trace).events);
    ASSERT_EQ(a->trace.steps.size(), b->trace.steps.size());
    for (size_t s = 0; s < a->trace.steps.size(); ++s) {
      EXPECT_EQ(a->trace.steps[s].name, b->trace.steps[s].name);
      EXPECT_EQ(a->trace.steps[s].op_type, b->trace.steps[s].op_type);
    }
    EXPECT_EQ(a->peak.peak_bytes, b->peak.peak_bytes);
    EXPECT_EQ(a->peak.live_at_peak, b->peak.live_at_peak);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// oneDNN's CPU convolution scratch (torch 1.13, measured in validation/README.md): the forward
// holds max(input + weight, output) beside its output; the backward holds copies of the output
// gradient, of the input where it gets a gradient, and an fp32 weight-gradient buffer.

namespace {
void TwoConvs(ModelBuilder& m) {
  m.Input("x", kF32, {1, 2, 4, 4});         // 1*2*4*4*4 = 128 bytes, needs no gradient
  m.Initializer("W0", kF32, {2, 2, 1, 1});  // 2*2*1*1*4 = 16
  m.Initializer("W", kF32, {3, 2, 3, 3});   // 3*2*3*3*4 = 216
  m.Node("Conv", {"x", "W0"}, {"h"}, "conv0").Ints("kernel_shape", {1, 1});  // h: 128
  m.Node("Conv", {"h", "W"}, {"y"}, "conv1")                                 // y: 1*3*4*4*4 = 192
      .Ints("kernel_shape", {3, 3})
      .Ints("pads", {1, 1, 1, 1});
  m.Output("y");
}

std::vector<Ev> ScratchEvents(const Trace& t) {
  std::vector<Ev> out;
  for (const Ev& e : Record(t).events) {
    if (e.name.find(":workspace") != std::string::npos ||
        e.name.find(":backward copy") != std::string::npos) {
      out.push_back(e);
    }
  }
  return out;
}
}  // namespace

TEST(SimulatorEvents, CpuConvolutionHoldsOneDnnReorders) {
  ModelBuilder m;
  TwoConvs(m);
  auto e = RunStep(m, "sgd", "", "torch-cpu", "none");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const std::vector<Ev> expected = {
      {'A', "forward:conv0", "conv0:workspace", 144},  // max(x 128 + W0 16, h 128)
      {'F', "forward:conv0", "conv0:workspace", 144},
      {'A', "forward:conv1", "conv1:workspace", 344},  // max(h 128 + W 216, y 192)
      {'F', "forward:conv1", "conv1:workspace", 344},
      {'A', "backward:conv1", "conv1:backward copy of y", 192},  // the output gradient's copy
      {'A', "backward:conv1", "conv1:backward copy of h", 128},  // h gets a gradient
      {'A', "backward:conv1", "conv1:backward copy of W", 216},  // fp32 weight gradient
      {'F', "backward:conv1", "conv1:backward copy of y", 192},
      {'F', "backward:conv1", "conv1:backward copy of h", 128},
      {'F', "backward:conv1", "conv1:backward copy of W", 216},
      {'A', "backward:conv0", "conv0:backward copy of h", 128},  // x needs no gradient: no copy
      {'A', "backward:conv0", "conv0:backward copy of W0", 16},
      {'F', "backward:conv0", "conv0:backward copy of h", 128},
      {'F', "backward:conv0", "conv0:backward copy of W0", 16},
  };
  EXPECT_EQ(ScratchEvents(e->trace), expected);
  // CUDA convolutions (cuDNN) are modelled by the allocator's workspace instead: none here.
  auto cuda = RunStep(m, "sgd", "", "torch-cuda", "none");
  ASSERT_TRUE(cuda.ok()) << cuda.error().message;
  EXPECT_TRUE(ScratchEvents(cuda->trace).empty());
}

TEST(SimulatorEvents, PureBf16ConvolutionKeepsAnFp32WeightGradientBuffer) {
  ModelBuilder m;
  TwoConvs(m);
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok()) << g.error().message;
  EstimateFlags flags;
  flags.optimizer = "sgd";
  flags.target = "torch-cpu";
  flags.loss = "none";
  flags.precision = "bf16";
  auto o = ParseEstimateFlags(flags);
  ASSERT_TRUE(o.ok()) << o.error().message;
  auto e = RunEstimate(*g, *o);
  ASSERT_TRUE(e.ok()) << e.error().message;
  // bf16 halves every tensor but the weight-gradient buffer: W is 3*2*3*3 = 54 elements,
  // 108 bytes in bf16, its buffer 54 * 4 = 216.
  std::vector<Ev> backward;
  for (const Ev& ev : ScratchEvents(e->trace)) {
    if (ev.kind == 'A' && ev.step == "backward:conv1") backward.push_back(ev);
  }
  const std::vector<Ev> expected = {
      {'A', "backward:conv1", "conv1:backward copy of y", 96},
      {'A', "backward:conv1", "conv1:backward copy of h", 64},
      {'A', "backward:conv1", "conv1:backward copy of W", 216},
  };
  EXPECT_EQ(backward, expected);
}

// ---------------------------------------------------------------------------------------------
// ForwardHeldBytes: the planner's forward replays, on the MLP (loss none, round 1).

TEST(SimulatorForwardHeld, CheckpointingTheWholeMlpFreesTheHiddenActivation) {
  ModelBuilder m;
  Mlp(m);
  auto e = RunStep(m, "sgd", "", "torch-cpu", "none");
  ASSERT_TRUE(e.ok()) << e.error().message;
  const TrainingPlan& plan = e->plan;
  auto index = [&](const std::string& name) {
    return static_cast<int>(OpNamed(plan, name) - plan.ops.data());
  };
  ASSERT_NE(OpNamed(plan, "gemm1"), nullptr);
  ASSERT_NE(OpNamed(plan, "gemm2"), nullptr);
  // No regions: h (= r, the in-place Relu's output, 256 bytes) is saved by the Relu and by
  // gemm2 (for W2's gradient); y (160) is held by the script. x is data, not counted.
  auto base = ForwardHeldBytes(plan, {}, 1000, 1);
  ASSERT_TRUE(base.ok()) << base.error().message;
  EXPECT_EQ(*base, 256u + 160u);
  // All three ops in one region: nothing is saved, the region's only input x is data, so h is
  // freed after gemm2; y stays, and the region keeps its RNG state (1000 bytes here).
  auto all = ForwardHeldBytes(plan, {{index("gemm1"), index("relu"), index("gemm2")}}, 1000, 1);
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(*all, 160u + 1000u);
  // Relu and gemm2 alone: h is the region's input and stays; they save nothing else.
  auto tail = ForwardHeldBytes(plan, {{index("relu"), index("gemm2")}}, 0, 1);
  ASSERT_TRUE(tail.ok()) << tail.error().message;
  EXPECT_EQ(*tail, 256u + 160u);
  // Each storage is rounded as the peak counts it: 256 and 160 to 512 each.
  auto rounded = ForwardHeldBytes(plan, {}, 0, 512);
  ASSERT_TRUE(rounded.ok());
  EXPECT_EQ(*rounded, 1024u);
  // An op index outside the plan is refused, not read.
  auto bad = ForwardHeldBytes(plan, {{static_cast<int>(plan.ops.size())}}, 0, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("not in the plan"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Checkpointing (use_reentrant=False), on x -> h = x + B -> [blk: t = W^T; y = h @ t].

namespace {
void CheckpointedLinear(ModelBuilder& m) {
  m.Input("x", kF32, {4, 8});                    // 128 bytes
  m.Initializer("B", kF32, {8});                 // 32
  m.Initializer("W", kF32, {6, 8});              // 192
  m.Node("Add", {"x", "B"}, {"h"}, "/pre/Add");  // h [4,8]: 128; Add saves nothing
  m.Node("Transpose", {"W"}, {"t"}, "/blk/Transpose").Ints("perm", {1, 0});  // a view of W
  m.Node("MatMul", {"h", "t"}, {"y"}, "/blk/MatMul");                        // y [4,6]: 96
  m.Output("y");
}
}  // namespace

TEST(SimulatorCheckpoint, RecomputedViewOfAParameterAllocatesNothing) {
  ModelBuilder m;
  CheckpointedLinear(m);
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok()) << g.error().message;
  EstimateFlags flags;
  flags.optimizer = "sgd";
  flags.target = "torch-cpu";
  flags.loss = "none";
  flags.checkpoint = "blk";
  auto o = ParseEstimateFlags(flags);
  ASSERT_TRUE(o.ok()) << o.error().message;
  auto e = RunEstimate(*g, *o);
  ASSERT_TRUE(e.ok()) << e.error().message;
  std::vector<Ev> recompute;
  for (const Ev& ev : Record(e->trace).events) {
    if (ev.step.rfind("backward:recompute", 0) == 0) recompute.push_back(ev);
  }
  // The recompute makes y again (96 bytes) and drops it (nothing saves it); t = W^T is a view
  // of the parameter, as in the forward: no copy of W's 192 bytes.
  const std::vector<Ev> expected = {
      {'A', "backward:recompute /blk/MatMul", "y", 96},
      {'F', "backward:recompute /blk/MatMul", "y", 96},
  };
  EXPECT_EQ(recompute, expected);
  // The region input h and the preserved RNG state (5056 bytes on the CPU) go when the
  // region's last node with saved tensors (the MatMul; the transpose saves nothing) has run,
  // not at the end of the backward.
  auto h = BuffersNamed(e->trace, "h");
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(StepLabel(e->trace, StepOf(e->trace, h[0], Event::Kind::kFree)),
            "backward:/blk/MatMul");
  auto rng = BuffersNamed(e->trace, "rng state of blk");
  ASSERT_EQ(rng.size(), 1u);
  EXPECT_EQ(e->trace.buffers[rng[0]].bytes, 5056u);
  EXPECT_EQ(StepLabel(e->trace, StepOf(e->trace, rng[0], Event::Kind::kFree)),
            "backward:/blk/MatMul");
}

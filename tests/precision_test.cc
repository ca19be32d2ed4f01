// Precision policies (policies/precision.h): autocast's op lists per device and PyTorch
// release, run-time constants that follow the data's type, and where the loss computes under
// pure bf16. Each case is a tiny graph whose bytes are worked out by hand in the comments; the
// CPU 1.13 lists are the ones measured on torch 1.13.1 (validation/README.md, "autocast").
#include "policies/precision.h"

#include <gtest/gtest.h>

#include <string>

#include "importer/importer.h"
#include "simulator/plan_builder.h"
#include "simulator/simulate.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::ModelBuilder;

namespace {

constexpr DType kF32 = DType::kFloat32;
constexpr DType kBf16 = DType::kBFloat16;

TargetSpec Cpu(TorchVersion v) {
  TargetSpec t{"torch-cpu", Device::kCpu, 1};
  t.torch_version = v;
  return t;
}
TargetSpec Cuda(TorchVersion v) {
  TargetSpec t{"torch-cuda", Device::kCuda, 512};
  t.torch_version = v;
  return t;
}

Result<TrainingPlan> Planned(ModelBuilder& m, const TargetSpec& target, Precision precision,
                             LossKind loss = LossKind::kNone,
                             LossPrecision loss_precision = LossPrecision::kFp32) {
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  PlanOptions o;
  o.target = target;
  o.loss = loss;
  auto plan = BuildPlan(*g, o);
  if (!plan) return plan.error();
  PrecisionPolicy policy({precision, target.device, target.torch_version, loss_precision});
  if (auto s = policy.Apply(*plan); !s) return Error{s.message()};
  return plan;
}

const PlanTensor& Named(const TrainingPlan& p, const std::string& name) {
  for (const PlanTensor& t : p.tensors) {
    if (t.name == name) return t;
  }
  ADD_FAILURE() << "no tensor " << name;
  static const PlanTensor none;
  return none;
}

// y = ConvTranspose(in [1,4,8,8], W [4,4,3,3]): [1,4,10,10], 400 elements.
void ConvTransposeModel(ModelBuilder& m) {
  m.Input("in", kF32, {1, 4, 8, 8});
  m.Initializer("W", kF32, {4, 4, 3, 3});
  m.Node("ConvTranspose", {"in", "W"}, {"y"}, "/up/ConvTranspose");
  m.Output("y");
}

// torch 1.13's CPU autocast runs conv_transpose in fp32 (400 x 4 = 1600 bytes); 2.x moved it
// to lower precision (400 x 2 = 800 bytes); CUDA casts it down in both.
TEST(Autocast, ConvTransposeOnCpuIsFp32In113AndBf16In2) {
  ModelBuilder a(14), b(14), c(14);
  ConvTransposeModel(a);
  ConvTransposeModel(b);
  ConvTransposeModel(c);
  auto old_cpu = Planned(a, Cpu(TorchVersion::k1_13), Precision::kAmpBf16);
  auto new_cpu = Planned(b, Cpu(TorchVersion::k2), Precision::kAmpBf16);
  auto old_cuda = Planned(c, Cuda(TorchVersion::k1_13), Precision::kAmpBf16);
  ASSERT_TRUE(old_cpu.ok() && new_cpu.ok() && old_cuda.ok());
  EXPECT_EQ(Named(*old_cpu, "y").dtype, kF32);
  EXPECT_EQ(Named(*old_cpu, "y").bytes, 1600u);
  EXPECT_EQ(Named(*new_cpu, "y").dtype, kBf16);
  EXPECT_EQ(Named(*new_cpu, "y").bytes, 800u);
  EXPECT_EQ(Named(*old_cuda, "y").bytes, 800u);
}

// h = MatMul(in [4,8], W [8,8]) is bf16 under autocast; then Pad by one row and column:
// [5,9] = 45 elements. Reflection padding is on CPU autocast's fp32 list (180 bytes),
// constant padding on none (it follows its bf16 input: 90 bytes).
void PadModel(ModelBuilder& m, const std::string& mode) {
  m.Input("in", kF32, {4, 8});
  m.Initializer("W", kF32, {8, 8});
  m.Int64Initializer("pads", {4}, {0, 0, 1, 1});
  m.Node("MatMul", {"in", "W"}, {"h"}, "/fc/MatMul");
  m.Node("Pad", {"h", "pads"}, {"y"}, "/pad/Pad").String("mode", mode);
  m.Output("y");
}

TEST(Autocast, ReflectionPadOnCpuRunsInFp32ConstantPadFollows) {
  for (TorchVersion v : {TorchVersion::k1_13, TorchVersion::k2}) {
    ModelBuilder reflect(14), constant(14);
    PadModel(reflect, "reflect");
    PadModel(constant, "constant");
    auto r = Planned(reflect, Cpu(v), Precision::kAmpBf16);
    auto c = Planned(constant, Cpu(v), Precision::kAmpBf16);
    ASSERT_TRUE(r.ok() && c.ok());
    EXPECT_EQ(Named(*r, "h").bytes, 64u);  // 32 bf16 elements
    EXPECT_EQ(Named(*r, "y").bytes, 180u);
    EXPECT_EQ(Named(*c, "y").bytes, 90u);
  }
}

// PReLU after the MatMul: on no CPU list in 1.13, so its fp32 slope promotes the bf16 input's
// result to fp32 (32 x 4 = 128 bytes); lower precision in 2.x (the slope is cast down, 64
// bytes).
TEST(Autocast, PReluOnCpuFollowsIn113AndIsLowIn2) {
  auto model = [](ModelBuilder& m) {
    m.Input("in", kF32, {4, 8});
    m.Initializer("W", kF32, {8, 8});
    m.Initializer("slope", kF32, {8});
    m.Node("MatMul", {"in", "W"}, {"h"}, "/fc/MatMul");
    m.Node("PRelu", {"h", "slope"}, {"y"}, "/act/PRelu");
    m.Output("y");
  };
  ModelBuilder a(14), b(14);
  model(a);
  model(b);
  auto old_cpu = Planned(a, Cpu(TorchVersion::k1_13), Precision::kAmpBf16);
  auto new_cpu = Planned(b, Cpu(TorchVersion::k2), Precision::kAmpBf16);
  ASSERT_TRUE(old_cpu.ok()) << old_cpu.error().message;
  ASSERT_TRUE(new_cpu.ok()) << new_cpu.error().message;
  EXPECT_EQ(Named(*old_cpu, "y").bytes, 128u);
  EXPECT_EQ(Named(*new_cpu, "y").bytes, 64u);
}

// 3-D max pooling is on CPU autocast's fp32 list, 2-D pooling on none. A Conv (bf16) then
// MaxPool k=2: 3-D [1,2,4,4,4] -> [1,2,2,2,2] = 16 elements, fp32 64 bytes; 2-D [1,2,4,4] ->
// [1,2,2,2] = 8 elements, following the bf16 conv output: 16 bytes.
TEST(Autocast, ThreeDimensionalPoolingOnCpuRunsInFp32) {
  auto model = [](ModelBuilder& m, bool three_d) {
    std::vector<int64_t> k(three_d ? 3 : 2, 2);
    if (three_d) {
      m.Input("in", kF32, {1, 2, 4, 4, 4});
      m.Initializer("W", kF32, {2, 2, 1, 1, 1});
    } else {
      m.Input("in", kF32, {1, 2, 4, 4});
      m.Initializer("W", kF32, {2, 2, 1, 1});
    }
    m.Node("Conv", {"in", "W"}, {"h"}, "/conv/Conv");
    m.Node("MaxPool", {"h"}, {"y"}, "/pool/MaxPool").Ints("kernel_shape", k).Ints("strides", k);
    m.Output("y");
  };
  for (TorchVersion v : {TorchVersion::k1_13, TorchVersion::k2}) {
    ModelBuilder a(14), b(14);
    model(a, true);
    model(b, false);
    auto p3 = Planned(a, Cpu(v), Precision::kAmpBf16);
    auto p2 = Planned(b, Cpu(v), Precision::kAmpBf16);
    ASSERT_TRUE(p3.ok() && p2.ok());
    EXPECT_EQ(Named(*p3, "y").bytes, 64u);
    EXPECT_EQ(Named(*p2, "y").bytes, 16u);
  }
}

// Scores h = MatMul(x [1,300,16], W [16,256]): [1,300,256] = 76800 elements, bf16 under
// autocast (153600 bytes). A mask made at run time, Trilu(ConstantOfShape([300,256])) (too
// large to fold, so a real tensor, written as fp32 by the fp32 trace), is added, then Softmax,
// which
// CPU autocast runs in its input's type. The mask was `torch.full(..., dtype=h.dtype)` in the
// model: it and the sum are bf16 (153600 bytes each), not fp32 (307200) by promotion.
TEST(Autocast, RunTimeMaskFollowsTheScoresType) {
  ModelBuilder m(14);
  m.Input("x", kF32, {1, 300, 16});
  m.Initializer("W", kF32, {16, 256});
  m.Int64Initializer("onnx::mask_shape", {2}, {300, 256});
  m.Node("MatMul", {"x", "W"}, {"h"}, "/attn/MatMul");
  m.Node("ConstantOfShape", {"onnx::mask_shape"}, {"full"}, "/attn/ConstantOfShape");
  m.Node("Trilu", {"full"}, {"mask"}, "/attn/Trilu").Int("upper", 1);
  m.Node("Add", {"h", "mask"}, {"masked"}, "/attn/Add");
  m.Node("Softmax", {"masked"}, {"y"}, "/attn/Softmax").Int("axis", -1);
  m.Output("y");
  auto p = Planned(m, Cpu(TorchVersion::k2), Precision::kAmpBf16);
  ASSERT_TRUE(p.ok()) << p.error().message;
  ASSERT_FALSE(Named(*p, "mask").metadata);
  EXPECT_EQ(Named(*p, "mask").bytes, 153600u);
  EXPECT_EQ(Named(*p, "masked").bytes, 153600u);
  EXPECT_EQ(Named(*p, "y").bytes, 153600u);
}

// A parameter is data: an fp32 weight added to bf16 activations promotes them (PyTorch's
// type promotion), unlike a run-time constant. h [1,300,256] bf16 + bias [256] fp32 -> fp32:
// 76800 x 4 = 307200 bytes.
TEST(Autocast, ParameterStillPromotes) {
  ModelBuilder m(14);
  m.Input("x", kF32, {1, 300, 16});
  m.Initializer("W", kF32, {16, 256});
  m.Initializer("shift", kF32, {300, 256});
  m.Node("MatMul", {"x", "W"}, {"h"}, "/attn/MatMul");
  m.Node("Mul", {"h", "shift"}, {"y"}, "/attn/Mul");
  m.Output("y");
  auto p = Planned(m, Cpu(TorchVersion::k2), Precision::kAmpBf16);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(Named(*p, "y").bytes, 307200u);
}

// Logits = Gemm(in [4,8], W [16,8]) under pure bf16: [4,16] = 64 elements (128 bytes). With
// --loss-precision fp32 the script's `logits = logits.float()` (256 bytes) is what stays
// alive to the end of the step, and the log-softmax is fp32 (256 bytes); with `model` the
// log-softmax is bf16 (128 bytes) and nothing is upcast.
uint64_t BytesNamed(const Trace& t, const std::string& name) {
  for (const Buffer& b : t.buffers) {
    if (b.name == name) return b.bytes;
  }
  return 0;
}

TEST(LossPrecision, Fp32UpcastsTheLogitsAndHoldsTheCopy) {
  auto model = [](ModelBuilder& m) {
    m.Input("in", kF32, {4, 8});
    m.Initializer("W", kF32, {16, 8});
    m.Node("Gemm", {"in", "W"}, {"logits"}, "/fc/Gemm").Int("transB", 1);
    m.Output("logits");
  };
  ModelBuilder a(14), b(14);
  model(a);
  model(b);
  auto up = Planned(a, Cuda(TorchVersion::k2), Precision::kBf16, LossKind::kCrossEntropy,
                    LossPrecision::kFp32);
  auto as_is = Planned(b, Cuda(TorchVersion::k2), Precision::kBf16, LossKind::kCrossEntropy,
                       LossPrecision::kModel);
  ASSERT_TRUE(up.ok() && as_is.ok());
  EXPECT_EQ(up->loss_dtype, kF32);
  EXPECT_EQ(as_is->loss_dtype, kBf16);
  auto t_up = Simulate(*up);
  auto t_as_is = Simulate(*as_is);
  ASSERT_TRUE(t_up.ok() && t_as_is.ok());
  EXPECT_EQ(BytesNamed(*t_up, "float(logits)"), 256u);
  EXPECT_EQ(BytesNamed(*t_up, "log_softmax(logits)"), 256u);
  EXPECT_EQ(BytesNamed(*t_as_is, "float(logits)"), 0u);
  EXPECT_EQ(BytesNamed(*t_as_is, "log_softmax(logits)"), 128u);
  // The copy is freed only when the step ends (the script's variable), the bf16 logits at
  // the loss.
  const Trace& t = *t_up;
  auto free_phase = [&](const std::string& name) {
    for (const Event& e : t.events) {
      if (e.kind == Event::Kind::kFree && t.buffers[e.buffer].name == name) {
        return t.steps[e.step].phase;
      }
    }
    return Phase::kSetup;
  };
  EXPECT_EQ(free_phase("float(logits)"), Phase::kEnd);
  EXPECT_EQ(free_phase("logits"), Phase::kLoss);
}

TEST(PrecisionFlags, ParseAndRefuse) {
  EXPECT_EQ(*ParseTorchVersion("1.13"), TorchVersion::k1_13);
  EXPECT_EQ(*ParseTorchVersion("2"), TorchVersion::k2);
  EXPECT_FALSE(ParseTorchVersion("1.12").ok());
  EXPECT_EQ(*ParseLossPrecision("model"), LossPrecision::kModel);
  EXPECT_FALSE(ParseLossPrecision("bf16").ok());
}

}  // namespace

// The exporter-pattern catalogue (simulator/exporter_patterns.h): one test per decomposition,
// each a tiny graph written the way torch.onnx 1.13 writes it (node for node, from exports
// dumped with onnx.load), with the bytes eager PyTorch holds for the backward worked out by
// hand. Measured on torch 1.13 CPU with validation/alloc_counter.c: silu, mish, hardswish,
// gelu (erf and tanh) each hold input + output after the forward; layer_norm and group_norm
// hold input + output + their fp32 mean and rstd.
#include "simulator/exporter_patterns.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "importer/importer.h"
#include "simulator/gradient_rules.h"
#include "simulator/plan_builder.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::ModelBuilder;

namespace {

constexpr DType kF32 = DType::kFloat32;

Result<TrainingPlan> Plan(ModelBuilder& m) {
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  PlanOptions o;
  o.target = TargetSpec{"torch-cpu", Device::kCpu, 1};
  o.loss = LossKind::kNone;
  return BuildPlan(*g, o);
}

const PlanOp* OpNamed(const TrainingPlan& p, const std::string& name) {
  for (const PlanOp& op : p.ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

// Bytes of the activations and data every op saves for the backward (each tensor once);
// parameters are held anyway and do not count. Every graph here starts with a Linear on the
// data `in` [4,8] (128 bytes), which the Gemm saves for its weight's gradient.
uint64_t SavedActivationBytes(const TrainingPlan& p) {
  std::set<PlanTensorId> seen;
  uint64_t sum = 0;
  for (const PlanOp& op : p.ops) {
    for (PlanTensorId t : op.saved) {
      const PlanTensor& x = p.tensors[t];
      if (x.role == TensorRole::kParameter || !seen.insert(t).second) continue;
      sum += x.bytes;
    }
  }
  return sum;
}

std::set<std::string> OpTypes(const TrainingPlan& p) {
  std::set<std::string> out;
  for (const PlanOp& op : p.ops) out.insert(op.type);
  return out;
}

// h = Gemm(in [4,8], W [16,8], transB): [4,16] float32 = 256 bytes, requires grad.
void Linear(ModelBuilder& m) {
  m.Input("in", kF32, {4, 8});
  m.Initializer("W", kF32, {16, 8});
  m.Node("Gemm", {"in", "W"}, {"h"}, "/fc/Gemm").Int("transB", 1);
}

void ExpectFused(const TrainingPlan& plan, const std::string& root, const std::string& type,
                 size_t inputs) {
  const PlanOp* op = OpNamed(plan, root);
  ASSERT_NE(op, nullptr) << root;
  EXPECT_EQ(op->type, type);
  EXPECT_EQ(op->inputs.size(), inputs);
  EXPECT_EQ(op->grad_inputs.front(), 0);
}

TEST(ExporterPatterns, EveryFusedOpHasAGradientRule) {
  ASSERT_FALSE(ExporterPatterns().empty());
  for (const ExporterPattern& p : ExporterPatterns()) {
    EXPECT_NE(FindGradRule(p.fused_type), nullptr) << p.name << " -> " << p.fused_type;
    EXPECT_FALSE(p.written_by.empty()) << p.name;
  }
}

// nn.SiLU: Sigmoid, Mul (every opset). Eager silu saves x: 256 bytes. As written, Sigmoid
// would save its result and Mul both operands: 256 + 256 = 512 bytes.
TEST(ExporterPatterns, SiluSavesOnlyItsInput) {
  ModelBuilder m(14);
  Linear(m);
  m.Node("Sigmoid", {"h"}, {"s"}, "/act/Sigmoid");
  m.Node("Mul", {"h", "s"}, {"y"}, "/act/Mul");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ExpectFused(*plan, "/act/Mul", "Silu", 1);
  EXPECT_EQ(OpNamed(*plan, "/act/Sigmoid"), nullptr);
  EXPECT_EQ(SavedActivationBytes(*plan), 128u + 256);
}

// The sigmoid's result is read by another op too: eager PyTorch computed it on its own, so
// nothing is fused.
TEST(ExporterPatterns, SiluWhoseSigmoidIsReadElsewhereIsNotFused) {
  ModelBuilder m(14);
  Linear(m);
  m.Node("Sigmoid", {"h"}, {"s"}, "/act/Sigmoid");
  m.Node("Mul", {"h", "s"}, {"y"}, "/act/Mul");
  m.Node("Add", {"y", "s"}, {"z"}, "/act/Add");
  m.Output("z");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(OpNamed(*plan, "/act/Mul")->type, "Mul");
  EXPECT_EQ(OpNamed(*plan, "/act/Sigmoid")->type, "Sigmoid");
}

// Mul(x, sigmoid(y)) with y != x is a gate, not SiLU (SqueezeExcitation's scale * input).
TEST(ExporterPatterns, GateOfAnotherTensorIsNotSilu) {
  ModelBuilder m(14);
  Linear(m);
  m.Initializer("W2", kF32, {16, 8});
  m.Node("Gemm", {"in", "W2"}, {"g"}, "/gate/Gemm").Int("transB", 1);
  m.Node("Sigmoid", {"g"}, {"s"}, "/gate/Sigmoid");
  m.Node("Mul", {"h", "s"}, {"y"}, "/gate/Mul");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(OpNamed(*plan, "/gate/Mul")->type, "Mul");
}

// nn.Mish: Softplus, Tanh, Mul. Eager mish saves x: 256 bytes. As written, Softplus would
// save x and Tanh its result, which Mul saves again with x: 512 bytes.
TEST(ExporterPatterns, MishSavesOnlyItsInput) {
  ModelBuilder m(14);
  Linear(m);
  m.Node("Softplus", {"h"}, {"sp"}, "/act/Softplus");
  m.Node("Tanh", {"sp"}, {"t"}, "/act/Tanh");
  m.Node("Mul", {"h", "t"}, {"y"}, "/act/Mul");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ExpectFused(*plan, "/act/Mul", "Mish", 1);
  EXPECT_EQ(OpTypes(*plan), (std::set<std::string>{"Gemm", "Mish"}));
  EXPECT_EQ(SavedActivationBytes(*plan), 128u + 256);
}

// nn.Hardswish before opset 14: HardSigmoid(alpha=1/6, beta=0.5), Mul. Saves x: 256 bytes.
TEST(ExporterPatterns, HardswishBeforeOpset14SavesOnlyItsInput) {
  ModelBuilder m(11);
  Linear(m);
  m.Node("HardSigmoid", {"h"}, {"hs"}, "/act/HardSigmoid").Float("alpha", 1.0f / 6);
  m.Node("Mul", {"h", "hs"}, {"y"}, "/act/Mul");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ExpectFused(*plan, "/act/Mul", "HardSwish", 1);
  EXPECT_EQ(SavedActivationBytes(*plan), 128u + 256);
}

// A HardSigmoid with other constants is another function (nn.Hardsigmoid is alpha 1/6 too,
// but ONNX's default alpha 0.2 is not PyTorch's): not fused.
TEST(ExporterPatterns, HardSigmoidWithOtherAlphaIsNotHardswish) {
  ModelBuilder m(11);
  Linear(m);
  m.Node("HardSigmoid", {"h"}, {"hs"}, "/act/HardSigmoid").Float("alpha", 0.2f);
  m.Node("Mul", {"h", "hs"}, {"y"}, "/act/Mul");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(OpNamed(*plan, "/act/Mul")->type, "Mul");
}

// nn.GELU(approximate='tanh') before opset 20, as torch.onnx 1.13 writes it:
// 0.5 * (x * (1 + tanh(0.79788456 * (x + 0.044715 * (x * (x * x)))))). Saves x: 256 bytes.
TEST(ExporterPatterns, GeluTanhSavesOnlyItsInput) {
  ModelBuilder m(14);
  Linear(m);
  m.FloatInitializer("onnx::kappa", {}, {0.044715f});
  m.FloatInitializer("onnx::beta", {}, {0.7978845834732056f});
  m.FloatInitializer("onnx::one", {}, {1.0f});
  m.FloatInitializer("onnx::half", {}, {0.5f});
  m.Node("Mul", {"h", "h"}, {"sq"}, "/act/Mul");
  m.Node("Mul", {"h", "sq"}, {"cube"}, "/act/Mul_1");
  m.Node("Mul", {"onnx::kappa", "cube"}, {"kc"}, "/act/Mul_2");
  m.Node("Add", {"h", "kc"}, {"inner"}, "/act/Add");
  m.Node("Mul", {"onnx::beta", "inner"}, {"sc"}, "/act/Mul_3");
  m.Node("Tanh", {"sc"}, {"t"}, "/act/Tanh");
  m.Node("Add", {"onnx::one", "t"}, {"p1"}, "/act/Add_1");
  m.Node("Mul", {"h", "p1"}, {"tx"}, "/act/Mul_4");
  m.Node("Mul", {"onnx::half", "tx"}, {"y"}, "/act/Mul_5");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ExpectFused(*plan, "/act/Mul_5", "Gelu", 1);
  EXPECT_EQ(OpTypes(*plan), (std::set<std::string>{"Gemm", "Gelu"}));
  EXPECT_EQ(SavedActivationBytes(*plan), 128u + 256);
}

// nn.LayerNorm(16) before opset 17: ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div,
// Mul weight, Add bias. native_layer_norm saves x (256 bytes) and fp32 mean and rstd of one
// value per row, [4,1]: 16 bytes each. 288 bytes.
void LayerNormModel(ModelBuilder& m, int64_t second_axis, bool affine) {
  Linear(m);
  m.FloatInitializer("onnx::two", {}, {2.0f});
  m.FloatInitializer("onnx::eps", {}, {1e-5f});
  m.Node("ReduceMean", {"h"}, {"mean"}, "/ln/ReduceMean").Ints("axes", {-1});
  m.Node("Sub", {"h", "mean"}, {"c"}, "/ln/Sub");
  m.Node("Pow", {"c", "onnx::two"}, {"sq"}, "/ln/Pow");
  m.Node("ReduceMean", {"sq"}, {"var"}, "/ln/ReduceMean_1").Ints("axes", {second_axis});
  m.Node("Add", {"var", "onnx::eps"}, {"ve"}, "/ln/Add");
  m.Node("Sqrt", {"ve"}, {"sd"}, "/ln/Sqrt");
  m.Node("Div", {"c", "sd"}, {affine ? "n" : "y"}, "/ln/Div");
  if (affine) {
    m.Initializer("ln.weight", kF32, {16});
    m.Initializer("ln.bias", kF32, {16});
    m.Node("Mul", {"n", "ln.weight"}, {"nw"}, "/ln/Mul");
    m.Node("Add", {"nw", "ln.bias"}, {"y"}, "/ln/Add_1");
  }
  m.Output("y");
}

TEST(ExporterPatterns, LayerNormBeforeOpset17SavesInputMeanAndRstd) {
  ModelBuilder m(14);
  LayerNormModel(m, -1, true);
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ExpectFused(*plan, "/ln/Add_1", "LayerNormalization", 3);
  EXPECT_EQ(OpTypes(*plan), (std::set<std::string>{"Gemm", "LayerNormalization"}));
  EXPECT_EQ(OpNamed(*plan, "/ln/Add_1")->grad_inputs, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(SavedActivationBytes(*plan), 128u + 256 + 16 + 16);
}

TEST(ExporterPatterns, LayerNormWithoutAffineEndsAtTheDiv) {
  ModelBuilder m(14);
  LayerNormModel(m, -1, false);
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ExpectFused(*plan, "/ln/Div", "LayerNormalization", 1);
  EXPECT_EQ(SavedActivationBytes(*plan), 128u + 256 + 16 + 16);
}

// Means over different axes are not a layer norm.
TEST(ExporterPatterns, MeansOverDifferentAxesAreNotALayerNorm) {
  ModelBuilder m(14);
  LayerNormModel(m, 0, true);
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(OpNamed(*plan, "/ln/Add_1")->type, "Add");
  EXPECT_NE(OpNamed(*plan, "/ln/Sqrt"), nullptr);
}

// nn.GroupNorm(2, 8) on x [2,8,3,3] (576 bytes), as torch.onnx writes it at every opset:
// Reshape to [0,2,-1], InstanceNormalization with constant ones/zeros, Reshape back to
// Shape(x), Mul Unsqueeze(weight), Add Unsqueeze(bias). native_group_norm saves x and fp32
// mean and rstd [N=2, G=2]: 16 bytes each; the Conv saves its input for the weight's
// gradient (576 bytes). 1184 bytes.
TEST(ExporterPatterns, GroupNormThroughInstanceNormSavesInputMeanAndRstd) {
  ModelBuilder m(14);
  m.Input("in", kF32, {2, 8, 3, 3});
  m.Initializer("conv.weight", kF32, {8, 8, 1, 1});
  m.Node("Conv", {"in", "conv.weight"}, {"x"}, "/conv/Conv").Ints("kernel_shape", {1, 1});
  m.Int64Initializer("onnx::grouped", {3}, {0, 2, -1});
  m.FloatInitializer("onnx::ones", {2}, {1.0f, 1.0f});
  m.FloatInitializer("onnx::zeros", {2}, {0.0f, 0.0f});
  m.Int64Initializer("onnx::axes", {2}, {1, 2});
  m.Initializer("gn.weight", kF32, {8});
  m.Initializer("gn.bias", kF32, {8});
  m.Node("Reshape", {"x", "onnx::grouped"}, {"r"}, "/gn/Reshape");
  m.Node("InstanceNormalization", {"r", "onnx::ones", "onnx::zeros"}, {"in_n"},
         "/gn/InstanceNormalization")
      .Float("epsilon", 1e-5f);
  m.Node("Shape", {"x"}, {"shape"}, "/gn/Shape");
  m.Node("Reshape", {"in_n", "shape"}, {"r2"}, "/gn/Reshape_1");
  m.Node("Unsqueeze", {"gn.weight", "onnx::axes"}, {"uw"}, "/gn/Unsqueeze");
  m.Node("Mul", {"r2", "uw"}, {"mw"}, "/gn/Mul");
  m.Node("Unsqueeze", {"gn.bias", "onnx::axes"}, {"ub"}, "/gn/Unsqueeze_1");
  m.Node("Add", {"mw", "ub"}, {"y"}, "/gn/Add");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ExpectFused(*plan, "/gn/Add", "GroupNormalization", 3);
  EXPECT_EQ(OpNamed(*plan, "/gn/Add")->grad_inputs, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(SavedActivationBytes(*plan), 576u + 576 + 16 + 16);
}

}  // namespace

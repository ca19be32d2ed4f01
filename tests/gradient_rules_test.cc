// The gradient rules through the plan builder, one test per rule family, on tiny hand-built
// graphs: what each op saves for the backward (after requires-grad filtering: a tensor needed
// only for the gradient of an input that needs none is not saved), the extras it makes (dtype,
// shape, bytes), which inputs get gradients, and the view / in-place / fusion decisions.
// Every expected byte count and stride is worked out by hand in the test.
#include "simulator/gradient_rules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "importer/importer.h"
#include "simulator/plan_builder.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::ModelBuilder;
using vramsim::testing::RawTensor;

namespace {

using Names = std::set<std::string>;
using Shape = std::vector<int64_t>;
constexpr DType kF32 = DType::kFloat32;

Result<TrainingPlan> PlanOn(ModelBuilder& m, const TargetSpec& target) {
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  PlanOptions o;
  o.target = target;
  o.loss = LossKind::kNone;
  return BuildPlan(*g, o);
}

Result<TrainingPlan> Plan(ModelBuilder& m, Device device = Device::kCpu) {
  return PlanOn(m, device == Device::kCpu ? TargetSpec{"torch-cpu", Device::kCpu, 1}
                                          : TargetSpec{"torch-cuda", Device::kCuda, 512});
}

// torch-cpu as torch 1.13 ran it (the validation's release).
TargetSpec Cpu113() {
  TargetSpec t{"torch-cpu", Device::kCpu, 1};
  t.torch_version = TorchVersion::k1_13;
  return t;
}

PlanTensorId Id(const TrainingPlan& p, const std::string& name) {
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    if (p.tensors[i].name == name) return static_cast<PlanTensorId>(i);
  }
  return -1;
}

const PlanTensor& T(const TrainingPlan& p, const std::string& name) {
  PlanTensorId id = Id(p, name);
  EXPECT_GE(id, 0) << "no tensor " << name;
  static const PlanTensor kNone{};
  return id >= 0 ? p.tensors[id] : kNone;
}

const PlanOp* OpNamed(const TrainingPlan& p, const std::string& name) {
  for (const PlanOp& op : p.ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

Names NamesOf(const TrainingPlan& p, const std::vector<PlanTensorId>& ids) {
  Names out;
  for (PlanTensorId t : ids) out.insert(t >= 0 ? p.tensors[t].name : "<none>");
  return out;
}

// Checks one op: its saved set, the input slots that get gradients and needs_backward.
void ExpectOp(const TrainingPlan& plan, const std::string& name, const Names& saved,
              const std::vector<int>& grads) {
  const PlanOp* op = OpNamed(plan, name);
  ASSERT_NE(op, nullptr) << "no op " << name;
  EXPECT_EQ(NamesOf(plan, op->saved), saved) << name << " saved";
  EXPECT_EQ(op->saved.size(), saved.size()) << name << " saves a tensor twice";
  EXPECT_EQ(op->grad_inputs, grads) << name << " grad_inputs";
  EXPECT_EQ(op->needs_backward, !grads.empty()) << name << " needs_backward";
}
#define EXPECT_OP(...)              \
  do {                              \
    SCOPED_TRACE("EXPECT_OP here"); \
    ExpectOp(__VA_ARGS__);          \
  } while (0)

// x: data [4,8]; h = Gemm(x, W0[16,8], transB) is [4,16] and requires grad.
void GemmPrefix(ModelBuilder& m) {
  m.Input("x", kF32, {4, 8});
  m.Initializer("W0", kF32, {16, 8});
  m.Node("Gemm", {"x", "W0"}, {"h"}, "gemm0").Int("transB", 1);
}

// ---------------------------------------------------------------------------------------------
// Registry

TEST(GradientRules, RegistryHasEveryFamilyAndNothingForUnknownOps) {
  for (const char* op : {"Conv",
                         "ConvTranspose",
                         "Gemm",
                         "MatMul",
                         "Add",
                         "Sum",
                         "Sub",
                         "Mul",
                         "Div",
                         "Pow",
                         "Neg",
                         "Log",
                         "Exp",
                         "Relu",
                         "Clip",
                         "Softmax",
                         "Where",
                         "BatchNormalization",
                         "LayerNormalization",
                         "MaxPool",
                         "AveragePool",
                         "GlobalAveragePool",
                         "ReduceMean",
                         "Dropout",
                         "Reshape",
                         "Transpose",
                         "Split",
                         "Concat",
                         "Gather",
                         "Cast",
                         "Shape",
                         "Equal"}) {
    EXPECT_NE(FindGradRule(op), nullptr) << op;
  }
  EXPECT_EQ(FindGradRule("CumSum"), nullptr);
  EXPECT_EQ(FindGradRule("conv"), nullptr);  // op types are case-sensitive
  std::vector<std::string> ops = RegisteredOps();
  EXPECT_TRUE(std::is_sorted(ops.begin(), ops.end()));
  EXPECT_NE(std::find(ops.begin(), ops.end(), "Gemm"), ops.end());
}

// ---------------------------------------------------------------------------------------------
// Convolution, linear algebra

TEST(GradientRules, ConvSavesInputForWeightGradAndWeightForInputGrad) {
  ModelBuilder m;
  m.Input("x", kF32, {1, 3, 5, 5});
  m.Input("wd", kF32, {4, 3, 3, 3});  // a weight fed as data: needs no gradient
  m.Initializer("W0", kF32, {3, 3, 3, 3});
  m.Initializer("W", kF32, {4, 3, 3, 3});
  m.Initializer("B", kF32, {4});
  // Data input: only the weight and bias need gradients; the weight is needed only for the
  // input's gradient, so it is not saved.
  m.Node("Conv", {"x", "W", "B"}, {"c_data"}, "conv_data").Ints("kernel_shape", {3, 3});
  // h requires grad (made from W0): both saved.
  m.Node("Conv", {"x", "W0"}, {"h"}, "conv0")
      .Ints("kernel_shape", {3, 3})
      .Ints("pads", {1, 1, 1, 1});
  m.Node("Conv", {"h", "W", "B"}, {"c_both"}, "conv_both").Ints("kernel_shape", {3, 3});
  // Weight without gradient: the input is needed only for the weight's gradient, not saved.
  m.Node("Conv", {"h", "wd"}, {"c_frozen"}, "conv_frozen").Ints("kernel_shape", {3, 3});
  m.Input("wt", kF32, {3, 2, 3, 3});  // ConvTranspose weight: [C_in, C_out, k, k]
  m.Node("ConvTranspose", {"h", "wt"}, {"ct"}, "convt").Ints("kernel_shape", {3, 3});
  m.Output("c_data").Output("c_both").Output("c_frozen").Output("ct");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "conv_data", {"x"}, {1, 2});
  EXPECT_OP(*plan, "conv_both", {"h", "W"}, {0, 1, 2});
  EXPECT_OP(*plan, "conv_frozen", {"wd"}, {0});
  // ConvTranspose follows the same rule: h needs a gradient, its weight none.
  EXPECT_OP(*plan, "convt", {"wt"}, {0});
  // On the CPU, oneDNN's backward copies the output gradient, the input (where it gets a
  // gradient) and computes the weight gradient in an fp32 buffer (where the weight gets one).
  auto copies = [&](const char* op) {
    std::vector<std::string> out;
    for (IoRef r : OpNamed(*plan, op)->backward_copies) {
      out.push_back(std::string(r.output ? "out" : "in") + std::to_string(r.index) +
                    (r.float32 ? "/f32" : ""));
    }
    return out;
  };
  EXPECT_EQ(copies("conv_data"), (std::vector<std::string>{"out0", "in1/f32"}));
  EXPECT_EQ(copies("conv_both"), (std::vector<std::string>{"out0", "in0", "in1/f32"}));
  EXPECT_EQ(copies("conv_frozen"), (std::vector<std::string>{"out0", "in0"}));
  // Its forward holds max(input + weight, output).
  ASSERT_EQ(OpNamed(*plan, "conv_both")->forward_workspace.size(), 2u);
  EXPECT_EQ(OpNamed(*plan, "conv_both")->forward_workspace[0].size(), 2u);
  auto cuda = Plan(m, Device::kCuda);
  ASSERT_TRUE(cuda.ok()) << cuda.error().message;
  EXPECT_TRUE(OpNamed(*cuda, "conv_data")->backward_copies.empty());
  EXPECT_TRUE(OpNamed(*cuda, "conv_data")->forward_workspace.empty());
  EXPECT_OP(*cuda, "conv_data", {"x"}, {1, 2});
  // Outputs are allocated: [1,4,3,3] float32 = 1*4*3*3*4 = 144 bytes (5-3+1 = 3).
  EXPECT_EQ(T(*plan, "c_data").bytes, 144u);
  EXPECT_EQ(T(*plan, "c_data").view_of, -1);
  EXPECT_TRUE(T(*plan, "c_data").requires_grad);
  EXPECT_FALSE(T(*plan, "x").requires_grad);
}

TEST(GradientRules, GemmSavesEachOperandForTheOthersGradient) {
  ModelBuilder m;
  GemmPrefix(m);
  m.Input("wd", kF32, {10, 16});
  m.Initializer("W", kF32, {10, 16});
  m.Initializer("b", kF32, {10});
  m.Node("Gemm", {"h", "W", "b"}, {"y_both"}, "gemm_both").Int("transB", 1);
  m.Node("Gemm", {"h", "wd"}, {"y_frozen"}, "gemm_frozen").Int("transB", 1);
  m.Output("y_both").Output("y_frozen");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  // x is data: x saved for W0's grad; W0 (needed only for x's grad) not saved; no bias.
  EXPECT_OP(*plan, "gemm0", {"x"}, {1});
  EXPECT_OP(*plan, "gemm_both", {"h", "W"}, {0, 1, 2});
  EXPECT_OP(*plan, "gemm_frozen", {"wd"}, {0});
  // y: [4,10] float32 = 4*10*4 = 160 bytes.
  EXPECT_EQ(T(*plan, "y_both").bytes, 160u);
}

TEST(GradientRules, MatMulSavesEachOperandForTheOthersGradient) {
  ModelBuilder m;
  GemmPrefix(m);
  m.Input("wd", kF32, {16, 2});
  m.Initializer("W", kF32, {16, 2});
  m.Node("MatMul", {"x", "W0t"}, {"mm_data"}, "mm_data");
  m.Initializer("W0t", kF32, {8, 16});
  m.Node("MatMul", {"h", "W"}, {"mm_both"}, "mm_both");
  m.Node("MatMul", {"h", "wd"}, {"mm_frozen"}, "mm_frozen");
  m.Output("mm_data").Output("mm_both").Output("mm_frozen");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "mm_data", {"x"}, {1});
  EXPECT_OP(*plan, "mm_both", {"h", "W"}, {0, 1});
  EXPECT_OP(*plan, "mm_frozen", {"wd"}, {0});
  // 2-D operands never need contiguous copies.
  EXPECT_TRUE(OpNamed(*plan, "mm_both")->copies.empty());
}

// maxvit's attention (torchvision 0.14, RelativePositionalMultiHeadAttention): q is a permuted
// view, einsum("B G H I D, B G H J D -> B G H I J", q, k) then ("B G H I J, B G H J D ->
// B G H I D", attn, v). torch 1.13 lowers each to permute + reshape to [BGH, ., .] + bmm and
// saves the bmm operands; with B,G,P,H,D = 2,3,5,4,8 and q = x.reshape(B,G,P,H,D).permute(0,1,3,
// 2,4), torch.autograd.graph.saved_tensors_hooks showed q saved as a contiguous copy of shape
// [24,5,8] (strides [40,8,1]) in both einsums, and the softmax output saved as itself.
TEST(GradientRules, EinsumSavesItsBmmOperandsCopyingThoseThatCannotBeViewed) {
  ModelBuilder m;
  m.Initializer("P", kF32, {2, 3, 5, 4, 8});  // contiguous strides [480,160,32,8,1]
  m.Initializer("K", kF32, {2, 3, 4, 5, 8});  // contiguous strides [480,160,40,8,1]
  m.Input("xd", kF32, {2, 3, 4, 5, 8});
  m.Node("Transpose", {"P"}, {"q"}, "permute").Ints("perm", {0, 1, 3, 2, 4});
  m.Node("Einsum", {"q", "K"}, {"s"}, "einsum_qk")
      .String("equation", "B G H I D, B G H J D -> B G H I J");
  m.Node("Einsum", {"s", "q"}, {"o"}, "einsum_av").String("equation", "BGHIJ,BGHJD->BGHID");
  m.Node("Einsum", {"xd", "K"}, {"od"}, "einsum_data").String("equation", "bghid,bghjd->bghij");
  m.Output("o").Output("od");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  // q: [2,3,4,5,8] with strides [480,160,8,32,1]. Left operand [BGH, I, D] = [24,5,8]: B,G,H
  // do not merge (H's stride 8 times 4 is 32, not G's 160): a copy of 24*5*8*4 = 3840 bytes.
  // K as the right operand, permuted to [B,G,H,D,J] = [2,3,4,8,5] (strides [480,160,40,1,8]),
  // reshaped to [BGH, D, J] = [24,8,5]: B,G,H merge (160*3 = 480, 40*4 = 160): a view, saved as
  // K itself.
  EXPECT_OP(*plan, "einsum_qk", {"q:contiguous", "K"}, {0, 1});
  EXPECT_EQ(T(*plan, "q:contiguous").shape, Shape({24, 5, 8}));
  EXPECT_EQ(T(*plan, "q:contiguous").bytes, 3840u);
  // s: [2,3,4,5,5] float32, contiguous = 2*3*4*5*5*4 = 2400 bytes. As the left operand
  // [BGH, I, J] = [24,5,5] it is viewable; q as the right one, [B,G,H,J,D] -> [24,5,8], copies
  // again (3840 bytes).
  EXPECT_EQ(T(*plan, "s").bytes, 2400u);
  const PlanOp* av = OpNamed(*plan, "einsum_av");
  ASSERT_NE(av, nullptr);
  EXPECT_EQ(av->copies.size(), 1u);
  ASSERT_EQ(av->saved.size(), 2u);
  EXPECT_EQ(plan->tensors[av->saved[0]].name, "s");
  EXPECT_EQ(plan->tensors[av->saved[1]].shape, Shape({24, 5, 8}));
  EXPECT_EQ(plan->tensors[av->saved[1]].bytes, 3840u);
  // xd is data: only xd is saved (for K's gradient), K (needed for xd's) is not.
  EXPECT_OP(*plan, "einsum_data", {"xd"}, {1});
  EXPECT_TRUE(OpNamed(*plan, "einsum_data")->copies.empty());
}

TEST(GradientRules, EinsumOfContiguousAndTransposedMatricesCopiesNothing) {
  ModelBuilder m;
  m.Initializer("A", kF32, {3, 4});
  m.Initializer("B", kF32, {5, 4});
  m.Initializer("C", kF32, {4, 5});
  // "ij,kj->ik": A as [1, i, j] (strides [.,4,1]), B as [1, j, k] = B's transposed view
  // (strides [.,1,4]): both views. Implicit output "ij,jk" -> "ik".
  m.Node("Einsum", {"A", "B"}, {"y"}, "einsum_t").String("equation", "ij,kj->ik");
  m.Node("Einsum", {"A", "C"}, {"z"}, "einsum_implicit").String("equation", "ij,jk");
  m.Output("y").Output("z");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "einsum_t", {"A", "B"}, {0, 1});
  EXPECT_TRUE(OpNamed(*plan, "einsum_t")->copies.empty());
  EXPECT_OP(*plan, "einsum_implicit", {"A", "C"}, {0, 1});
  EXPECT_TRUE(OpNamed(*plan, "einsum_implicit")->copies.empty());
  // y: [3,5] float32 = 60 bytes.
  EXPECT_EQ(T(*plan, "y").bytes, 60u);
  EXPECT_EQ(T(*plan, "z").shape, Shape({3, 5}));
}

// ---------------------------------------------------------------------------------------------
// Elementwise arithmetic

TEST(GradientRules, AddAndSumSaveNothingAndPassTheGradientThrough) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  m.Initializer("P", kF32, {4, 8});
  m.Initializer("Q", kF32, {4, 8});
  m.Initializer("b", kF32, {8});
  m.Initializer("W", kF32, {8, 8});
  m.Node("Add", {"P", "x"}, {"a_px"}, "add_px");
  m.Node("Add", {"P", "Q"}, {"a_pq"}, "add_pq");
  m.Node("Sum", {"P", "x", "Q"}, {"s"}, "sum");
  // Linear's bias added into a fresh matmul result runs in place: no new storage.
  m.Node("MatMul", {"x", "W"}, {"mm"}, "mm");
  m.Node("Add", {"mm", "b"}, {"lin"}, "bias_add");
  m.Output("a_px").Output("a_pq").Output("s").Output("lin");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "add_px", {}, {0});
  EXPECT_EQ(OpNamed(*plan, "add_px")->grad_passthrough, std::vector<int>({0}));
  EXPECT_OP(*plan, "add_pq", {}, {0, 1});
  EXPECT_EQ(OpNamed(*plan, "add_pq")->grad_passthrough, std::vector<int>({0, 1}));
  EXPECT_OP(*plan, "sum", {}, {0, 2});
  EXPECT_EQ(OpNamed(*plan, "sum")->grad_passthrough, std::vector<int>({0, 2}));
  // a_px: [4,8] float32 = 4*8*4 = 128 bytes of its own (P is a parameter: never overwritten).
  EXPECT_EQ(T(*plan, "a_px").bytes, 128u);
  EXPECT_EQ(T(*plan, "a_px").view_of, -1);
  EXPECT_EQ(T(*plan, "lin").view_of, Id(*plan, "mm"));
  EXPECT_EQ(T(*plan, "lin").bytes, 0u);
  EXPECT_OP(*plan, "bias_add", {}, {0, 1});
}

TEST(GradientRules, SubSavesNothingAndPassesOnlyTheFirstGradientThrough) {
  ModelBuilder m;
  m.Initializer("P", kF32, {4, 8});
  m.Initializer("Q", kF32, {4, 8});
  m.Node("Sub", {"P", "Q"}, {"d"}, "sub");
  m.Output("d");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "sub", {}, {0, 1});
  // The second operand's gradient is -grad, a new tensor.
  EXPECT_EQ(OpNamed(*plan, "sub")->grad_passthrough, std::vector<int>({0}));
}

TEST(GradientRules, MulSavesEachOperandOnlyForTheOthersGradient) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  m.Initializer("P", kF32, {4, 8});
  m.Initializer("Q", kF32, {4, 8});
  m.Node("Mul", {"P", "x"}, {"m1"}, "mul_px");
  m.Node("Mul", {"x", "P"}, {"m2"}, "mul_xp");
  m.Node("Mul", {"P", "Q"}, {"m3"}, "mul_pq");
  m.Node("Mul", {"P", "P"}, {"m4"}, "mul_pp");
  m.Output("m1").Output("m2").Output("m3").Output("m4");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  // P's gradient needs x; x's gradient (which needs P) is not wanted.
  EXPECT_OP(*plan, "mul_px", {"x"}, {0});
  EXPECT_OP(*plan, "mul_xp", {"x"}, {1});
  EXPECT_OP(*plan, "mul_pq", {"P", "Q"}, {0, 1});
  // P*P saves P once.
  EXPECT_EQ(OpNamed(*plan, "mul_pp")->saved.size(), 1u);
  EXPECT_OP(*plan, "mul_pp", {"P"}, {0, 1});
}

// A 2-D convolution wider than 14 on CPU runs oneDNN's gemm-based weight gradient, holding per
// thread 4 fp32 weight-sized buffers and the im2col of one image (+256 bytes). Weight
// [8,3,16,16] = 6144 elements; im2col: 3*16*16 = 768 rows x out 2x2 = 3072 elements. At 2
// threads: 2 * (4*6144 + 3072) + 64 = 55360 fp32 elements = 221440 bytes. Kernels 14 wide keep
// the jit kernel (no scratch), and CUDA has none.
TEST(GradientRules, WideConvolutionOnCpuHoldsGemmScratchPerThread) {
  auto model = [](ModelBuilder& m, int k) {
    m.Input("x", kF32, {1, 3, 2 * k, 2 * k});
    m.Initializer("W", kF32, {8, 3, k, k});
    m.Node("Conv", {"x", "W"}, {"y"}, "patch").Ints("kernel_shape", {k, k}).Ints("strides", {k, k});
    m.Output("y");
  };
  auto scratch = [](const TrainingPlan& p) {
    uint64_t bytes = 0;
    for (PlanTensorId w : OpNamed(p, "patch")->backward_workspace) bytes += p.tensors[w].bytes;
    return bytes;
  };
  ModelBuilder wide, narrow, cuda;
  model(wide, 16);
  model(narrow, 14);
  model(cuda, 16);
  auto g = ImportModelProto(wide.proto());
  ASSERT_TRUE(g.ok()) << g.error().message;
  PlanOptions o;
  o.target = TargetSpec{"torch-cpu", Device::kCpu, 1};
  o.target.cpu_threads = 2;
  o.loss = LossKind::kNone;
  auto two = BuildPlan(*g, o);
  o.target.cpu_threads = 1;
  auto one = BuildPlan(*g, o);
  ASSERT_TRUE(two.ok() && one.ok());
  EXPECT_EQ(scratch(*two), 221440u);
  EXPECT_EQ(scratch(*one), (4u * 6144 + 3072 + 64) * 4);
  auto n = Plan(narrow);
  auto c = Plan(cuda, Device::kCuda);
  ASSERT_TRUE(n.ok() && c.ok());
  EXPECT_EQ(scratch(*n), 0u);
  EXPECT_EQ(scratch(*c), 0u);
}

// prelu's backward (_prelu_kernel_backward) reads self for both gradients and the weight for
// self's: a PReLU on the data saves only x for its slope's gradient (weights are held
// anyway); on an activation that needs a gradient it saves the activation and the slope.
TEST(GradientRules, PReluSavesItsInputAndItsSlope) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  m.Initializer("slope", kF32, {8});
  m.Initializer("W", kF32, {8, 8});
  m.Node("PRelu", {"x", "slope"}, {"p1"}, "prelu_x");
  m.Node("MatMul", {"p1", "W"}, {"h"}, "mm");
  m.Node("PRelu", {"h", "slope"}, {"p2"}, "prelu_h");
  m.Output("p2");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "prelu_x", {"x"}, {1});
  EXPECT_OP(*plan, "prelu_h", {"h", "slope"}, {0, 1});
}

TEST(GradientRules, DivSavesTheDivisorAlwaysAndTheDividendOnlyForTheDivisorsGradient) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  m.Initializer("P", kF32, {4, 8});
  m.Initializer("Q", kF32, {4, 8});
  m.Node("Div", {"P", "x"}, {"d1"}, "div_px");
  m.Node("Div", {"x", "P"}, {"d2"}, "div_xp");
  m.Node("Div", {"P", "Q"}, {"d3"}, "div_pq");
  m.Output("d1").Output("d2").Output("d3");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  // d(P/x)/dP = 1/x: x only.
  EXPECT_OP(*plan, "div_px", {"x"}, {0});
  // d(x/P)/dP = -x/P^2: both.
  EXPECT_OP(*plan, "div_xp", {"x", "P"}, {1});
  EXPECT_OP(*plan, "div_pq", {"P", "Q"}, {0, 1});
}

TEST(GradientRules, PowSavesBaseAndExponentAndTheResultForTheExponentsGradient) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  m.Initializer("P", kF32, {4, 8});
  m.FloatInitializer("onnx::two", {}, {2.0f});
  m.Node("Pow", {"P", "x"}, {"p1"}, "pow_px");
  m.Node("Pow", {"x", "P"}, {"p2"}, "pow_xp");
  m.Node("Pow", {"P", "onnx::two"}, {"p3"}, "pow_scalar");
  m.Output("p1").Output("p2").Output("p3");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "pow_px", {"P", "x"}, {0});
  EXPECT_OP(*plan, "pow_xp", {"x", "P", "p2"}, {1});
  // A constant exponent is a Python number: nothing to save for it.
  EXPECT_OP(*plan, "pow_scalar", {"P"}, {0});
  EXPECT_TRUE(T(*plan, "onnx::two").metadata);
}

// ---------------------------------------------------------------------------------------------
// Unary ops

TEST(GradientRules, SelfSavingUnaryOpsSaveTheirInput) {
  const std::vector<std::string> ops = {
      "Abs", "Log",  "Erf",  "Sin",         "Cos",       "Softplus", "Softsign", "LeakyRelu",
      "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Atan",     "Asin",     "Acos"};
  ModelBuilder m;
  m.Initializer("P", kF32, {4, 8});
  for (const std::string& op : ops) {
    m.Node(op, {"P"}, {"y_" + op}, "op_" + op);
    m.Output("y_" + op);
  }
  m.Node("Neg", {"P"}, {"y_Neg"}, "op_Neg");
  m.Output("y_Neg");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  for (const std::string& op : ops) {
    SCOPED_TRACE(op);
    EXPECT_OP(*plan, "op_" + op, {"P"}, {0});
    // Own storage: [4,8] float32 = 4*8*4 = 128 bytes.
    EXPECT_EQ(T(*plan, "y_" + op).bytes, 128u);
  }
  // -grad needs nothing.
  EXPECT_OP(*plan, "op_Neg", {}, {0});
}

TEST(GradientRules, ResultSavingOpsSaveTheirOutput) {
  const std::vector<std::string> ops = {"Exp",        "Sqrt", "Tanh",    "Sigmoid",
                                        "Reciprocal", "Relu", "Softmax", "LogSoftmax"};
  ModelBuilder m;
  m.Initializer("P", kF32, {4, 8});
  for (const std::string& op : ops) {
    m.Node(op, {"P"}, {"y_" + op}, "op_" + op);
    m.Output("y_" + op);
  }
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  for (const std::string& op : ops) {
    SCOPED_TRACE(op);
    EXPECT_OP(*plan, "op_" + op, {"y_" + op}, {0});
    // A parameter is never overwritten in place: [4,8] float32 = 128 bytes of its own.
    EXPECT_EQ(T(*plan, "y_" + op).bytes, 128u);
    EXPECT_EQ(T(*plan, "y_" + op).view_of, -1);
  }
}

// ReLU(inplace=True) after a Linear: the result overwrites the Linear's output, and the saved
// result is that storage.
TEST(GradientRules, ReluRunsInPlaceOnAnActivationOnlyItReads) {
  ModelBuilder m;
  GemmPrefix(m);
  m.Initializer("W", kF32, {10, 16});
  m.Node("Relu", {"h"}, {"r"}, "relu");
  m.Node("Gemm", {"r", "W"}, {"y"}, "gemm").Int("transB", 1);
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(T(*plan, "r").view_of, Id(*plan, "h"));
  EXPECT_EQ(T(*plan, "r").bytes, 0u);
  EXPECT_OP(*plan, "relu", {"r"}, {0});
  EXPECT_OP(*plan, "gemm", {"r", "W"}, {0, 1});
}

// A ReLU may not overwrite a tensor another op saved for its backward: sigmoid's backward
// reads its result s, so torch.relu_(s) would fail at backward; the ReLU allocates its own.
TEST(GradientRules, ReluDoesNotOverwriteATensorItsProducerSavedAsItsResult) {
  ModelBuilder m;
  GemmPrefix(m);
  m.Node("Sigmoid", {"h"}, {"s"}, "sigmoid");
  m.Node("Relu", {"s"}, {"r"}, "relu");
  m.Output("r");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "sigmoid", {"s"}, {0});
  EXPECT_EQ(T(*plan, "r").view_of, -1) << "relu overwrote sigmoid's saved result";
  // r: [4,16] float32 = 4*16*4 = 256 bytes of its own.
  EXPECT_EQ(T(*plan, "r").bytes, 256u);
  EXPECT_OP(*plan, "relu", {"r"}, {0});
}

TEST(GradientRules, ClipSavesItsInputWhenItCannotRunInPlace) {
  ModelBuilder m;
  m.Initializer("P", kF32, {4, 8});
  m.FloatInitializer("onnx::min", {}, {0.0f});
  m.FloatInitializer("onnx::max", {}, {6.0f});
  m.Node("Clip", {"P", "onnx::min", "onnx::max"}, {"c"}, "clip");
  m.Output("c");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "clip", {"P"}, {0});
  // [4,8] float32 = 128 bytes: a parameter is not overwritten.
  EXPECT_EQ(T(*plan, "c").bytes, 128u);
}

// ReLU6(inplace=True) after a Linear: PyTorch (1.13, the validation target) runs hardtanh_,
// whose backward reads the original self, so autograd saves a clone of it before clamping
// (grad_fn._saved_self keeps the unclamped values in its own storage). The memory is that of
// the out-of-place op: h stays saved, the result has 4*16*4 = 256 bytes of its own.
TEST(GradientRules, ClipOnAnActivationSavesItsInputAndAllocatesItsResult) {
  ModelBuilder m;
  GemmPrefix(m);
  m.FloatInitializer("onnx::min", {}, {0.0f});
  m.FloatInitializer("onnx::max", {}, {6.0f});
  m.Node("Clip", {"h", "onnx::min", "onnx::max"}, {"c"}, "clip");
  m.Output("c");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "clip", {"h"}, {0});
  EXPECT_EQ(T(*plan, "c").view_of, -1);
  EXPECT_EQ(T(*plan, "c").bytes, 256u);
  // On data only nothing is saved, and the clamp overwrites its input.
  ModelBuilder d;
  d.Input("x", kF32, {4, 8});
  d.Initializer("W", kF32, {8, 8});
  d.Node("Abs", {"x"}, {"ax"}, "abs");  // an activation without gradient
  d.FloatInitializer("onnx::min", {}, {0.0f});
  d.FloatInitializer("onnx::max", {}, {6.0f});
  d.Node("Clip", {"ax", "onnx::min", "onnx::max"}, {"c"}, "clip");
  d.Node("MatMul", {"c", "W"}, {"y"}, "mm");
  d.Output("y");
  auto data_plan = Plan(d);
  ASSERT_TRUE(data_plan.ok()) << data_plan.error().message;
  EXPECT_OP(*data_plan, "clip", {}, {});
  EXPECT_EQ(T(*data_plan, "c").view_of, Id(*data_plan, "ax"));
  EXPECT_EQ(T(*data_plan, "c").bytes, 0u);
}

TEST(GradientRules, WhereSavesOnlyTheCondition) {
  ModelBuilder m;
  m.Input("cond", DType::kBool, {4, 8});
  m.Input("x", kF32, {4, 8});
  m.Initializer("P", kF32, {4, 8});
  m.Node("Where", {"cond", "P", "x"}, {"w"}, "where");
  m.Output("w");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "where", {"cond"}, {1});
}

// ---------------------------------------------------------------------------------------------
// Normalization, pooling

TEST(GradientRules, BatchNormSavesInputWeightAndFloatStatsOfChannels) {
  ModelBuilder m;
  m.Input("x", kF32, {2, 4, 3, 3});
  m.Initializer("scale", kF32, {4});
  m.Initializer("bias", kF32, {4});
  m.Initializer("mean", kF32, {4});
  m.Initializer("var", kF32, {4});
  m.Node("BatchNormalization", {"x", "scale", "bias", "mean", "var"}, {"y"}, "bn");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "bn", {"x", "scale", "bn:save_mean", "bn:save_invstd"}, {1, 2});
  const PlanOp* bn = OpNamed(*plan, "bn");
  ASSERT_EQ(bn->extras.size(), 2u);
  for (PlanTensorId e : bn->extras) {
    const PlanTensor& t = plan->tensors[e];
    SCOPED_TRACE(t.name);
    EXPECT_TRUE(t.is_extra);
    EXPECT_EQ(t.dtype, kF32);
    EXPECT_EQ(t.shape, Shape({4}));
    EXPECT_EQ(t.bytes, 16u);  // [4] float32 = 4*4 = 16
  }
  // Running statistics are buffers, not parameters, and get no gradient.
  EXPECT_EQ(plan->buffers.size(), 2u);
  EXPECT_EQ(NamesOf(*plan, plan->buffers), Names({"mean", "var"}));
  EXPECT_EQ(NamesOf(*plan, plan->parameters), Names({"scale", "bias"}));
}

// torch 1.13's CPU batch_norm backward holds a second input-sized buffer beside its input
// gradient (measured: 2.000 x the input's bytes over what was alive, fp32 and bf16). x [2,4,3,3]
// fp32 = 72 elements = 288 bytes held during the backward beside its outputs; none for torch
// 2.x on CPU (not measured, not assumed) nor on CUDA.
TEST(GradientRules, BatchNormBackwardOnCpu113HoldsASecondInputGradient) {
  ModelBuilder m;
  m.Input("x", kF32, {2, 4, 3, 3});
  for (const char* p : {"scale", "bias", "mean", "var"}) m.Initializer(p, kF32, {4});
  m.Node("BatchNormalization", {"x", "scale", "bias", "mean", "var"}, {"y"}, "bn");
  m.Output("y");
  auto workspace = [&](const TargetSpec& target) {
    auto plan = PlanOn(m, target);
    EXPECT_TRUE(plan.ok());
    std::vector<PlanTensor> ws;
    if (!plan.ok()) return ws;
    for (PlanTensorId w : OpNamed(*plan, "bn")->backward_workspace) ws.push_back(plan->tensors[w]);
    return ws;
  };
  auto ws = workspace(Cpu113());
  ASSERT_EQ(ws.size(), 1u);
  EXPECT_EQ(ws[0].bytes, 288u);  // 2*4*3*3 = 72 float32
  EXPECT_EQ(ws[0].shape, Shape({2, 4, 3, 3}));
  // Its type follows the input's when a precision policy changes it (bf16 measured the same).
  EXPECT_GE(ws[0].dtype_follows, 0);
  EXPECT_TRUE(workspace(TargetSpec{"torch-cpu", Device::kCpu, 1}).empty());  // torch 2.x
  EXPECT_TRUE(workspace(TargetSpec{"torch-cuda", Device::kCuda, 512}).empty());
}

// instance_norm runs batch_norm on the input reshaped to [1, N*C, ...]: the same second buffer
// on CPU 1.13 (measured 2.000 x). group_norm's backward holds only its input gradient
// (measured 1.002 x: the gradient and its [N, groups] statistics' gradients): none.
TEST(GradientRules, InstanceNormOnCpu113HoldsTheSecondBufferAndGroupNormDoesNot) {
  auto plan_of = [](const char* type) {
    ModelBuilder m(18);  // GroupNormalization is opset 18 (exports fuse to it: exporter_patterns)
    m.Input("x", kF32, {2, 4, 3, 3});
    m.Initializer("scale", kF32, {4});
    m.Initializer("bias", kF32, {4});
    auto node = m.Node(type, {"x", "scale", "bias"}, {"y"}, "norm");
    if (std::string(type) == "GroupNormalization") node.Int("num_groups", 2);
    m.Output("y");
    return PlanOn(m, Cpu113());
  };
  auto instance = plan_of("InstanceNormalization");
  ASSERT_TRUE(instance.ok()) << instance.error().message;
  const PlanOp* in = OpNamed(*instance, "norm");
  ASSERT_EQ(in->backward_workspace.size(), 1u);
  EXPECT_EQ(instance->tensors[in->backward_workspace[0]].bytes, 288u);  // 72 float32
  auto group = plan_of("GroupNormalization");
  ASSERT_TRUE(group.ok()) << group.error().message;
  EXPECT_TRUE(OpNamed(*group, "norm")->backward_workspace.empty());
}
TEST(GradientRules, LayerNormSavesInputWeightBiasAndRowStats) {
  ModelBuilder m;
  m.Input("x", kF32, {2, 5, 8});
  m.Initializer("g", kF32, {8});
  m.Initializer("b", kF32, {8});
  m.Node("LayerNormalization", {"x", "g", "b"}, {"y"}, "ln").Int("axis", -1);
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "ln", {"x", "g", "b", "ln:mean", "ln:rstd"}, {1, 2});
  const PlanOp* ln = OpNamed(*plan, "ln");
  ASSERT_EQ(ln->extras.size(), 2u);
  for (PlanTensorId e : ln->extras) {
    const PlanTensor& t = plan->tensors[e];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.dtype, kF32);
    EXPECT_EQ(t.shape, Shape({2, 5, 1}));  // one per normalized row, keepdim
    EXPECT_EQ(t.bytes, 40u);               // [2,5,1] float32 = 2*5*1*4 = 40
  }
}

TEST(GradientRules, MaxPoolSavesInputAndInt64Indices) {
  ModelBuilder m;
  m.Input("x", kF32, {1, 3, 4, 4});
  m.Initializer("W", kF32, {2, 3, 1, 1});
  m.Node("Conv", {"x", "W"}, {"c"}, "conv").Ints("kernel_shape", {1, 1});
  m.Node("MaxPool", {"c"}, {"p"}, "maxpool").Ints("kernel_shape", {2, 2}).Ints("strides", {2, 2});
  m.Output("p");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "maxpool", {"c", "maxpool:indices"}, {0});
  const PlanOp* mp = OpNamed(*plan, "maxpool");
  ASSERT_EQ(mp->extras.size(), 1u);
  const PlanTensor& idx = plan->tensors[mp->extras[0]];
  EXPECT_EQ(idx.dtype, DType::kInt64);
  EXPECT_EQ(idx.shape, Shape({1, 2, 2, 2}));  // the output's shape: 4/2 = 2
  EXPECT_EQ(idx.bytes, 64u);                  // 1*2*2*2 = 8 int64 = 64 bytes
  EXPECT_EQ(T(*plan, "p").bytes, 32u);        // 8 float32 = 32 bytes
}

TEST(GradientRules, AveragePoolSavesInputGlobalAverageAndMeanSaveNothing) {
  ModelBuilder m;
  m.Input("x", kF32, {1, 3, 4, 4});
  m.Initializer("W", kF32, {2, 3, 1, 1});
  m.Node("Conv", {"x", "W"}, {"c"}, "conv").Ints("kernel_shape", {1, 1});
  m.Node("AveragePool", {"c"}, {"ap"}, "avgpool")
      .Ints("kernel_shape", {2, 2})
      .Ints("strides", {2, 2});
  m.Node("GlobalAveragePool", {"c"}, {"gap"}, "gap");
  m.Node("ReduceMean", {"c"}, {"rm"}, "reducemean").Ints("axes", {2, 3}).Int("keepdims", 1);
  m.Output("ap").Output("gap").Output("rm");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "avgpool", {"c"}, {0});
  // mean over H, W: the backward needs only the shape.
  EXPECT_OP(*plan, "gap", {}, {0});
  EXPECT_OP(*plan, "reducemean", {}, {0});
  EXPECT_TRUE(OpNamed(*plan, "avgpool")->extras.empty());
  // gap: [1,2,1,1] float32 = 2*4 = 8 bytes.
  EXPECT_EQ(T(*plan, "gap").bytes, 8u);
}

// ---------------------------------------------------------------------------------------------
// Dropout

// h [4,16] float32 = 256 bytes.
void DropoutModel(ModelBuilder& m, float ratio, bool with_training_input, bool training) {
  GemmPrefix(m);
  m.FloatInitializer("onnx::ratio", {}, {ratio});
  std::vector<std::string> in = {"h", "onnx::ratio"};
  if (with_training_input) {
    m.Initializer(
        RawTensor<uint8_t>("onnx::training", DType::kBool, {}, {static_cast<uint8_t>(training)}));
    in.push_back("onnx::training");
  }
  m.Node("Dropout", in, {"d", "d_mask"}, "drop");
  m.Output("d");
}

// F.avg_pool2d(x, 3, stride=1, padding=1) (count_include_pad=True) exports as Pad(x, zeros) +
// AveragePool(pads 0). Measured on torch 1.13 (validation/README.md, torchvision section):
// inception_v3 b4 held no padded tensor; avg_pool2d saves x. So the zero spatial Pad read only by
// AveragePool is a view of x; any other Pad allocates its result.
TEST(GradientRules, ZeroSpatialPadReadOnlyByAveragePoolIsAViewOfItsInput) {
  ModelBuilder m;
  m.Input("x", kF32, {1, 3, 5, 5});
  m.Initializer("W", kF32, {4, 3, 1, 1});
  m.Node("Conv", {"x", "W"}, {"h"}, "conv");  // h: [1,4,5,5], strides [100,25,5,1]
  m.Int64Initializer("onnx::pads", {8}, {0, 0, 1, 1, 0, 0, 1, 1});
  m.Int64Initializer("onnx::chan", {8}, {0, 1, 0, 0, 0, 1, 0, 0});
  m.FloatInitializer("onnx::one", {}, {1.0f});
  m.Node("Pad", {"h", "onnx::pads"}, {"hp"}, "pad_pool").String("mode", "constant");
  m.Node("AveragePool", {"hp"}, {"pooled"}, "avgpool").Ints("kernel_shape", {3, 3});
  m.Node("Pad", {"h", "onnx::pads"}, {"hq"}, "pad_other");
  m.Node("Relu", {"hq"}, {"r"}, "relu");
  m.Node("Pad", {"h", "onnx::pads", "onnx::one"}, {"hone"}, "pad_ones");
  m.Node("AveragePool", {"hone"}, {"pooled1"}, "avgpool1").Ints("kernel_shape", {3, 3});
  m.Node("Pad", {"h", "onnx::chan"}, {"hc"}, "pad_channels");
  m.Node("AveragePool", {"hc"}, {"pooled2"}, "avgpool2").Ints("kernel_shape", {3, 3});
  m.Output("pooled").Output("r").Output("pooled1").Output("pooled2");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  // hp: [1,4,7,7] with h's storage and strides, no bytes of its own; the pool saves it (h).
  EXPECT_EQ(T(*plan, "hp").view_of, Id(*plan, "h"));
  EXPECT_EQ(T(*plan, "hp").bytes, 0u);
  EXPECT_EQ(T(*plan, "hp").shape, Shape({1, 4, 7, 7}));
  EXPECT_EQ(T(*plan, "hp").strides, Shape({100, 25, 5, 1}));
  EXPECT_OP(*plan, "pad_pool", {}, {0});
  EXPECT_TRUE(OpNamed(*plan, "pad_pool")->is_view);
  EXPECT_OP(*plan, "avgpool", {"hp"}, {0});
  // Read by a ReLU, padded with ones, or padding channels: a new [1,4,7,7] (or [1,6,5,5]) tensor,
  // 4*7*7*4 = 784 (6*5*5*4 = 600) bytes, saving nothing.
  for (const char* t : {"hq", "hone"}) {
    EXPECT_EQ(T(*plan, t).view_of, -1) << t;
    EXPECT_EQ(T(*plan, t).bytes, 784u) << t;
  }
  EXPECT_EQ(T(*plan, "hc").view_of, -1);
  EXPECT_EQ(T(*plan, "hc").bytes, 600u);
  EXPECT_OP(*plan, "pad_other", {}, {0});
  EXPECT_OP(*plan, "pad_ones", {}, {0});
}

TEST(GradientRules, DropoutOnCpuSavesAFloatMaskOfTheInputsType) {
  ModelBuilder m;
  DropoutModel(m, 0.1f, /*with_training_input=*/true, /*training=*/true);
  auto plan = Plan(m, Device::kCpu);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "drop", {"drop:mask"}, {0});
  const PlanOp* d = OpNamed(*plan, "drop");
  ASSERT_EQ(d->extras.size(), 1u);
  const PlanTensor& mask = plan->tensors[d->extras[0]];
  EXPECT_EQ(mask.dtype, kF32);
  EXPECT_EQ(mask.shape, Shape({4, 16}));
  EXPECT_EQ(mask.bytes, 256u);  // [4,16] float32 = 4*16*4 = 256
  // The ONNX mask output is not what PyTorch allocates; the output is, 256 bytes.
  ASSERT_EQ(d->outputs.size(), 2u);
  EXPECT_EQ(d->outputs[1], -1);
  EXPECT_EQ(T(*plan, "d").bytes, 256u);
  EXPECT_EQ(T(*plan, "d").view_of, -1);
  // The input itself is not needed by the backward.
  EXPECT_EQ(OpNamed(*plan, "gemm0")->saved.size(), 1u);  // x only
}

TEST(GradientRules, DropoutOnCudaSavesABoolMask) {
  ModelBuilder m;
  DropoutModel(m, 0.1f, /*with_training_input=*/false, true);
  auto plan = Plan(m, Device::kCuda);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "drop", {"drop:mask"}, {0});
  const PlanOp* d = OpNamed(*plan, "drop");
  ASSERT_EQ(d->extras.size(), 1u);
  const PlanTensor& mask = plan->tensors[d->extras[0]];
  EXPECT_EQ(mask.dtype, DType::kBool);
  EXPECT_EQ(mask.shape, Shape({4, 16}));
  EXPECT_EQ(mask.bytes, 64u);  // [4,16] bool = 4*16*1 = 64
}

TEST(GradientRules, DropoutWithZeroRatioOrNotTrainingIsAView) {
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE(variant == 0 ? "p = 0" : "training_mode = false");
    ModelBuilder m;
    if (variant == 0) {
      DropoutModel(m, 0.0f, /*with_training_input=*/true, /*training=*/true);
    } else {
      DropoutModel(m, 0.5f, /*with_training_input=*/true, /*training=*/false);
    }
    for (Device dev : {Device::kCpu, Device::kCuda}) {
      auto plan = Plan(m, dev);
      ASSERT_TRUE(plan.ok()) << plan.error().message;
      EXPECT_OP(*plan, "drop", {}, {0});
      const PlanOp* d = OpNamed(*plan, "drop");
      EXPECT_TRUE(d->extras.empty());
      EXPECT_TRUE(d->is_view);
      EXPECT_EQ(d->outputs[1], -1);
      EXPECT_EQ(T(*plan, "d").view_of, Id(*plan, "h"));
      EXPECT_EQ(T(*plan, "d").bytes, 0u);
      EXPECT_EQ(T(*plan, "d").strides, Shape({16, 1}));  // [4,16] contiguous
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Views and data movement

TEST(GradientRules, ViewOpsShareStorageWithHandComputedStrides) {
  ModelBuilder m;
  m.Initializer("P", kF32, {2, 3, 4});  // contiguous strides [12,4,1]
  m.Initializer("C", kF32, {3, 1});     // contiguous strides [1,1]
  m.Int64Initializer("onnx::shape", {2}, {6, 4});
  m.Int64Initializer("onnx::axes1", {1}, {1});
  m.Int64Initializer("onnx::axes0", {1}, {0});
  m.Int64Initializer("onnx::expand", {2}, {3, 4});
  m.Int64Initializer("onnx::starts", {1}, {1});
  m.Int64Initializer("onnx::ends", {1}, {3});
  m.Node("Reshape", {"P", "onnx::shape"}, {"reshape"}, "reshape");
  m.Node("Flatten", {"P"}, {"flatten"}, "flatten").Int("axis", 1);
  m.Node("Transpose", {"P"}, {"transpose"}, "transpose").Ints("perm", {2, 0, 1});
  m.Node("Identity", {"P"}, {"identity"}, "identity");
  m.Node("Unsqueeze", {"P", "onnx::axes0"}, {"unsqueeze"}, "unsqueeze");
  m.Node("Squeeze", {"C", "onnx::axes1"}, {"squeeze"}, "squeeze");
  m.Node("Expand", {"C", "onnx::expand"}, {"expand"}, "expand");
  m.Node("Slice", {"P", "onnx::starts", "onnx::ends", "onnx::axes1"}, {"slice"}, "slice");
  for (const char* o :
       {"reshape", "flatten", "transpose", "identity", "unsqueeze", "squeeze", "expand", "slice"}) {
    m.Output(o);
  }
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  struct Case {
    const char* name;
    const char* base;
    Shape shape;
    Shape strides;
    bool is_view;  // the backward is a view of the output gradient too
  };
  const Case cases[] = {
      // [2,3,4] -> [6,4]: merge the first two dims, strides [4,1].
      {"reshape", "P", {6, 4}, {4, 1}, true},
      // Flatten(axis 1): [2,12], strides [12,1].
      {"flatten", "P", {2, 12}, {12, 1}, true},
      // perm [2,0,1]: shape [4,2,3], strides [1,12,4] (the input's, permuted).
      {"transpose", "P", {4, 2, 3}, {1, 12, 4}, true},
      {"identity", "P", {2, 3, 4}, {12, 4, 1}, true},
      // [1,2,3,4]: a leading 1 of stride 24 = the whole tensor.
      {"unsqueeze", "P", {1, 2, 3, 4}, {24, 12, 4, 1}, true},
      // [3,1] -> [3]: stride 1.
      {"squeeze", "C", {3}, {1}, true},
      // [3,1] -> [3,4]: the broadcast dim has stride 0.
      {"expand", "C", {3, 4}, {1, 0}, false},
      // [:, 1:3]: [2,2,4], the same strides at an offset.
      {"slice", "P", {2, 2, 4}, {12, 4, 1}, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const PlanTensor& t = T(*plan, c.name);
    EXPECT_EQ(t.view_of, Id(*plan, c.base));
    EXPECT_EQ(t.bytes, 0u);
    EXPECT_EQ(t.shape, c.shape);
    EXPECT_EQ(t.strides, c.strides);
    EXPECT_TRUE(t.requires_grad);
    EXPECT_OP(*plan, c.name, {}, {0});
    const PlanOp* op = OpNamed(*plan, c.name);
    EXPECT_EQ(op->is_view, c.is_view);
    EXPECT_EQ(op->grad_passthrough, std::vector<int>({0}));
  }
}

TEST(GradientRules, SplitOutputsAreViewsWhoseGradientsAreConcatenated) {
  ModelBuilder m;
  m.Initializer("P", kF32, {4, 6});  // strides [6,1]
  m.Node("Split", {"P"}, {"s0", "s1"}, "split").Int("axis", 1);
  m.Output("s0").Output("s1");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "split", {}, {0});
  const PlanOp* s = OpNamed(*plan, "split");
  EXPECT_TRUE(s->grad_passthrough.empty());
  EXPECT_FALSE(s->is_view);
  for (const char* o : {"s0", "s1"}) {
    SCOPED_TRACE(o);
    EXPECT_EQ(T(*plan, o).view_of, Id(*plan, "P"));
    EXPECT_EQ(T(*plan, o).shape, Shape({4, 3}));
    EXPECT_EQ(T(*plan, o).strides, Shape({6, 1}));  // narrow(): the input's strides
    EXPECT_EQ(T(*plan, o).bytes, 0u);
  }
}

TEST(GradientRules, ConcatAllocatesAndHandsEachInputAViewOfTheGradient) {
  ModelBuilder m;
  m.Input("x", kF32, {1, 3});
  m.Initializer("P", kF32, {2, 3});
  m.Initializer("Q", kF32, {4, 3});
  m.Node("Concat", {"P", "x", "Q"}, {"c"}, "concat").Int("axis", 0);
  m.Output("c");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "concat", {}, {0, 2});
  EXPECT_TRUE(OpNamed(*plan, "concat")->grads_are_views);
  // [2+1+4, 3] = [7,3] float32 = 7*3*4 = 84 bytes of its own.
  EXPECT_EQ(T(*plan, "c").shape, Shape({7, 3}));
  EXPECT_EQ(T(*plan, "c").bytes, 84u);
  EXPECT_EQ(T(*plan, "c").view_of, -1);
}

TEST(GradientRules, GatherWithAScalarIndexIsAViewWithATensorIndexAnEmbedding) {
  ModelBuilder m;
  m.Input("ids", DType::kInt64, {2, 3});
  m.Initializer("P", kF32, {5, 3});   // strides [3,1]
  m.Initializer("E", kF32, {10, 4});  // an embedding table
  m.Int64Initializer("onnx::i", {}, {2});
  m.Node("Gather", {"P", "onnx::i"}, {"col"}, "select").Int("axis", 1);
  m.Node("Gather", {"E", "ids"}, {"emb"}, "embedding").Int("axis", 0);
  m.Output("col").Output("emb");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  // P[:, 2]: shape [5], the axis-1 stride dropped: [3].
  EXPECT_OP(*plan, "select", {}, {0});
  EXPECT_EQ(T(*plan, "col").view_of, Id(*plan, "P"));
  EXPECT_EQ(T(*plan, "col").shape, Shape({5}));
  EXPECT_EQ(T(*plan, "col").strides, Shape({3}));
  EXPECT_FALSE(OpNamed(*plan, "select")->is_view);  // select's backward allocates P-sized
  // embedding saves the indices; [2,3,4] float32 = 2*3*4*4 = 96 bytes of its own.
  EXPECT_OP(*plan, "embedding", {"ids"}, {0});
  EXPECT_EQ(T(*plan, "emb").bytes, 96u);
  EXPECT_EQ(T(*plan, "emb").view_of, -1);
}

// swin_v2 (torchvision 0.14): `qkv_bias = qkv_bias.clone(); qkv_bias[n:2n].zero_()` exports as
// ScatterND(bias, indices, zeros). index_put (derivatives.yaml) saves the indices only: data's
// gradient is the output gradient with the written positions zeroed, updates' the output
// gradient gathered at the indices.
TEST(GradientRules, ScatterNDAllocatesItsResultAndSavesOnlyTheIndices) {
  ModelBuilder m;
  GemmPrefix(m);                      // h: [4,16], requires grad
  m.Initializer("bias", kF32, {12});  // a parameter
  m.Input("zeros", kF32, {4});
  m.Input("dd", kF32, {4, 16});
  m.Input("idx", DType::kInt64, {4, 1});
  m.Input("rows", DType::kInt64, {4, 1});
  m.Node("ScatterND", {"bias", "idx", "zeros"}, {"b2"}, "scatter_bias");
  m.Node("ScatterND", {"dd", "rows", "h"}, {"y"}, "scatter_rows");
  m.Node("ScatterND", {"dd", "rows", "dd"}, {"n"}, "scatter_data");
  m.Output("b2").Output("y").Output("n");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  // Only the bias needs a gradient: slot 0; the indices are saved.
  EXPECT_OP(*plan, "scatter_bias", {"idx"}, {0});
  // h's rows written into data: only the updates (slot 2) need a gradient.
  EXPECT_OP(*plan, "scatter_rows", {"rows"}, {2});
  EXPECT_OP(*plan, "scatter_data", {}, {});
  // A new tensor of data's shape: b2 [12] = 48 bytes, y [4,16] = 256 bytes.
  EXPECT_EQ(T(*plan, "b2").bytes, 48u);
  EXPECT_EQ(T(*plan, "b2").view_of, -1);
  EXPECT_EQ(T(*plan, "y").bytes, 256u);
}

TEST(GradientRules, CastToTheSameTypeIsAViewToAnotherAllocates) {
  ModelBuilder m;
  m.Initializer("P", kF32, {5, 3});
  m.Node("Cast", {"P"}, {"same"}, "cast_same").Int("to", static_cast<int64_t>(DType::kFloat32));
  m.Node("Cast", {"P"}, {"half"}, "cast_half").Int("to", static_cast<int64_t>(DType::kFloat16));
  m.Output("same").Output("half", DType::kFloat16);
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_OP(*plan, "cast_same", {}, {0});
  EXPECT_TRUE(OpNamed(*plan, "cast_same")->is_view);
  EXPECT_EQ(T(*plan, "same").view_of, Id(*plan, "P"));
  EXPECT_OP(*plan, "cast_half", {}, {0});
  EXPECT_EQ(T(*plan, "half").view_of, -1);
  EXPECT_EQ(T(*plan, "half").bytes, 30u);  // [5,3] float16 = 5*3*2 = 30
  EXPECT_TRUE(T(*plan, "half").requires_grad);
}

// ---------------------------------------------------------------------------------------------
// No gradient

TEST(GradientRules, MetadataOpsHaveNoMemoryAndNoBackward) {
  ModelBuilder m;
  m.Initializer("P", kF32, {4, 8});
  m.Int64Initializer("onnx::big", {2}, {64, 64});
  m.Node("Shape", {"P"}, {"shp"}, "shape");
  m.Node("Size", {"P"}, {"sz"}, "size");
  m.Node("ConstantOfShape", {"onnx::big"}, {"zeros"}, "zeros");
  m.Node("Constant", {}, {"k"}, "constant").Float("value_float", 1.5f);
  m.Node("Mul", {"P", "k"}, {"y"}, "mul");
  m.Output("y");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  for (const char* name : {"shape", "size", "zeros", "constant"}) {
    SCOPED_TRACE(name);
    const PlanOp* op = OpNamed(*plan, name);
    ASSERT_NE(op, nullptr);
    EXPECT_FALSE(op->needs_backward);
    EXPECT_TRUE(op->saved.empty());
    EXPECT_TRUE(op->grad_inputs.empty());
  }
  for (const char* t : {"shp", "sz", "zeros", "k"}) {
    EXPECT_TRUE(T(*plan, t).metadata) << t;
    EXPECT_FALSE(T(*plan, t).requires_grad) << t;
  }
  // P * 1.5: P would be saved only for the constant's gradient, and a constant needs none.
  EXPECT_OP(*plan, "mul", {}, {0});
}

TEST(GradientRules, NonDifferentiableOpsAllocateButNeedNoBackward) {
  ModelBuilder m;
  m.Initializer("P", kF32, {4, 8});
  m.Initializer("Q", kF32, {4, 8});
  m.Node("Greater", {"P", "Q"}, {"gt"}, "greater");
  m.Node("ArgMax", {"P"}, {"am"}, "argmax").Int("axis", 1).Int("keepdims", 0);
  m.Node("Floor", {"P"}, {"fl"}, "floor");
  m.Output("gt", DType::kBool).Output("am", DType::kInt64).Output("fl");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  for (const char* name : {"greater", "argmax", "floor"}) {
    EXPECT_OP(*plan, name, {}, {});
  }
  // They still allocate: gt [4,8] bool = 32 bytes; am [4] int64 = 32; fl [4,8] float32 = 128.
  EXPECT_EQ(T(*plan, "gt").bytes, 32u);
  EXPECT_EQ(T(*plan, "am").bytes, 32u);
  EXPECT_EQ(T(*plan, "fl").bytes, 128u);
  for (const char* t : {"gt", "am", "fl"}) {
    EXPECT_FALSE(T(*plan, t).requires_grad) << t;
    EXPECT_FALSE(T(*plan, t).metadata) << t;
  }
}

TEST(GradientRules, OpWithoutARuleIsAnErrorNamingItOnlyWhenItNeedsAGradient) {
  ModelBuilder with_grad;
  with_grad.Initializer("P", kF32, {4, 8});
  with_grad.Int64Initializer("onnx::axis", {}, {1});
  with_grad.Node("CumSum", {"P", "onnx::axis"}, {"cs"}, "/block/cumsum");
  with_grad.Output("cs");
  auto plan = Plan(with_grad);
  ASSERT_FALSE(plan.ok());
  const std::string& msg = plan.error().message;
  EXPECT_NE(msg.find("/block/cumsum"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'CumSum'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no gradient rule"), std::string::npos) << msg;

  // On data only it needs no gradient: it just allocates its output.
  ModelBuilder on_data;
  on_data.Input("x", kF32, {4, 8});
  on_data.Int64Initializer("onnx::axis", {}, {1});
  on_data.Node("CumSum", {"x", "onnx::axis"}, {"cs"}, "cumsum");
  on_data.Output("cs");
  auto ok = Plan(on_data);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_OP(*ok, "cumsum", {}, {});
  EXPECT_EQ(T(*ok, "cs").bytes, 128u);  // [4,8] float32 = 128
}

// ---------------------------------------------------------------------------------------------
// Exporter patterns

// torch.onnx writes nn.GELU (opset < 20) as x * (erf(x / sqrt 2) + 1) * 0.5: five ops that
// eager PyTorch runs as one gelu saving only x.
void GeluModel(ModelBuilder& m, const std::string& add_operand) {
  m.Input("in", kF32, {4, 8});
  m.Initializer("W", kF32, {8, 8});
  m.FloatInitializer("onnx::sqrt2", {}, {1.4142135f});
  m.FloatInitializer("onnx::one", {}, {1.0f});
  m.FloatInitializer("onnx::half", {}, {0.5f});
  m.Node("MatMul", {"in", "W"}, {"x"}, "mm");
  m.Node("Div", {"x", "onnx::sqrt2"}, {"d"}, "gelu_div");
  m.Node("Erf", {"d"}, {"e"}, "gelu_erf");
  m.Node("Add", {"e", add_operand}, {"a"}, "gelu_add");
  m.Node("Mul", {"x", "a"}, {"m"}, "gelu_mul");
  m.Node("Mul", {"m", "onnx::half"}, {"y"}, "gelu_mul_half");
  m.Output("y");
}

TEST(GradientRules, GeluDecompositionBecomesOneOpSavingOnlyItsInput) {
  ModelBuilder m;
  GeluModel(m, "onnx::one");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  for (const char* gone : {"gelu_div", "gelu_erf", "gelu_add", "gelu_mul"}) {
    EXPECT_EQ(OpNamed(*plan, gone), nullptr) << gone;
  }
  const PlanOp* gelu = OpNamed(*plan, "gelu_mul_half");
  ASSERT_NE(gelu, nullptr);
  EXPECT_EQ(gelu->type, "Gelu");
  EXPECT_EQ(gelu->inputs, std::vector<PlanTensorId>({Id(*plan, "x")}));
  EXPECT_OP(*plan, "gelu_mul_half", {"x"}, {0});
  for (const char* t : {"d", "e", "a", "m"}) EXPECT_TRUE(T(*plan, t).metadata) << t;
  // y: [4,8] float32 = 128 bytes of its own.
  EXPECT_EQ(T(*plan, "y").bytes, 128u);
  EXPECT_FALSE(T(*plan, "y").metadata);
}

// Only x * (erf(x / sqrt 2) + 1) * 0.5 is GELU: adding anything but 1 is another function,
// whose other operand (here a parameter) must keep its place in the graph and its gradient.
TEST(GradientRules, ErfPlusSomethingOtherThanOneIsNotFusedIntoGelu) {
  ModelBuilder m;
  m.Initializer("bias", kF32, {8});
  GeluModel(m, "bias");
  auto plan = Plan(m);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  const PlanOp* add = OpNamed(*plan, "gelu_add");
  ASSERT_NE(add, nullptr) << "Erf + bias was fused into a GELU";
  EXPECT_EQ(add->grad_inputs, std::vector<int>({0, 1}));
  EXPECT_NE(OpNamed(*plan, "gelu_mul_half")->type, "Gelu");
}

}  // namespace

// Frozen parameters (--freeze / --trainable, policies/trainable.h) on tiny hand-built graphs:
// frozen weights get no gradient and no optimizer state, an activation saved only for a frozen
// weight's gradient is not saved, a LoRA-shaped graph still saves what its adapters' backward
// needs, ZeRO 3 shards frozen weights without gradients, Python's references to module
// arguments; and how the flags parse and match. Every byte count is worked out by hand.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/estimate.h"
#include "importer/importer.h"
#include "policies/trainable.h"
#include "simulator/module_frames.h"
#include "simulator/plan_builder.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::ModelBuilder;
using vramsim::testing::TempDir;

namespace {

constexpr DType kF32 = DType::kFloat32;

uint64_t Cat(const Estimate& e, Category c) { return e.peak.by_category[static_cast<size_t>(c)]; }

Result<Estimate> Step(ModelBuilder& m, const std::string& optimizer,
                      std::vector<std::string> trainable = {}, std::vector<std::string> freeze = {},
                      int data_parallel = 1, int zero = 0) {
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  EstimateFlags flags;
  flags.optimizer = optimizer;
  flags.optimizer_impl = "for-loop";
  flags.target = "torch-cpu";
  flags.trainable = std::move(trainable);
  flags.freeze = std::move(freeze);
  flags.data_parallel = data_parallel;
  flags.zero = zero;
  auto o = ParseEstimateFlags(flags);
  if (!o) return o.error();
  return RunEstimate(*g, *o);
}

bool HasBuffer(const Trace& t, const std::string& name) {
  return std::any_of(t.buffers.begin(), t.buffers.end(),
                     [&](const Buffer& b) { return b.name == name; });
}

std::string StepOfFree(const Trace& t, const std::string& buffer) {
  for (const Event& e : t.events) {
    if (e.kind == Event::Kind::kFree && t.buffers[e.buffer].name == buffer) {
      return std::string(PhaseName(t.steps[e.step].phase)) + ":" + t.steps[e.step].name;
    }
  }
  return "";
}

const PlanOp* OpNamed(const TrainingPlan& p, const std::string& name) {
  for (const PlanOp& op : p.ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

std::vector<std::string> SavedNames(const TrainingPlan& p, const std::string& op) {
  std::vector<std::string> out;
  const PlanOp* o = OpNamed(p, op);
  if (!o) return {"<no op " + op + ">"};
  for (PlanTensorId t : o->saved) out.push_back(p.tensors[t].name);
  return out;
}

// The MLP of simulator_test.cc:
//   x [4,8] float32 data 128 B; W1 [16,8] 512 B, b1 [16] 64 B, W2 [10,16] 640 B, b2 [10] 40 B
//   (parameters 1256 B); h = Gemm(x, W1, b1) [4,16] 256 B; r = Relu(h) in place;
//   y = Gemm(r, W2, b2) [4,10] 160 B; labels [4] int64 32 B.
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

// (i) Adam, for-loop, on the CPU. Without freezing (simulator_test.cc): state 2 * 1256 + 4 * 4
// = 2528 B and the peak 6644 B in W2's update. With W1 and b1 frozen:
//   state: exp_avg and exp_avg_sq of W2 and b2, 2 * (640 + 40) = 1360, and two 4-byte steps:
//   1368 B. Steady: parameters 1256 + x 128 + labels 32 + state 1368 = 2784 B.
//   Nothing of gemm1 or relu needs a gradient: gemm1 saves nothing (not even x for W1), relu
//   nothing; gemm2 saves r (for W2's gradient), not W2 (r needs no gradient).
//   Backward of gemm2 makes grad of W2 (640) and b2 (40), no grad of r; gemm1 and relu have
//   no backward.
//   Optimizer: for-loop Adam holds two temporaries of one parameter at a time, W2's 2 * 640:
//   2784 + y 160 + loss 4 + gradients 680 + 1280 = 4908 B, the peak.
// So 6644 B (6.49 KiB) without freeze, 4908 B (4.79 KiB) with W1 and b1 frozen.
TEST(Finetune, FrozenWeightsGetNoGradientAndNoOptimizerState) {
  ModelBuilder full;
  Mlp(full);
  auto all = Step(full, "adam");
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(all->peak.peak_bytes, 6644u);
  EXPECT_EQ(Cat(*all, Category::kOptimizerState), 2528u);
  EXPECT_EQ(all->parameters.trainable, 4u);

  ModelBuilder m;
  Mlp(m);
  auto e = Step(m, "adam", {}, {"W1", "b1"});
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->peak.peak_bytes, 4908u);
  EXPECT_EQ(std::string(PhaseName(e->trace.steps[e->peak.peak_step].phase)), "optimizer");
  EXPECT_EQ(Cat(*e, Category::kParameters), 1256u);  // frozen weights are still parameters
  EXPECT_EQ(Cat(*e, Category::kOptimizerState), 1368u);
  EXPECT_EQ(Cat(*e, Category::kGradients), 680u);
  EXPECT_EQ(Cat(*e, Category::kTransient), 160u + 4u + 1280u);
  EXPECT_FALSE(HasBuffer(e->trace, "grad of W1"));
  EXPECT_FALSE(HasBuffer(e->trace, "grad of b1"));
  EXPECT_FALSE(HasBuffer(e->trace, "grad of r"));
  EXPECT_FALSE(HasBuffer(e->trace, "adam state 0 of W1"));
  EXPECT_TRUE(HasBuffer(e->trace, "adam state 0 of W2"));
  EXPECT_TRUE(SavedNames(e->plan, "gemm1").empty());
  EXPECT_FALSE(OpNamed(e->plan, "gemm1")->needs_backward);
  EXPECT_EQ(SavedNames(e->plan, "gemm2"), std::vector<std::string>{"r"});
  // What --json reports: 2 of 4 tensors, 170 of 314 elements, 680 of 1256 bytes train.
  EXPECT_EQ(e->parameters.parameters, 4u);
  EXPECT_EQ(e->parameters.trainable, 2u);
  EXPECT_EQ(e->parameters.parameter_elements, 314u);
  EXPECT_EQ(e->parameters.trainable_elements, 170u);
  EXPECT_EQ(e->parameters.parameter_bytes, 1256u);
  EXPECT_EQ(e->parameters.trainable_bytes, 680u);
  nlohmann::json j = EstimateJson(*e);
  EXPECT_EQ(j["trainable_parameters"]["bytes"], 680);
  EXPECT_EQ(j["trainable_parameters"]["elements"], 170);
  EXPECT_EQ(j["parameters"]["bytes"], 1256);
  // --trainable W2,b2 says the same thing.
  ModelBuilder m2;
  Mlp(m2);
  auto same = Step(m2, "adam", {"W2,b2"});
  ASSERT_TRUE(same.ok()) << same.error().message;
  EXPECT_EQ(same->peak.peak_bytes, 4908u);
}

// (ii) a = Sigmoid(x) [4,8] (128 B, an activation of the data: needs no gradient);
// h = MatMul(a, W) with W [8,16] frozen; y = Gemm(h, W2, b2) with W2 [10,16], b2 [10].
// With W trainable the MatMul saves a for W's gradient (held into the backward); with W frozen
// neither input needs a gradient, so it saves nothing and a is freed as soon as the MatMul
// has read it. sgd: steady = W 512 + W2 640 + b2 40 + x 128 + labels 32 = 1352 B.
//   W trainable, peak in gemm's backward: 1352 + a 128 (saved) + h 256 (saved by gemm)
//   + y 160 + loss 4 + grad of y 160 + grad of h 256 + grad of W2 640 + grad of b2 40 = 2996;
//   then the MatMul's backward: 1352 + a 128 + y 160 + loss 4 + grad of h 256 + grads of W2,
//   b2 680 + grad of W 512 = 3092 B.
//   W frozen: the gemm makes no grad of h: 1352 + h 256 + y 160 + loss 4 + grad of y 160
//   + 680 = 2612 B; a is gone.
TEST(Finetune, ActivationSavedOnlyForAFrozenWeightIsNotSaved) {
  auto build = [](ModelBuilder& m) {
    m.Input("x", kF32, {4, 8});
    m.Initializer("W", kF32, {8, 16});
    m.Initializer("W2", kF32, {10, 16});
    m.Initializer("b2", kF32, {10});
    m.Node("Sigmoid", {"x"}, {"a"}, "sigmoid");
    m.Node("MatMul", {"a", "W"}, {"h"}, "matmul");
    m.Node("Gemm", {"h", "W2", "b2"}, {"y"}, "gemm").Int("transB", 1);
    m.Output("y");
  };
  ModelBuilder t;
  build(t);
  auto trained = Step(t, "sgd");
  ASSERT_TRUE(trained.ok()) << trained.error().message;
  EXPECT_EQ(SavedNames(trained->plan, "matmul"), std::vector<std::string>{"a"});
  EXPECT_EQ(trained->peak.peak_bytes, 3092u);
  EXPECT_EQ(StepOfFree(trained->trace, "a"), "backward:matmul");

  ModelBuilder f;
  build(f);
  auto frozen = Step(f, "sgd", {}, {"W"});
  ASSERT_TRUE(frozen.ok()) << frozen.error().message;
  EXPECT_TRUE(SavedNames(frozen->plan, "matmul").empty());
  EXPECT_FALSE(OpNamed(frozen->plan, "matmul")->needs_backward);
  EXPECT_EQ(StepOfFree(frozen->trace, "a"), "forward:matmul");
  EXPECT_EQ(frozen->peak.peak_bytes, 2612u);
  EXPECT_EQ(Cat(*frozen, Category::kSavedActivations), 256u);  // h, saved by the gemm for W2
  EXPECT_FALSE(HasBuffer(frozen->trace, "grad of h"));
}

// (iii) LoRA: u = Relu(x) [4,8] (needs no gradient: x is data, nothing before it trains);
//   base = MatMul(u, W) with W [8,8] frozen                       saves nothing
//   a = MatMul(u, A) with A [8,2] trainable (lora_A)               saves u (for A's gradient)
//   b = MatMul(a, B) with B [2,8] trainable (lora_B)               saves a (for B) and B (for a)
//   s = Mul(b, 2.0) (alpha / r)                                    saves nothing (a scalar)
//   y = Add(base, s) [4,8]
//   logits = MatMul(y, H) with H [8,10] frozen (lm head)           saves H (for y), not y
// --trainable '*lora*': gradients only for A (64 B) and B (64 B); sgd.
//   steady: W 256 + A 64 + B 64 + H 320 + x 128 + labels 32 = 864 B.
//   Forward: u 128, base 128, a 32, b 128, s 128 (b freed), y 128 (base and s freed),
//   logits 160 (y freed: the head saves only H). Kept into the backward: u 128 and a 32.
//   The peak is in the loss's backward: 864 + u 128 + a 32 + logits 160 + log_softmax 160
//   + loss 4 + grad of log_softmax 160 + grad of logits 160 = 1668 B. Trained in full, the
//   head would also keep y (128 B) for H's gradient and u for W's.
TEST(Finetune, LoraAdaptersStillSaveWhatTheirBackwardNeeds) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  m.Initializer("W", kF32, {8, 8});
  m.Initializer("lora_A", kF32, {8, 2});
  m.Initializer("lora_B", kF32, {2, 8});
  m.Initializer("H", kF32, {8, 10});
  m.Node("Constant", {}, {"scale"}, "alpha_over_r")
      .Tensor("value", vramsim::testing::FloatTensor("scale", {}, {2.0f}));
  m.Node("Relu", {"x"}, {"u"}, "relu");
  m.Node("MatMul", {"u", "W"}, {"base"}, "base");
  m.Node("MatMul", {"u", "lora_A"}, {"a"}, "lora_a");
  m.Node("MatMul", {"a", "lora_B"}, {"b"}, "lora_b");
  m.Node("Mul", {"b", "scale"}, {"s"}, "scale");
  m.Node("Add", {"base", "s"}, {"y"}, "add");
  m.Node("MatMul", {"y", "H"}, {"logits"}, "head");
  m.Output("logits");
  auto e = Step(m, "sgd", {"*lora*"});
  ASSERT_TRUE(e.ok()) << e.error().message;
  const TrainingPlan& p = e->plan;
  EXPECT_TRUE(SavedNames(p, "base").empty());
  EXPECT_EQ(SavedNames(p, "lora_a"), std::vector<std::string>{"u"});
  std::vector<std::string> b = SavedNames(p, "lora_b");
  std::sort(b.begin(), b.end());
  EXPECT_EQ(b, (std::vector<std::string>{"a", "lora_B"}));
  EXPECT_EQ(SavedNames(p, "head"), std::vector<std::string>{"H"});
  EXPECT_FALSE(HasBuffer(e->trace, "grad of W"));
  EXPECT_FALSE(HasBuffer(e->trace, "grad of H"));
  EXPECT_FALSE(HasBuffer(e->trace, "grad of u"));
  EXPECT_TRUE(HasBuffer(e->trace, "grad of lora_A"));
  EXPECT_TRUE(HasBuffer(e->trace, "grad of lora_B"));
  // u lives until the lora_a backward, a until the lora_b backward.
  EXPECT_EQ(StepOfFree(e->trace, "u"), "backward:lora_a");
  EXPECT_EQ(StepOfFree(e->trace, "a"), "backward:lora_b");
  EXPECT_EQ(e->parameters.trainable_bytes, 128u);
  EXPECT_EQ(Cat(*e, Category::kParameters), 704u);
  EXPECT_EQ(e->peak.peak_bytes, 1668u);
}

// Autocast caches the casts of leaf tensors that require grad, until the autocast block
// exits; a frozen weight's cast is made at its use and dies with its op unless saved. MLP
// under amp-bf16: gemm1 casts x, W1 and b1 to bf16 (W1's copy 16*8*2 = 256 B); x needs no
// gradient, so gemm1 saves no copy of W1. Trained, W1's copy is cached to the forward's end
// (freed after gemm2); frozen, it goes as soon as gemm1 has run.
TEST(Finetune, AutocastCachesOnlyTrainableWeights) {
  for (bool frozen : {false, true}) {
    ModelBuilder m;
    Mlp(m);
    auto g = ImportModelProto(m.proto());
    ASSERT_TRUE(g.ok()) << g.error().message;
    EstimateFlags flags;
    flags.optimizer = "sgd";
    flags.target = "torch-cpu";
    flags.precision = "amp-bf16";
    if (frozen) flags.freeze = {"W1"};
    auto o = ParseEstimateFlags(flags);
    ASSERT_TRUE(o.ok()) << o.error().message;
    auto e = RunEstimate(*g, *o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    std::vector<std::string> cached;
    for (PlanTensorId t : e->plan.forward_cache) cached.push_back(e->plan.tensors[t].name);
    SCOPED_TRACE(frozen ? "W1 frozen" : "W1 trained");
    EXPECT_EQ(std::count(cached.begin(), cached.end(), "half(W1)"), frozen ? 0 : 1);
    EXPECT_EQ(std::count(cached.begin(), cached.end(), "half(W2)"), 1);
    EXPECT_EQ(StepOfFree(e->trace, "half(W1)"), frozen ? "forward:gemm1" : "forward:gemm2");
  }
}

// ZeRO 3 over 2 ranks partitions frozen parameters too, as FSDP does, but gives them no
// gradient and no optimizer state. MLP with W1, b1 frozen, adam, one unit ("model"):
//   trained W2 + b2: 160 + 10 = 170 elements -> shard of 85 floats = 340 B;
//   frozen W1 + b1: 128 + 16 = 144 elements -> shard of 72 floats = 288 B.
//   Parameters per rank: 340 + 288 = 628 B (W1 and b1 unsharded would be 340 + 576 = 916 B).
//   Adam state only for the trained shard: 2 * 340 + a 4-byte step = 684 B.
TEST(Finetune, ZeroThreeShardsFrozenParametersWithoutGradients) {
  ModelBuilder m;
  Mlp(m);
  auto e = Step(m, "adam", {}, {"W1,b1"}, 2, 3);
  ASSERT_TRUE(e.ok()) << e.error().message;
  uint64_t params = 0, state = 0;
  for (const Buffer& b : e->trace.buffers) {
    if (b.category == Category::kParameters) params += b.bytes;
    if (b.category == Category::kOptimizerState) state += b.bytes;
  }
  EXPECT_EQ(params, 628u);
  EXPECT_EQ(state, 684u);
  EXPECT_TRUE(HasBuffer(e->trace, "zero shard of model (float32, frozen)"));
  for (const Buffer& b : e->trace.buffers) {
    EXPECT_EQ(b.name.find("grad of zero shard of model (float32, frozen)"), std::string::npos);
  }
}

// A tensor passed into a module call stays referenced by the call until it returns
// (module_frames.h): x -> /blk/conv/Relu (a) -> /blk/lin/Sigmoid (s) -> /blk/lin/Sigmoid_1,
// then /head/MatMul. "a" is made in /blk/conv/ and read in /blk/lin/, whose last op is
// /blk/lin/Sigmoid_1: that op releases it.
TEST(Finetune, ModuleArgumentsAreHeldUntilTheCallReturns) {
  ModelBuilder m;
  m.Input("x", kF32, {4, 8});
  m.Initializer("H", kF32, {8, 10});
  m.Node("Relu", {"x"}, {"a"}, "/blk/conv/Relu");
  m.Node("Sigmoid", {"a"}, {"s"}, "/blk/lin/Sigmoid");
  m.Node("Sigmoid", {"s"}, {"t"}, "/blk/lin/Sigmoid_1");
  m.Node("MatMul", {"t", "H"}, {"logits"}, "/head/MatMul");
  m.Output("logits");
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok()) << g.error().message;
  PlanOptions po;
  auto plan = BuildPlan(*g, po);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  AddModuleArgumentHolds(*plan);
  const PlanOp* last = OpNamed(*plan, "/blk/lin/Sigmoid_1");
  ASSERT_NE(last, nullptr);
  ASSERT_EQ(last->frame_releases.size(), 1u);
  EXPECT_EQ(plan->tensors[last->frame_releases[0]].name, "a");
  // s is made and read inside /blk/lin/: no hold. t goes to /head/, whose only op reads it.
  for (const PlanOp& op : plan->ops) {
    if (&op != last) {
      EXPECT_TRUE(op.frame_releases.empty()) << op.name;
    }
  }
  // Nothing saves "a" (neither Relu nor the Sigmoid needs a gradient: only H trains), so the
  // call's reference is what keeps it: freed at /blk/lin/Sigmoid_1, not at /blk/lin/Sigmoid.
  auto e = Step(m, "sgd");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(StepOfFree(e->trace, "a"), "forward:/blk/lin/Sigmoid_1");
}

// ---------------------------------------------------------------------------------------------
// Flags: parsing and matching

// Parameters named as PyTorch names them, plus one named otherwise (as other exporters name
// weights) read inside /blk/lin/.
void Named(ModelBuilder& m) {
  m.Input("x", kF32, {2, 4});
  m.Initializer("layer1.weight", kF32, {4, 4});
  m.Initializer("layer10.weight", kF32, {4, 4});
  m.Initializer("layer1.bias", kF32, {4});
  m.Initializer("blk/lin/kernel:0", kF32, {4, 4});
  m.Node("MatMul", {"x", "layer1.weight"}, {"h1"}, "/layer1/MatMul");
  m.Node("Add", {"h1", "layer1.bias"}, {"h2"}, "/layer1/Add");
  m.Node("MatMul", {"h2", "layer10.weight"}, {"h3"}, "/layer10/MatMul");
  m.Node("MatMul", {"h3", "blk/lin/kernel:0"}, {"y"}, "/blk/lin/MatMul");
  m.Output("y");
}

std::vector<std::string> FrozenNames(const Graph& g, const TrainableOptions& o) {
  auto f = FrozenParameters(g, o);
  if (!f) return {"error: " + f.error().message};
  std::vector<std::string> out;
  for (TensorId t : *f) out.push_back(g.tensors[t].name);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Finetune, PatternsMatchModulePathsAndGlobs) {
  ModelBuilder m;
  Named(m);
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok()) << g.error().message;
  using V = std::vector<std::string>;
  // A module path is a dotted prefix: "layer1" is not "layer10".
  EXPECT_EQ(FrozenNames(*g, {{}, {"layer1"}}), (V{"layer1.bias", "layer1.weight"}));
  // A glob is over the whole name: "layer1*" matches layer10 too.
  EXPECT_EQ(FrozenNames(*g, {{}, {"layer1*"}}),
            (V{"layer1.bias", "layer1.weight", "layer10.weight"}));
  EXPECT_EQ(FrozenNames(*g, {{}, {"*bias"}}), (V{"layer1.bias"}));
  EXPECT_EQ(FrozenNames(*g, {{}, {"layer1.weight"}}), (V{"layer1.weight"}));
  // An exporter-named parameter goes by the module of the ops that read it.
  EXPECT_EQ(FrozenNames(*g, {{}, {"blk"}}), (V{"blk/lin/kernel:0"}));
  EXPECT_EQ(FrozenNames(*g, {{}, {"blk.lin"}}), (V{"blk/lin/kernel:0"}));
  EXPECT_EQ(FrozenNames(*g, {{}, {"/blk/"}}), (V{"blk/lin/kernel:0"}));
  // --trainable: only these train; then --freeze removes from them.
  EXPECT_EQ(FrozenNames(*g, {{"layer1"}, {}}), (V{"blk/lin/kernel:0", "layer10.weight"}));
  EXPECT_EQ(FrozenNames(*g, {{"layer1"}, {"*.bias"}}),
            (V{"blk/lin/kernel:0", "layer1.bias", "layer10.weight"}));
  EXPECT_EQ(FrozenNames(*g, {{"layer1", "layer10"}, {}}), (V{"blk/lin/kernel:0"}));
  EXPECT_TRUE(FrozenNames(*g, {{}, {}}).empty());
  // A pattern that matches nothing is an error naming it.
  V none = FrozenNames(*g, {{}, {"layer2"}});
  ASSERT_EQ(none.size(), 1u);
  EXPECT_NE(none[0].find("--freeze 'layer2' matches no parameter"), std::string::npos) << none[0];
  none = FrozenNames(*g, {{"*lora*"}, {}});
  ASSERT_EQ(none.size(), 1u);
  EXPECT_NE(none[0].find("--trainable '*lora*' matches no parameter"), std::string::npos)
      << none[0];
  // "layer" is no module of these names (only a prefix of "layer1"): no match.
  none = FrozenNames(*g, {{}, {"layer"}});
  ASSERT_EQ(none.size(), 1u);
  EXPECT_NE(none[0].find("matches no parameter"), std::string::npos);
}

TEST(Finetune, FlagValuesAreRepeatableCommaListsWithoutEmptyPatterns) {
  auto p = ParseParameterPatterns("--freeze", {"layer4,fc", "layer3", "fc"});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(*p, (std::vector<std::string>{"layer4", "fc", "layer3"}));
  for (std::string bad : {"", ",", "a,", ",a", "a,,b"}) {
    auto r = ParseParameterPatterns("--freeze", {bad});
    ASSERT_FALSE(r.ok()) << "'" << bad << "'";
    EXPECT_EQ(r.error().message, "--freeze has an empty pattern in '" + bad + "'");
  }
  EstimateFlags flags;
  flags.trainable = {"h.0.attn", "*.lora_*"};
  flags.freeze = {"*bias"};
  auto o = ParseEstimateFlags(flags);
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->trainable.trainable, (std::vector<std::string>{"h.0.attn", "*.lora_*"}));
  EXPECT_EQ(o->trainable.freeze, (std::vector<std::string>{"*bias"}));
  flags.trainable = {"x,,y"};
  auto bad = ParseEstimateFlags(flags);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "--trainable has an empty pattern in 'x,,y'");
}

TEST(Finetune, EveryParameterFrozenIsNothingToTrain) {
  ModelBuilder m;
  Mlp(m);
  auto e = Step(m, "sgd", {}, {"*"});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message,
            "--freeze / --trainable leave none of the model's 4 parameters trainable: nothing to "
            "train");
  ModelBuilder m2;
  Mlp(m2);
  auto unknown = Step(m2, "sgd", {"W3"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("--trainable 'W3' matches no parameter"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The binary: every estimating subcommand and inspect take the flags; a bad one exits 2 with
// one error line.

const std::string kBin = VRAMSIM_BIN;
const std::string kExamples = VRAMSIM_EXAMPLES;

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct CliRun {
  int status = -1;
  std::string out, err;
};

CliRun RunCli(const std::vector<std::string>& args) {
  TempDir dir;
  std::string cmd = Quote(kBin);
  for (const auto& a : args) cmd += " " + Quote(a);
  cmd += " >" + Quote(dir.File("out")) + " 2>" + Quote(dir.File("err"));
  int rc = std::system(cmd.c_str());
  CliRun r;
  if (rc != -1 && WIFEXITED(rc)) r.status = WEXITSTATUS(rc);
  auto slurp = [](const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  r.out = slurp(dir.File("out"));
  r.err = slurp(dir.File("err"));
  return r;
}

TEST(FinetuneCli, LoraExampleEstimatesAndInspects) {
  const std::string lora = kExamples + "/gpt_lora.onnx";
  CliRun r = RunCli({"estimate", lora, "--dim", "batch=4", "--dim", "seq=128", "--target",
                     "torch-cpu", "--trainable", "*.lora_*", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  // 4 layers x (c_attn: A [8,256] + B [768,8]; c_proj: A [8,256] + B [256,8]) = 4 x 12288
  // = 49152 elements, 196608 bytes, 16 tensors; of 69 parameter tensors.
  EXPECT_EQ(j["trainable_parameters"]["elements"], 49152);
  EXPECT_EQ(j["trainable_parameters"]["bytes"], 196608);
  EXPECT_EQ(j["trainable_parameters"]["tensors"], 16);
  EXPECT_EQ(j["parameters"]["tensors"], 69);
  CliRun i =
      RunCli({"inspect", lora, "--dim", "batch=1", "--dim", "seq=8", "--trainable", "*.lora_*"});
  ASSERT_EQ(i.status, 0) << i.err;
  EXPECT_NE(i.out.find("trainable:  16 of 69 parameter tensors, 49152 of 3536384 elements"),
            std::string::npos)
      << i.out;
}

TEST(FinetuneCli, EverySubcommandTakesTheFlagsAndRefusesAnUnknownPattern) {
  const std::string resnet = kExamples + "/resnet18.onnx";
  std::vector<std::vector<std::string>> commands = {
      {"estimate", resnet, "--dim", "batch=2"},
      {"plan", resnet, "--dim", "batch=2", "--budget", "1GiB"},
      {"strategies", resnet, "--dim", "batch=2", "--budgets", "1GiB"},
      {"fit", resnet, "--dim", "batch=2", "--gpu", "a100-40gb"},
      {"max-batch", resnet, "--gpu", "a100-40gb"},
      {"inspect", resnet, "--dim", "batch=2"},
  };
  for (std::vector<std::string> args : commands) {
    args.insert(args.end(), {"--trainable", "layer4,fc", "--freeze", "layer9"});
    CliRun r = RunCli(args);
    SCOPED_TRACE(args[0]);
    EXPECT_EQ(r.status, 2) << r.err << r.out.substr(0, 300);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("vramsim: error:", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("--freeze 'layer9' matches no parameter"), std::string::npos) << r.err;
  }
  CliRun ok = RunCli({"estimate", resnet, "--dim", "batch=2", "--trainable", "layer4",
                      "--trainable", "fc", "--freeze", "layer4.1", "--json"});
  ASSERT_EQ(ok.status, 0) << ok.err;
  // layer4.0: conv1, bn1 (2), conv2, bn2 (2), downsample conv and BN (2) = 9 tensors; fc frozen
  // by nothing, but layer4.1 is: 9 + fc (2) = 11.
  EXPECT_EQ(nlohmann::json::parse(ok.out)["trainable_parameters"]["tensors"], 11);
}

}  // namespace

// Attention implementations (simulator/attention.h, --attention): the pattern on hand-written
// attention (GPT's masked_fill form) and on torch.onnx's decomposition of
// F.scaled_dot_product_attention (written node for node after symbolic_opset14.py, as torch
// 1.13 here cannot export it), what each kernel saves with the bytes worked out by hand, the
// kernel auto picks, the refusals, and the bundled GPT example at eager vs flash.
#include "simulator/attention.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/estimate.h"
#include "importer/importer.h"
#include "simulator/plan_builder.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::ModelBuilder;
using vramsim::testing::TempDir;

namespace {

constexpr DType kF32 = DType::kFloat32;
constexpr uint64_t KiB = 1024, MiB = 1024 * 1024;

// x [B=2, H=4, L=8, D=16] (data); q, k, v = x @ Wq, x @ Wk, x @ Wv with W [16, 16]: each
// [2,4,8,16], 1024 elements (4 KiB fp32, 2 KiB fp16), each its own storage.
void Projections(ModelBuilder& m) {
  m.Input("x", kF32, {2, 4, 8, 16});
  for (const char* w : {"q", "k", "v"}) {
    std::string name = std::string("W") + w;
    m.Initializer(name, kF32, {16, 16});
    m.Node("MatMul", {"x", name}, {w}, std::string("/") + w + "_proj/MatMul");
  }
}

struct HandWrittenOptions {
  int64_t softmax_axis = -1;
  bool softmax_read_elsewhere = false;
  float dropout = 0.1f;
};

// GPT's CausalSelfAttention as torch.onnx writes it: (q @ k.transpose(-2, -1)) * 0.25,
// masked_fill(~bias[:, :, :8, :8], -inf) with bias a bool buffer [1,1,16,16], softmax(-1),
// dropout(0.1), @ v. Scores [2,4,8,8]: 512 elements.
void HandWritten(ModelBuilder& m, HandWrittenOptions o = {}) {
  Projections(m);
  m.Node("Transpose", {"k"}, {"kT"}, "/attn/Transpose").Ints("perm", {0, 1, 3, 2});
  m.Node("MatMul", {"q", "kT"}, {"s"}, "/attn/MatMul");
  m.FloatInitializer("onnx::scale", {}, {0.25f});
  m.Node("Mul", {"s", "onnx::scale"}, {"ss"}, "/attn/Mul");
  m.Initializer("attn.bias", DType::kBool, {1, 1, 16, 16});
  m.Int64Initializer("onnx::starts", {2}, {0, 0});
  m.Int64Initializer("onnx::ends", {2}, {8, 8});
  m.Int64Initializer("onnx::axes", {2}, {2, 3});
  m.Node("Slice", {"attn.bias", "onnx::starts", "onnx::ends", "onnx::axes"}, {"bias8"},
         "/attn/Slice");
  m.Node("Not", {"bias8"}, {"nb"}, "/attn/Not");
  m.FloatInitializer("onnx::ninf", {}, {-std::numeric_limits<float>::infinity()});
  m.Node("Where", {"nb", "onnx::ninf", "ss"}, {"masked"}, "/attn/Where");
  m.Node("Softmax", {"masked"}, {"p"}, "/attn/Softmax").Int("axis", o.softmax_axis);
  m.FloatInitializer("onnx::ratio", {}, {o.dropout});
  m.Node("Dropout", {"p", "onnx::ratio"}, {"pd", "pmask"}, "/attn/attn_dropout/Dropout");
  m.Node("MatMul", {"pd", "v"}, {"y"}, "/attn/MatMul_1");
  m.Output("y");
  if (o.softmax_read_elsewhere) {
    m.Node("ReduceSum", {"p"}, {"p_sum"}, "/probe/ReduceSum");
    m.Output("p_sum");
  }
}

enum class SdpaMask { kNone, kCausal, kPadding };

// torch.onnx's F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p=0.1, is_causal)
// at opset 14, node for node as symbolic_opset14.scaled_dot_product_attention writes it:
// scale = 1 / Sqrt(Cast(Slice(Shape(q), -1, INT64_MAX))); kT = Transpose(k, [0,1,3,2]);
// MatMul(q * Sqrt(scale), kT * Sqrt(scale)); is_causal: Where(Equal(Trilu(Expand(1, [L, S]),
// upper=0), 0), -inf, 0) added; a bool attn_mask: Where(mask, 0, -inf) added;
// Softmax(axis=-1); Dropout(ratio); MatMul with v.
void ExporterSdpa(ModelBuilder& m, SdpaMask mask) {
  Projections(m);
  m.Int64Initializer("onnx::m1", {1}, {-1});
  m.Int64Initializer("onnx::m2", {1}, {-2});
  m.Int64Initializer("onnx::max", {1}, {std::numeric_limits<int64_t>::max()});
  m.FloatInitializer("onnx::one", {1}, {1.0f});
  m.FloatInitializer("onnx::zero", {1}, {0.0f});
  m.FloatInitializer("onnx::ninf", {1}, {-std::numeric_limits<float>::infinity()});
  m.Node("Shape", {"q"}, {"q_shape"}, "/sdpa/Shape");
  m.Node("Slice", {"q_shape", "onnx::m1", "onnx::max"}, {"e"}, "/sdpa/Slice");
  m.Node("Cast", {"e"}, {"e_f"}, "/sdpa/Cast").Int("to", 1);
  m.Node("Sqrt", {"e_f"}, {"sqrt_e"}, "/sdpa/Sqrt");
  m.Node("Div", {"onnx::one", "sqrt_e"}, {"scale"}, "/sdpa/Div");
  m.Node("Transpose", {"k"}, {"kT"}, "/sdpa/Transpose").Ints("perm", {0, 1, 3, 2});
  m.Node("Sqrt", {"scale"}, {"rs_q"}, "/sdpa/Sqrt_1");
  m.Node("Mul", {"q", "rs_q"}, {"q_s"}, "/sdpa/Mul");
  m.Node("Sqrt", {"scale"}, {"rs_k"}, "/sdpa/Sqrt_2");
  m.Node("Mul", {"kT", "rs_k"}, {"k_s"}, "/sdpa/Mul_1");
  m.Node("MatMul", {"q_s", "k_s"}, {"qk"}, "/sdpa/MatMul");
  std::string scores = "qk";
  if (mask == SdpaMask::kCausal) {
    m.Node("Shape", {"q"}, {"q_shape2"}, "/sdpa/Shape_1");
    m.Node("Shape", {"k"}, {"k_shape"}, "/sdpa/Shape_2");
    m.Node("Slice", {"q_shape2", "onnx::m2", "onnx::m1"}, {"tl"}, "/sdpa/Slice_1");
    m.Node("Slice", {"k_shape", "onnx::m2", "onnx::m1"}, {"sl"}, "/sdpa/Slice_2");
    m.Node("Concat", {"tl", "sl"}, {"size"}, "/sdpa/Concat").Int("axis", 0);
    m.Node("Expand", {"onnx::one", "size"}, {"ones"}, "/sdpa/Expand");
    m.Node("Trilu", {"ones"}, {"tri"}, "/sdpa/Trilu").Int("upper", 0);
    m.Node("Equal", {"tri", "onnx::zero"}, {"eq"}, "/sdpa/Equal");
    m.Node("Where", {"eq", "onnx::ninf", "onnx::zero"}, {"causal"}, "/sdpa/Where");
    m.Node("Add", {"qk", "causal"}, {"added"}, "/sdpa/Add");
    scores = "added";
  } else if (mask == SdpaMask::kPadding) {
    m.Input("pad", DType::kBool, {2, 1, 1, 8});  // per-batch key padding: data
    m.Node("Where", {"pad", "onnx::zero", "onnx::ninf"}, {"pad_f"}, "/sdpa/Where");
    m.Node("Add", {"qk", "pad_f"}, {"added"}, "/sdpa/Add");
    scores = "added";
  }
  m.Node("Softmax", {scores}, {"p"}, "/sdpa/Softmax").Int("axis", -1);
  m.FloatInitializer("onnx::ratio", {}, {0.1f});
  m.Node("Dropout", {"p", "onnx::ratio"}, {"pd"}, "/sdpa/Dropout");
  m.Node("MatMul", {"pd", "v"}, {"y"}, "/sdpa/MatMul_2");
  m.Output("y");
}

Graph Import(ModelBuilder& m) {
  auto g = ImportModelProto(m.proto());
  EXPECT_TRUE(g.ok()) << g.error().message;
  return g.ok() ? std::move(*g) : Graph{};
}

EstimateOptions Options(const std::string& attention, const std::string& precision,
                        const std::string& target = "torch-cuda") {
  EstimateFlags f;
  f.attention = attention;
  f.precision = precision;
  f.target = target;
  f.loss = "none";
  f.optimizer = "sgd";
  auto o = ParseEstimateFlags(f);
  EXPECT_TRUE(o.ok()) << o.error().message;
  return o.ok() ? *o : EstimateOptions{};
}

const PlanOp* OpNamed(const TrainingPlan& p, const std::string& name) {
  for (const PlanOp& op : p.ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

// Bytes of what the op keeps for its backward, in the step's final types (each tensor once).
uint64_t SavedBytes(const TrainingPlan& p, const PlanOp& op) {
  uint64_t sum = 0;
  for (PlanTensorId t : op.saved) sum += TensorBytes(p.tensors[t]);
  return sum;
}

std::vector<uint64_t> WorkspaceBytes(const TrainingPlan& p, const PlanOp& op) {
  std::vector<uint64_t> out;
  for (const PlanBackwardStage& s : op.backward_stages) {
    for (PlanTensorId t : s.workspace) out.push_back(TensorBytes(p.tensors[t]));
  }
  return out;
}

// Buffers of the step with the scores' shape [2,4,8,8].
int ScoreSizedBuffers(const Estimate& e) {
  int n = 0;
  for (const Buffer& b : e.trace.buffers) n += b.shape == std::vector<int64_t>{2, 4, 8, 8};
  return n;
}

// ---- the pattern ------------------------------------------------------------------------------

TEST(Attention, MatchesHandWrittenGptForm) {
  ModelBuilder m(14);
  HandWritten(m);
  Graph g = Import(m);
  auto matches = MatchAttention(g);
  ASSERT_EQ(matches.size(), 1u);
  const AttentionMatch& a = matches[0];
  EXPECT_EQ(g.ops[a.root].name, "/attn/MatMul_1");
  EXPECT_EQ(g.tensors[a.q].name, "q");
  EXPECT_EQ(g.tensors[a.k].name, "k");  // the last-two-axes Transpose is part of the match
  EXPECT_FALSE(a.key_transposed);
  EXPECT_EQ(g.tensors[a.v].name, "v");
  EXPECT_EQ(g.tensors[a.mask].name, "nb");
  EXPECT_EQ(a.mask_kind, AttentionMask::kStatic);  // sliced from a buffer
  EXPECT_NEAR(a.dropout_p, 0.1, 1e-6);
  EXPECT_FALSE(a.exporter_sdpa);
  std::set<std::string> ops, mask_ops;
  for (OpId o : a.ops) ops.insert(g.ops[o].name);
  for (OpId o : a.mask_ops) mask_ops.insert(g.ops[o].name);
  EXPECT_EQ(ops,
            (std::set<std::string>{"/attn/Transpose", "/attn/MatMul", "/attn/Mul", "/attn/Where",
                                   "/attn/Softmax", "/attn/attn_dropout/Dropout"}));
  EXPECT_EQ(mask_ops, (std::set<std::string>{"/attn/Slice", "/attn/Not"}));
}

TEST(Attention, SoftmaxReadElsewhereIsNotAttention) {
  ModelBuilder m(14);
  HandWritten(m, {.softmax_read_elsewhere = true});
  EXPECT_TRUE(MatchAttention(Import(m)).empty());
}

TEST(Attention, SoftmaxNotOverTheLastAxisIsNotAttention) {
  ModelBuilder m(14);
  HandWritten(m, {.softmax_axis = 2});
  EXPECT_TRUE(MatchAttention(Import(m)).empty());
}

TEST(Attention, MatchesTheExportersSdpaDecomposition) {
  for (SdpaMask mask : {SdpaMask::kNone, SdpaMask::kCausal, SdpaMask::kPadding}) {
    ModelBuilder m(14);
    ExporterSdpa(m, mask);
    Graph g = Import(m);
    auto matches = MatchAttention(g);
    ASSERT_EQ(matches.size(), 1u) << static_cast<int>(mask);
    const AttentionMatch& a = matches[0];
    EXPECT_TRUE(a.exporter_sdpa);
    EXPECT_EQ(g.ops[a.root].name, "/sdpa/MatMul_2");
    EXPECT_EQ(g.tensors[a.q].name, "q");
    EXPECT_EQ(g.tensors[a.k].name, "k");
    EXPECT_NEAR(a.dropout_p, 0.1, 1e-6);
    if (mask == SdpaMask::kNone) {
      EXPECT_EQ(a.mask, kNoTensor);
    }
    if (mask == SdpaMask::kCausal) {
      EXPECT_EQ(a.mask_kind, AttentionMask::kCausal);
      std::set<std::string> mask_ops;
      for (OpId o : a.mask_ops) mask_ops.insert(g.ops[o].name);
      EXPECT_TRUE(mask_ops.count("/sdpa/Trilu") && mask_ops.count("/sdpa/Where"));
    }
    if (mask == SdpaMask::kPadding) {
      EXPECT_EQ(a.mask_kind, AttentionMask::kArbitrary);
    }
  }
}

// The bundled GPT: the k head transpose is perm [0,2,3,1] of [B,L,H,D] (kT is the input), the
// mask Cast(Not(Slice(Slice(bias)))) of the tril buffer.
TEST(Attention, MatchesEveryLayerOfTheGptExample) {
  ImportOptions io;
  io.dims = {{"batch", 2}, {"seq", 16}};
  auto g = ImportModel(std::string(VRAMSIM_EXAMPLES) + "/gpt.onnx", io);
  ASSERT_TRUE(g.ok()) << g.error().message;
  auto matches = MatchAttention(*g);
  ASSERT_EQ(matches.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(g->ops[matches[i].root].name, "/h." + std::to_string(i) + "/attn/MatMul_1");
    EXPECT_TRUE(matches[i].key_transposed);
    EXPECT_EQ(matches[i].mask_kind, AttentionMask::kStatic);
    EXPECT_FALSE(matches[i].exporter_sdpa);
    EXPECT_NEAR(matches[i].dropout_p, 0.1, 1e-6);
  }
}

// ---- what each kernel saves ------------------------------------------------------------------

// --precision fp16 on torch-cuda, B=2 H=4 L=8 D=16. flash: q, k, v and the output 2 KiB each
// (1024 fp16 elements), logsumexp [2,4,8] fp32 256 B, rng_state uint64 [2] 16 B and the uint64
// philox offset 8 B: 8472 B. Its backward holds softmax_d [2,4,round128(8)=128] fp32 4 KiB and
// the fp32 dq accumulator [2, 128, 4, round32(16)=32] (32,768 elements) 128 KiB. No [2,4,8,8]
// tensor exists.
TEST(Attention, FlashSavesQkvOutputAndLogsumexp) {
  ModelBuilder m(14);
  HandWritten(m);
  auto e = RunEstimate(Import(m), Options("flash", "fp16"));
  ASSERT_TRUE(e.ok()) << e.error().message;
  const PlanOp* op = OpNamed(e->plan, "/attn/MatMul_1");
  ASSERT_NE(op, nullptr);
  EXPECT_EQ(op->type, kAttentionOpType);
  EXPECT_EQ(op->grad_inputs, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(SavedBytes(e->plan, *op), 4 * 2 * KiB + 256 + 16 + 8);
  EXPECT_EQ(WorkspaceBytes(e->plan, *op), (std::vector<uint64_t>{4 * KiB, 128 * KiB}));
  EXPECT_EQ(OpNamed(e->plan, "/attn/Softmax"), nullptr);
  EXPECT_EQ(OpNamed(e->plan, "/attn/Not"), nullptr);  // the causal mask is not computed
  EXPECT_EQ(ScoreSizedBuffers(*e), 0);
}

// mem-efficient, same graph: q, k, v, output 8 KiB, logsumexp [2,4,round32(8)=32] fp32 1 KiB:
// 9216 B; the static mask is is_causal (no attn_bias). Backward: delta [2,4,32] fp32 1 KiB and
// the fp32 grad_q accumulator [2,4,8,16] 4 KiB.
TEST(Attention, MemEfficientPadsLogsumexpTo32) {
  ModelBuilder m(14);
  HandWritten(m);
  auto e = RunEstimate(Import(m), Options("mem-efficient", "fp16"));
  ASSERT_TRUE(e.ok()) << e.error().message;
  const PlanOp* op = OpNamed(e->plan, "/attn/MatMul_1");
  ASSERT_NE(op, nullptr);
  EXPECT_EQ(op->type, kAttentionOpType);
  EXPECT_EQ(SavedBytes(e->plan, *op), 4 * 2 * KiB + KiB);
  EXPECT_EQ(WorkspaceBytes(e->plan, *op), (std::vector<uint64_t>{KiB, 4 * KiB}));
  EXPECT_EQ(ScoreSizedBuffers(*e), 0);
}

// mem-efficient in fp32 keeps no grad_q accumulator (the kernel accumulates in its output
// type): q, k, v, output 4 KiB each + logsumexp 1 KiB; backward delta 1 KiB only.
TEST(Attention, MemEfficientInFp32HasNoAccumulator) {
  ModelBuilder m(14);
  HandWritten(m);
  auto e = RunEstimate(Import(m), Options("mem-efficient", "fp32"));
  ASSERT_TRUE(e.ok()) << e.error().message;
  const PlanOp* op = OpNamed(e->plan, "/attn/MatMul_1");
  ASSERT_NE(op, nullptr);
  EXPECT_EQ(SavedBytes(e->plan, *op), 4 * 4 * KiB + KiB);
  EXPECT_EQ(WorkspaceBytes(e->plan, *op), (std::vector<uint64_t>{KiB}));
}

// Without dropout mem-efficient's philox seed and offset are int64 scalars on the device
// (8 B each), saved beside q, k, v, output (8 KiB) and logsumexp (1 KiB): 9232 B.
TEST(Attention, MemEfficientWithoutDropoutKeepsDeviceSeedAndOffset) {
  ModelBuilder m(14);
  HandWritten(m, {.dropout = 0.0f});
  auto e = RunEstimate(Import(m), Options("mem-efficient", "fp16"));
  ASSERT_TRUE(e.ok()) << e.error().message;
  const PlanOp* op = OpNamed(e->plan, "/attn/MatMul_1");
  ASSERT_NE(op, nullptr);
  ASSERT_EQ(op->type, kAttentionOpType);
  EXPECT_EQ(SavedBytes(e->plan, *op), 4 * 2 * KiB + KiB + 8 + 8);
}

// eager (and math) simulate the ops as written: softmax's result [2,4,8,8] fp16 1 KiB, the
// bool dropout mask 512 B, the dropout output 1 KiB are saved.
TEST(Attention, EagerAndMathKeepTheScores) {
  for (const char* impl : {"eager", "math", "auto"}) {
    ModelBuilder m(14);
    HandWritten(m);
    auto e = RunEstimate(Import(m), Options(impl, "fp16"));
    ASSERT_TRUE(e.ok()) << e.error().message;
    ASSERT_NE(OpNamed(e->plan, "/attn/Softmax"), nullptr) << impl;
    EXPECT_EQ(OpNamed(e->plan, "/attn/MatMul_1")->type, "MatMul") << impl;
    EXPECT_EQ(SavedBytes(e->plan, *OpNamed(e->plan, "/attn/Softmax")), KiB) << impl;
    EXPECT_EQ(SavedBytes(e->plan, *OpNamed(e->plan, "/attn/attn_dropout/Dropout")), 512u) << impl;
    EXPECT_GT(ScoreSizedBuffers(*e), 0) << impl;
  }
}

// ---- auto ------------------------------------------------------------------------------------

std::string KernelOf(const Estimate& e, const std::string& root) {
  const PlanOp* op = OpNamed(e.plan, root);
  if (!op) return "missing";
  return op->type == kAttentionOpType ? "fused" : op->type;
}

TEST(Attention, AutoPicksWhatPyTorchWouldForTheExportersSdpa) {
  struct Case {
    SdpaMask mask;
    const char* precision;
    const char* target;
    const char* kernel;  // expected, from ChooseAttentionKernel
  };
  const Case cases[] = {
      {SdpaMask::kCausal, "fp16", "torch-cuda", "flash"},           // is_causal, half, D 16
      {SdpaMask::kNone, "amp-bf16", "torch-cuda", "flash"},         // autocast runs it in bf16
      {SdpaMask::kCausal, "fp32", "torch-cuda", "mem-efficient"},   // flash takes no fp32
      {SdpaMask::kPadding, "fp16", "torch-cuda", "mem-efficient"},  // flash takes no attn_mask
      {SdpaMask::kCausal, "fp16", "torch-cpu", "math"},
  };
  for (const Case& c : cases) {
    ModelBuilder m(14);
    ExporterSdpa(m, c.mask);
    Graph g = Import(m);
    auto matches = MatchAttention(g);
    ASSERT_EQ(matches.size(), 1u);
    EstimateOptions o = Options("auto", c.precision, c.target);
    auto kernel = ChooseAttentionKernel(
        g, matches[0],
        {AttentionImpl::kAuto, c.precision == std::string("fp32")   ? DType::kUndefined
                               : c.precision == std::string("fp16") ? DType::kFloat16
                                                                    : DType::kBFloat16},
        o.target.device);
    ASSERT_TRUE(kernel.ok()) << kernel.error().message;
    EXPECT_EQ(*kernel, c.kernel) << c.precision << " " << c.target;
    auto e = RunEstimate(g, o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    EXPECT_EQ(KernelOf(*e, "/sdpa/MatMul_2"), std::string(c.kernel) == "math" ? "MatMul" : "fused");
  }
}

// A padding mask under mem-efficient is kept as attn_bias: the bool [2,1,1,8] converted to
// fp16 by Where(mask, 0, -inf) (the export's own op) and padded to [2,1,1,16]: 64 B, saved
// beside q, k, v, output (8 KiB) and logsumexp (1 KiB).
TEST(Attention, MemEfficientKeepsAPaddedAttnBias) {
  ModelBuilder m(14);
  ExporterSdpa(m, SdpaMask::kPadding);
  auto e = RunEstimate(Import(m), Options("auto", "fp16"));
  ASSERT_TRUE(e.ok()) << e.error().message;
  const PlanOp* op = OpNamed(e->plan, "/sdpa/MatMul_2");
  ASSERT_NE(op, nullptr);
  ASSERT_EQ(op->type, kAttentionOpType);
  EXPECT_EQ(op->inputs.size(), 4u);
  EXPECT_EQ(SavedBytes(e->plan, *op), 4 * 2 * KiB + KiB + 64);
}

// ---- refusals ----------------------------------------------------------------------------------

TEST(Attention, FlashRefusesFp32OnCuda) {
  ModelBuilder m(14);
  HandWritten(m);
  auto e = RunEstimate(Import(m), Options("flash", "fp32"));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("/attn/MatMul_1"), std::string::npos) << e.error().message;
  EXPECT_NE(e.error().message.find("fp16 and bf16 only"), std::string::npos) << e.error().message;
}

TEST(Attention, FlashRefusesAPaddingMask) {
  ModelBuilder m(14);
  ExporterSdpa(m, SdpaMask::kPadding);
  auto e = RunEstimate(Import(m), Options("flash", "bf16"));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("no attention mask"), std::string::npos) << e.error().message;
}

TEST(Attention, MemEfficientHasNoCpuKernel) {
  ModelBuilder m(14);
  HandWritten(m);
  auto e = RunEstimate(Import(m), Options("mem-efficient", "fp32", "torch-cpu"));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("no CPU kernel"), std::string::npos) << e.error().message;
}

TEST(Attention, UnknownValueIsOneClearError) {
  EstimateFlags f;
  f.attention = "fused";
  auto o = ParseEstimateFlags(f);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().message,
            "unknown --attention 'fused' (auto, eager, math, flash, mem-efficient)");
}

TEST(Attention, CliRefusesFlashInFp32WithOneLine) {
  TempDir dir;
  std::string cmd = std::string(VRAMSIM_BIN) + " estimate " + VRAMSIM_EXAMPLES +
                    "/gpt.onnx --dim batch=2 --dim seq=16 --attention flash >" + dir.File("out") +
                    " 2>" + dir.File("err");
  int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  std::ifstream f(dir.File("err"));
  std::stringstream err;
  err << f.rdbuf();
  const std::string s = err.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 1) << s;
  EXPECT_EQ(s.rfind("vramsim: error: ", 0), 0u) << s;
  EXPECT_NE(s.find("fp16 and bf16 only"), std::string::npos) << s;
}

// ---- the bundled GPT -------------------------------------------------------------------------

// examples/gpt.onnx (4 layers, 4 heads, head dim 64, block size 256: seq 256 is the longest it
// takes) at batch 8, bf16, torch-cuda. Eager saves per layer softmax's result [8,4,256,256]
// bf16 (2,097,152 elements: 4 MiB), the bool dropout mask (2 MiB) and the dropout output
// (4 MiB): 10 MiB, 40 MiB for the 4 layers, all alive when the backward starts. Flash saves
// none of them, and adds per layer a fp32 logsumexp [8,4,256] (32 KiB) and two rng tensors
// (512 B each after CUDA's rounding); its q, k, v are views of c_attn's output where eager
// saved contiguous copies of the same size, and its output (1 MiB) is the c_proj input eager
// copied. So flash's peak is lower by at least 40 MiB - 4 * 33 KiB. The peak is at the loss's
// backward, with every saved tensor alive, and exactly: eager also keeps, per layer, the
// Where's condition Not(bias[:, :, :256, :256]) [1,1,256,256] bool (64 KiB), which is_causal
// never computes: 4 * (10 MiB + 64 KiB - 32 KiB - 1 KiB) = 42,070,016 B lower; mem-efficient
// has no device rng tensors: 4 * (10 MiB + 64 KiB - 32 KiB) = 42,074,112 B lower.
TEST(Attention, FlashLowersTheGptExamplesPeakByTheScores) {
  std::map<std::string, int64_t> dims = {{"batch", 8}, {"seq", 256}};
  const std::string gpt = std::string(VRAMSIM_EXAMPLES) + "/gpt.onnx";
  EstimateOptions base = Options("eager", "bf16");
  base.loss = LossKind::kCrossEntropy;
  base.optimizer = "adam";
  EstimateOptions flash = base, mem = base;
  flash.attention = AttentionImpl::kFlash;
  mem.attention = AttentionImpl::kMemEfficient;
  auto e = EstimateModel(gpt, dims, base);
  auto f = EstimateModel(gpt, dims, flash);
  auto me = EstimateModel(gpt, dims, mem);
  ASSERT_TRUE(e.ok()) << e.error().message;
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_TRUE(me.ok()) << me.error().message;
  const uint64_t scores = 4 * (4 * MiB + 2 * MiB + 4 * MiB);
  const uint64_t added = 4 * (32 * KiB + 2 * 512);
  EXPECT_GE(e->peak.peak_bytes, f->peak.peak_bytes + scores - added)
      << "eager " << e->peak.peak_bytes << " flash " << f->peak.peak_bytes;
  EXPECT_GE(e->peak.peak_bytes, me->peak.peak_bytes + scores - added)
      << "eager " << e->peak.peak_bytes << " mem-efficient " << me->peak.peak_bytes;
  EXPECT_EQ(e->peak.peak_bytes - f->peak.peak_bytes, 4 * (10 * MiB + 64 * KiB - 32 * KiB - KiB));
  EXPECT_EQ(e->peak.peak_bytes - me->peak.peak_bytes, 4 * (10 * MiB + 64 * KiB - 32 * KiB));
}

}  // namespace

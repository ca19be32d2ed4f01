// Recurrent ops (simulator/recurrent_rules.cc) on tiny hand-built graphs laid out as
// torch.onnx writes nn.LSTM / nn.GRU / nn.RNN: the exact event stream of one step on the CPU
// target with every byte worked out by hand, the exporter's weight reformatting that must
// allocate nothing and hand each parameter a gradient of its own size, and cuDNN's reserve.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <ostream>
#include <string>
#include <vector>

#include "cli/estimate.h"
#include "importer/importer.h"
#include "simulator/gradient_rules.h"
#include "simulator/plan_builder.h"
#include "tests/model_builder.h"

using namespace vramsim;
using vramsim::testing::Int64Tensor;
using vramsim::testing::ModelBuilder;

namespace {

constexpr DType kF32 = DType::kFloat32;

struct Ev {
  char kind;         // 'A' alloc, 'F' free
  std::string step;  // step name
  std::string name;  // buffer name
  uint64_t bytes;
  bool operator==(const Ev&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Ev& e) {
  return os << e.kind << " [" << e.step << "] " << e.name << " " << e.bytes;
}

// The events of the forward and backward (setup, optimizer and end left out).
std::vector<Ev> StepEvents(const Trace& t) {
  std::vector<Ev> out;
  for (const Event& e : t.events) {
    const Step& s = t.steps[e.step];
    if (s.phase != Phase::kForward && s.phase != Phase::kBackward) continue;
    const Buffer& b = t.buffers[e.buffer];
    out.push_back({e.kind == Event::Kind::kAlloc ? 'A' : 'F', s.name, b.name, b.bytes});
  }
  if (std::getenv("VRAMSIM_TEST_PRINT")) {
    for (const Ev& e : out) std::cout << e << "\n";
  }
  return out;
}

void ExpectEvents(const Trace& t, const std::vector<Ev>& expected) {
  std::vector<Ev> got = StepEvents(t);
  EXPECT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < std::min(got.size(), expected.size()); ++i) {
    EXPECT_EQ(got[i], expected[i]) << "event " << i;
  }
}

Result<Estimate> RunStep(ModelBuilder& m, const std::string& target = "torch-cpu",
                         const std::string& loss = "none") {
  auto g = ImportModelProto(m.proto());
  if (!g) return g.error();
  EstimateFlags flags;
  flags.optimizer = "sgd";
  flags.target = target;
  flags.loss = loss;
  auto o = ParseEstimateFlags(flags);
  if (!o) return o.error();
  return RunEstimate(*g, *o);
}

// A Constant node holding int64 values, as the exporter writes Slice bounds and axes.
void Ints(ModelBuilder& m, const std::string& name, std::vector<int64_t> values) {
  m.Node("Constant", {}, {name}, name)
      .Tensor("value", Int64Tensor(name, {static_cast<int64_t>(values.size())}, values));
}

// torch.onnx's reformatting of one gate-stacked parameter `p` ([gates*H, ...]): Slice it into
// the pieces [a, b) and Concat them in ONNX's gate order, then Unsqueeze the direction axis.
// (LSTM: PyTorch i,f,g,o -> ONNX i,o,f,c: pieces [0,H) [3H,4H) [H,3H).)
std::string Reorder(ModelBuilder& m, const std::string& p,
                    const std::vector<std::pair<int64_t, int64_t>>& pieces) {
  std::vector<std::string> parts;
  for (size_t k = 0; k < pieces.size(); ++k) {
    std::string s = p + "_s" + std::to_string(k);
    Ints(m, s + "_from", {pieces[k].first});
    Ints(m, s + "_to", {pieces[k].second});
    Ints(m, s + "_axis", {0});
    m.Node("Slice", {p, s + "_from", s + "_to", s + "_axis"}, {s}, "/rnn/Slice_" + s);
    parts.push_back(s);
  }
  m.Node("Concat", parts, {p + "_onnx"}, "/rnn/Concat_" + p).Int("axis", 0);
  return p + "_onnx";
}
std::string Unsqueeze0(ModelBuilder& m, const std::string& x) {
  Ints(m, x + "_ax", {0});
  m.Node("Unsqueeze", {x, x + "_ax"}, {x + "_u"}, "/rnn/Unsqueeze_" + x);
  return x + "_u";
}

// One LSTM layer as nn.LSTM(4, 2, batch_first=True) exports it, on a data input x [B=2, T=3,
// I=4] (batch first: the exporter transposes it to [T, B, I]); hidden H = 2; no initial
// state; the output Y [T, 1, B, H] squeezed to y [T, B, H] is the graph output.
//   parameters w_ih [8,4] 128 B, w_hh [8,2] 64 B, b_ih [8] 32 B, b_hh [8] 32 B
void Lstm(ModelBuilder& m) {
  m.Input("x", kF32, {2, 3, 4});
  m.Initializer("w_ih", kF32, {8, 4});
  m.Initializer("w_hh", kF32, {8, 2});
  m.Initializer("b_ih", kF32, {8});
  m.Initializer("b_hh", kF32, {8});
  m.Node("Transpose", {"x"}, {"xt"}, "/rnn/Transpose").Ints("perm", {1, 0, 2});
  std::vector<std::pair<int64_t, int64_t>> gates = {{0, 2}, {6, 8}, {2, 6}};
  std::string w = Unsqueeze0(m, Reorder(m, "w_ih", gates));
  std::string r = Unsqueeze0(m, Reorder(m, "w_hh", gates));
  std::string bi = Reorder(m, "b_ih", gates), bh = Reorder(m, "b_hh", gates);
  m.Node("Concat", {bi, bh}, {"bias"}, "/rnn/Concat_bias").Int("axis", 0);
  std::string b = Unsqueeze0(m, "bias");
  m.Node("LSTM", {"xt", w, r, b, "", "", ""}, {"Y", "Y_h", "Y_c"}, "/rnn/LSTM")
      .Int("hidden_size", 2);
  Ints(m, "sq_ax", {1});
  m.Node("Squeeze", {"Y", "sq_ax"}, {"y"}, "/rnn/Squeeze");
  m.Output("y");
}

}  // namespace

// With u = B*H*4 = 16 bytes (one [B, H] float tensor), T = 3:
//   contiguous copy of x (batch-first input, transposed): T*B*I*4 = 96
//   saved steps (7T-2)u = 19*16 = 304; zero h0, c0 [2, B, H] = 32
//   input projection x W^T + b for all steps: 4*T*u = 192 (freed when the layer is done)
//   Y [T,1,B,H] 48, Y_h 16, Y_c 16 (Y_h, Y_c read by nobody: freed at once)
// Backward (--loss none: y's gradient, 48, starts it), in stages:
//   steps  the hidden weight's gradient accumulated over the steps: 2 x [8,2] = 128 held while
//          w_hh's (64), b_ih's and b_hh's (32 each) gradients are made; then the saved steps,
//          the zero states and y's gradient go
//   stack  the per-step gate gradients and their stack: 2 x T*B*4H*4 = 384
//   end    the stacked gate gradients (192) beside w_ih's gradient (128); x is data: no grad
// Then the contiguous copy (saved for w_ih's gradient) goes.
TEST(RecurrentRules, LstmOnCpuIsExactlyThisStream) {
  ModelBuilder m;
  Lstm(m);
  auto e = RunStep(m);
  ASSERT_TRUE(e.ok()) << e.error().message;
  ExpectEvents(e->trace,
               {
                   {'A', "/rnn/LSTM", "xt:contiguous", 96},
                   {'A', "/rnn/LSTM", "/rnn/LSTM:saved steps (forward)", 304},
                   {'A', "/rnn/LSTM", "/rnn/LSTM:zero initial state", 32},
                   {'A', "/rnn/LSTM", "/rnn/LSTM:input projection", 192},
                   {'A', "/rnn/LSTM", "Y", 48},
                   {'A', "/rnn/LSTM", "Y_h", 16},
                   {'A', "/rnn/LSTM", "Y_c", 16},
                   {'F', "/rnn/LSTM", "/rnn/LSTM:input projection", 192},
                   {'F', "/rnn/LSTM", "Y_h", 16},
                   {'F', "/rnn/LSTM", "Y_c", 16},
                   {'A', "loss backward", "grad of y", 48},
                   // steps
                   {'A', "/rnn/LSTM", "/rnn/LSTM:hidden weight gradient accumulation", 128},
                   {'A', "/rnn/LSTM", "grad of w_hh", 64},
                   {'A', "/rnn/LSTM", "grad of b_ih", 32},
                   {'A', "/rnn/LSTM", "grad of b_hh", 32},
                   {'F', "/rnn/LSTM", "/rnn/LSTM:hidden weight gradient accumulation", 128},
                   {'F', "/rnn/LSTM", "/rnn/LSTM:saved steps (forward)", 304},
                   {'F', "/rnn/LSTM", "/rnn/LSTM:zero initial state", 32},
                   {'F', "/rnn/LSTM", "grad of y", 48},
                   // stack
                   {'A', "/rnn/LSTM", "/rnn/LSTM:gate gradients of every step, stacked", 384},
                   {'F', "/rnn/LSTM", "/rnn/LSTM:gate gradients of every step, stacked", 384},
                   // end
                   {'A', "/rnn/LSTM", "/rnn/LSTM:stacked gate gradients", 192},
                   {'A', "/rnn/LSTM", "grad of w_ih", 128},
                   {'F', "/rnn/LSTM", "/rnn/LSTM:stacked gate gradients", 192},
                   {'F', "/rnn/LSTM", "xt:contiguous", 96},
               });
  // Peak: parameters 256 + x 96 + the forward's 96 + 304 + 32 + 192 + 48 + 16 + 16 = 1056.
  // (The steps stage: 352 + 96 + 304 + 32 + y 48 + its grad 48 + 128 + 128 = 1136.)
  EXPECT_EQ(e->peak.peak_bytes, 1136u);
}

// The weight chain (Slice / Concat / Unsqueeze of the parameters) is not run: no op of it is
// in the plan, none of its tensors is allocated, and the LSTM reads the four parameters
// themselves, each getting one gradient of its own size.
TEST(RecurrentRules, ExporterWeightReformattingAllocatesNothingAndParametersGetTheirGradients) {
  ModelBuilder m;
  Lstm(m);
  auto e = RunStep(m);
  ASSERT_TRUE(e.ok()) << e.error().message;
  for (const PlanOp& op : e->plan.ops) {
    EXPECT_TRUE(op.type != "Slice" && op.type != "Concat" && op.type != "Unsqueeze") << op.name;
  }
  const PlanOp* lstm = nullptr;
  for (const PlanOp& op : e->plan.ops) {
    if (op.type == "LSTM") lstm = &op;
  }
  ASSERT_NE(lstm, nullptr);
  std::vector<std::string> grads;
  for (int k : lstm->grad_inputs) grads.push_back(e->plan.tensors[lstm->inputs[k]].name);
  std::sort(grads.begin(), grads.end());
  EXPECT_EQ(grads, (std::vector<std::string>{"b_hh", "b_ih", "w_hh", "w_ih"}));
  for (const Buffer& b : e->trace.buffers) {
    EXPECT_EQ(b.name.find("_onnx"), std::string::npos) << b.name;
    EXPECT_EQ(b.name.find("_s0"), std::string::npos) << b.name;
    EXPECT_EQ(b.name.find("bias"), std::string::npos) << b.name;
  }
  std::map<std::string, uint64_t> grad_bytes;
  for (const Buffer& b : e->trace.buffers) {
    if (b.category == Category::kGradients) grad_bytes[b.name] += b.bytes;
  }
  EXPECT_EQ(grad_bytes, (std::map<std::string, uint64_t>{{"grad of w_ih", 128},
                                                         {"grad of w_hh", 64},
                                                         {"grad of b_ih", 32},
                                                         {"grad of b_hh", 32}}));
  // Trained as four parameters of 256 bytes: sgd's step and zero_grad see them.
  EXPECT_EQ(e->peak.peak_bytes, 1136u);
}

// A chain tensor that something else reads stays as it is (here the reordered input weight
// is also a graph output): the chain runs, and its Concat allocates.
TEST(RecurrentRules, AChainReadElsewhereIsKept) {
  ModelBuilder m;
  Lstm(m);
  m.Output("w_ih_onnx");
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok()) << g.error().message;
  PlanOptions o;
  o.target.device = Device::kCpu;
  o.loss = LossKind::kNone;
  auto p = BuildPlan(*g, o);
  ASSERT_TRUE(p.ok()) << p.error().message;
  bool concat = false;
  for (const PlanOp& op : p->ops) concat = concat || op.name == "/rnn/Concat_w_ih";
  EXPECT_TRUE(concat);
}

namespace {

// nn.GRU(4, 2, batch_first=True, bidirectional=True) as exported: x [B=2, T=3, I=4]
// transposed to [T, B, I]; per direction (forward, reverse) w_ih [6,4] 96 B, w_hh [6,2] 48 B,
// b_ih [6] 24 B, b_hh [6] 24 B, gate-reordered (PyTorch r,z,n -> ONNX z,r,n) and stacked over
// the directions; Y [T, 2, B, H] -> Transpose -> Reshape y [T, B, 2H] (the concat of the
// directions), the graph output.
void BidirectionalGru(ModelBuilder& m) {
  m.Input("x", kF32, {2, 3, 4});
  for (std::string d : {"", "_r"}) {
    m.Initializer("w_ih" + d, kF32, {6, 4});
    m.Initializer("w_hh" + d, kF32, {6, 2});
    m.Initializer("b_ih" + d, kF32, {6});
    m.Initializer("b_hh" + d, kF32, {6});
  }
  m.Node("Transpose", {"x"}, {"xt"}, "/rnn/Transpose").Ints("perm", {1, 0, 2});
  std::vector<std::pair<int64_t, int64_t>> gates = {{2, 4}, {0, 2}, {4, 6}};
  std::vector<std::string> w, r, b;
  for (std::string d : {"", "_r"}) {
    w.push_back(Unsqueeze0(m, Reorder(m, "w_ih" + d, gates)));
    r.push_back(Unsqueeze0(m, Reorder(m, "w_hh" + d, gates)));
    std::string bi = Reorder(m, "b_ih" + d, gates), bh = Reorder(m, "b_hh" + d, gates);
    m.Node("Concat", {bi, bh}, {"bias" + d}, "/rnn/Concat_bias" + d).Int("axis", 0);
    b.push_back(Unsqueeze0(m, "bias" + d));
  }
  m.Node("Concat", w, {"W"}, "/rnn/Concat_W").Int("axis", 0);
  m.Node("Concat", r, {"R"}, "/rnn/Concat_R").Int("axis", 0);
  m.Node("Concat", b, {"B"}, "/rnn/Concat_B").Int("axis", 0);
  m.Node("GRU", {"xt", "W", "R", "B", "", ""}, {"Y", "Y_h"}, "/rnn/GRU")
      .Int("hidden_size", 2)
      .Int("linear_before_reset", 1)
      .String("direction", "bidirectional");
  m.Node("Transpose", {"Y"}, {"Yt"}, "/rnn/Transpose_1").Ints("perm", {0, 2, 1, 3});
  Ints(m, "shape", {0, 0, -1});
  m.Node("Reshape", {"Yt", "shape"}, {"y"}, "/rnn/Reshape");
  m.Output("y");
}

}  // namespace

// u = B*H*4 = 16 bytes, T = 3, per direction:
//   copies of the transposed input: one per direction, both saved: 2 x 96
//   saved steps (7T-1)u = 320 each; zero h0 [2, B, H] = 32
//   input projection 3*T*u = 144 plus the directions' concat 2*T*u = 96: 240 (freed after)
//   Y [3,2,2,2] 96, Y_h [2,2,2] 32; the Reshape copies Y into y (96) and Y goes
// Backward (--loss none): y's gradient 96; the Reshape's backward makes Y's (96, Transpose
// passes it through). Then the reverse direction first, each in three stages:
//   steps  2 x [6,2] = 96 while w_hh's (48), b_ih's and b_hh's (24) gradients are made, then
//          its saved steps go (the forward direction's also frees h0 and Y's gradient)
//   stack  2 x T*B*3H*4 = 288;  end  144 beside w_ih's gradient (96)
TEST(RecurrentRules, BidirectionalGruOnCpuRunsTheReverseDirectionFirst) {
  ModelBuilder m;
  BidirectionalGru(m);
  auto e = RunStep(m);
  ASSERT_TRUE(e.ok()) << e.error().message;
  const std::string gru = "/rnn/GRU", acc = "/rnn/GRU:hidden weight gradient accumulation";
  const std::string stack = "/rnn/GRU:gate gradients of every step, stacked";
  const std::string stacked = "/rnn/GRU:stacked gate gradients";
  ExpectEvents(e->trace, {
                             {'A', gru, "xt:contiguous", 96},
                             {'A', gru, "xt:contiguous", 96},
                             {'A', gru, "/rnn/GRU:saved steps (forward)", 320},
                             {'A', gru, "/rnn/GRU:saved steps (reverse)", 320},
                             {'A', gru, "/rnn/GRU:zero initial state", 32},
                             {'A', gru, "/rnn/GRU:input projection and direction concat", 240},
                             {'A', gru, "Y", 96},
                             {'A', gru, "Y_h", 32},
                             {'F', gru, "/rnn/GRU:input projection and direction concat", 240},
                             {'F', gru, "Y_h", 32},
                             {'A', "/rnn/Reshape", "y", 96},
                             {'F', "/rnn/Reshape", "Y", 96},
                             {'A', "loss backward", "grad of y", 96},
                             {'A', "/rnn/Reshape", "grad of Yt", 96},
                             {'F', "/rnn/Reshape", "grad of y", 96},
                             // reverse: steps, stack, end
                             {'A', gru, acc, 96},
                             {'A', gru, "grad of w_hh_r", 48},
                             {'A', gru, "grad of b_ih_r", 24},
                             {'A', gru, "grad of b_hh_r", 24},
                             {'F', gru, acc, 96},
                             {'F', gru, "/rnn/GRU:saved steps (reverse)", 320},
                             {'A', gru, stack, 288},
                             {'F', gru, stack, 288},
                             {'A', gru, stacked, 144},
                             {'A', gru, "grad of w_ih_r", 96},
                             {'F', gru, stacked, 144},
                             // forward
                             {'A', gru, acc, 96},
                             {'A', gru, "grad of w_hh", 48},
                             {'A', gru, "grad of b_ih", 24},
                             {'A', gru, "grad of b_hh", 24},
                             {'F', gru, acc, 96},
                             {'F', gru, "/rnn/GRU:saved steps (forward)", 320},
                             {'F', gru, "/rnn/GRU:zero initial state", 32},
                             {'F', gru, "grad of Yt", 96},
                             {'A', gru, stack, 288},
                             {'F', gru, stack, 288},
                             {'A', gru, stacked, 144},
                             {'A', gru, "grad of w_ih", 96},
                             {'F', gru, stacked, 144},
                             {'F', gru, "xt:contiguous", 96},
                             {'F', gru, "xt:contiguous", 96},
                         });
}

namespace {

// nn.RNN(4, 2) behind an embedding: idx [T=3, B=2] int64, emb [10,4] 160 B, X = emb[idx]
// [3,2,4] 96 B (contiguous: no copy; it needs a gradient). w_ih [2,4] 32 B, w_hh [2,2] 16 B,
// b_ih, b_hh [2] 8 B each, exported without reordering (one gate): Unsqueeze, and the biases
// Concat + Unsqueeze. Y [3,1,2,2] 48 B squeezed to y.
void EmbeddingRnn(ModelBuilder& m) {
  m.Input("idx", DType::kInt64, {3, 2});
  m.Initializer("emb", kF32, {10, 4});
  m.Initializer("w_ih", kF32, {2, 4});
  m.Initializer("w_hh", kF32, {2, 2});
  m.Initializer("b_ih", kF32, {2});
  m.Initializer("b_hh", kF32, {2});
  m.Node("Gather", {"emb", "idx"}, {"X"}, "/emb/Gather");
  std::string w = Unsqueeze0(m, "w_ih"), r = Unsqueeze0(m, "w_hh");
  m.Node("Concat", {"b_ih", "b_hh"}, {"bias"}, "/rnn/Concat_bias").Int("axis", 0);
  std::string b = Unsqueeze0(m, "bias");
  m.Node("RNN", {"X", w, r, b, "", ""}, {"Y", "Y_h"}, "/rnn/RNN").Int("hidden_size", 2);
  Ints(m, "sq_ax", {1});
  m.Node("Squeeze", {"Y", "sq_ax"}, {"y"}, "/rnn/Squeeze");
  m.Output("y");
}

}  // namespace

// u = 16, T = 3: saved steps T*u = 48 (every h), zero h0 16, input projection T*u = 48;
// X is saved for w_ih's gradient and gets its own gradient at the end (then the embedding's
// backward makes emb's).
TEST(RecurrentRules, RnnBehindAnEmbeddingGivesItsInputAGradient) {
  ModelBuilder m;
  EmbeddingRnn(m);
  auto e = RunStep(m);
  ASSERT_TRUE(e.ok()) << e.error().message;
  const std::string rnn = "/rnn/RNN";
  ExpectEvents(e->trace, {
                             {'A', "/emb/Gather", "X", 96},
                             {'A', rnn, "/rnn/RNN:saved steps (forward)", 48},
                             {'A', rnn, "/rnn/RNN:zero initial state", 16},
                             {'A', rnn, "/rnn/RNN:input projection", 48},
                             {'A', rnn, "Y", 48},
                             {'A', rnn, "Y_h", 16},
                             {'F', rnn, "/rnn/RNN:input projection", 48},
                             {'F', rnn, "Y_h", 16},
                             {'A', "loss backward", "grad of y", 48},
                             {'A', rnn, "/rnn/RNN:hidden weight gradient accumulation", 32},
                             {'A', rnn, "grad of w_hh", 16},
                             {'A', rnn, "grad of b_ih", 8},
                             {'A', rnn, "grad of b_hh", 8},
                             {'F', rnn, "/rnn/RNN:hidden weight gradient accumulation", 32},
                             {'F', rnn, "/rnn/RNN:saved steps (forward)", 48},
                             {'F', rnn, "/rnn/RNN:zero initial state", 16},
                             {'F', rnn, "grad of y", 48},
                             {'A', rnn, "/rnn/RNN:gate gradients of every step, stacked", 96},
                             {'F', rnn, "/rnn/RNN:gate gradients of every step, stacked", 96},
                             {'A', rnn, "/rnn/RNN:stacked gate gradients", 48},
                             {'A', rnn, "grad of X", 96},
                             {'A', rnn, "grad of w_ih", 32},
                             {'F', rnn, "/rnn/RNN:stacked gate gradients", 48},
                             {'F', rnn, "X", 96},
                             {'A', "/emb/Gather", "grad of emb", 160},
                             {'F', "/emb/Gather", "grad of X", 96},
                         });
}

// On CUDA (cuDNN; derived, not measured): the input itself, the zero states, the output and a
// uint8 reserve of D*T*B*H*k elements (LSTM k = 6) less one D*T*B*H for the last layer of a
// stack are saved; the backward makes every gradient at once (no stages). Two layers: the
// second reads the first's output and has its weights as ONNX-layout initializers (no chain).
//   first  1*3*2*2*6*4 = 288 bytes;  last  1*3*2*2*5*4 = 240 bytes
TEST(RecurrentRules, CudaSavesCudnnReserve) {
  ModelBuilder m;
  Lstm(m);
  m.Initializer("W2", kF32, {1, 8, 2});
  m.Initializer("R2", kF32, {1, 8, 2});
  m.Node("LSTM", {"y", "W2", "R2"}, {"Y2"}, "/rnn/LSTM_1").Int("hidden_size", 2);
  Ints(m, "sq_ax2", {1});
  m.Node("Squeeze", {"Y2", "sq_ax2"}, {"y2"}, "/rnn/Squeeze_1");
  auto g = ImportModelProto(m.proto());
  ASSERT_TRUE(g.ok()) << g.error().message;
  PlanOptions o;
  o.target.device = Device::kCuda;
  o.loss = LossKind::kNone;
  auto p = BuildPlan(*g, o);
  ASSERT_TRUE(p.ok()) << p.error().message;
  std::vector<uint64_t> reserve;
  for (const PlanOp& op : p->ops) {
    if (op.type != "LSTM") continue;
    EXPECT_TRUE(op.backward_stages.empty());
    EXPECT_TRUE(op.copies.empty());  // cuDNN's contiguous input copy is its own business
    std::vector<std::string> saved;
    for (PlanTensorId t : op.saved) saved.push_back(p->tensors[t].name);
    ASSERT_EQ(op.extras.size(), 2u);
    reserve.push_back(p->tensors[op.extras[0]].bytes);
    EXPECT_EQ(p->tensors[op.extras[1]].bytes, 32u);  // zero h0, c0 [2, B, H]
    std::string in = op.name == "/rnn/LSTM" ? "xt" : "y";
    std::string out = op.name == "/rnn/LSTM" ? "Y" : "Y2";
    EXPECT_EQ(saved, (std::vector<std::string>{in, op.name + ":cuDNN reserve",
                                               op.name + ":zero initial state", out}));
  }
  EXPECT_EQ(reserve, (std::vector<uint64_t>{288, 240}));
}

// Hostile sizes: a hidden_size of 2^40 is refused with a message (the step's bytes are over
// 2^62), never overflowed.
TEST(RecurrentRules, AHugeHiddenSizeIsRefused) {
  ModelBuilder m;
  m.Input("x", kF32, {3, 2, 4});
  m.Initializer("W", kF32, {1, 8, 4});
  m.Initializer("R", kF32, {1, 8, 2});
  m.Node("LSTM", {"x", "W", "R"}, {"", "Y_h"}, "/rnn/LSTM").Int("hidden_size", int64_t{1} << 40);
  m.Output("Y_h");
  auto e = RunStep(m);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("2^"), std::string::npos) << e.error().message;
}

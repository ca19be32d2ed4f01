// Gradient rules for ONNX LSTM, GRU and RNN: what PyTorch allocates and saves when it trains
// nn.LSTM / nn.GRU / nn.RNN, per target device. torch.onnx writes one node per layer (all of
// a layer's directions in one node); the weights reach it through a parameter-only
// reformatting chain (gate reordering, direction stacking), which eager PyTorch does not run:
// the rules name W, R and B as parameter inputs (OpRule::parameter_inputs), so the chain is
// dropped and each parameter gets its own gradient.
//
// CPU (torch 1.13, aten/src/ATen/native/RNN.cpp; measured with validation/alloc_counter.c,
// see validation/README.md). Per direction, with g gates (LSTM 4, GRU 3, RNN 1), T steps,
// batch B, hidden H and u = B*H elements:
//   forward  the input projection P = x W^T + b for all steps at once (g*T*u, freed when the
//            direction is done; a bidirectional layer also concatenates the two directions'
//            outputs while the reverse direction's P is alive: 2*T*u more); then per step a
//            hidden matmul and the gate nonlinearities, whose results autograd saves:
//              LSTM (7T-2)u  the gates (4u, the in-place sigmoid/tanh results), c, tanh(c)
//                            and h of every step but the last step's c and h
//              GRU  (7T-1)u  the hidden gates (3u), the saved operand copies of the two
//                            in-place products (2u), the new gate (u) and h but the last h
//              RNN  T u      h of every step
//            plus the initial states when the export has none (nn.LSTM's zeros: h and c, D*u
//            each; GRU/RNN h). A non-contiguous input (batch_first transposes it) is copied
//            per direction and the copies are saved.
//   backward per direction (the reverse direction first), in stages:
//            steps    the hidden weight's gradient is accumulated out of place over the steps
//                     (the accumulator, the step's product and their sum: 3 R-sized buffers),
//                     while the saved steps and the output gradient are alive;
//            stack    the saved steps are gone; the per-step gate gradients (g*T*u, held
//                     until all steps ran) are stacked into one g*T*u tensor;
//            end      the input projection's backward: the input and input weight gradients
//                     beside the stacked gate gradients.
//            Measured peaks: LSTM steps 3R + b_hh - 4u above the backward's start, GRU
//            3R + b_hh - 7u, RNN 3R + b_hh + u; stack exactly 2*g*T*u + R + biases above
//            the start less the freed steps. The rules hold 2R in the steps stage, which is
//            within 7u + b_hh of every measurement.
//
// CUDA (cuDNN, aten/src/ATen/native/cudnn/RNN.cpp; NOT measured here, derived): _cudnn_rnn
// runs all layers in one call and saves the input, the flat weight buffer (the parameters
// themselves: nn.LSTM keeps them flattened), hx/cx, the output and a uint8 reserve space
// sized by cudnnGetRNNTrainingReserveSize. cuDNN documents no closed form for it; the sizes
// reported in pytorch/pytorch#2895 (LSTM 736,000,000 bytes, GRU 864,000,000, fp32, for a
// model whose parameter counts imply 4 layers of hidden 320) both fit D*T*B*H*(k*L - 1)
// elements, with the same D*T*B*H = 8,000,000, for k = 6 for LSTM (4 gates, c, h) and
// 7 for GRU (3 input and 3 hidden gate terms, h), the last layer's h being the output; RNN
// takes k = 2 (pre-activation, h) by the same reasoning. One node per layer gets D*T*B*H*k,
// the last layer of a stack one D*T*B*H less. The backward (_cudnn_rnn_backward) makes the
// input, state and weight gradients at once; cuDNN's own workspace, freed within each call,
// is not modelled.
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>

#include "simulator/gradient_rules.h"

namespace vramsim {

namespace {

bool IsReformatting(const std::string& type) {
  static const std::set<std::string> kTypes = {"Slice",   "Concat",  "Unsqueeze", "Squeeze",
                                               "Reshape", "Flatten", "Transpose", "Identity",
                                               "Split",   "Gather"};
  return kTypes.count(type) > 0;
}

// Inputs of a reformatting op that carry data (the rest are indices, axes, shapes).
bool CarriesData(const Op& op, size_t k) { return op.type == "Concat" || k == 0; }

bool IsConstant(const Tensor& t) { return t.role == TensorRole::kConstant || t.value.has_value(); }

}  // namespace

std::optional<ParameterChain> ParameterChainOf(const Graph& graph, TensorId t, OpId reader) {
  ParameterChain chain;
  std::set<OpId> ops;
  std::set<TensorId> seen;
  // Depth-first, inputs in order: a bidirectional W lists the forward direction's first.
  auto visit = [&](auto&& self, TensorId x) -> bool {
    if (x < 0 || x >= static_cast<TensorId>(graph.tensors.size())) return false;
    const Tensor& tx = graph.tensors[x];
    if (tx.role == TensorRole::kParameter) {
      if (seen.insert(x).second) chain.parameters.push_back(x);
      return true;
    }
    if (tx.role != TensorRole::kActivation || tx.producer < 0) return false;
    const Op& op = graph.ops[tx.producer];
    if (!IsReformatting(op.type)) return false;
    if (!ops.insert(tx.producer).second) return true;
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      TensorId in = op.inputs[k];
      if (in == kNoTensor) continue;
      if (CarriesData(op, k)) {
        if (!self(self, in)) return false;
      } else if (!IsConstant(graph.tensors[in])) {
        return false;
      }
    }
    return true;
  };
  if (!visit(visit, t) || ops.empty() || chain.parameters.empty()) return std::nullopt;
  for (OpId o : ops) {
    for (TensorId out : graph.ops[o].outputs) {
      if (out == kNoTensor) continue;
      for (OpId c : graph.tensors[out].consumers) {
        if (c != reader && !ops.count(c)) return std::nullopt;  // read elsewhere: keep it
      }
    }
  }
  chain.ops.assign(ops.begin(), ops.end());
  return chain;
}

namespace {

// Shape of one ONNX recurrent node, from its inputs and attributes.
struct Recurrence {
  int gates = 1;         // LSTM 4, GRU 3, RNN 1
  int64_t steps = 0;     // T
  int64_t batch = 0;     // B
  int64_t hidden = 0;    // H
  int directions = 1;    // D
  bool reverse = false;  // direction "reverse" (one direction, run backwards)
  DType dtype = DType::kFloat32;
  int own_inputs = 0;  // the ONNX node's inputs; the rest are folded parameters
};

Result<Recurrence> Describe(const RuleContext& c) {
  Recurrence r;
  const std::string& type = c.op.type;
  r.gates = type == "LSTM" ? 4 : type == "GRU" ? 3 : 1;
  r.own_inputs = static_cast<int>(c.op.inputs.size() - c.folded_into.size());
  const Tensor* x = c.in(0);
  if (!x || x->shape.size() != 3) return Error{"the input X must be 3-D [seq, batch, input]"};
  bool batch_major = c.op.attr_int("layout", 0) == 1;
  r.steps = x->shape[batch_major ? 1 : 0];
  r.batch = x->shape[batch_major ? 0 : 1];
  r.dtype = x->dtype;
  const Attribute* dir = c.op.attr("direction");
  std::string direction = dir ? dir->s : "forward";
  r.directions = direction == "bidirectional" ? 2 : 1;
  r.reverse = direction == "reverse";
  r.hidden = c.op.attr_int("hidden_size", 0);
  const Tensor* rw = c.in(2);
  if (r.hidden <= 0 && rw && rw->shape.size() == 3) r.hidden = rw->shape[2];
  if (r.hidden <= 0) return Error{"hidden_size is unknown"};
  // Every size below is a small multiple of T*B*H: bound it so none overflows.
  uint64_t n = 1;
  for (int64_t d : {r.steps, r.batch, r.hidden}) {
    if (d < 0 || !CheckedMul(n, static_cast<uint64_t>(d), &n)) n = UINT64_MAX;
  }
  if (n > (uint64_t{1} << 48)) return Error{"seq x batch x hidden_size is over 2^48"};
  return r;
}

// The appended inputs standing for slot k, split among the directions (a chain with one
// parameter per direction, or two: LSTM/GRU/RNN biases are b_ih and b_hh per direction).
std::vector<int> SourcesFor(const RuleContext& c, const Recurrence& r, int slot, int direction) {
  std::vector<int> all;
  for (size_t j = 0; j < c.folded_into.size(); ++j) {
    if (c.folded_into[j] == slot) all.push_back(r.own_inputs + static_cast<int>(j));
  }
  if (all.empty()) {
    // Not folded: the slot itself (a weight initializer of the ONNX layout) gets the gradient,
    // with the direction processed first.
    bool first = direction == r.directions - 1;
    return first ? std::vector<int>{slot} : std::vector<int>{};
  }
  if (all.size() % r.directions != 0)
    return direction == r.directions - 1 ? all : std::vector<int>{};
  size_t per = all.size() / r.directions;
  return {all.begin() + direction * per, all.begin() + (direction + 1) * per};
}

// Zero initial states that nn.LSTM / nn.GRU / nn.RNN allocate when none are given (the export
// then slices a ConstantOfShape): how many of h and c are missing.
int MissingStates(const RuleContext& c) {
  int missing = 0;
  std::vector<size_t> slots = {5};
  if (c.op.type == "LSTM") slots.push_back(6);
  for (size_t k : slots) {
    const Tensor* s =
        k < static_cast<size_t>(c.op.inputs.size() - c.folded_into.size()) ? c.in(k) : nullptr;
    if (!s || s->role == TensorRole::kConstant || s->value) ++missing;
  }
  return missing;
}

// Whether this node's output feeds another node of its type (through views): then it is not
// the last layer of a stack.
bool FeedsAnotherLayer(const RuleContext& c) {
  if (c.op.outputs.empty() || c.op.outputs[0] == kNoTensor) return false;
  std::vector<TensorId> frontier = {c.op.outputs[0]};
  for (size_t n = 0; n < frontier.size() && n < 64; ++n) {
    for (OpId o : c.graph.tensors[frontier[n]].consumers) {
      const Op& op = c.graph.ops[o];
      if (op.type == c.op.type) return true;
      if ((op.type == "Squeeze" || op.type == "Transpose" || op.type == "Reshape" ||
           op.type == "Identity" || op.type == "Flatten") &&
          !op.outputs.empty() && op.outputs[0] != kNoTensor) {
        frontier.push_back(op.outputs[0]);
      }
    }
  }
  return false;
}

SavedSpec SavedIn(int i, std::vector<int> for_grads = {}) {
  return {SavedSpec::From::kInput, i, std::move(for_grads)};
}
SavedSpec SavedExtra(int i) { return {SavedSpec::From::kExtra, i, {}}; }

// The parts every target shares: which inputs are differentiable, W/R/B as parameter inputs,
// and the input saved for the input weight's gradient.
OpRule Common(const RuleContext& c, const Recurrence& r) {
  OpRule rule;
  rule.parameter_inputs = {1, 2, 3};
  rule.differentiable = {0, 1, 2, 3, 5};
  if (c.op.type == "LSTM") rule.differentiable.push_back(6);
  for (size_t j = 0; j < c.folded_into.size(); ++j) {
    rule.differentiable.push_back(r.own_inputs + static_cast<int>(j));
  }
  std::vector<int> input_weights = {1};
  for (int d = 0; d < r.directions; ++d) {
    for (int k : SourcesFor(c, r, 1, d)) {
      if (k != 1) input_weights.push_back(k);
    }
  }
  rule.saved.push_back(SavedIn(0, input_weights));
  rule.saved.push_back(SavedIn(5));
  if (c.op.type == "LSTM") rule.saved.push_back(SavedIn(6));
  return rule;
}

Result<OpRule> CpuRule(const RuleContext& c, const Recurrence& r) {
  OpRule rule = Common(c, r);
  const int64_t g = r.gates, t = r.steps, b = r.batch, h = r.hidden, d_count = r.directions;
  // Saved per step and direction, in units of [B, H].
  int64_t units = c.op.type == "LSTM" ? 7 * t - 2 : c.op.type == "GRU" ? 7 * t - 1 : t;
  units = std::max<int64_t>(units, 0);
  static const char* kDirName[] = {"forward", "reverse"};
  for (int d = 0; d < d_count; ++d) {
    int named = r.reverse ? 1 : d;
    rule.extras.push_back(
        {std::string("saved steps (") + kDirName[named] + ")", r.dtype, {units, b, h}});
    rule.saved.push_back(SavedExtra(d));
  }
  int zeros_extra = -1;
  if (int missing = MissingStates(c); missing > 0) {
    zeros_extra = static_cast<int>(rule.extras.size());
    rule.extras.push_back({"zero initial state", r.dtype, {missing * d_count, b, h}});
    rule.saved.push_back(SavedExtra(zeros_extra));
  }
  // Not saved: freed when the op is done.
  int64_t projection = g * t + (d_count == 2 ? 2 * t : 0);
  rule.extras.push_back(
      {d_count == 2 ? "input projection and direction concat" : "input projection",
       r.dtype,
       {projection, b, h}});
  rule.contiguous_inputs.assign(static_cast<size_t>(d_count), 0);
  // The reverse direction's backward runs first (autograd takes the latest-made node).
  for (int d = static_cast<int>(d_count) - 1; d >= 0; --d) {
    bool last = d == 0;
    BackwardStage steps;
    if (t >= 2) {
      steps.workspace.push_back({"hidden weight gradient accumulation", r.dtype, {2, g * h, h}});
    }
    steps.grads = SourcesFor(c, r, 2, d);
    for (int k : SourcesFor(c, r, 3, d)) steps.grads.push_back(k);
    steps.frees_extras = {d};
    if (last && zeros_extra >= 0) steps.frees_extras.push_back(zeros_extra);
    steps.frees_output_grads = last;
    BackwardStage stack;
    stack.workspace.push_back(
        {"gate gradients of every step, stacked", r.dtype, {2 * t, b, g * h}});
    BackwardStage end;
    end.workspace.push_back({"stacked gate gradients", r.dtype, {t, b, g * h}});
    end.grads = {0};
    for (int k : SourcesFor(c, r, 1, d)) end.grads.push_back(k);
    if (last) {
      end.grads.push_back(5);
      if (c.op.type == "LSTM") end.grads.push_back(6);
    }
    rule.backward_stages.push_back(std::move(steps));
    rule.backward_stages.push_back(std::move(stack));
    rule.backward_stages.push_back(std::move(end));
  }
  return rule;
}

Result<OpRule> CudaRule(const RuleContext& c, const Recurrence& r) {
  OpRule rule = Common(c, r);
  const int64_t k = c.op.type == "LSTM" ? 6 : c.op.type == "GRU" ? 7 : 2;
  const int64_t per_step = r.directions * r.batch * r.hidden;  // D*B*H elements
  int64_t elements = per_step * r.steps * k - (FeedsAnotherLayer(c) ? 0 : per_step * r.steps);
  uint64_t bytes =
      static_cast<uint64_t>(std::max<int64_t>(elements, 0)) * ElementBytes(r.dtype).value_or(4);
  rule.extras.push_back({"cuDNN reserve", DType::kUInt8, {static_cast<int64_t>(bytes)}});
  rule.saved.push_back(SavedExtra(0));
  if (int missing = MissingStates(c); missing > 0) {
    rule.extras.push_back(
        {"zero initial state", r.dtype, {missing * r.directions, r.batch, r.hidden}});
    rule.saved.push_back(SavedExtra(1));
  }
  rule.saved.push_back({SavedSpec::From::kOutput, 0, {}});
  return rule;
}

}  // namespace

void RegisterRecurrentRules() {
  RegisterGradRule({"LSTM", "GRU", "RNN"}, [](const RuleContext& c) -> Result<OpRule> {
    auto r = Describe(c);
    if (!r) return r.error();
    return c.device == Device::kCuda ? CudaRule(c, *r) : CpuRule(c, *r);
  });
}

}  // namespace vramsim

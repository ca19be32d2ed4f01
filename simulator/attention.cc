#include "simulator/attention.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <set>

#include "simulator/plan.h"

namespace vramsim {

Result<AttentionImpl> ParseAttentionImpl(const std::string& name) {
  if (name == "auto") return AttentionImpl::kAuto;
  if (name == "eager") return AttentionImpl::kEager;
  if (name == "math") return AttentionImpl::kMath;
  if (name == "flash") return AttentionImpl::kFlash;
  if (name == "mem-efficient") return AttentionImpl::kMemEfficient;
  return Error{"unknown --attention '" + name + "' (auto, eager, math, flash, mem-efficient)"};
}

std::string_view AttentionImplName(AttentionImpl impl) {
  switch (impl) {
    case AttentionImpl::kAuto:
      return "auto";
    case AttentionImpl::kEager:
      return "eager";
    case AttentionImpl::kMath:
      return "math";
    case AttentionImpl::kFlash:
      return "flash";
    case AttentionImpl::kMemEfficient:
      return "mem-efficient";
  }
  return "auto";
}

namespace {

bool DefaultDomain(const Op& op) { return op.domain.empty() || op.domain == "ai.onnx"; }

std::optional<double> ScalarValue(const Graph& g, TensorId t) {
  if (t == kNoTensor || !g.tensors[t].value || g.tensors[t].value->size() != 1) {
    return std::nullopt;
  }
  return g.tensors[t].value->at(0);
}

bool IsGraphOutput(const Graph& g, TensorId t) {
  return std::find(g.outputs.begin(), g.outputs.end(), t) != g.outputs.end();
}

// The one op reading `t` (once), or -1.
OpId SoleConsumer(const Graph& g, TensorId t) {
  if (t == kNoTensor || IsGraphOutput(g, t)) return -1;
  const std::vector<OpId>& c = g.tensors[t].consumers;
  return c.size() == 1 ? c[0] : -1;
}

// Softmax over the last axis (the default axis is -1 from opset 13, 1 before).
bool SoftmaxOnLastAxis(const Graph& g, const Op& op) {
  if (op.inputs.empty() || op.inputs[0] == kNoTensor) return false;
  const int64_t rank = static_cast<int64_t>(g.tensors[op.inputs[0]].shape.size());
  int64_t axis = op.attr_int("axis", g.opset >= 13 || g.opset == 0 ? -1 : 1);
  if (axis < 0) axis += rank;
  return rank >= 1 && axis == rank - 1;
}

// x * c, c * x or x / c with c a scalar constant: the op, x and the factor.
struct Scale {
  OpId op = -1;
  TensorId source = kNoTensor;
  double factor = 1;
};
std::optional<Scale> ScaleOf(const Graph& g, TensorId t, const std::vector<bool>& removed) {
  if (t == kNoTensor) return std::nullopt;
  OpId p = g.tensors[t].producer;
  if (p < 0 || removed[p]) return std::nullopt;
  const Op& o = g.ops[p];
  if (!DefaultDomain(o) || o.inputs.size() != 2 || o.inputs[0] == kNoTensor ||
      o.inputs[1] == kNoTensor) {
    return std::nullopt;
  }
  if (o.type == "Mul") {
    for (int k = 0; k < 2; ++k) {
      auto c = ScalarValue(g, o.inputs[k]);
      if (c && !ScalarValue(g, o.inputs[1 - k])) return Scale{p, o.inputs[1 - k], *c};
    }
  }
  if (o.type == "Div") {
    auto c = ScalarValue(g, o.inputs[1]);
    if (c && *c != 0 && !ScalarValue(g, o.inputs[0])) return Scale{p, o.inputs[0], 1 / *c};
  }
  return std::nullopt;
}

// `t` is a MatMul's result, perhaps scaled: the scores side of a mask Add.
bool LeadsToMatMul(const Graph& g, TensorId t, const std::vector<bool>& removed) {
  for (int i = 0; i < 3 && t != kNoTensor; ++i) {
    OpId p = g.tensors[t].producer;
    if (p < 0 || removed[p]) return false;
    if (g.ops[p].type == "MatMul") return true;
    auto s = ScaleOf(g, t, removed);
    if (!s) return false;
    t = s->source;
  }
  return false;
}

// Transpose swapping the last two axes.
bool SwapsLastTwo(const Graph& g, const Op& op) {
  if (op.type != "Transpose" || op.inputs.empty() || op.inputs[0] == kNoTensor) return false;
  const size_t rank = g.tensors[op.inputs[0]].shape.size();
  if (rank < 2) return false;
  const Attribute* perm = op.attr("perm");
  if (!perm) return rank == 2;
  if (perm->ints.size() != rank) return false;
  for (size_t d = 0; d + 2 < rank; ++d) {
    if (perm->ints[d] != static_cast<int64_t>(d)) return false;
  }
  return perm->ints[rank - 2] == static_cast<int64_t>(rank - 1) &&
         perm->ints[rank - 1] == static_cast<int64_t>(rank - 2);
}

// Training-mode dropout probability of a Dropout op, as the Dropout rule reads it.
double DropoutProbability(const Graph& g, const Op& op) {
  double ratio = 0.5;  // ONNX's default
  if (auto r = op.inputs.size() > 1 ? ScalarValue(g, op.inputs[1]) : std::nullopt) {
    ratio = *r;
  } else if (const Attribute* a = op.attr("ratio")) {
    ratio = a->f;  // opset < 12
  }
  bool train = op.inputs.size() <= 2;
  if (auto t = op.inputs.size() > 2 ? ScalarValue(g, op.inputs[2]) : std::nullopt) train = *t != 0;
  return train ? ratio : 0.0;
}

// What the mask is made of: data inputs or parameters make it arbitrary; otherwise a Trilu
// (the exporter's is_causal) makes it causal, and anything else built from buffers and
// constants is static. Shape arithmetic is not followed into the tensors it measures.
AttentionMask MaskKind(const Graph& g, TensorId mask) {
  bool trilu = false, arbitrary = false;
  std::set<TensorId> seen;
  std::vector<TensorId> todo = {mask};
  while (!todo.empty() && !arbitrary) {
    TensorId t = todo.back();
    todo.pop_back();
    if (t == kNoTensor || !seen.insert(t).second) continue;
    const Tensor& x = g.tensors[t];
    if (x.role == TensorRole::kDataInput || x.role == TensorRole::kParameter) arbitrary = true;
    if (x.value || x.producer < 0) continue;
    const Op& p = g.ops[x.producer];
    if (p.type == "Shape" || p.type == "Size") continue;
    if (p.type == "Trilu") trilu = true;
    for (TensorId in : p.inputs) todo.push_back(in);
  }
  if (arbitrary) return AttentionMask::kArbitrary;
  return trilu ? AttentionMask::kCausal : AttentionMask::kStatic;
}

// The ops computing `mask` that nothing but the match reads: visited from the last op back
// (the file's order is topological), so every reader of an op's results is decided first.
std::vector<OpId> MaskOps(const Graph& g, TensorId mask, std::set<OpId> inside,
                          const std::vector<bool>& removed) {
  std::vector<OpId> out;
  std::set<OpId, std::greater<OpId>> frontier;
  if (g.tensors[mask].producer >= 0) frontier.insert(g.tensors[mask].producer);
  while (!frontier.empty()) {
    OpId op = *frontier.begin();
    frontier.erase(frontier.begin());
    if (removed[op] || inside.count(op)) continue;
    bool only_inside = true;
    for (TensorId t : g.ops[op].outputs) {
      if (t == kNoTensor) continue;
      if (IsGraphOutput(g, t)) only_inside = false;
      for (OpId c : g.tensors[t].consumers) only_inside = only_inside && inside.count(c) > 0;
    }
    if (!only_inside) continue;
    inside.insert(op);
    out.push_back(op);
    for (TensorId t : g.ops[op].inputs) {
      if (t != kNoTensor && g.tensors[t].producer >= 0) frontier.insert(g.tensors[t].producer);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<AttentionMatch> MatchAt(const Graph& g, OpId softmax,
                                      const std::vector<bool>& removed) {
  const Op& sm = g.ops[softmax];
  if (sm.type != "Softmax" || !DefaultDomain(sm) || !SoftmaxOnLastAxis(g, sm)) return std::nullopt;
  if (sm.outputs.empty() || sm.outputs[0] == kNoTensor) return std::nullopt;
  AttentionMatch m;
  m.ops.push_back(softmax);
  // Forward: [Dropout] -> MatMul(attn, v).
  TensorId attn = sm.outputs[0];
  OpId next = SoleConsumer(g, attn);
  if (next < 0 || removed[next]) return std::nullopt;
  if (g.ops[next].type == "Dropout" && DefaultDomain(g.ops[next]) && !g.ops[next].inputs.empty() &&
      g.ops[next].inputs[0] == attn) {
    const Op& d = g.ops[next];
    if (d.outputs.size() > 1 && d.outputs[1] != kNoTensor &&
        (!g.tensors[d.outputs[1]].consumers.empty() || IsGraphOutput(g, d.outputs[1]))) {
      return std::nullopt;  // the mask is read: not what SDPA computes
    }
    m.dropout_p = DropoutProbability(g, d);
    m.ops.push_back(next);
    attn = d.outputs[0];
    next = SoleConsumer(g, attn);
    if (next < 0 || removed[next]) return std::nullopt;
  }
  const Op& pv = g.ops[next];
  if (pv.type != "MatMul" || !DefaultDomain(pv) || pv.inputs.size() != 2 || pv.inputs[0] != attn ||
      pv.inputs[1] == attn || pv.inputs[1] == kNoTensor) {
    return std::nullopt;
  }
  m.root = next;
  m.v = pv.inputs[1];
  // Backward from the scores: scales and at most one mask op, then MatMul(q, kT).
  TensorId cur = sm.inputs[0];
  OpId mask_op = -1;
  int score_scales = 0;
  for (int step = 0; step < 3 && cur != kNoTensor; ++step) {
    if (auto s = ScaleOf(g, cur, removed)) {
      m.ops.push_back(s->op);
      cur = s->source;
      ++score_scales;
      continue;
    }
    OpId p = g.tensors[cur].producer;
    if (mask_op >= 0 || p < 0 || removed[p] || !DefaultDomain(g.ops[p])) break;
    const Op& o = g.ops[p];
    if (o.type == "Where" && o.inputs.size() == 3 &&
        std::none_of(o.inputs.begin(), o.inputs.end(), [](TensorId t) { return t == kNoTensor; })) {
      // masked_fill(mask, -inf) or where(mask, scores, -inf): one branch a scalar constant.
      auto c1 = ScalarValue(g, o.inputs[1]), c2 = ScalarValue(g, o.inputs[2]);
      if (c1.has_value() == c2.has_value()) break;
      m.mask = o.inputs[0];
      cur = c1 ? o.inputs[2] : o.inputs[1];
    } else if (o.type == "Add" && o.inputs.size() == 2 && o.inputs[0] != kNoTensor &&
               o.inputs[1] != kNoTensor) {
      bool a = LeadsToMatMul(g, o.inputs[0], removed), b = LeadsToMatMul(g, o.inputs[1], removed);
      if (a == b) break;
      m.mask = a ? o.inputs[1] : o.inputs[0];
      cur = a ? o.inputs[0] : o.inputs[1];
    } else {
      break;
    }
    mask_op = p;
    m.ops.push_back(p);
  }
  if (cur == kNoTensor) return std::nullopt;
  const OpId qk = g.tensors[cur].producer;
  if (qk < 0 || removed[qk] || g.ops[qk].type != "MatMul" || !DefaultDomain(g.ops[qk]) ||
      g.ops[qk].inputs.size() != 2) {
    return std::nullopt;
  }
  m.ops.push_back(qk);
  TensorId a = g.ops[qk].inputs[0], b = g.ops[qk].inputs[1];
  if (a == kNoTensor || b == kNoTensor) return std::nullopt;
  auto sa = ScaleOf(g, a, removed), sb = ScaleOf(g, b, removed);
  if (sa) {
    m.ops.push_back(sa->op);
    a = sa->source;
  }
  if (sb) {
    m.ops.push_back(sb->op);
    b = sb->source;
  }
  m.q = a;
  m.k = b;
  m.key_transposed = true;
  OpId tr = g.tensors[b].producer;
  if (tr >= 0 && !removed[tr] && DefaultDomain(g.ops[tr]) && SwapsLastTwo(g, g.ops[tr]) &&
      SoleConsumer(g, b) >= 0) {
    m.ops.push_back(tr);
    m.k = g.ops[tr].inputs[0];
    m.key_transposed = false;
  }
  // torch.onnx's F.scaled_dot_product_attention: q and k.transpose(-2, -1) each times
  // Sqrt(scale), nothing on the scores, the mask added.
  m.exporter_sdpa =
      sa && sb && std::fabs(sa->factor - sb->factor) <= 1e-6 * std::fabs(sb->factor) &&
      !m.key_transposed && score_scales == 0 && (mask_op < 0 || g.ops[mask_op].type == "Add");
  // Shapes: q [.., Lq, D], k [.., Lk, D] (kT [.., D, Lk]), v [.., Lk, Dv], batch dims equal.
  const std::vector<int64_t>&qs = g.tensors[m.q].shape, &ks = g.tensors[m.k].shape,
        &vs = g.tensors[m.v].shape;
  const size_t r = qs.size();
  if (r < 3 || ks.size() != r || vs.size() != r) return std::nullopt;
  for (TensorId t : {m.q, m.k, m.v}) {
    if (!IsFloating(g.tensors[t].dtype) || g.tensors[t].value) return std::nullopt;
  }
  if (!std::equal(qs.begin(), qs.end() - 2, ks.begin()) ||
      !std::equal(qs.begin(), qs.end() - 2, vs.begin())) {
    return std::nullopt;
  }
  const int64_t d = m.key_transposed ? ks[r - 2] : ks[r - 1];
  const int64_t lk = m.key_transposed ? ks[r - 1] : ks[r - 2];
  if (qs[r - 1] != d || vs[r - 2] != lk) return std::nullopt;
  std::vector<int64_t> scores(qs.begin(), qs.end() - 1);
  scores.push_back(lk);
  if (g.tensors[sm.inputs[0]].shape != scores) return std::nullopt;
  // Every intermediate result is read only inside the match.
  std::set<OpId> inside(m.ops.begin(), m.ops.end());
  inside.insert(m.root);
  if (inside.size() != m.ops.size() + 1) return std::nullopt;
  for (OpId op : m.ops) {
    for (TensorId t : g.ops[op].outputs) {
      if (t == kNoTensor) continue;
      if (IsGraphOutput(g, t)) return std::nullopt;
      for (OpId c : g.tensors[t].consumers) {
        if (!inside.count(c)) return std::nullopt;
      }
    }
  }
  if (m.mask != kNoTensor) {
    m.mask_kind = MaskKind(g, m.mask);
    m.mask_ops = MaskOps(g, m.mask, inside, removed);
  }
  std::sort(m.ops.begin(), m.ops.end());
  return m;
}

bool IsHalf(DType d) { return d == DType::kFloat16 || d == DType::kBFloat16; }

// The mask the kernel takes as is_causal (not read): the exporter's causal construction, or a
// static mask of hand-written attention.
bool CausalMask(const AttentionMatch& m) {
  return m.mask_kind == AttentionMask::kCausal ||
         (m.mask_kind == AttentionMask::kStatic && !m.exporter_sdpa);
}

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

Attribute IntAttr(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}

using From = SavedSpec::From;

// The fused op: inputs q, k (kT when key_transposed), v[, mask]; see attention.h for sources.
Result<OpRule> FusedAttentionRule(const RuleContext& c) {
  const Attribute* kernel_attr = c.op.attr("kernel");
  const std::string kernel = kernel_attr ? kernel_attr->s : "";
  const Tensor *q = c.in(0), *k = c.in(1), *v = c.in(2), *mask = c.in(3);
  if ((kernel != "flash" && kernel != "mem-efficient") || !q || !k || !v || q->shape.size() < 3) {
    return Error{"fused attention needs a kernel (flash, mem-efficient) and q, k, v of rank >= 3"};
  }
  const bool flash = kernel == "flash";
  const bool cuda = c.device == Device::kCuda;
  const DType dtype = static_cast<DType>(c.op.attr_int("dtype", static_cast<int64_t>(q->dtype)));
  std::vector<int64_t> rows(q->shape.begin(), q->shape.end() - 1);  // [.., Lq]
  const int64_t lq = rows.back(), d = q->shape.back();
  OpRule r;
  r.differentiable = {0, 1, 2};
  r.saved = {{From::kInput, 0, {}},
             {From::kInput, 1, {}},
             {From::kInput, 2, {}},
             {From::kOutput, 0, {}},
             {From::kExtra, 0, {}}};
  std::vector<int64_t> lse = rows;
  if (!flash) lse.back() = RoundUp(lq, 32);  // kAlignLSE
  r.extras.push_back({"logsumexp", DType::kFloat32, lse});
  if (flash && cuda) {
    // philox_seed / philox_offset: rng_state uint64 [2] and an uint64 scalar, on the device.
    r.extras.push_back({"rng_state", DType::kUInt64, {2}});
    r.extras.push_back({"philox_offset", DType::kUInt64, {}});
    r.saved.push_back({From::kExtra, 1, {}});
    r.saved.push_back({From::kExtra, 2, {}});
  }
  if (!flash && cuda && c.op.attr("dropout_p") && c.op.attr("dropout_p")->f == 0) {
    // Without dropout the philox seed and offset are empty int64 scalars on the device (with
    // dropout, host scalars outside CUDA-graph capture): attention.cu.
    r.extras.push_back({"philox_seed", DType::kInt64, {}});
    r.extras.push_back({"philox_offset", DType::kInt64, {}});
    r.saved.push_back({From::kExtra, 1, {}});
    r.saved.push_back({From::kExtra, 2, {}});
  }
  if (!flash && mask) {
    // attn_bias: a float mask of q's type whose last dim is a multiple of 16 (a bool mask is
    // converted, an unaligned one padded); it receives a gradient if it needs one.
    if (IsFloating(mask->dtype) && !mask->shape.empty() && mask->shape.back() % 16 == 0) {
      r.saved.push_back({From::kInput, 3, {}});
    } else {
      std::vector<int64_t> bias = mask->shape;
      if (!bias.empty()) bias.back() = RoundUp(bias.back(), 16);
      r.extras.push_back({"attn_bias", q->dtype, bias});
      r.saved.push_back({From::kExtra, static_cast<int>(r.extras.size()) - 1, {}});
    }
    r.differentiable.push_back(3);
  }
  BackwardStage stage;
  stage.grads = r.differentiable;
  if (flash && cuda) {
    std::vector<int64_t> softmax_d = rows, dq_accum = q->shape;
    softmax_d.back() = RoundUp(lq, 128);
    dq_accum[dq_accum.size() - 2] = RoundUp(lq, 128);
    dq_accum.back() = RoundUp(RoundUp(d, 8), d <= 128 ? 32 : 64);
    stage.workspace.push_back({"softmax_d", DType::kFloat32, softmax_d});
    stage.workspace.push_back({"dq_accum", DType::kFloat32, dq_accum});
  } else if (!flash) {
    stage.workspace.push_back({"delta", DType::kFloat32, lse});
    if (IsHalf(dtype)) stage.workspace.push_back({"grad_q_accum", DType::kFloat32, q->shape});
  }
  if (!stage.workspace.empty()) r.backward_stages.push_back(std::move(stage));
  return r;
}

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

std::vector<AttentionMatch> MatchAttention(const Graph& graph, const std::vector<bool>& removed) {
  std::vector<bool> gone = removed;
  gone.resize(graph.ops.size(), false);
  std::vector<AttentionMatch> out;
  for (size_t i = 0; i < graph.ops.size(); ++i) {
    if (gone[i] || graph.ops[i].type != "Softmax") continue;
    auto m = MatchAt(graph, static_cast<OpId>(i), gone);
    if (!m) continue;
    out.push_back(std::move(*m));
  }
  std::sort(out.begin(), out.end(),
            [](const AttentionMatch& a, const AttentionMatch& b) { return a.root < b.root; });
  return out;
}

Result<std::string> ChooseAttentionKernel(const Graph& g, const AttentionMatch& m,
                                          const AttentionOptions& options, Device device) {
  const Tensor& q = g.tensors[m.q];
  const DType dtype = options.dtype != DType::kUndefined ? options.dtype : q.dtype;
  const bool half = IsHalf(dtype);
  const int64_t d = q.shape.back(), dv = g.tensors[m.v].shape.back();
  const bool four_d = q.shape.size() == 4;
  const bool causal_ok = m.mask_kind == AttentionMask::kNone || CausalMask(m);
  const std::string at = "attention ending at node '" + g.ops[m.root].name + "'";
  switch (options.impl) {
    case AttentionImpl::kEager:
      return std::string("eager");
    case AttentionImpl::kMath:
      return std::string("math");
    case AttentionImpl::kAuto: {
      if (!m.exporter_sdpa || device == Device::kCpu) {
        return std::string(m.exporter_sdpa ? "math" : "eager");
      }
      if (half && four_d && d == dv && d % 8 == 0 && d <= 256 && causal_ok) {
        return std::string("flash");
      }
      const int64_t align =
          half ? 8 : 4;  // 16-byte aligned rows (check_head_dim_size_mem_efficient)
      if (four_d && (half || dtype == DType::kFloat32) && d % align == 0 && dv % align == 0) {
        return std::string("mem-efficient");
      }
      return std::string("math");
    }
    case AttentionImpl::kFlash: {
      if (device == Device::kCuda && !half) {
        return Error{at +
                     ": --attention flash: PyTorch's CUDA flash kernel takes fp16 and bf16 only "
                     "(flash_attn/flash_api.cpp), not " +
                     std::string(DTypeName(dtype)) +
                     "; use --precision bf16, fp16, amp-bf16 or amp-fp16, or --attention "
                     "mem-efficient"};
      }
      if (device == Device::kCuda && (d > 256 || dv != d)) {
        return Error{at +
                     ": --attention flash: PyTorch's flash kernel takes head dims up to 256, "
                     "the same for q, k and v (q " +
                     std::to_string(d) + ", v " + std::to_string(dv) +
                     "); use --attention mem-efficient"};
      }
      if (!causal_ok) {
        return Error{at + ": --attention flash takes no attention mask but the causal one, and " +
                     (m.exporter_sdpa ? "this export passes attn_mask"
                                      : "this mask depends on data inputs or parameters") +
                     "; use --attention mem-efficient"};
      }
      if (device == Device::kCpu && m.dropout_p > 0) {
        return Error{at +
                     ": --attention flash on torch-cpu: PyTorch's CPU flash kernel runs without "
                     "dropout (sdp_utils_cpp.cpp); use --attention math"};
      }
      return std::string("flash");
    }
    case AttentionImpl::kMemEfficient:
      if (device == Device::kCpu) {
        return Error{at +
                     ": --attention mem-efficient: PyTorch has no CPU kernel for it; use "
                     "--attention math or flash on torch-cpu"};
      }
      return std::string("mem-efficient");
  }
  return std::string("eager");
}

Result<std::vector<AttentionFusion>> PlanAttention(const Graph& graph,
                                                   const AttentionOptions& options, Device device,
                                                   const std::vector<bool>& removed) {
  RegisterAttentionRules();
  std::vector<AttentionFusion> out;
  if (options.impl == AttentionImpl::kEager || options.impl == AttentionImpl::kMath) return out;
  for (const AttentionMatch& m : MatchAttention(graph, removed)) {
    auto kernel = ChooseAttentionKernel(graph, m, options, device);
    if (!kernel) return kernel.error();
    if (*kernel != "flash" && *kernel != "mem-efficient") continue;
    AttentionFusion f;
    f.root = m.root;
    f.kernel = *kernel;
    const bool read_mask = m.mask != kNoTensor && !CausalMask(m);
    f.absorbed = m.ops;
    if (!read_mask) f.absorbed.insert(f.absorbed.end(), m.mask_ops.begin(), m.mask_ops.end());
    f.inputs = {m.q, m.k, m.v};
    if (read_mask) f.inputs.push_back(m.mask);
    Attribute kernel_attr;
    kernel_attr.kind = Attribute::Kind::kString;
    kernel_attr.s = f.kernel;
    Attribute dropout;
    dropout.kind = Attribute::Kind::kFloat;
    dropout.f = m.dropout_p;
    const DType dtype =
        options.dtype != DType::kUndefined ? options.dtype : graph.tensors[m.q].dtype;
    f.attrs = {{"kernel", kernel_attr},
               {"dropout_p", dropout},
               {"is_causal", IntAttr(m.mask != kNoTensor && !read_mask)},
               {"key_transposed", IntAttr(m.key_transposed)},
               {"dtype", IntAttr(static_cast<int64_t>(dtype))}};
    // The kernels write [B, Lq, H, Dv] and return its transpose(1, 2).
    const std::vector<int64_t>& y = graph.tensors[graph.ops[m.root].outputs[0]].shape;
    if (y.size() == 4) f.output_strides = {y[2] * y[1] * y[3], y[3], y[1] * y[3], 1};
    out.push_back(std::move(f));
  }
  return out;
}

void KeepAttentionStatisticsFp32(TrainingPlan& plan) {
  auto pin = [&](PlanTensorId t) {
    if (t < 0) return;
    PlanTensor& x = plan.tensors[t];
    for (const char* tail : {":logsumexp", ":softmax_d", ":dq_accum", ":delta", ":grad_q_accum"}) {
      if (!EndsWith(x.name, tail)) continue;
      x.dtype_follows = -1;
      x.dtype = DType::kFloat32;
      x.bytes = StorageBytes(x);
    }
  };
  for (const PlanOp& op : plan.ops) {
    if (op.type != kAttentionOpType) continue;
    for (PlanTensorId t : op.extras) pin(t);
    for (const PlanBackwardStage& s : op.backward_stages) {
      for (PlanTensorId t : s.workspace) pin(t);
    }
  }
}

void RegisterAttentionRules() {
  static const bool registered = (RegisterGradRule({kAttentionOpType}, FusedAttentionRule), true);
  (void)registered;
}

}  // namespace vramsim

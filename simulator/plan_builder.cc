#include "simulator/plan_builder.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>

#include "simulator/exporter_patterns.h"

namespace vramsim {

// Saturates at UINT64_MAX instead of wrapping: the simulator refuses a step that large.
uint64_t TensorBytes(const PlanTensor& t) {
  uint64_t n = ElementBytes(t.dtype).value_or(0);
  for (int64_t d : t.shape) {
    if (d < 0 || !CheckedMul(n, static_cast<uint64_t>(d), &n)) return UINT64_MAX;
  }
  return n;
}

bool MakesTensors(const TrainingPlan& plan, const PlanOp& op) {
  for (PlanTensorId t : op.outputs) {
    if (t >= 0 && !plan.tensors[t].metadata) return true;
  }
  return !op.extras.empty();
}

uint64_t StorageBytes(const PlanTensor& t) {
  return t.metadata || t.view_of >= 0 ? 0 : TensorBytes(t);
}

std::vector<int64_t> ContiguousStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) {
    // Saturates: an absurd shape (a rule's scratch of a hostile size) is refused by the byte
    // count later, with a message, instead of wrapping here.
    if (__builtin_mul_overflow(s[d], std::max<int64_t>(shape[d], 1), &s[d - 1])) {
      s[d - 1] = INT64_MAX;
    }
  }
  return s;
}

std::optional<std::vector<int64_t>> ViewStrides(const std::vector<int64_t>& shape,
                                                const std::vector<int64_t>& strides,
                                                const std::vector<int64_t>& new_shape) {
  if (shape.empty()) return ContiguousStrides(new_shape);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (numel == 0) return ContiguousStrides(new_shape);
  std::vector<int64_t> out(new_shape.size(), 1);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

namespace {

std::string Label(const Op& op) { return "node '" + op.name + "' (" + op.type + ")"; }

class Builder {
 public:
  Builder(const Graph& g, const PlanOptions& o) : g_(g), o_(o) {}

  Result<TrainingPlan> Run() {
    plan_.target = o_.target;
    plan_.loss = o_.loss;
    if (!g_.outputs.empty()) plan_.loss_dtype = g_.tensors[g_.outputs[0]].dtype;
    InitTensors();
    ApplyExporterPatterns();
    if (auto s = ApplyAttention(); !s) return s.error();
    if (auto s = ApplyRules(); !s) return Error{s.message()};
    DecideForward();
    KeepAttentionStatisticsFp32(plan_);
    return std::move(plan_);
  }

 private:
  void InitTensors() {
    plan_.tensors.resize(g_.tensors.size());
    consumers_.resize(g_.tensors.size());
    for (size_t i = 0; i < g_.tensors.size(); ++i) {
      const Tensor& t = g_.tensors[i];
      PlanTensor& p = plan_.tensors[i];
      p.name = t.name;
      p.dtype = t.dtype;
      p.shape = t.shape;
      p.strides = ContiguousStrides(t.shape);
      p.bytes = t.bytes;
      p.role = t.role;
      // Folded shape arithmetic and exporter constants are Python values in eager PyTorch.
      p.metadata =
          t.role == TensorRole::kConstant ||
          (t.value && (t.role == TensorRole::kActivation || t.role == TensorRole::kGraphOutput));
      p.requires_grad =
          t.role == TensorRole::kParameter && !o_.frozen.count(static_cast<TensorId>(i));
      if (t.role == TensorRole::kParameter)
        plan_.parameters.push_back(static_cast<PlanTensorId>(i));
      if (t.role == TensorRole::kBuffer) plan_.buffers.push_back(static_cast<PlanTensorId>(i));
      if (t.role == TensorRole::kDataInput) plan_.batch.push_back(static_cast<PlanTensorId>(i));
    }
    plan_.outputs = g_.outputs;
    ops_.reserve(g_.ops.size());  // a PlanOp is 14 vectors: moving them all on each growth
    src_.reserve(g_.ops.size());
    for (const Op& op : g_.ops) {
      PlanOp p;
      p.name = op.name;
      p.type = op.type;
      p.scope = op.module;
      if (auto m = op.attrs.find("mode");
          m != op.attrs.end() && m->second.kind == Attribute::Kind::kString) {
        p.mode = m->second.s;
      }
      p.inputs = op.inputs;
      p.outputs = op.outputs;
      ops_.push_back(std::move(p));
      src_.push_back(&op);
    }
  }

  const Op* Producer(TensorId t) const {
    OpId p = g_.tensors[t].producer;
    return p >= 0 ? &g_.ops[p] : nullptr;
  }
  bool OnlyConsumer(TensorId t, const Op& op) const {
    const auto& c = g_.tensors[t].consumers;
    return !c.empty() && std::all_of(c.begin(), c.end(), [&](OpId o) { return &g_.ops[o] == &op; });
  }
  std::optional<double> Const(TensorId t) const {
    if (t == kNoTensor || !g_.tensors[t].value || g_.tensors[t].value->size() != 1)
      return std::nullopt;
    return g_.tensors[t].value->at(0);
  }

  // Exporter decompositions of one eager op (SiLU, GELU, LayerNorm before opset 17, ...):
  // the last op of each match becomes the fused op, the rest disappear and their results are
  // never materialized.
  void ApplyExporterPatterns() {
    removed_.assign(g_.ops.size(), false);
    for (PatternMatch& m : MatchExporterPatterns(g_)) {
      for (OpId o : m.absorbed) {
        removed_[o] = true;
        for (TensorId t : g_.ops[o].outputs) {
          if (t != kNoTensor) plan_.tensors[t].metadata = true;
        }
      }
      PlanOp& fused = ops_[m.root];
      fused.type = m.pattern->fused_type;
      fused.inputs = m.inputs;
      fused_attrs_[m.root] = std::move(m.attrs);
    }
  }

  // Attention run by a fused SDPA kernel (simulator/attention.h): like an exporter pattern, the
  // root MatMul becomes the fused op; its output has the kernel's [B, Lq, H, Dv] layout.
  Result<bool> ApplyAttention() {
    auto fused = PlanAttention(g_, o_.attention, o_.target.device, removed_);
    if (!fused) return fused.error();
    for (AttentionFusion& f : *fused) {
      for (OpId o : f.absorbed) {
        removed_[o] = true;
        for (TensorId t : g_.ops[o].outputs) {
          if (t != kNoTensor) plan_.tensors[t].metadata = true;
        }
      }
      ops_[f.root].type = kAttentionOpType;
      ops_[f.root].inputs = f.inputs;
      fused_attrs_[f.root] = std::move(f.attrs);
      if (!f.output_strides.empty())
        plan_.tensors[g_.ops[f.root].outputs[0]].strides = f.output_strides;
    }
    return true;
  }

  Status ApplyRules() {
    rules_.resize(ops_.size());
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (removed_[i]) continue;
      PlanOp& op = ops_[i];
      const Op& src = *src_[i];
      bool all_meta = true;
      for (TensorId t : op.outputs) {
        if (t != kNoTensor && !plan_.tensors[t].metadata) all_meta = false;
      }
      if (all_meta) {
        rules_[i].forward = OpRule::Forward::kMetadata;
        continue;
      }
      bool any_grad = false;
      for (TensorId t : op.inputs)
        any_grad = any_grad || (t != kNoTensor && plan_.tensors[t].requires_grad);
      const GradRuleFn* rule = FindGradRule(op.type);
      if (!rule) {
        if (any_grad) {
          return Error{Label(src) + ": no gradient rule for op type '" + op.type + "'"};
        }
        continue;  // a compute op on data that needs no gradient: allocates its outputs
      }
      Op view = src;
      view.type = op.type;
      view.inputs = op.inputs;
      if (auto f = fused_attrs_.find(i); f != fused_attrs_.end()) view.attrs = f->second;
      RuleContext ctx{g_, view, o_.target.device};
      ctx.cpu_threads = o_.target.cpu_threads;
      ctx.torch_version = o_.target.torch_version;
      auto r = (*rule)(ctx);
      if (!r) return Error{Label(src) + ": " + r.error().message};
      rules_[i] = r.value();
      if (auto s = FoldParameterInputs(i, view, *rule); !s) return s;
      OpRule& rule_i = rules_[i];
      for (int k : rule_i.differentiable) {
        if (k < static_cast<int>(op.inputs.size()) && op.inputs[k] != kNoTensor &&
            plan_.tensors[op.inputs[k]].requires_grad && !plan_.tensors[op.inputs[k]].metadata) {
          op.grad_inputs.push_back(k);
        }
      }
      op.needs_backward = !op.grad_inputs.empty();
      for (int k : rule_i.grad_passthrough) {
        if (std::find(op.grad_inputs.begin(), op.grad_inputs.end(), k) != op.grad_inputs.end()) {
          op.grad_passthrough.push_back(k);
        }
      }
      op.grads_are_views = rule_i.grads_are_views;
      op.forward_workspace = rule_i.forward_workspace;
      for (IoRef ref : rule_i.backward_copies) {
        if (ref.output || std::find(op.grad_inputs.begin(), op.grad_inputs.end(), ref.index) !=
                              op.grad_inputs.end()) {
          op.backward_copies.push_back(ref);
        }
      }
      if (!op.needs_backward) continue;
      for (size_t k = 0; k < op.outputs.size(); ++k) {
        TensorId t = op.outputs[k];
        if (t == kNoTensor || IsNotAllocated(rule_i, static_cast<int>(k))) continue;
        if (IsFloating(plan_.tensors[t].dtype)) plan_.tensors[t].requires_grad = true;
      }
    }
    return {};
  }

  static bool IsNotAllocated(const OpRule& r, int k) {
    return std::find(r.outputs_not_allocated.begin(), r.outputs_not_allocated.end(), k) !=
           r.outputs_not_allocated.end();
  }

  bool WantsSaved(const PlanOp& op, const SavedSpec& s) const {
    if (!op.needs_backward) return false;
    if (s.for_grads.empty()) return true;
    for (int k : s.for_grads) {
      if (std::find(op.grad_inputs.begin(), op.grad_inputs.end(), k) != op.grad_inputs.end())
        return true;
    }
    return false;
  }

  PlanTensorId NewTensor(const std::string& name, DType dtype, std::vector<int64_t> shape) {
    PlanTensor t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.strides = ContiguousStrides(t.shape);
    t.bytes = TensorBytes(t);
    t.is_extra = true;
    plan_.tensors.push_back(std::move(t));
    return static_cast<PlanTensorId>(plan_.tensors.size() - 1);
  }

  // Saved-by-someone, per graph tensor, so in-place decisions never overwrite a saved tensor.
  std::vector<bool> SavedTensors() const {
    std::vector<bool> saved(plan_.tensors.size(), false);
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (removed_[i]) continue;
      const PlanOp& op = ops_[i];
      for (const SavedSpec& s : rules_[i].saved) {
        if (!WantsSaved(op, s)) continue;
        if (s.from == SavedSpec::From::kInput && s.index < static_cast<int>(op.inputs.size()) &&
            op.inputs[s.index] != kNoTensor) {
          saved[op.inputs[s.index]] = true;
        }
        if (s.from == SavedSpec::From::kOutput && s.index < static_cast<int>(op.outputs.size()) &&
            op.outputs[s.index] != kNoTensor) {
          saved[op.outputs[s.index]] = true;  // e.g. Sigmoid's result: no in-place op after it
        }
      }
    }
    return saved;
  }

  // A view of `base` with new shape/strides.
  void MakeView(PlanTensorId out, PlanTensorId base, std::vector<int64_t> strides) {
    PlanTensor& t = plan_.tensors[out];
    t.view_of = base;
    t.strides = std::move(strides);
    t.bytes = 0;
  }

  void DecideForward() {
    std::vector<bool> saved = SavedTensors();
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (removed_[i]) continue;
      PlanOp& op = ops_[i];
      const OpRule& r = rules_[i];
      copy_of_input_.clear();
      for (size_t k = 0; k < op.outputs.size(); ++k) {
        if (op.outputs[k] != kNoTensor && IsNotAllocated(r, static_cast<int>(k))) {
          plan_.tensors[op.outputs[k]].metadata = true;
          op.outputs[k] = -1;
        }
      }
      if (r.forward == OpRule::Forward::kMetadata) {
        for (PlanTensorId t : op.outputs) {
          if (t >= 0) plan_.tensors[t].metadata = true;
        }
        continue;
      }
      if (r.forward == OpRule::Forward::kView) View(op);
      if (r.forward == OpRule::Forward::kInPlace || op.type == "Add") InPlace(op, *src_[i], saved);
      if (op.type == "MatMul") MatMulCopies(op);
      if (op.type == "Einsum") EinsumCopies(op, *src_[i]);
      ContiguousCopies(op, r);
      for (const ExtraSpec& w : r.backward_workspace) {
        PlanTensorId t = NewTensor(op.name + ":" + w.name, w.dtype, w.shape);
        if (w.fp32_input_only && !op.inputs.empty()) plan_.tensors[t].only_if_fp32 = op.inputs[0];
        if (w.like_input && !op.inputs.empty() && op.inputs[0] >= 0)
          plan_.tensors[t].dtype_follows = op.inputs[0];
        op.backward_workspace.push_back(t);
      }
      for (size_t e = 0; e < r.extras.size(); ++e) {
        const ExtraSpec& x = r.extras[e];
        PlanTensorId made = NewTensor(op.name + ":" + x.name, x.dtype, x.shape);
        // A mask of the input's type follows it when a precision policy changes that type.
        if (!op.inputs.empty() && op.inputs[0] >= 0 &&
            x.dtype == plan_.tensors[op.inputs[0]].dtype && IsFloating(x.dtype)) {
          plan_.tensors[made].dtype_follows = op.inputs[0];
        }
        op.extras.push_back(made);
      }
      if (!op.needs_backward) continue;
      for (const SavedSpec& s : r.saved) {
        if (!WantsSaved(op, s)) continue;
        PlanTensorId t = -1;
        if (s.from == SavedSpec::From::kInput && s.index < static_cast<int>(op.inputs.size())) {
          t = op.inputs[s.index];
          // The op saves the contiguous copy it made, not the original.
          if (s.index < static_cast<int>(copy_of_input_.size()) && copy_of_input_[s.index] >= 0) {
            t = copy_of_input_[s.index];
          }
        } else if (s.from == SavedSpec::From::kOutput &&
                   s.index < static_cast<int>(op.outputs.size())) {
          t = op.outputs[s.index];
        } else if (s.from == SavedSpec::From::kExtra &&
                   s.index < static_cast<int>(op.extras.size())) {
          t = op.extras[s.index];
        }
        if (t < 0 || plan_.tensors[t].metadata) continue;
        if (std::find(op.saved.begin(), op.saved.end(), t) == op.saved.end()) op.saved.push_back(t);
      }
      BackwardStages(op, r);
    }
    plan_.ops.reserve(ops_.size());
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (!removed_[i]) plan_.ops.push_back(std::move(ops_[i]));
    }
  }

  // ---- recurrent ops (simulator/recurrent_rules.cc) ---------------------------------------
  // OpRule::parameter_inputs: a weight input computed from parameters alone by data movement
  // (the exporter's gate reordering and direction stacking) is, in eager PyTorch, the
  // parameters themselves. The chain's ops are dropped (nothing is allocated for them), its
  // parameters are appended to the op's inputs, and the rule runs again knowing which slot
  // each feeds, so the gradients go to the parameters, each of its own size.
  Status FoldParameterInputs(size_t i, Op& view, const GradRuleFn& rule) {
    if (rules_[i].parameter_inputs.empty()) return {};
    PlanOp& op = ops_[i];
    PadInputs(op, rules_[i]);
    const OpId reader = static_cast<OpId>(src_[i] - g_.ops.data());
    std::vector<int> folded_into;
    for (int k : rules_[i].parameter_inputs) {
      if (k < 0 || k >= static_cast<int>(op.inputs.size()) || op.inputs[k] == kNoTensor) continue;
      std::optional<ParameterChain> chain = ParameterChainOf(g_, op.inputs[k], reader);
      if (!chain) continue;
      for (OpId o : chain->ops) {
        removed_[o] = true;
        for (TensorId t : g_.ops[o].outputs) {
          if (t != kNoTensor) plan_.tensors[t].metadata = true;  // never materialized
        }
      }
      for (TensorId p : chain->parameters) {
        op.inputs.push_back(p);
        folded_into.push_back(k);
      }
    }
    if (folded_into.empty()) return {};
    view.inputs = op.inputs;
    RuleContext ctx{g_, view, o_.target.device, folded_into};
    ctx.cpu_threads = o_.target.cpu_threads;
    ctx.torch_version = o_.target.torch_version;
    auto r = rule(ctx);
    if (!r) return Error{Label(*src_[i]) + ": " + r.error().message};
    rules_[i] = r.value();
    return {};
  }

  // Omitted trailing inputs become explicit (-1) up to every slot the rule names, so that what
  // is appended after them never takes an optional input's place.
  static void PadInputs(PlanOp& op, const OpRule& r) {
    size_t n = op.inputs.size();
    auto need = [&](int k) { n = std::max(n, static_cast<size_t>(std::max(k, 0)) + 1); };
    for (int k : r.differentiable) need(k);
    for (int k : r.parameter_inputs) need(k);
    for (const SavedSpec& s : r.saved) {
      if (s.from == SavedSpec::From::kInput) need(s.index);
    }
    op.inputs.resize(n, -1);
  }

  // OpRule::contiguous_inputs: a view that cannot be read as one [rows, last dim] matrix is
  // copied, once per entry; the first copy stands for the input in what the op saves.
  void ContiguousCopies(PlanOp& op, const OpRule& r) {
    more_copies_.clear();
    for (int k : r.contiguous_inputs) {
      if (k < 0 || k >= static_cast<int>(op.inputs.size()) || op.inputs[k] < 0) continue;
      const PlanTensor x = plan_.tensors[op.inputs[k]];  // NewTensor may move the vector
      if (x.metadata || x.shape.empty()) continue;
      int64_t rows = 1;
      for (size_t d = 0; d + 1 < x.shape.size(); ++d) rows *= x.shape[d];
      if (ViewStrides(x.shape, x.strides, {rows, x.shape.back()})) continue;
      PlanTensorId c = NewTensor(x.name + ":contiguous", x.dtype, x.shape);
      plan_.tensors[c].dtype_follows = op.inputs[k];
      op.copies.push_back(c);
      if (copy_of_input_.size() <= static_cast<size_t>(k)) copy_of_input_.resize(k + 1, -1);
      if (copy_of_input_[k] < 0) {
        copy_of_input_[k] = c;
      } else {
        more_copies_.push_back({copy_of_input_[k], c});
      }
    }
  }

  // OpRule::backward_stages as plan tensors; the other copies of a saved input are saved too.
  void BackwardStages(PlanOp& op, const OpRule& r) {
    for (auto [first, other] : more_copies_) {
      if (std::find(op.saved.begin(), op.saved.end(), first) != op.saved.end()) {
        op.saved.push_back(other);
      }
    }
    for (size_t n = 0; n < r.backward_stages.size(); ++n) {
      const BackwardStage& stage = r.backward_stages[n];
      PlanBackwardStage p;
      for (const ExtraSpec& w : stage.workspace) {
        PlanTensorId t = NewTensor(op.name + ":" + w.name, w.dtype, w.shape);
        if (!op.inputs.empty() && op.inputs[0] >= 0 &&
            w.dtype == plan_.tensors[op.inputs[0]].dtype && IsFloating(w.dtype)) {
          plan_.tensors[t].dtype_follows = op.inputs[0];
        }
        p.workspace.push_back(t);
      }
      p.grads = stage.grads;
      for (int e : stage.frees_extras) {
        if (e >= 0 && e < static_cast<int>(op.extras.size()) &&
            std::find(op.saved.begin(), op.saved.end(), op.extras[e]) != op.saved.end()) {
          p.frees.push_back(op.extras[e]);
        }
      }
      p.frees_output_grads = stage.frees_output_grads;
      op.backward_stages.push_back(std::move(p));
    }
  }

  void View(PlanOp& op) {
    PlanTensorId in = op.inputs.empty() ? -1 : op.inputs[0];
    if (in < 0 || plan_.tensors[in].metadata) return;
    const PlanTensor& x = plan_.tensors[in];
    for (size_t k = 0; k < op.outputs.size(); ++k) {
      PlanTensorId out = op.outputs[k];
      if (out < 0) continue;
      const PlanTensor& y = plan_.tensors[out];
      std::optional<std::vector<int64_t>> strides;
      if (op.type == "Transpose") {
        const Attribute* perm = src_[&op - ops_.data()]->attr("perm");
        std::vector<int64_t> p;
        if (perm) {
          p = perm->ints;
        } else {
          for (size_t d = x.shape.size(); d-- > 0;) p.push_back(static_cast<int64_t>(d));
        }
        std::vector<int64_t> s;
        for (int64_t d : p) s.push_back(x.strides.at(d));
        strides = s;
      } else if (op.type == "Slice" || op.type == "Split") {
        strides = x.strides;  // same strides, an offset into the storage
      } else if (op.type == "Pad") {
        strides = x.strides;  // avg_pool2d's own padding (gradient_rules.cc): x itself
      } else if (op.type == "Expand") {
        std::vector<int64_t> s(y.shape.size(), 0);
        size_t off = y.shape.size() - x.shape.size();
        for (size_t d = 0; d < x.shape.size(); ++d) {
          s[off + d] = x.shape[d] == y.shape[off + d] ? x.strides[d] : 0;
        }
        strides = s;
      } else if (op.type == "Gather") {
        // select(): drops the indexed axis.
        int64_t axis = src_[&op - ops_.data()]->attr_int("axis", 0);
        if (axis < 0) axis += static_cast<int64_t>(x.shape.size());
        std::vector<int64_t> s = x.strides;
        if (axis >= 0 && axis < static_cast<int64_t>(s.size())) s.erase(s.begin() + axis);
        strides = s;
      } else if (y.shape == x.shape) {
        strides = x.strides;  // Identity, Dropout(p=0), same-dtype Cast
      } else {
        strides = ViewStrides(x.shape, x.strides, y.shape);  // reshape family
      }
      if (strides && strides->size() == y.shape.size()) {
        MakeView(out, in, *strides);
        // Their backward is a view of the output gradient too; slicing, expanding, splitting
        // and selecting allocate an input-sized gradient instead.
        op.is_view =
            op.type != "Slice" && op.type != "Expand" && op.type != "Split" && op.type != "Gather";
      }
      // else: PyTorch's reshape copies; the output keeps its own contiguous storage.
    }
  }

  // An op that may run in place overwrites input 0 when nothing else needs it: the input is
  // an activation with its own storage, read by this op only, not saved and not an output.
  void InPlace(PlanOp& op, const Op& src, const std::vector<bool>& saved) {
    if (op.outputs.empty() || op.outputs[0] < 0) return;
    PlanTensorId out = op.outputs[0];
    auto candidate = [&](size_t k) {
      if (k >= op.inputs.size()) return false;
      PlanTensorId in = op.inputs[k];
      if (in < 0 || in >= static_cast<PlanTensorId>(g_.tensors.size())) return false;
      const PlanTensor& x = plan_.tensors[in];
      if (x.role != TensorRole::kActivation || x.metadata || x.view_of >= 0 || saved[in])
        return false;
      if (x.shape != plan_.tensors[out].shape || x.dtype != plan_.tensors[out].dtype) return false;
      return OnlyConsumer(in, src) && g_.tensors[in].consumers.size() == 1;
    };
    if (op.type == "Add") {
      // out += identity (torchvision blocks), and Linear's bias added into the matmul result.
      bool bias = op.inputs.size() == 2 && op.inputs[1] >= 0 &&
                  plan_.tensors[op.inputs[1]].role == TensorRole::kParameter;
      bool bias_first = op.inputs.size() == 2 && op.inputs[0] >= 0 &&
                        plan_.tensors[op.inputs[0]].role == TensorRole::kParameter;
      if (candidate(0) && (bias || IsFreshCompute(op.inputs[0]))) {
        MakeView(out, op.inputs[0], plan_.tensors[op.inputs[0]].strides);
      } else if (bias_first && candidate(1)) {
        MakeView(out, op.inputs[1], plan_.tensors[op.inputs[1]].strides);
      }
      return;
    }
    if (candidate(0)) MakeView(out, op.inputs[0], plan_.tensors[op.inputs[0]].strides);
  }

  // Produced by a normalization/conv whose result a torchvision block adds into in place.
  bool IsFreshCompute(PlanTensorId t) const {
    const Op* p = Producer(t);
    return p && (p->type == "BatchNormalization" || p->type == "Conv");
  }

  // torch.matmul reshapes batched operands to 3-D (or folds them to 2-D); a reshape that
  // cannot be a view copies, and bmm/mm then saves the copy.
  void MatMulCopies(PlanOp& op) {
    copy_of_input_.assign(op.inputs.size(), -1);
    if (op.inputs.size() != 2 || op.inputs[0] < 0 || op.inputs[1] < 0) return;
    const PlanTensor a = plan_.tensors[op.inputs[0]];  // NewTensor may move the vector
    const PlanTensor b = plan_.tensors[op.inputs[1]];
    size_t ra = a.shape.size(), rb = b.shape.size();
    auto needs_copy = [&](const PlanTensor& t, std::vector<int64_t> target,
                          const std::vector<int64_t>& expanded_shape) {
      std::vector<int64_t> strides = t.strides;
      std::vector<int64_t> shape = t.shape;
      if (!expanded_shape.empty() && expanded_shape != t.shape) {
        size_t off = expanded_shape.size() - t.shape.size();
        std::vector<int64_t> s(expanded_shape.size(), 0);
        for (size_t d = 0; d < t.shape.size(); ++d) {
          s[off + d] = t.shape[d] == expanded_shape[off + d] ? t.strides[d] : 0;
        }
        strides = s;
        shape = expanded_shape;
      }
      return !ViewStrides(shape, strides, target).has_value();
    };
    auto add_copy = [&](int k, std::vector<int64_t> shape) {
      const PlanTensor& src = plan_.tensors[op.inputs[k]];
      PlanTensorId c = NewTensor(src.name + ":contiguous", src.dtype, std::move(shape));
      plan_.tensors[c].dtype_follows = op.inputs[k];
      op.copies.push_back(c);
      copy_of_input_[k] = c;
    };
    if (ra >= 3 && rb <= 2) {
      int64_t rows = 1;
      for (size_t d = 0; d + 1 < ra; ++d) rows *= a.shape[d];
      std::vector<int64_t> target = {rows, a.shape.back()};
      if (needs_copy(a, target, {})) add_copy(0, target);
      return;
    }
    if (ra >= 3 && rb >= 3) {
      // Broadcast batch dims, then reshape each to [batch, n, m].
      size_t rank = std::max(ra, rb);
      std::vector<int64_t> batch(rank - 2, 1);
      for (const PlanTensor* t : {&a, &b}) {
        size_t off = rank - t->shape.size();
        for (size_t d = 0; d + 2 < t->shape.size(); ++d) {
          batch[off + d] = std::max(batch[off + d], t->shape[d]);
        }
      }
      int64_t nb = 1;
      for (int64_t d : batch) nb *= d;
      for (int k = 0; k < 2; ++k) {
        const PlanTensor& t = k == 0 ? a : b;
        std::vector<int64_t> expanded = batch;
        expanded.push_back(t.shape[t.shape.size() - 2]);
        expanded.push_back(t.shape.back());
        std::vector<int64_t> target = {nb, t.shape[t.shape.size() - 2], t.shape.back()};
        if (needs_copy(t, target, expanded)) add_copy(k, target);
      }
    }
  }

  // torch.einsum with two operands (aten/src/ATen/native/Linear.cpp, sumproduct_pair): each
  // operand is permuted to the output's labels then the summed ones, the left one to
  // [both, left only, summed] and the right one to [both, summed, right only] (dims of size 1
  // dropped) and reshaped to 3-D for bmm; a reshape that cannot be a view copies, and bmm saves
  // what it got. Repeated labels (diagonals) and more operands are left as they are.
  void EinsumCopies(PlanOp& op, const Op& src) {
    copy_of_input_.assign(op.inputs.size(), -1);
    const Attribute* eq = src.attr("equation");
    if (!eq || op.inputs.size() != 2 || op.inputs[0] < 0 || op.inputs[1] < 0) return;
    std::string e;
    for (char ch : eq->s) {
      if (ch != ' ') e += ch;
    }
    size_t arrow = e.find("->");
    std::string lhs = e.substr(0, arrow), rhs;
    size_t comma = lhs.find(',');
    if (comma == std::string::npos || lhs.find(',', comma + 1) != std::string::npos) return;
    std::string terms[2] = {lhs.substr(0, comma), lhs.substr(comma + 1)};
    const PlanTensor ops[2] = {plan_.tensors[op.inputs[0]], plan_.tensors[op.inputs[1]]};
    // Labels per operand; an ellipsis stands for the operand's leading unnamed dims, written
    // as '0', '1', ... counted from the right so that broadcast dims line up.
    std::vector<std::string> labels(2);
    size_t ell_rank = 0;
    for (int k = 0; k < 2; ++k) {
      const std::string& t = terms[k];
      size_t dots = t.find("...");
      size_t named = t.size() - (dots == std::string::npos ? 0 : 3);
      if (named > ops[k].shape.size()) return;
      size_t n_ell = dots == std::string::npos ? 0 : ops[k].shape.size() - named;
      if (n_ell > 9) return;
      ell_rank = std::max(ell_rank, n_ell);
      for (size_t c = 0; c < t.size(); ++c) {
        if (dots != std::string::npos && c == dots) {
          for (size_t d = 0; d < n_ell; ++d) labels[k] += static_cast<char>('0' + (n_ell - 1 - d));
          c += 2;
          continue;
        }
        if (!std::isalpha(static_cast<unsigned char>(t[c]))) return;
        if (labels[k].find(t[c]) != std::string::npos) return;  // a diagonal
        labels[k] += t[c];
      }
      if (labels[k].size() != ops[k].shape.size()) return;
    }
    if (arrow != std::string::npos) {
      for (char ch : e.substr(arrow + 2)) {
        if (ch == '.') continue;
        rhs += ch;
      }
      size_t dots = e.find("...", arrow);
      if (dots != std::string::npos) {
        std::string ell;
        for (size_t d = ell_rank; d-- > 0;) ell += static_cast<char>('0' + d);
        rhs.insert(dots - arrow - 2, ell);
      }
    } else {  // implicit output: the ellipsis dims, then labels used once, in order
      for (size_t d = ell_rank; d-- > 0;) rhs += static_cast<char>('0' + d);
      std::string once;
      for (char ch : labels[0] + labels[1]) {
        if (std::isalpha(static_cast<unsigned char>(ch)) &&
            std::count(labels[0].begin(), labels[0].end(), ch) +
                    std::count(labels[1].begin(), labels[1].end(), ch) ==
                1) {
          once += ch;
        }
      }
      std::sort(once.begin(), once.end());  // torch's label order: A-Z, then a-z
      rhs += once;
    }
    // Size of a label in an operand (1 when absent).
    auto size_in = [&](int k, char ch) -> int64_t {
      size_t d = labels[k].find(ch);
      return d == std::string::npos ? 1 : ops[k].shape[d];
    };
    std::string both, left, right, summed;
    for (char ch : rhs) {
      bool l = size_in(0, ch) != 1, r = size_in(1, ch) != 1;
      if (l && r) {
        both += ch;
      } else if (l) {
        left += ch;
      } else if (r) {
        right += ch;
      }
    }
    for (char ch : labels[0]) {
      if (rhs.find(ch) == std::string::npos && size_in(0, ch) != 1 && size_in(1, ch) != 1) {
        summed += ch;
      }
    }
    // A label summed in one operand only is reduced first (a sum that allocates): not modelled.
    for (int k = 0; k < 2; ++k) {
      for (char ch : labels[k]) {
        if (rhs.find(ch) == std::string::npos && summed.find(ch) == std::string::npos &&
            size_in(k, ch) != 1) {
          return;
        }
      }
    }
    std::sort(summed.begin(), summed.end());
    auto matrix = [&](int k, const std::string& groups, const std::vector<size_t>& cuts) {
      std::vector<int64_t> shape, strides, target(cuts.size() - 1, 1);
      for (size_t gi = 0; gi + 1 < cuts.size(); ++gi) {
        for (size_t c = cuts[gi]; c < cuts[gi + 1]; ++c) {
          size_t d = labels[k].find(groups[c]);
          if (d == std::string::npos || ops[k].shape[d] == 1) continue;
          shape.push_back(ops[k].shape[d]);
          strides.push_back(ops[k].strides[d]);
          target[gi] *= ops[k].shape[d];
        }
      }
      if (shape.empty() || ViewStrides(shape, strides, target)) return;
      PlanTensorId c = NewTensor(ops[k].name + ":contiguous", ops[k].dtype, target);
      plan_.tensors[c].dtype_follows = op.inputs[k];
      op.copies.push_back(c);
      copy_of_input_[k] = c;
    };
    matrix(0, both + left + summed,
           {0, both.size(), both.size() + left.size(), both.size() + left.size() + summed.size()});
    matrix(
        1, both + summed + right,
        {0, both.size(), both.size() + summed.size(), both.size() + summed.size() + right.size()});
  }

  const Graph& g_;
  const PlanOptions& o_;
  TrainingPlan plan_;
  std::vector<PlanOp> ops_;
  std::vector<const Op*> src_;
  std::vector<OpRule> rules_;
  std::vector<bool> removed_;
  std::map<size_t, std::map<std::string, Attribute>> fused_attrs_;  // by root op
  std::vector<std::vector<OpId>> consumers_;
  std::vector<PlanTensorId> copy_of_input_;
  std::vector<std::pair<PlanTensorId, PlanTensorId>> more_copies_;  // (first copy, another)
};

}  // namespace

Result<TrainingPlan> BuildPlan(const Graph& graph, const PlanOptions& options) {
  return Builder(graph, options).Run();
}

}  // namespace vramsim

#include "policies/tensor_parallel.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "policies/recompute.h"
#include "policies/sharding.h"

namespace vramsim {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ","));
}

bool IsLinearType(const std::string& t) { return t == "MatMul" || t == "Gemm"; }
bool IsReshapeType(const std::string& t) {
  return t == "Reshape" || t == "Flatten" || t == "Squeeze" || t == "Unsqueeze";
}
// Same-rank ops whose sharded dim may change size (split, sliced, concatenated along it).
bool IsPieceType(const std::string& t) {
  return t == "Split" || t == "Slice" || t == "Concat" || t == "Pad";
}
// Elementwise ops that broadcast their operands (numpy rules): a replicated operand of size 1
// (or absent) along a split dim leaves the output split; one of full extent there is split
// with it when it is a parameter (a bias) and refused when it is a whole activation.
bool IsBroadcastType(const std::string& t) {
  static const std::set<std::string> kTypes = {
      "Add", "Sub", "Mul",  "Div",   "Pow",     "Where",       "Max",     "Min",
      "Mod", "Sum", "Mean", "Equal", "Less",    "LessOrEqual", "Greater", "GreaterOrEqual",
      "And", "Or",  "Xor",  "PRelu", "BitShift"};
  return kTypes.count(t) > 0;
}

class Rewriter {
 public:
  Rewriter(TrainingPlan& plan, const TensorParallelOptions& o) : plan_(plan), o_(o) {}

  Status Run();

 private:
  enum class Mode { kTensor, kSequence };

  TrainingPlan& plan_;
  const TensorParallelOptions& o_;
  std::vector<int> producer_;
  std::vector<bool> derived_;  // parameters, buffers, constants and what only they make
  std::vector<PlanTensorId> param_of_;
  std::vector<int> hidden_;  // the tensor-parallel split dim, -1: whole
  // Entries of the split dim before the split factor: 1 when the heads lead it, b where
  // nn.MultiheadAttention folds batch and heads into one dim [s, b*a, d].
  std::vector<int64_t> outer_;
  int64_t mapped_outer_ = 1;  // MapDim's answer for outer_ of the output
  std::vector<int> seq_sp_;   // sequence-parallel split dim
  std::vector<int> seq_cp_;   // context-parallel split dim
  std::string error_;

  // Collectives to insert: before/after an op index.
  struct Insert {
    int at = 0;          // op index
    bool after = false;  // after the op, else before
    PlanOp op;
  };
  std::vector<Insert> inserts_;
  std::vector<int> column_, row_;  // linear op indices
  std::vector<int> embeddings_;    // vocab-parallel Gathers
  std::set<int> kv_exchange_done_;

  const PlanTensor& T(PlanTensorId t) const { return plan_.tensors[t]; }
  std::string OpText(int i) const { return plan_.ops[i].name + " (" + plan_.ops[i].type + ")"; }

  PlanTensorId AddTensor(PlanTensor t) {
    t.bytes = StorageBytes(t);
    plan_.tensors.push_back(std::move(t));
    PlanTensorId id = static_cast<PlanTensorId>(plan_.tensors.size()) - 1;
    producer_.push_back(-1);
    derived_.push_back(false);
    param_of_.push_back(-1);
    hidden_.push_back(-1);
    outer_.push_back(1);
    seq_sp_.push_back(-1);
    seq_cp_.push_back(-1);
    return id;
  }

  // Producers and what derives from parameters; the split marks keep their values.
  void Index() {
    const size_t n = plan_.tensors.size();
    producer_.assign(n, -1);
    derived_.assign(n, false);
    param_of_.assign(n, -1);
    hidden_.resize(n, -1);
    outer_.resize(n, 1);
    seq_sp_.resize(n, -1);
    seq_cp_.resize(n, -1);
    for (size_t t = 0; t < n; ++t) {
      TensorRole r = T(t).role;
      derived_[t] = T(t).metadata || r == TensorRole::kParameter || r == TensorRole::kBuffer ||
                    r == TensorRole::kConstant;
      if (r == TensorRole::kParameter) param_of_[t] = static_cast<PlanTensorId>(t);
    }
    for (size_t i = 0; i < plan_.ops.size(); ++i) {
      const PlanOp& op = plan_.ops[i];
      bool only = true, any = false;  // an op without inputs (a pipeline recv) makes data
      PlanTensorId param = -1;
      for (PlanTensorId t : op.inputs) {
        if (t < 0) continue;
        any = true;
        only = only && derived_[t];
        if (param < 0 && param_of_[t] >= 0) param = param_of_[t];
      }
      for (const auto* list : {&op.outputs, &op.extras, &op.copies}) {
        for (PlanTensorId t : *list) {
          if (t < 0) continue;
          if (producer_[t] < 0) producer_[t] = static_cast<int>(i);
          if (only && any) {
            derived_[t] = true;
            param_of_[t] = param;
          }
        }
      }
    }
  }

  bool gather_kv_ = false;    // context parallelism: attention's K and V count as gathered
  bool tensor_mode_ = false;  // following the tensor-parallel split (not the sequence's)

  // Marks t split on dim d; false (with error_) on a conflict.
  bool Mark(std::vector<int>& marks, PlanTensorId t, int d, int op) {
    if (t < 0 || T(t).metadata) return true;
    if (d < 0 || d >= static_cast<int>(T(t).shape.size())) {
      error_ = fmt::format("{} makes {} {}: cannot follow the split dimension through it",
                           op >= 0 ? OpText(op) : std::string("an op"), T(t).name,
                           ShapeText(T(t).shape));
      return false;
    }
    if (marks[t] >= 0 && marks[t] != d) {
      error_ = fmt::format("{}: {} {} would be split on dims {} and {}",
                           op >= 0 ? OpText(op) : std::string("an op"), T(t).name,
                           ShapeText(T(t).shape), marks[t], d);
      return false;
    }
    marks[t] = d;
    return true;
  }

  // A parameter's derivation chain (weight -> Transpose -> Cast -> MatMul input): marks every
  // tensor from `t` (split on d) back to the parameter.
  void MarkWeightChain(std::vector<int>& marks, PlanTensorId t, int d) {
    for (int hops = 0; t >= 0 && hops < 16; ++hops) {
      if (d < 0 || d >= static_cast<int>(T(t).shape.size())) return;
      marks[t] = d;
      if (T(t).role == TensorRole::kParameter) return;
      int p = producer_[t];
      if (p < 0) {
        t = T(t).view_of;
        continue;
      }
      const PlanOp& op = plan_.ops[p];
      PlanTensorId in = -1;
      for (PlanTensorId x : op.inputs) {
        if (x >= 0 && !T(x).metadata && param_of_[x] >= 0) {
          in = x;
          break;
        }
      }
      if (in < 0) return;
      if (op.type == "Transpose" && T(in).shape.size() == 2 && T(t).shape.size() == 2) {
        d = 1 - d;
      } else if (T(in).shape.size() != T(t).shape.size()) {
        return;
      }
      t = in;
    }
  }

  // The dim of a reshape of x (to shape y) where x's dim d starts (row-major prefix
  // products); -1: none.
  static int ReshapeDim(const std::vector<int64_t>& x, int d, const std::vector<int64_t>& y) {
    uint64_t before = 1;
    for (int k = 0; k < d; ++k) before *= static_cast<uint64_t>(std::max<int64_t>(x[k], 1));
    return ReshapeBefore(before, y);
  }
  // The dim of y where the flat offset `before` falls (a multiple of the entries before it).
  static int ReshapeBefore(uint64_t before, const std::vector<int64_t>& y) {
    uint64_t prefix = 1;
    for (size_t e = 0; e < y.size(); ++e) {
      uint64_t next = prefix * static_cast<uint64_t>(std::max<int64_t>(y[e], 1));
      if (y[e] > 1 && prefix <= before && before < next && before % prefix == 0) {
        return static_cast<int>(e);
      }
      prefix = next;
    }
    return -1;
  }
  static uint64_t Numel(const PlanTensor& t) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
    return n;
  }

  // The output dim of `out` that carries input `in`'s dim d through op i; -1: none (error_).
  int MapDim(int i, PlanTensorId in, int d, PlanTensorId out, int slot) {
    const PlanOp& op = plan_.ops[i];
    const PlanTensor& x = T(in);
    const PlanTensor& y = T(out);
    const int rx = static_cast<int>(x.shape.size()), ry = static_cast<int>(y.shape.size());
    auto fail = [&](const std::string& why) {
      error_ = fmt::format("{} {}", OpText(i), why);
      return -1;
    };
    mapped_outer_ = tensor_mode_ ? outer_[in] : 1;
    if (op.type == "Transpose") {
      int found = -1, by_size = -1, count = 0;
      for (int e = 0; e < ry; ++e) {
        if (y.shape[e] != x.shape[d]) continue;
        ++count;
        by_size = e;
        if (y.strides.size() == static_cast<size_t>(ry) &&
            x.strides.size() == static_cast<size_t>(rx) && y.strides[e] == x.strides[d]) {
          found = e;
        }
      }
      if (found >= 0) return found;
      if (count == 1) return by_size;
      return fail("transposes a split tensor ambiguously");
    }
    if (IsReshapeType(op.type) || (op.type == "Expand" && rx != ry)) {
      if (op.type == "Expand") return d + (ry - rx);
      // The split factor starts `before` entries in (the heads inside a merged batch*heads
      // dim start b entries into it): its dim in y is where that offset falls.
      uint64_t before = static_cast<uint64_t>(mapped_outer_);
      for (int k = 0; k < d; ++k) before *= static_cast<uint64_t>(std::max<int64_t>(x.shape[k], 1));
      int e = ReshapeBefore(before, y.shape);
      if (e < 0) return fail("reshapes a split tensor so that its split dim disappears");
      uint64_t prefix = 1;
      for (int k = 0; k < e; ++k) prefix *= static_cast<uint64_t>(std::max<int64_t>(y.shape[k], 1));
      if (tensor_mode_) mapped_outer_ = static_cast<int64_t>(before / prefix);
      return e;
    }
    if (IsLinearType(op.type) && slot <= 1) {
      // Activation x activation (attention's scores and context).
      if (rx < 2 || ry < 2) return fail("multiplies a split tensor of rank < 2");
      if (slot == 0) {
        if (d < rx - 2) return d + (ry - rx);
        if (d == rx - 2) return ry - 2;
        if (gather_kv_) return -2;  // contraction over a gathered dim
        return fail("contracts over the split dim of its first input");
      }
      if (d < rx - 2) return d + (ry - rx);
      if (d == rx - 1) return gather_kv_ ? -2 : ry - 1;
      if (gather_kv_) return -2;
      return fail("contracts over the split dim of its second input");
    }
    if (op.type == "Gather" && slot == 1) return d;  // embedding lookup: indices' dims lead
    if (IsPieceType(op.type) && rx == ry) return d;
    int e = d + (ry - rx);
    if (e < 0 || e >= ry || y.shape[e] != x.shape[d]) {
      return fail(fmt::format("turns {} into {}: the split dim {} does not carry through",
                              ShapeText(x.shape), ShapeText(y.shape), d));
    }
    return e;
  }

  bool IsActivation(PlanTensorId t) const { return t >= 0 && !T(t).metadata && !derived_[t]; }

  // Linear: MatMul/Gemm of an activation (slot 0) by a 2-D parameter-derived weight (slot 1).
  bool IsLinear(int i) const {
    const PlanOp& op = plan_.ops[i];
    if (!IsLinearType(op.type) || op.inputs.size() < 2) return false;
    PlanTensorId a = op.inputs[0], w = op.inputs[1];
    return IsActivation(a) && w >= 0 && param_of_[w] >= 0 && T(w).shape.size() == 2;
  }
  // The weight dim holding `features` (N for column, K for row); MatMul's weight is [K, N].
  int WeightDim(int i, int64_t features, bool output) const {
    const PlanOp& op = plan_.ops[i];
    const PlanTensor& w = T(op.inputs[1]);
    if (op.type == "MatMul") return output ? 1 : 0;
    const int preferred = output ? 0 : 1;  // torch's Linear through Gemm: transB, [N, K]
    if (w.shape[preferred] == features) return preferred;
    return 1 - preferred;
  }

  // Propagates the marks of `marks` forward through ops [begin, end) that `in_range` admits.
  // Linears are handled by the tensor pass; returns false with error_ set.
  template <typename Admit>
  bool Propagate(std::vector<int>& marks, int begin, int end, Admit admit, Mode mode) {
    tensor_mode_ = mode == Mode::kTensor;
    for (int i = begin; i < end; ++i) {
      PlanOp& op = plan_.ops[i];
      if (!admit(i)) continue;
      if (mode == Mode::kTensor && IsLinear(i)) {
        if (!TensorLinear(i)) return false;
        continue;
      }
      int slot = -1, d = -1;
      for (size_t k = 0; k < op.inputs.size(); ++k) {
        PlanTensorId t = op.inputs[k];
        if (t >= 0 && marks[t] >= 0 && !T(t).metadata) {
          slot = static_cast<int>(k);
          d = marks[t];
          if (!derived_[t]) break;
        }
      }
      if (slot < 0) continue;
      if (op.type == "AllGather" && &marks == &seq_sp_) continue;  // the region ends
      if (op.type.rfind("Pipeline", 0) == 0) continue;  // a stage's send: nothing to carry
      PlanTensorId in = op.inputs[slot];
      int first_out = -1, first_dim = -1;
      for (PlanTensorId y : op.outputs) {
        if (y < 0 || T(y).metadata) continue;
        int e = MapDim(i, in, d, y, slot);
        if (e == -2) continue;  // context parallelism: attention over gathered K/V
        if (e < 0) return false;
        if (!Mark(marks, y, e, i)) return false;
        if (mode == Mode::kTensor) outer_[y] = mapped_outer_;
        if (first_out < 0) first_out = y, first_dim = e;
      }
      if (first_out < 0) continue;
      // Tensors beside the outputs (dropout masks, norm statistics, copies, backward
      // workspaces) of the same shape at the split dim are split too.
      const PlanTensor& y = T(first_out);
      auto align = [&](PlanTensorId t) {
        if (t < 0 || T(t).metadata) return;
        const int r = static_cast<int>(T(t).shape.size());
        int e = first_dim - (static_cast<int>(y.shape.size()) - r);
        if (marks[t] >= 0) return;
        if (e >= 0 && e < r && T(t).shape[e] == y.shape[first_dim]) {
          marks[t] = e;
          return;
        }
        // A reshaped copy of a split input (matmul's operands folded to 3-D for bmm).
        for (PlanTensorId x : op.inputs) {
          if (x < 0 || marks[x] < 0 || T(x).metadata || Numel(T(x)) != Numel(T(t))) continue;
          // bmm's copy of an operand keeps its last two dims.
          const auto& xs = T(x).shape;
          const auto& ts = T(t).shape;
          if (xs.size() >= 2 && ts.size() >= 2 &&
              (xs[xs.size() - 1] != ts[ts.size() - 1] || xs[xs.size() - 2] != ts[ts.size() - 2])) {
            continue;
          }
          int f = ReshapeDim(T(x).shape, marks[x], T(t).shape);
          if (f >= 0) {
            marks[t] = f;
            return;
          }
        }
      };
      for (const auto* list : {&op.extras, &op.copies, &op.backward_workspace}) {
        for (PlanTensorId t : *list) align(t);
      }
      for (const PlanBackwardStage& s : op.backward_stages) {
        for (PlanTensorId t : s.workspace) align(t);
      }
      // Other inputs broadcast along the split dim at its full size (a bias, a per-head
      // buffer, the position embedding beside the token embedding) are split with it.
      if (IsLinearType(op.type) || op.type == "Gather" || IsPieceType(op.type)) continue;
      for (size_t k = 0; k < op.inputs.size(); ++k) {
        PlanTensorId t = op.inputs[k];
        if (t < 0 || T(t).metadata || marks[t] >= 0) continue;
        const int r = static_cast<int>(T(t).shape.size());
        int e = first_dim - (static_cast<int>(y.shape.size()) - r);
        if (e < 0 || e >= r || T(t).shape[e] != y.shape[first_dim] || y.shape[first_dim] == 1) {
          continue;
        }
        if (mode == Mode::kTensor && param_of_[t] >= 0) {
          MarkWeightChain(marks, t, e);
        } else if (mode == Mode::kTensor && IsActivation(t)) {
          // A whole activation of full extent along the split dim meeting a split one (a
          // branch beside a column-parallel Linear that is not a LoRA adapter, a residual
          // reaching into the split region): each rank would need all of it.
          error_ = fmt::format(
              "{} combines {} {}, whole on every rank with all {} entries of dim {}, with a "
              "tensor split {} ways on that dim: not the attention/MLP pattern",
              OpText(i), T(t).name, ShapeText(T(t).shape), T(t).shape[e], e, o_.tensor_parallel);
          return false;
        } else if (T(t).role != TensorRole::kParameter) {
          // A view (a same-type Cast) splits the storage it views when it is all of it.
          for (PlanTensorId v = t; v >= 0 && T(v).shape == T(t).shape && marks[v] < 0;
               v = T(v).view_of) {
            marks[v] = e;
          }
        }
      }
    }
    return true;
  }

  // LoRA adapters (Hu et al. 2021) beside a Linear, found by structure: a Linear A [r, in]
  // whose output, through shape-keeping unary ops, is the only input of a Linear B [out, r]
  // (r below both in and out), B's output (through shape-keeping ops: the scaling) added to the
  // output of a base Linear reading the same input as A (or the input A's dropout reads).
  // Megatron/PEFT's layout (peft/tuners/lora/tp_layer.py): beside a column-parallel base, A is
  // replicated and B column-parallel [out/t, r] (its input gradient, r wide, all-reduced);
  // beside a row-parallel base, A is row-parallel [r, in/t] (its r-wide partial product
  // all-reduced) and B replicated.
  std::map<int, int> lora_b_to_a_;  // B op -> A op
  std::set<int> lora_a_, lora_row_a_;
  std::vector<std::vector<int>> consumers_;

  // x through unary ops that keep its shape (dropout, cast, identity) back to their source.
  PlanTensorId UnaryRoot(PlanTensorId x) const {
    for (int hops = 0; hops < 4 && x >= 0 && producer_[x] >= 0; ++hops) {
      const PlanOp& p = plan_.ops[producer_[x]];
      if (p.type != "Dropout" && p.type != "Cast" && p.type != "Identity") break;
      if (p.inputs.empty() || p.inputs[0] < 0 || T(p.inputs[0]).shape != T(x).shape) break;
      x = p.inputs[0];
    }
    return x;
  }
  // The Linear whose output x is, through ops of x's shape with one activation input (a bias
  // add, a cast, the scaling); -1: none.
  int LinearOrigin(PlanTensorId x) const {
    for (int hops = 0; hops < 4 && x >= 0 && producer_[x] >= 0; ++hops) {
      const int p = producer_[x];
      if (IsLinear(p)) return p;
      PlanTensorId next = -1;
      int activations = 0;
      for (PlanTensorId in : plan_.ops[p].inputs) {
        if (!IsActivation(in)) continue;
        ++activations;
        next = in;
      }
      if (activations != 1 || T(next).shape != T(x).shape) return -1;
      x = next;
    }
    return -1;
  }
  void FindLora() {
    consumers_.assign(plan_.tensors.size(), {});
    for (size_t i = 0; i < plan_.ops.size(); ++i) {
      for (PlanTensorId x : plan_.ops[i].inputs) {
        if (x >= 0) consumers_[x].push_back(static_cast<int>(i));
      }
    }
    for (size_t bi = 0; bi < plan_.ops.size(); ++bi) {
      const int b = static_cast<int>(bi);
      if (!IsLinear(b) || plan_.ops[b].outputs.empty() || plan_.ops[b].outputs[0] < 0) continue;
      PlanTensorId h = plan_.ops[b].inputs[0];
      if (consumers_[h].size() != 1) continue;
      const int a = LinearOrigin(UnaryRoot(h));
      if (a < 0 || producer_[h] < 0 || plan_.ops[a].outputs.empty()) continue;
      PlanTensorId ha = plan_.ops[a].outputs[0];
      if (UnaryRoot(h) != ha || consumers_[ha].size() != 1) continue;
      const int64_t r = T(ha).shape.back();
      PlanTensorId y = plan_.ops[b].outputs[0];
      if (r >= T(plan_.ops[a].inputs[0]).shape.back() || r >= T(y).shape.back()) continue;
      // B's output, through shape-keeping ops, meets the base's output in an Add.
      for (int hops = 0; hops < 4 && y >= 0 && consumers_[y].size() == 1; ++hops) {
        const PlanOp& c = plan_.ops[consumers_[y][0]];
        if (c.outputs.empty() || c.outputs[0] < 0 || T(c.outputs[0]).shape != T(y).shape) break;
        PlanTensorId other = -1;
        int activations = 0;
        for (PlanTensorId in : c.inputs) {
          if (!IsActivation(in)) continue;
          ++activations;
          if (in != y) other = in;
        }
        if (c.type == "Add" && activations == 2 && other >= 0) {
          const int base = LinearOrigin(other);
          if (base >= 0 && base != a &&
              UnaryRoot(plan_.ops[base].inputs[0]) == UnaryRoot(plan_.ops[a].inputs[0])) {
            lora_b_to_a_[b] = a;
            lora_a_.insert(a);
          }
          break;
        }
        if (activations != 1) break;
        y = c.outputs[0];
      }
    }
  }

  // Column- or row-parallel, by whether the input is split.
  bool TensorLinear(int i) {
    PlanOp& op = plan_.ops[i];
    PlanTensorId a = op.inputs[0], w = op.inputs[1];
    const int ra = static_cast<int>(T(a).shape.size());
    if (lora_a_.count(i) && hidden_[a] < 0) return true;  // beside a column base: replicated
    if (lora_a_.count(i)) lora_row_a_.insert(i);          // beside a row base: row-parallel
    if (auto b = lora_b_to_a_.find(i); b != lora_b_to_a_.end() && lora_row_a_.count(b->second)) {
      return true;  // after a row-parallel A (its partial product all-reduced): replicated
    }
    if (hidden_[a] < 0) {
      PlanTensorId y = op.outputs.empty() ? -1 : op.outputs[0];
      if (y < 0) return true;
      const int64_t n = T(y).shape.back();
      MarkWeightChain(hidden_, w, WeightDim(i, n, true));
      if (op.inputs.size() > 2 && op.inputs[2] >= 0 && param_of_[op.inputs[2]] >= 0) {
        MarkWeightChain(hidden_, op.inputs[2], static_cast<int>(T(op.inputs[2]).shape.size()) - 1);
      }
      if (!Mark(hidden_, y, static_cast<int>(T(y).shape.size()) - 1, i)) return false;
      column_.push_back(i);
      return true;
    }
    if (hidden_[a] != ra - 1 || outer_[a] != 1) {
      error_ = fmt::format("{} reads its input split on dim {} of {}, not on its features",
                           OpText(i), hidden_[a], ShapeText(T(a).shape));
      return false;
    }
    MarkWeightChain(hidden_, w, WeightDim(i, T(a).shape.back(), false));
    row_.push_back(i);
    return true;
  }

  // A later pipeline stage receives the residual stream [b, s, h] already split on the
  // sequence (Megatron sends the sequence-parallel / context-parallel shard).
  void SeedPipelineRecv(std::vector<int>& marks) {
    for (const PlanOp& op : plan_.ops) {
      if (op.type != "PipelineRecv") continue;
      for (PlanTensorId y : op.outputs) {
        if (y >= 0 && !T(y).metadata && T(y).shape.size() >= 2) {
          marks[y] = static_cast<int>(T(y).shape.size()) - 2;
        }
      }
    }
  }
  Status TensorPass();
  void InsertCollectives();
  Status ContextPass();
  Status Divide();
  void ApplyInserts();
  std::vector<std::pair<PlanTensorId, int>> sp_seeds_;
};

// A pipeline stage may hold a single block (a 2-layer model over 2 stages): then the outermost
// module paths whose name ends in an index ("model.layers.1", "h.3") are the blocks.
std::vector<std::string> IndexedBlocks(const TrainingPlan& plan) {
  std::vector<std::string> chosen;
  std::set<std::string> seen;
  for (const PlanOp& op : plan.ops) {
    size_t pos = 0;
    while (!op.scope.empty()) {
      const size_t dot = op.scope.find('.', pos);
      const std::string prefix = op.scope.substr(0, dot);
      const std::string last = op.scope.substr(pos, dot == std::string::npos ? dot : dot - pos);
      if (!last.empty() && last.back() >= '0' && last.back() <= '9') {
        if (seen.insert(prefix).second) chosen.push_back(prefix);
        break;  // the outermost indexed path
      }
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
  }
  return chosen;
}

Status Rewriter::TensorPass() {
  const int t = o_.tensor_parallel;
  FindLora();
  std::vector<std::string> blocks = RepeatedBlocks(plan_);
  if (blocks.empty()) blocks = IndexedBlocks(plan_);
  if (blocks.empty()) {
    return Error{fmt::format(
        "--tp {}: the model has no repeated blocks (h.0, h.1, ... / layers.0, ...): tensor "
        "parallelism splits the attention and MLP of transformer blocks",
        t)};
  }
  const int n_ops = static_cast<int>(plan_.ops.size());
  std::vector<int> block_of(n_ops, -1);
  for (int i = 0; i < n_ops; ++i) {
    for (size_t b = 0; b < blocks.size() && block_of[i] < 0; ++b) {
      if (InScope(plan_.ops[i], blocks[b])) block_of[i] = static_cast<int>(b);
    }
  }
  // Every op inside a block that reads a weight of rank >= 2 must be a Linear.
  for (int i = 0; i < n_ops; ++i) {
    if (block_of[i] < 0) continue;
    const PlanOp& op = plan_.ops[i];
    bool only_params = true;
    for (PlanTensorId x : op.inputs) only_params = only_params && (x < 0 || derived_[x]);
    if (only_params) continue;
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      PlanTensorId x = op.inputs[k];
      if (x < 0 || param_of_[x] < 0 || T(x).shape.size() < 2) continue;
      if (IsLinear(i) && k == 1) continue;
      // A replicated tensor made from buffers at run time (rotary cos/sin from inv_freq, a
      // position table) meeting activations elementwise: Propagate judges the broadcast.
      if (IsBroadcastType(op.type)) continue;
      return Error{fmt::format(
          "--tp {}: {} in block {} reads the weight {} {} but is not a Linear (a MatMul/Gemm "
          "of an activation by a 2-D weight): tensor parallelism splits the Linears of "
          "transformer attention and MLP blocks only",
          t, OpText(i), blocks[block_of[i]], T(param_of_[x]).name, ShapeText(T(x).shape))};
    }
  }
  for (size_t b = 0; b < blocks.size(); ++b) {
    const size_t columns = column_.size(), rows = row_.size();
    const int bi = static_cast<int>(b);
    if (!Propagate(
            hidden_, 0, n_ops, [&](int i) { return block_of[i] == bi; }, Mode::kTensor)) {
      return Error{fmt::format("--tp {}: {}", t, error_)};
    }
    if (column_.size() == columns || row_.size() == rows) {
      int first = -1;
      for (int i = 0; i < n_ops && first < 0; ++i) {
        if (block_of[i] == bi && !plan_.ops[i].outputs.empty()) first = i;
      }
      return Error{fmt::format(
          "--tp {}: block {} has {} column-parallel and {} row-parallel Linears: it does not "
          "match the attention/MLP pattern (a Linear on the whole input, then one on the split "
          "result){}",
          t, blocks[b], column_.size() - columns, row_.size() - rows,
          first >= 0 ? "; its first op is " + OpText(first) : std::string())};
    }
  }
  // A split tensor must stay inside its block (the block ends each split with a row-parallel
  // Linear).
  auto escape = [&](int i, PlanTensorId x) -> Status {
    int b = block_of[producer_[x]] >= 0 ? block_of[producer_[x]] : i >= 0 ? block_of[i] : -1;
    return Error{fmt::format(
        "--tp {}: {} reads {} {}, which is split across the ranks in block {}: the split does "
        "not end in a row-parallel Linear there (the block does not match the attention/MLP "
        "pattern)",
        t, i >= 0 ? OpText(i) : std::string("the loss"), T(x).name, ShapeText(T(x).shape),
        b >= 0 ? blocks[b] : std::string("(none)"))};
  };
  for (int i = 0; i < n_ops; ++i) {
    for (PlanTensorId x : plan_.ops[i].inputs) {
      if (x < 0 || !IsActivation(x) || hidden_[x] < 0 || producer_[x] < 0) continue;
      if (block_of[producer_[x]] != block_of[i]) return escape(i, x);
    }
  }
  for (PlanTensorId x : plan_.outputs) {
    if (x >= 0 && IsActivation(x) && hidden_[x] >= 0 && producer_[x] >= 0) return escape(-1, x);
  }

  // Vocab-parallel embedding: a Gather of a 2-D parameter by a data input (token ids).
  std::set<PlanTensorId> batch(plan_.batch.begin(), plan_.batch.end());
  auto vocab_error = [&](int64_t v, const std::string& where) {
    return Error{fmt::format(
        "--tp {}: the vocabulary ({}, {}) is not divisible by {}: Megatron pads it to a multiple "
        "of {} x {} (--make-vocab-size-divisible-by 128): export the model with the padded "
        "vocabulary",
        t, v, where, t, 128, t)};
  };
  for (int i = 0; i < n_ops; ++i) {
    const PlanOp& op = plan_.ops[i];
    if (block_of[i] >= 0 || op.type != "Gather" || op.inputs.size() < 2) continue;
    PlanTensorId w = op.inputs[0], idx = op.inputs[1];
    if (w < 0 || idx < 0 || param_of_[w] < 0 || T(w).shape.size() != 2 || !batch.count(idx)) {
      continue;
    }
    if (T(w).shape[0] % t) {
      return vocab_error(T(w).shape[0], "the rows of " + T(param_of_[w]).name);
    }
    MarkWeightChain(hidden_, w, 0);
    embeddings_.push_back(i);
  }
  // The LM head: the Linear (outside the blocks) whose output, through elementwise ops of its
  // shape (bias, cast), is the logits.
  if (!plan_.outputs.empty() && plan_.outputs[0] >= 0 && plan_.loss == LossKind::kCrossEntropy) {
    PlanTensorId y = plan_.outputs[0];
    for (int hops = 0; hops < 8 && y >= 0 && producer_[y] >= 0; ++hops) {
      int p = producer_[y];
      if (block_of[p] >= 0) break;
      if (IsLinear(p)) {
        const int64_t v = T(y).shape.back();
        if (v % t) return vocab_error(v, "the last dim of the logits " + T(plan_.outputs[0]).name);
        if (!TensorLinear(p)) return Error{fmt::format("--tp {}: {}", t, error_)};
        if (!Propagate(
                hidden_, p + 1, n_ops, [&](int i) { return block_of[i] < 0; }, Mode::kTensor)) {
          return Error{fmt::format("--tp {}: {}", t, error_)};
        }
        break;
      }
      PlanTensorId next = -1;
      for (PlanTensorId x : plan_.ops[p].inputs) {
        if (IsActivation(x) && T(x).shape == T(y).shape) next = x;
      }
      y = next;
    }
  }
  return {};
}

void Rewriter::InsertCollectives() {
  const bool sp = o_.sequence_parallel;
  auto like = [&](PlanTensorId x, const std::string& name) {
    PlanTensor c = T(x);
    c.name = name;
    c.view_of = -1;
    c.role = TensorRole::kActivation;
    c.is_extra = false;
    c.metadata = false;
    c.only_if_fp32 = -1;
    c.dtype_follows = x;
    c.strides.assign(c.shape.size(), 1);
    for (size_t d = c.shape.size(); d-- > 1;) c.strides[d - 1] = c.strides[d] * c.shape[d];
    return c;
  };
  auto replace_after = [&](int from, PlanTensorId old, PlanTensorId now) {
    for (size_t i = from; i < plan_.ops.size(); ++i) {
      for (PlanTensorId& x : plan_.ops[i].inputs) {
        if (x == old) x = now;
      }
      for (PlanTensorId& x : plan_.ops[i].saved) {
        if (x == old) x = now;
      }
    }
    for (PlanTensorId& x : plan_.outputs) {
      if (x == old) x = now;
    }
  };
  // f: before the column-parallel Linears, one per input they share.
  std::map<PlanTensorId, std::vector<int>> by_input;
  for (int c : column_) by_input[plan_.ops[c].inputs[0]].push_back(c);
  for (auto& [x, users] : by_input) {
    std::sort(users.begin(), users.end());
    const PlanOp& first = plan_.ops[users.front()];
    const bool grad = T(x).requires_grad;
    PlanOp f;
    f.scope = first.scope;
    f.inputs = {x};
    f.needs_backward = grad;
    if (grad) f.grad_inputs = {0};
    if (!sp) {
      PlanTensor v = like(x, T(x).name + " (tp f)");
      v.view_of = x;
      v.strides = T(x).strides;
      v.dtype_follows = -1;
      PlanTensorId xv = AddTensor(v);
      f.name = "tp f (identity; the input gradient all-reduced) before " + first.name;
      f.type = "TensorParallelCopy";
      f.outputs = {xv};
      f.is_view = true;
      f.grad_passthrough = {0};
      if (grad) {
        f.backward_workspace = {
            AddTensor(like(x, "all-reduce of the input gradient of " + first.name))};
      }
      for (int c : users) {
        for (PlanTensorId& y : plan_.ops[c].inputs) {
          if (y == x) y = xv;
        }
        for (PlanTensorId& y : plan_.ops[c].saved) {
          if (y == x) y = xv;
        }
      }
    } else {
      PlanTensorId xf = AddTensor(like(x, T(x).name + " all-gathered (sequence parallel)"));
      f.name = "sp all-gather before " + first.name;
      f.type = "AllGather";
      f.outputs = {xf};
      for (int c : users) {
        for (PlanTensorId& y : plan_.ops[c].inputs) {
          if (y == x) y = xf;
        }
        // The Linear keeps the sequence-split input and gathers it again in its backward.
        plan_.ops[c].backward_workspace.push_back(AddTensor(
            like(x, T(x).name + " all-gathered again for the backward of " + plan_.ops[c].name)));
      }
    }
    inserts_.push_back({users.front(), false, std::move(f)});
  }
  // g: after the row-parallel Linears and the vocab-parallel embeddings.
  std::vector<int> reduced = row_;
  reduced.insert(reduced.end(), embeddings_.begin(), embeddings_.end());
  for (int r : reduced) {
    PlanOp& op = plan_.ops[r];
    if (op.outputs.empty() || op.outputs[0] < 0) continue;
    PlanTensorId y = op.outputs[0];
    PlanTensorId y2 = AddTensor(like(
        y, T(y).name + (sp ? " reduce-scattered (sequence parallel)" : " all-reduced (tp g)")));
    plan_.tensors[y2].requires_grad = T(y).requires_grad;
    PlanOp g;
    g.name = (sp ? "sp reduce-scatter after " : "tp all-reduce after ") + op.name;
    g.type = sp ? "ReduceScatter" : "AllReduce";
    g.scope = op.scope;
    g.inputs = {y};
    g.outputs = {y2};
    g.needs_backward = T(y).requires_grad;
    if (g.needs_backward) {
      g.grad_inputs = {0};
      g.grad_passthrough = {0};  // all-reduce: the gradient passes through as it is
    }
    replace_after(r + 1, y, y2);
    if (sp) sp_seeds_.push_back({y2, static_cast<int>(T(y2).shape.size()) - 2});
    inserts_.push_back({r, true, std::move(g)});
  }
}

void Rewriter::ApplyInserts() {
  if (inserts_.empty()) return;
  std::vector<std::vector<PlanOp>> before(plan_.ops.size()), after(plan_.ops.size());
  for (Insert& in : inserts_) (in.after ? after : before)[in.at].push_back(std::move(in.op));
  inserts_.clear();
  std::vector<PlanOp> ops;
  std::vector<int> moved(plan_.ops.size(), -1);
  for (size_t i = 0; i < plan_.ops.size(); ++i) {
    for (PlanOp& op : before[i]) ops.push_back(std::move(op));
    moved[i] = static_cast<int>(ops.size());
    ops.push_back(std::move(plan_.ops[i]));
    for (PlanOp& op : after[i]) ops.push_back(std::move(op));
  }
  plan_.ops = std::move(ops);
  for (CheckpointRegion& r : plan_.regions) {
    for (int& i : r.ops) i = moved[i];
  }
  for (int& i : column_) i = moved[i];
  for (int& i : row_) i = moved[i];
  for (int& i : embeddings_) i = moved[i];
}

Status Rewriter::ContextPass() {
  const int c = o_.context_parallel;
  for (PlanTensorId x : plan_.batch) {
    if (x >= 0 && !T(x).metadata && T(x).shape.size() >= 2) seq_cp_[x] = 1;
  }
  SeedPipelineRecv(seq_cp_);
  gather_kv_ = true;
  const int n_ops = static_cast<int>(plan_.ops.size());
  if (!Propagate(
          seq_cp_, 0, n_ops, [](int) { return true; }, Mode::kSequence)) {
    return Error{fmt::format("--cp {}: {}", c, error_)};
  }
  gather_kv_ = false;
  // Ring attention: K and V chunks in flight (the one in use and the one arriving).
  auto buffer = [&](PlanTensorId x, const std::string& what) {
    PlanTensor b = T(x);
    b.name = fmt::format("context parallel: {} chunks in flight (in use + arriving)", what);
    b.shape.insert(b.shape.begin(), 2);
    b.view_of = -1;
    b.role = TensorRole::kActivation;
    b.is_extra = false;
    b.only_if_fp32 = -1;
    b.dtype_follows = x;
    b.strides.assign(b.shape.size(), 1);
    for (size_t d = b.shape.size(); d-- > 1;) b.strides[d - 1] = b.strides[d] * b.shape[d];
    PlanTensorId id = AddTensor(b);
    if (seq_cp_[x] >= 0) seq_cp_[id] = seq_cp_[x] + 1;
    return id;
  };
  int scores = -1;
  for (int i = 0; i < n_ops; ++i) {
    const PlanOp& op = plan_.ops[i];
    if (!IsLinearType(op.type) || op.inputs.size() < 2 || IsLinear(i)) continue;
    PlanTensorId b = op.inputs[1];
    if (b < 0 || seq_cp_[b] < 0) continue;
    const int rb = static_cast<int>(T(b).shape.size());
    if (seq_cp_[b] == rb - 1) {
      scores = i;  // q @ k^T: the keys' sequence is the last dim
    } else if (seq_cp_[b] == rb - 2 && scores >= 0) {
      PlanTensorId k = buffer(plan_.ops[scores].inputs[1], "K");
      PlanTensorId v = buffer(b, "V");
      PlanOp ex;
      ex.name = "cp ring exchange of K and V for " + op.name;
      ex.type = "RingExchange";
      ex.scope = op.scope;
      ex.outputs = {k, v};
      inserts_.push_back({scores, false, std::move(ex)});
      // Held until the context matmul ends; again while the attention's backward runs.
      for (int j : {scores, i}) {
        plan_.ops[j].backward_workspace.push_back(k);
        plan_.ops[j].backward_workspace.push_back(v);
      }
      plan_.ops[i].frame_releases.push_back(k);
      plan_.ops[i].frame_releases.push_back(v);
      scores = -1;
    }
  }
  return {};
}

Status Rewriter::Divide() {
  const int t = o_.tensor_parallel, c = o_.context_parallel;
  // Grouped-query attention repeats each key/value head (an Expand of the split heads dim):
  // the split must divide the key/value heads too.
  std::set<int64_t> kv_heads;
  for (const PlanOp& op : plan_.ops) {
    if (op.type != "Expand" || op.inputs.empty() || op.inputs[0] < 0) continue;
    PlanTensorId x = op.inputs[0];
    if (hidden_[x] >= 0 && !T(x).metadata) kv_heads.insert(T(x).shape[hidden_[x]]);
  }
  for (size_t id = 0; id < plan_.tensors.size(); ++id) {
    PlanTensor& x = plan_.tensors[id];
    if (x.metadata) continue;
    std::vector<int64_t> factor(x.shape.size(), 1);
    if (hidden_[id] >= 0) factor[hidden_[id]] *= t;
    if (seq_sp_[id] >= 0) factor[seq_sp_[id]] *= t;
    if (seq_cp_[id] >= 0) factor[seq_cp_[id]] *= c;
    bool any = false;
    for (size_t d = 0; d < x.shape.size(); ++d) {
      if (factor[d] == 1) continue;
      any = true;
      // Heads inside a merged batch*heads dim: the heads (not the product) must divide.
      const int64_t outer = static_cast<int>(d) == hidden_[id] ? outer_[id] : 1;
      const bool inner = outer > 1 && (x.shape[d] % outer || (x.shape[d] / outer) % t);
      if (x.shape[d] % factor[d] || inner) {
        const int p = producer_.size() > id ? producer_[id] : -1;
        const bool seq = static_cast<int>(d) == seq_cp_[id] || static_cast<int>(d) == seq_sp_[id];
        std::string flag =
            seq_cp_[id] == static_cast<int>(d) && c > 1
                ? fmt::format("--cp {}", c)
                : fmt::format("--tp {}{}", t,
                              o_.sequence_parallel && seq ? " --sequence-parallel" : "");
        return Error{fmt::format(
            "{}: {} {}{} splits dim {} ({}) {} ways, {} ({})", flag, x.name, ShapeText(x.shape),
            p >= 0 ? " made by " + OpText(p) : std::string(), d, x.shape[d], factor[d],
            inner ? fmt::format("which does not divide its {} heads (batch and heads merged "
                                "into one dim: {} x {})",
                                x.shape[d] / outer, outer, x.shape[d] / outer)
                  : "which does not divide it",
            inner ? "the heads must be a multiple of the tensor-parallel size"
            : seq ? "the sequence length must be a multiple of the ranks"
            : static_cast<int>(d) == hidden_[id] && kv_heads.count(x.shape[d])
                ? fmt::format("the {} key/value heads of grouped-query attention must be a "
                              "multiple of the tensor-parallel size; Megatron replicates them "
                              "when it exceeds them, which is not modelled",
                              x.shape[d])
                : "the attention heads, hidden size and MLP width must be multiples of the "
                  "tensor-parallel size")};
      }
      // Strides of dims laid out outside the split one shrink with it.
      if (x.strides.size() == x.shape.size()) {
        const int64_t span = x.strides[d] * x.shape[d];
        for (size_t k = 0; k < x.strides.size(); ++k) {
          if (k != d && x.strides[k] >= span && span > 0) x.strides[k] /= factor[d];
        }
      }
      x.shape[d] /= factor[d];
    }
    if (any) x.bytes = StorageBytes(x);
  }
  return {};
}

}  // namespace

Status ValidateTensorParallel(const TensorParallelOptions& o) {
  if (o.tensor_parallel < 1 || o.tensor_parallel > kMaxModelParallel) {
    return Error{
        fmt::format("--tp must be between 1 and {}, got {}", kMaxModelParallel, o.tensor_parallel)};
  }
  if (o.context_parallel < 1 || o.context_parallel > kMaxModelParallel) {
    return Error{fmt::format("--cp must be between 1 and {}, got {}", kMaxModelParallel,
                             o.context_parallel)};
  }
  if (o.sequence_parallel && o.tensor_parallel < 2) {
    return Error{
        "--sequence-parallel splits the sequence over the tensor-parallel ranks: give --tp N "
        "(N >= 2)"};
  }
  return {};
}

Status TensorParallelPolicy::Apply(TrainingPlan& plan) const {
  if (auto s = ValidateTensorParallel(options_); !s) return s;
  if (options_.tensor_parallel == 1 && options_.context_parallel == 1) return {};
  Rewriter r(plan, options_);
  return r.Run();
}

Status Rewriter::Run() {
  Index();
  if (o_.tensor_parallel > 1) {
    if (auto s = TensorPass(); !s) return s;
    InsertCollectives();
    ApplyInserts();
    Index();
    if (o_.sequence_parallel) {
      for (auto [x, d] : sp_seeds_) seq_sp_[x] = d;
      SeedPipelineRecv(seq_sp_);
      if (!Propagate(
              seq_sp_, 0, static_cast<int>(plan_.ops.size()), [](int) { return true; },
              Mode::kSequence)) {
        return Error{fmt::format("--tp {} --sequence-parallel: {}", o_.tensor_parallel, error_)};
      }
    }
  }
  if (o_.context_parallel > 1) {
    if (auto s = ContextPass(); !s) return s;
    ApplyInserts();
    Index();
  }
  return Divide();
}

}  // namespace vramsim

#include "simulator/gradient_rules.h"

#include <algorithm>
#include <map>

namespace vramsim {

std::optional<double> RuleContext::scalar(size_t i) const {
  const Tensor* t = in(i);
  if (!t || !t->value || t->value->size() != 1) return std::nullopt;
  return t->value->at(0);
}

namespace {

using From = SavedSpec::From;
using Fwd = OpRule::Forward;

// Role helpers, so each rule reads like its derivatives.yaml entry.
SavedSpec In(int i, std::vector<int> for_grads = {}) {
  return {From::kInput, i, std::move(for_grads)};
}
SavedSpec Out(int i, std::vector<int> for_grads = {}) {
  return {From::kOutput, i, std::move(for_grads)};
}
SavedSpec Extra(int i, std::vector<int> for_grads = {}) {
  return {From::kExtra, i, std::move(for_grads)};
}

OpRule Compute(std::vector<SavedSpec> saved, std::vector<int> differentiable) {
  OpRule r;
  r.saved = std::move(saved);
  r.differentiable = std::move(differentiable);
  return r;
}

OpRule Unary(std::vector<SavedSpec> saved) { return Compute(std::move(saved), {0}); }

OpRule View() {
  OpRule r;
  r.forward = Fwd::kView;
  r.differentiable = {0};
  r.grad_passthrough = {0};
  return r;
}

OpRule Metadata() {
  OpRule r;
  r.forward = Fwd::kMetadata;
  return r;
}

OpRule NonDifferentiable() { return OpRule{}; }

std::vector<int64_t> ShapeOf(const Tensor* t) { return t ? t->shape : std::vector<int64_t>{}; }

std::map<std::string, GradRuleFn>& Registry() {
  static std::map<std::string, GradRuleFn> rules;
  return rules;
}

struct Register {
  Register(std::initializer_list<const char*> types, GradRuleFn fn) {
    for (const char* t : types) Registry()[t] = fn;
  }
};

#define VRAMSIM_CONCAT_(a, b) a##b
#define VRAMSIM_CONCAT(a, b) VRAMSIM_CONCAT_(a, b)
#define GRAD_RULE(...) static Register VRAMSIM_CONCAT(rule_, __LINE__)(__VA_ARGS__)

// ---- convolution, linear algebra -------------------------------------------------------
// oneDNN's jit convolutions take kernels up to 14 wide; a wider 2-D convolution (ViT's 16x16
// and 32x32 patch embeddings) falls back to the gemm-based one, whose weight-gradient pass
// keeps, per thread, four fp32 weight-sized buffers and the im2col of one image, plus 256
// bytes (measured on torch 1.13 CPU: widths 12 and 14 keep the jit kernel, 15, 16 and 32 fall
// back; vit_b_32 at 2 threads holds 76,701,952 B, at 1 thread 38,351,104 B, at every batch).
// Measured for fp32 only: under bf16 the kernel differs, and nothing is assumed.
std::optional<ExtraSpec> GemmConvWeightScratch(const RuleContext& c) {
  const Tensor* x = c.in(0);
  const Tensor* w = c.in(1);
  const Tensor* y = c.out(0);
  if (!x || !w || !y || c.op.type != "Conv" || w->shape.size() != 4 || y->shape.size() != 4 ||
      w->shape[3] < 15) {
    return std::nullopt;
  }
  int64_t group = 1;
  if (const Attribute* g = c.op.attr("group"); g && g->kind == Attribute::Kind::kInt) group = g->i;
  if (group != 1) return std::nullopt;
  // fp32 elements: 4 x weight + im2col (C_in x kh x kw rows, out_h x out_w columns), per thread.
  // Checked: hostile shapes must not wrap (the importer bounds each tensor, not products).
  int64_t weight = 0, rows = 0, im2col = 0, per_thread = 0;
  if (__builtin_mul_overflow(w->shape[1] * w->shape[2], w->shape[3], &rows) ||
      __builtin_mul_overflow(rows, w->shape[0], &weight) ||
      __builtin_mul_overflow(rows, y->shape[2] * y->shape[3], &im2col) ||
      __builtin_mul_overflow(weight, int64_t{4}, &per_thread) ||
      __builtin_add_overflow(per_thread, im2col, &per_thread)) {
    return std::nullopt;
  }
  const int64_t threads = std::max(c.cpu_threads, 1);
  if (per_thread <= 0 || per_thread > (int64_t{1} << 40) / threads) return std::nullopt;
  return ExtraSpec{"gemm convolution scratch", DType::kFloat32, {threads * per_thread + 64}, true};
}

// convolution: input needs weight, weight needs input.
GRAD_RULE({"Conv", "ConvTranspose"}, [](const RuleContext& c) -> Result<OpRule> {
  OpRule r = Compute({In(0, {1}), In(1, {0})}, {0, 1, 2});
  // On CPU (torch 1.13, oneDNN; measured, validation/README.md) both reorder operands into
  // blocked layouts: the forward holds max(input + weight, output) beside its output; the
  // backward holds copies of the output gradient and of the input, and computes the weight
  // gradient in an fp32 blocked buffer (fp32 even for bf16 weights) before reordering it.
  if (c.device == Device::kCpu) {
    r.forward_workspace = {{IoRef{false, 0, false}, IoRef{false, 1, false}},
                           {IoRef{true, 0, false}}};
    r.backward_copies = {IoRef{true, 0, false}, IoRef{false, 0, false}, IoRef{false, 1, true}};
    if (auto w = GemmConvWeightScratch(c)) r.backward_workspace.push_back(*w);
  }
  return r;
});
// addmm / mm: mat1 needs mat2, mat2 needs mat1; bias gets a reduced gradient.
GRAD_RULE({"Gemm"}, [](const RuleContext&) -> Result<OpRule> {
  return Compute({In(0, {1}), In(1, {0})}, {0, 1, 2});
});
GRAD_RULE({"MatMul"}, [](const RuleContext&) -> Result<OpRule> {
  return Compute({In(0, {1}), In(1, {0})}, {0, 1});
});
// torch.einsum lowers to permute + reshape + bmm (sumproduct_pair): with two operands each is
// saved for the other's gradient, as the bmm operand it became (a copy where the reshape could
// not be a view: plan_builder.cc, EinsumCopies). One operand (a permute and/or sum) saves
// nothing; more are contracted pairwise, and each is read by some product's backward.
GRAD_RULE({"Einsum"}, [](const RuleContext& c) -> Result<OpRule> {
  if (c.op.inputs.size() == 2) return Compute({In(0, {1}), In(1, {0})}, {0, 1});
  OpRule r = Compute({}, {});
  for (size_t i = 0; i < c.op.inputs.size(); ++i) {
    if (c.op.inputs.size() > 1) r.saved.push_back(In(static_cast<int>(i)));
    r.differentiable.push_back(static_cast<int>(i));
  }
  return r;
});

// ---- elementwise arithmetic -------------------------------------------------------------
GRAD_RULE({"Add", "Sum"}, [](const RuleContext& c) -> Result<OpRule> {
  OpRule r = Compute({}, {0, 1});
  if (c.op.type == "Sum") {
    r.differentiable.clear();
    for (size_t i = 0; i < c.op.inputs.size(); ++i) r.differentiable.push_back(static_cast<int>(i));
  }
  r.grad_passthrough = r.differentiable;  // the same grad tensor, unless broadcast (then summed)
  return r;
});
GRAD_RULE({"Sub"}, [](const RuleContext&) -> Result<OpRule> {
  OpRule r = Compute({}, {0, 1});
  r.grad_passthrough = {0};
  return r;
});
// mul: self needs other, other needs self.
GRAD_RULE({"Mul"}, [](const RuleContext&) -> Result<OpRule> {
  return Compute({In(1, {0}), In(0, {1})}, {0, 1});
});
// prelu (_prelu_kernel): self needs self and weight; weight needs self.
GRAD_RULE({"PRelu"}, [](const RuleContext&) -> Result<OpRule> {
  return Compute({In(0, {0, 1}), In(1, {0})}, {0, 1});
});
// div: self needs other; other needs self and other.
GRAD_RULE({"Div"}, [](const RuleContext&) -> Result<OpRule> {
  return Compute({In(1, {0, 1}), In(0, {1})}, {0, 1});
});
GRAD_RULE({"Pow"}, [](const RuleContext&) -> Result<OpRule> {
  return Compute({In(0), In(1), Out(0, {1})}, {0, 1});
});
GRAD_RULE({"Neg"}, [](const RuleContext&) -> Result<OpRule> { return Unary({}); });
GRAD_RULE({"Abs", "Log", "Erf", "Sin", "Cos", "Softplus", "Softsign", "LeakyRelu", "Elu", "Selu",
           "Celu", "HardSigmoid", "HardSwish", "Mish", "Gelu", "Atan", "Asin", "Acos", "Silu"},
          [](const RuleContext&) -> Result<OpRule> { return Unary({In(0)}); });
// Ops whose backward reads their result.
GRAD_RULE({"Exp", "Sqrt", "Tanh", "Sigmoid", "Reciprocal"},
          [](const RuleContext&) -> Result<OpRule> { return Unary({Out(0)}); });
GRAD_RULE({"Relu"}, [](const RuleContext&) -> Result<OpRule> {
  OpRule r = Unary({Out(0)});
  r.forward = Fwd::kInPlace;  // torchvision's ReLU(inplace=True)
  return r;
});
// hardtanh / clamp (ReLU6): backward reads self.
GRAD_RULE({"Clip"}, [](const RuleContext&) -> Result<OpRule> {
  OpRule r = Unary({In(0)});
  r.forward = Fwd::kInPlace;  // ReLU6(inplace=True)
  return r;
});
GRAD_RULE({"Softmax", "LogSoftmax"},
          [](const RuleContext&) -> Result<OpRule> { return Unary({Out(0)}); });
GRAD_RULE({"Where"}, [](const RuleContext&) -> Result<OpRule> {
  // masked_fill / where: backward reads the condition only.
  return Compute({In(0)}, {1, 2});
});
GRAD_RULE({"Max", "Min"}, [](const RuleContext& c) -> Result<OpRule> {
  OpRule r = Compute({}, {});
  for (size_t i = 0; i < c.op.inputs.size(); ++i) {
    r.saved.push_back(In(static_cast<int>(i)));
    r.differentiable.push_back(static_cast<int>(i));
  }
  return r;
});

// ---- normalization -----------------------------------------------------------------------
// torch 1.13's CPU batch_norm backward holds 2.000 x the input's bytes beside what was alive
// before it: its input gradient and a second buffer of the same size (measured for fp32 and
// bf16, 1-D and 2-D, 1 and 2 threads; instance_norm, which runs batch_norm on the reshaped
// input, the same; group_norm and layer_norm not; validation/README.md). Not assumed for 2.x or
// CUDA.
void SecondInputBufferOnCpu113(const RuleContext& c, OpRule* r) {
  if (c.device != Device::kCpu || c.torch_version != TorchVersion::k1_13) return;
  const Tensor* x = c.in(0);
  if (!x || x->shape.empty()) return;
  ExtraSpec twice{"second input-sized buffer", x->dtype, x->shape};
  twice.like_input = true;
  r->backward_workspace.push_back(twice);
}

// native_batch_norm (training): saves input, weight, save_mean, save_invstd (fp32 [C]);
// running stats are updated in place.
GRAD_RULE({"BatchNormalization"}, [](const RuleContext& c) -> Result<OpRule> {
  OpRule r = Compute({In(0), In(1), Extra(0), Extra(1)}, {0, 1, 2});
  std::vector<int64_t> s = ShapeOf(c.in(0));
  int64_t channels = s.size() > 1 ? s[1] : 1;
  r.extras = {{"save_mean", DType::kFloat32, {channels}},
              {"save_invstd", DType::kFloat32, {channels}}};
  r.outputs_not_allocated = {1, 2};
  SecondInputBufferOnCpu113(c, &r);
  return r;
});
// native_layer_norm: saves input, weight, bias, mean and rstd (fp32, one per normalized row).
GRAD_RULE({"LayerNormalization"}, [](const RuleContext& c) -> Result<OpRule> {
  OpRule r = Compute({In(0), In(1), In(2), Extra(0), Extra(1)}, {0, 1, 2});
  std::vector<int64_t> s = ShapeOf(c.in(0));
  int64_t axis = c.op.attr_int("axis", -1);
  if (axis < 0) axis += static_cast<int64_t>(s.size());
  std::vector<int64_t> stat(s.begin(),
                            s.begin() + std::min<size_t>(static_cast<size_t>(axis), s.size()));
  stat.resize(s.size(), 1);
  r.extras = {{"mean", DType::kFloat32, stat}, {"rstd", DType::kFloat32, stat}};
  r.outputs_not_allocated = {1, 2};
  return r;
});
GRAD_RULE({"InstanceNormalization", "GroupNormalization"},
          [](const RuleContext& c) -> Result<OpRule> {
            OpRule r = Compute({In(0), In(1), Extra(0), Extra(1)}, {0, 1, 2});
            std::vector<int64_t> s = ShapeOf(c.in(0));
            int64_t groups = c.op.type == "GroupNormalization" ? c.op.attr_int("num_groups", 1)
                                                               : (s.size() > 1 ? s[1] : 1);
            std::vector<int64_t> stat = {s.empty() ? 1 : s[0], groups};
            r.extras = {{"mean", DType::kFloat32, stat}, {"rstd", DType::kFloat32, stat}};
            if (c.op.type == "InstanceNormalization") SecondInputBufferOnCpu113(c, &r);
            return r;
          });

// ---- pooling -----------------------------------------------------------------------------
// max_pool2d_with_indices: saves input and the int64 indices.
GRAD_RULE({"MaxPool"}, [](const RuleContext& c) -> Result<OpRule> {
  OpRule r = Compute({In(0), Extra(0)}, {0});
  r.extras = {{"indices", DType::kInt64, ShapeOf(c.out(0))}};
  r.outputs_not_allocated = {1};
  return r;
});
// avg_pool2d saves self.
GRAD_RULE({"AveragePool"}, [](const RuleContext&) -> Result<OpRule> { return Unary({In(0)}); });
// adaptive_avg_pool2d to 1x1 runs as mean(-1,-2): backward needs only the shape.
GRAD_RULE({"GlobalAveragePool", "ReduceMean", "ReduceSum"},
          [](const RuleContext&) -> Result<OpRule> { return Unary({}); });
GRAD_RULE({"GlobalMaxPool", "ReduceMax", "ReduceMin"}, [](const RuleContext&) -> Result<OpRule> {
  return Unary({In(0), Out(0)});
});
GRAD_RULE({"ReduceProd"}, [](const RuleContext&) -> Result<OpRule> {
  return Unary({In(0), Out(0)});
});
GRAD_RULE({"ReduceL2"}, [](const RuleContext&) -> Result<OpRule> {
  return Unary({In(0), Out(0)});
});

// ---- dropout -----------------------------------------------------------------------------
// Training-mode dropout. p == 0 returns the input itself. On CUDA native_dropout saves a
// bool mask; on CPU (PyTorch 1.13/2.x) the mask is a float "noise" tensor of the input's
// dtype, and the output is input * noise.
GRAD_RULE({"Dropout"}, [](const RuleContext& c) -> Result<OpRule> {
  std::optional<double> ratio = c.scalar(1);
  if (!ratio) {
    if (const Attribute* a = c.op.attr("ratio")) ratio = a->f;  // opset < 12
  }
  std::optional<double> training = c.scalar(2);
  bool train = training ? *training != 0 : c.op.inputs.size() <= 2;
  if (!ratio) ratio = 0.5;
  if (*ratio == 0.0 || !train) {
    OpRule r = View();
    r.outputs_not_allocated = {1};
    return r;
  }
  OpRule r = Compute({Extra(0)}, {0});
  DType mask =
      c.device == Device::kCuda ? DType::kBool : (c.in(0) ? c.in(0)->dtype : DType::kFloat32);
  r.extras = {{"mask", mask, ShapeOf(c.in(0))}};
  r.outputs_not_allocated = {1};
  return r;
});

// ---- views and data movement -------------------------------------------------------------
GRAD_RULE({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Expand",
           "Slice"},
          [](const RuleContext&) -> Result<OpRule> { return View(); });
GRAD_RULE({"Split"}, [](const RuleContext&) -> Result<OpRule> {
  OpRule r = View();
  r.grad_passthrough.clear();  // backward concatenates the pieces' gradients
  return r;
});
// Concat's backward hands each input a narrow() view of the output gradient.
GRAD_RULE({"Concat"}, [](const RuleContext& c) -> Result<OpRule> {
  OpRule r = Compute({}, {});
  for (size_t i = 0; i < c.op.inputs.size(); ++i) r.differentiable.push_back(static_cast<int>(i));
  r.grads_are_views = true;
  return r;
});
// Gather: a scalar index on a tensor is select() (a view); a table lookup by an integer
// tensor is embedding (saves the indices).
GRAD_RULE({"Gather"}, [](const RuleContext& c) -> Result<OpRule> {
  const Tensor* idx = c.in(1);
  if (idx && idx->shape.empty()) return View();
  return Compute({In(1)}, {0});
});
GRAD_RULE({"GatherElements", "GatherND"},
          [](const RuleContext&) -> Result<OpRule> { return Compute({In(1)}, {0}); });
// torch.onnx writes index_put_ and slice assignment (`x[a:b] = v`, `x[idx] = v`, swin_v2's
// `qkv_bias[n:2n].zero_()` on a clone) as ScatterND(data, indices, updates) into a new tensor:
// eager PyTorch clones `data` and writes in place. derivatives.yaml, index_put: the gradient of
// `data` is the output gradient with the written positions zeroed (index_put of zeros), that of
// `updates` is the output gradient gathered at `indices`: only the indices are saved.
GRAD_RULE({"ScatterND"}, [](const RuleContext&) -> Result<OpRule> {
  return Compute({In(1, {0, 2})}, {0, 2});
});
GRAD_RULE({"Tile", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth"},
          [](const RuleContext&) -> Result<OpRule> { return Unary({}); });
// torch.onnx writes avg_pool2d(x, padding=p) with count_include_pad=True (the default: inception's
// branch_pool, maxvit's AvgPool2d(3, 2, 1)) as Pad(x, zeros) followed by AveragePool without
// pads. Eager PyTorch makes no padded tensor: avg_pool2d reads x, saves x, and its backward
// makes x's gradient. So a zero Pad of the spatial dims read only by AveragePool stands for x
// itself (a view: plan_builder.cc gives it x's strides, and its gradient is the pool's). Any
// other Pad (F.pad) allocates its result and saves nothing.
GRAD_RULE({"Pad"}, [](const RuleContext& c) -> Result<OpRule> {
  auto avg_pool_padding = [&]() {
    const Tensor* x = c.in(0);
    const Tensor* y = c.out(0);
    if (!x || !y || x->shape.size() < 3 || y->consumers.empty()) return false;
    const Attribute* mode = c.op.attr("mode");
    if (mode && mode->s != "constant") return false;
    if (c.in(3)) return false;  // axes (opset 18)
    if (std::optional<double> v = c.scalar(2); c.in(2) && (!v || *v != 0.0)) return false;
    std::vector<double> pads;
    if (const Tensor* p = c.in(1)) {
      if (!p->value) return false;
      for (size_t i = 0; i < p->value->size(); ++i) pads.push_back(p->value->at(i));
    } else if (const Attribute* a = c.op.attr("pads")) {  // opset < 11
      for (int64_t v : a->ints) pads.push_back(static_cast<double>(v));
      if (const Attribute* v = c.op.attr("value"); v && v->f != 0.0) return false;
    }
    size_t rank = x->shape.size();
    if (pads.size() != 2 * rank) return false;
    for (size_t d = 0; d < rank; ++d) {
      if (pads[d] < 0 || pads[rank + d] < 0) return false;
      if (d < 2 && (pads[d] != 0 || pads[rank + d] != 0)) return false;  // batch, channels
    }
    for (OpId o : y->consumers) {
      if (c.graph.ops[o].type != "AveragePool" || c.graph.ops[o].inputs.at(0) != c.op.outputs[0]) {
        return false;
      }
    }
    return true;
  };
  if (avg_pool_padding()) return View();
  return Unary({});
});
GRAD_RULE({"Cast", "CastLike"}, [](const RuleContext& c) -> Result<OpRule> {
  const Tensor* x = c.in(0);
  const Tensor* y = c.out(0);
  if (x && y && x->dtype == y->dtype) return View();  // .to(same dtype) is a no-op
  return Unary({});
});

// ---- no gradient ---------------------------------------------------------------------------
GRAD_RULE({"Shape", "Size", "Constant", "ConstantOfShape", "Range"},
          [](const RuleContext&) -> Result<OpRule> { return Metadata(); });
GRAD_RULE({"Equal", "Less",  "Greater", "LessOrEqual", "GreaterOrEqual", "Not",     "And",   "Or",
           "Xor",   "IsNaN", "IsInf",   "ArgMax",      "ArgMin",         "NonZero", "Floor", "Ceil",
           "Round", "Sign",  "Mod",     "OneHot"},
          [](const RuleContext&) -> Result<OpRule> { return NonDifferentiable(); });

}  // namespace

void RegisterGradRule(std::initializer_list<const char*> op_types, GradRuleFn fn) {
  for (const char* t : op_types) Registry()[t] = fn;
}

namespace {
// Rules kept in other files register on first use (a static initializer there could be
// dropped by the linker from the static library).
std::map<std::string, GradRuleFn>& AllRules() {
  static const bool registered = (RegisterRecurrentRules(), true);
  (void)registered;
  return Registry();
}
}  // namespace

const GradRuleFn* FindGradRule(const std::string& op_type) {
  auto it = AllRules().find(op_type);
  return it == AllRules().end() ? nullptr : &it->second;
}

std::vector<std::string> RegisteredOps() {
  std::vector<std::string> out;
  for (const auto& [k, v] : AllRules()) out.push_back(k);
  return out;
}

}  // namespace vramsim

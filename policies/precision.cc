#include "policies/precision.h"

#include <map>
#include <set>

#include "simulator/plan_builder.h"

namespace vramsim {

Result<Precision> ParsePrecision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  if (name == "fp16") return Precision::kFp16;
  if (name == "amp-bf16") return Precision::kAmpBf16;
  if (name == "amp-fp16") return Precision::kAmpFp16;
  return Error{"unknown --precision '" + name + "' (fp32, bf16, fp16, amp-bf16, amp-fp16)"};
}

std::string_view PrecisionName(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
    case Precision::kAmpBf16:
      return "amp-bf16";
    case Precision::kAmpFp16:
      return "amp-fp16";
  }
  return "fp32";
}

// aten/src/ATen/autocast_mode.cpp: the lower_precision_fp and fp32 policies, mapped to the
// ONNX ops exporters write for those aten ops.
bool AutocastLowPrecision(const std::string& t, Device device) {
  static const std::set<std::string> both = {"Conv", "ConvTranspose", "Gemm", "MatMul", "PRelu"};
  if (both.count(t)) return true;
  return device == Device::kCuda && t == "Einsum";
}

bool AutocastFp32(const std::string& t, Device device) {
  static const std::set<std::string> cuda = {"Softmax",
                                             "LogSoftmax",
                                             "LayerNormalization",
                                             "GroupNormalization",
                                             "Exp",
                                             "Log",
                                             "Pow",
                                             "Reciprocal",
                                             "ReduceSum",
                                             "ReduceProd",
                                             "ReduceLogSumExp",
                                             "ReduceL1",
                                             "ReduceL2",
                                             "Softplus",
                                             "CumSum",
                                             "Acos",
                                             "Asin",
                                             "Cosh",
                                             "Sinh",
                                             "Tan"};
  static const std::set<std::string> cpu = {"ReduceProd"};
  return device == Device::kCuda ? cuda.count(t) > 0 : cpu.count(t) > 0;
}

namespace {

bool IsNorm(const std::string& t) {
  return t == "BatchNormalization" || t == "LayerNormalization" || t == "GroupNormalization" ||
         t == "InstanceNormalization";
}

int Width(DType d) {
  return d == DType::kFloat64 ? 3 : d == DType::kFloat32 ? 2 : IsFloating(d) ? 1 : 0;
}

void Refresh(TrainingPlan& plan) {
  // Views and followers take their base's type; then every storage is re-sized.
  for (PlanTensor& t : plan.tensors) {
    if (t.dtype_follows >= 0) t.dtype = plan.tensors[t.dtype_follows].dtype;
  }
  for (PlanTensor& t : plan.tensors) {
    if (t.view_of >= 0) t.dtype = plan.tensors[t.view_of].dtype;
    if (!t.metadata && t.view_of < 0) t.bytes = StorageBytes(t);
  }
}

}  // namespace

Status PrecisionPolicy::Apply(TrainingPlan& plan) const {
  switch (options_.precision) {
    case Precision::kFp32:
      return {};
    case Precision::kBf16:
      return ApplyPure(plan, DType::kBFloat16);
    case Precision::kFp16:
      return ApplyPure(plan, DType::kFloat16);
    case Precision::kAmpBf16:
      return ApplyAutocast(plan, DType::kBFloat16);
    case Precision::kAmpFp16: {
      // GradScaler: the scale (fp32) and growth tracker (int32), and found_inf (fp32) for the
      // unscale before the step; the scaled loss is one more scalar.
      plan.extra_buffers.push_back({"GradScaler scale", 4});
      plan.extra_buffers.push_back({"GradScaler growth_tracker", 4});
      plan.extra_buffers.push_back({"GradScaler found_inf", 4});
      return ApplyAutocast(plan, DType::kFloat16);
    }
  }
  return {};
}

Status PrecisionPolicy::ApplyPure(TrainingPlan& plan, DType half) const {
  for (PlanTensor& t : plan.tensors) {
    if (!IsFloating(t.dtype) || t.metadata) continue;
    // Normalization statistics (extras of fp32 with no tensor to follow) stay fp32.
    if (t.is_extra && t.dtype_follows < 0) continue;
    t.dtype = half;
  }
  plan.loss_dtype = half;
  Refresh(plan);
  return {};
}

Status PrecisionPolicy::ApplyAutocast(TrainingPlan& plan, DType half) const {
  Device device = options_.device;
  std::vector<PlanOp> ops;
  std::map<PlanTensorId, PlanTensorId> cached;  // parameter -> its cached half copy
  auto new_cast = [&](PlanTensorId src, DType to, const PlanOp& user, bool cache) {
    PlanTensor c = plan.tensors[src];
    c.name = (to == DType::kFloat32 ? "float(" : "half(") + c.name + ")";
    c.dtype = to;
    c.role = TensorRole::kActivation;
    c.view_of = -1;
    c.strides = ContiguousStrides(c.shape);
    c.is_extra = false;
    c.dtype_follows = -1;
    c.bytes = StorageBytes(c);
    plan.tensors.push_back(c);
    PlanTensorId id = static_cast<PlanTensorId>(plan.tensors.size() - 1);
    PlanOp cast;
    cast.name = user.name + ":autocast(" + plan.tensors[src].name + ")";
    cast.type = "Cast";
    cast.scope = user.scope;
    cast.inputs = {src};
    cast.outputs = {id};
    if (plan.tensors[src].requires_grad) {
      cast.grad_inputs = {0};
      cast.needs_backward = true;
    }
    ops.push_back(std::move(cast));
    if (cache) {
      cached[src] = id;
      plan.forward_cache.push_back(id);
    }
    return id;
  };
  for (PlanOp& op : plan.ops) {
    bool low = AutocastLowPrecision(op.type, device);
    // Linear's bias: exporters write Linear on N-d inputs as MatMul then Add(bias); PyTorch's
    // linear casts the bias with the rest.
    if (op.type == "Add" && op.inputs.size() == 2) {
      for (int k = 0; k < 2; ++k) {
        PlanTensorId other = op.inputs[1 - k];
        if (op.inputs[k] >= 0 && plan.tensors[op.inputs[k]].role == TensorRole::kParameter &&
            other >= 0 && plan.tensors[other].dtype == half) {
          low = true;
        }
      }
    }
    bool fp32 = !low && AutocastFp32(op.type, device);
    auto retarget = [&](int k, PlanTensorId to) {
      PlanTensorId from = op.inputs[k];
      op.inputs[k] = to;
      for (PlanTensorId& s : op.saved) {
        if (s == from) s = to;
      }
      for (PlanTensorId c : op.copies) {
        if (plan.tensors[c].dtype_follows == from) plan.tensors[c].dtype_follows = to;
      }
    };
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      PlanTensorId in = op.inputs[k];
      if (in < 0 || plan.tensors[in].metadata || !IsFloating(plan.tensors[in].dtype)) continue;
      DType dt = plan.tensors[in].dtype;
      if (low && dt != half) {
        // The cast cache keeps casts of leaf tensors that require grad: trainable parameters.
        // A frozen weight is cast again at every use, and its copy lives as long as its op
        // saves it (aten/src/ATen/autocast_mode.cpp, cached_cast).
        bool param =
            plan.tensors[in].role == TensorRole::kParameter && plan.tensors[in].requires_grad;
        auto hit = cached.find(in);
        PlanTensorId c = hit != cached.end() ? hit->second : new_cast(in, half, op, param);
        retarget(static_cast<int>(k), c);
      } else if (fp32 && dt == half) {
        retarget(static_cast<int>(k), new_cast(in, DType::kFloat32, op, false));
      }
    }
    DType out = DType::kUndefined;
    if (low) {
      out = half;
    } else if (fp32) {
      out = DType::kFloat32;
    } else if (IsNorm(op.type) && !op.inputs.empty() && op.inputs[0] >= 0) {
      out = plan.tensors[op.inputs[0]].dtype;
    } else {
      // Type promotion among dimensioned floating inputs (scalars never promote).
      for (PlanTensorId in : op.inputs) {
        if (in < 0 || plan.tensors[in].metadata) continue;
        DType d = plan.tensors[in].dtype;
        if (Width(d) > Width(out)) out = d;
      }
    }
    for (PlanTensorId t : op.outputs) {
      if (t < 0 || plan.tensors[t].metadata || !IsFloating(plan.tensors[t].dtype)) continue;
      if (IsFloating(out)) plan.tensors[t].dtype = out;
    }
    // Followers (dropout masks, contiguous copies) and views are resolved as we go, so the
    // next op sees the right types.
    for (PlanTensorId e : op.extras) {
      if (plan.tensors[e].dtype_follows >= 0) {
        plan.tensors[e].dtype = plan.tensors[plan.tensors[e].dtype_follows].dtype;
      }
    }
    for (PlanTensorId c : op.copies) {
      if (plan.tensors[c].dtype_follows >= 0) {
        plan.tensors[c].dtype = plan.tensors[plan.tensors[c].dtype_follows].dtype;
      }
    }
    for (PlanTensorId t : op.outputs) {
      if (t >= 0 && plan.tensors[t].view_of >= 0) {
        plan.tensors[t].dtype = plan.tensors[plan.tensors[t].view_of].dtype;
      }
    }
    ops.push_back(std::move(op));
  }
  plan.ops = std::move(ops);
  plan.loss_dtype = DType::kFloat32;
  Refresh(plan);
  return {};
}

}  // namespace vramsim

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

Result<TorchVersion> ParseTorchVersion(const std::string& name) {
  if (name == "2" || name == "2.x") return TorchVersion::k2;
  if (name == "1.13") return TorchVersion::k1_13;
  return Error{"unknown --torch-version '" + name + "' (2, 1.13)"};
}

std::string_view TorchVersionName(TorchVersion v) {
  return v == TorchVersion::k1_13 ? "1.13" : "2";
}

Result<LossPrecision> ParseLossPrecision(const std::string& name) {
  if (name == "fp32") return LossPrecision::kFp32;
  if (name == "model") return LossPrecision::kModel;
  return Error{"unknown --loss-precision '" + name + "' (fp32, model)"};
}

std::string_view LossPrecisionName(LossPrecision p) {
  return p == LossPrecision::kModel ? "model" : "fp32";
}

namespace {

// Autocast's op lists, by the ONNX op an exporter writes for the aten op. Sources:
//  - CUDA, both releases: aten/src/ATen/autocast_mode.cpp (1.13) and autocast_mode.h's
//    AT_FORALL_LOWER_PRECISION_FP / AT_FORALL_FP32 / AT_FORALL_FP32_SET_OPT_DTYPE (2.x), plus
//    aten/src/ATen/cudnn/AutocastRNN.cpp (cuDNN RNNs run in half). 2.x adds the upsample ops
//    (Resize) to fp32 and scaled_dot_product_attention to lower precision.
//  - CPU 1.13: measured on torch 1.13.1 (an fp32 and a bf16 input of each op under
//    torch.autocast("cpu", torch.bfloat16), validation/README.md): conv_transpose, 3-D pooling,
//    reflection/replication padding, prod and grid_sample run in fp32; prelu is on no list;
//    einsum lowers to bmm, which is.
//  - CPU 2.x: autocast_mode.cpp's AutocastCPU registrations: conv_transpose and prelu moved to
//    lower precision.
struct AutocastLists {
  std::set<std::string> low;
  std::set<std::string> fp32;
};

const AutocastLists& ListsFor(Device device, TorchVersion version) {
  static const std::set<std::string> cuda_fp32 = {"Softmax",
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
  static const AutocastLists cuda_1_13 = {
      {"Conv", "ConvTranspose", "Gemm", "MatMul", "PRelu", "Einsum", "LSTM", "GRU", "RNN"},
      cuda_fp32};
  static const AutocastLists cuda_2 = [] {
    AutocastLists l = cuda_1_13;
    l.low.insert("ScaledDotProductAttention");
    l.fp32.insert("Resize");
    return l;
  }();
  // Pad, MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool are decided by their mode
  // and rank (CpuFp32ByVariant).
  static const AutocastLists cpu_1_13 = {{"Conv", "Gemm", "MatMul", "Einsum"},
                                         {"ConvTranspose", "ReduceProd", "GridSample"}};
  static const AutocastLists cpu_2 = {
      {"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "PRelu", "ScaledDotProductAttention"},
      {"ReduceProd", "GridSample", "MaxUnpool"}};
  if (device == Device::kCuda) return version == TorchVersion::k1_13 ? cuda_1_13 : cuda_2;
  return version == TorchVersion::k1_13 ? cpu_1_13 : cpu_2;
}

// CPU autocast's fp32 ops that share an ONNX op type with ops on no list: reflection and
// replication padding (not constant padding), and 3-D pooling (not 2-D).
bool CpuFp32ByVariant(const PlanOp& op, const TrainingPlan& plan) {
  if (op.type == "Pad") return op.mode == "reflect" || op.mode == "edge";
  if (op.type == "MaxPool" || op.type == "AveragePool" || op.type == "GlobalAveragePool" ||
      op.type == "GlobalMaxPool") {
    return !op.inputs.empty() && op.inputs[0] >= 0 && plan.tensors[op.inputs[0]].shape.size() == 5;
  }
  return false;
}

}  // namespace

AutocastCast AutocastCastOf(const PlanOp& op, const TrainingPlan& plan, Device device,
                            TorchVersion version) {
  const AutocastLists& lists = ListsFor(device, version);
  if (lists.low.count(op.type)) return AutocastCast::kLowPrecision;
  if (lists.fp32.count(op.type)) return AutocastCast::kFp32;
  if (device == Device::kCpu && CpuFp32ByVariant(op, plan)) return AutocastCast::kFp32;
  return AutocastCast::kFollow;
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
  plan.loss_dtype = options_.loss_precision == LossPrecision::kFp32 ? DType::kFloat32 : half;
  plan.loss_upcast_held = options_.loss_precision == LossPrecision::kFp32;
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
  // Tensors computed from data, parameters or buffers; the rest (run-time constants such as
  // masks) follow the data they meet (precision.h).
  std::vector<bool> from_data(plan.tensors.size(), false);
  for (PlanTensorId t : plan.parameters) from_data[t] = true;
  // Floating buffers (BatchNorm statistics, fp32 tables) are data; integer ones (shapes,
  // indices) make nothing data by themselves.
  for (PlanTensorId t : plan.buffers) from_data[t] = IsFloating(plan.tensors[t].dtype);
  for (PlanTensorId t : plan.batch) from_data[t] = true;
  for (const PlanOp& op : plan.ops) {
    // What a pipeline stage receives is the previous stage's activation (policies/pipeline.h).
    bool any = op.type == "PipelineRecv";
    for (PlanTensorId in : op.inputs) {
      any = any || (in >= 0 && !plan.tensors[in].metadata && from_data[in]);
    }
    if (!any) continue;
    for (PlanTensorId t : op.outputs) {
      if (t >= 0) from_data[t] = true;
    }
    for (PlanTensorId t : op.extras) from_data[t] = true;
    for (PlanTensorId t : op.copies) from_data[t] = true;
  }
  // Casts made below are of data.
  auto is_data = [&](PlanTensorId t) {
    return static_cast<size_t>(t) >= from_data.size() || from_data[t];
  };
  for (PlanOp& op : plan.ops) {
    const AutocastCast listed = AutocastCastOf(op, plan, device, options_.torch_version);
    bool low = listed == AutocastCast::kLowPrecision;
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
    bool fp32 = !low && listed == AutocastCast::kFp32;
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
      // Type promotion among dimensioned floating inputs (scalars never promote); inputs
      // computed from no data follow the data's type when some input is data.
      bool data_in = false;
      for (PlanTensorId in : op.inputs) {
        data_in = data_in || (in >= 0 && !plan.tensors[in].metadata &&
                              IsFloating(plan.tensors[in].dtype) && is_data(in));
      }
      std::vector<PlanTensorId> followers;
      for (PlanTensorId in : op.inputs) {
        if (in < 0 || plan.tensors[in].metadata) continue;
        if (data_in && !is_data(in)) {
          if (IsFloating(plan.tensors[in].dtype)) followers.push_back(in);
          continue;
        }
        DType d = plan.tensors[in].dtype;
        if (Width(d) > Width(out)) out = d;
      }
      for (PlanTensorId f : followers) {
        if (!IsFloating(out)) break;
        PlanTensorId base = f;
        while (plan.tensors[base].view_of >= 0) base = plan.tensors[base].view_of;
        if (is_data(base)) continue;
        plan.tensors[base].dtype = out;
        plan.tensors[f].dtype = out;
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

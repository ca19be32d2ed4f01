#include "simulator/flops.h"

#include <algorithm>

namespace vramsim {
namespace {

uint64_t Numel(const PlanTensor& t) {
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

}  // namespace

void EstimateFlops(TrainingPlan& plan) {
  for (PlanOp& op : plan.ops) {
    const PlanTensor* in0 =
        !op.inputs.empty() && op.inputs[0] >= 0 ? &plan.tensors[op.inputs[0]] : nullptr;
    const PlanTensor* in1 =
        op.inputs.size() > 1 && op.inputs[1] >= 0 ? &plan.tensors[op.inputs[1]] : nullptr;
    const PlanTensor* out =
        !op.outputs.empty() && op.outputs[0] >= 0 ? &plan.tensors[op.outputs[0]] : nullptr;
    uint64_t n_out = out ? Numel(*out) : (in0 ? Numel(*in0) : 0);
    uint64_t fwd = 0;
    // Each backward matmul-like pass costs what the forward did, once per input needing it.
    size_t grads = op.grad_inputs.size();
    double bwd_factor = 1.0;
    const std::string& t = op.type;
    if ((t == "Conv" || t == "ConvTranspose") && in1 && out) {
      // 2 * outputs * (Cin/groups * kh * kw): the weight's elements per output channel.
      uint64_t per_out = Numel(*in1) / std::max<int64_t>(in1->shape.empty() ? 1 : in1->shape[0], 1);
      fwd = 2 * n_out * per_out;
      if (t == "ConvTranspose" && in0) fwd = 2 * Numel(*in0) * per_out;
      bwd_factor = static_cast<double>(
          std::count_if(op.grad_inputs.begin(), op.grad_inputs.end(), [](int k) { return k < 2; }));
    } else if ((t == "MatMul" || t == "Gemm") && in0 && out) {
      int64_t k = in0->shape.empty() ? 1 : in0->shape.back();
      if (t == "Gemm" && in0->shape.size() == 2) {
        // transA: the contraction is over dim 0.
        k = std::min(in0->shape[0], in0->shape[1]);
        if (in1 && in1->shape.size() == 2 && out->shape.size() == 2) {
          // K is the dim of A not in the output.
          k = in0->shape[0] == out->shape[0] ? in0->shape[1] : in0->shape[0];
        }
      }
      fwd = 2 * n_out * static_cast<uint64_t>(std::max<int64_t>(k, 1));
      bwd_factor = static_cast<double>(
          std::count_if(op.grad_inputs.begin(), op.grad_inputs.end(), [](int x) { return x < 2; }));
    } else if (t == "BatchNormalization" || t == "LayerNormalization" ||
               t == "GroupNormalization" || t == "InstanceNormalization") {
      fwd = 8 * n_out;
      bwd_factor = 2.0;
    } else if (t == "Softmax" || t == "LogSoftmax") {
      fwd = 5 * n_out;
      bwd_factor = 1.0;
    } else if (t == "MaxPool" || t == "AveragePool") {
      uint64_t window = in0 && out && n_out ? std::max<uint64_t>(Numel(*in0) / n_out, 1) : 1;
      fwd = n_out * window * 2;
      bwd_factor = 0.5;
    } else if (t == "Gelu" || t == "Silu" || t == "Mish" || t == "HardSwish" || t == "Erf" ||
               t == "Tanh" || t == "Sigmoid" || t == "Exp") {
      fwd = 8 * n_out;
      bwd_factor = 1.0;
    } else if (t == "GlobalAveragePool" || t.rfind("Reduce", 0) == 0) {
      fwd = in0 ? Numel(*in0) : 0;
      bwd_factor = 1.0;
    } else if (out && !out->metadata && out->view_of < 0) {
      fwd = n_out;  // elementwise and data movement: one op per element
      bwd_factor = 1.0;
    }
    op.forward_flops = fwd;
    op.backward_flops = op.needs_backward && grads ? static_cast<uint64_t>(fwd * bwd_factor) : 0;
  }
}

uint64_t StepFlops(const TrainingPlan& plan) {
  uint64_t total = 0;
  for (const PlanOp& op : plan.ops) total += op.forward_flops + op.backward_flops;
  return total;
}

}  // namespace vramsim

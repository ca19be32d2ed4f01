// What each ONNX op does in a PyTorch training step: whether PyTorch allocates its outputs
// or runs it as a view, which tensors autograd saves for the backward (following
// derivatives.yaml: a tensor needed only for the gradient of an input that needs none is not
// saved), which extra tensors it makes (BatchNorm's mean/invstd, dropout's mask, max-pool's
// int64 indices) and which inputs get gradients. One registered rule per op type; an op
// without a rule that needs a backward is an error that names it.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "importer/graph.h"
#include "importer/status.h"

namespace vramsim {

enum class Device { kCpu, kCuda };

struct SavedSpec {
  enum class From { kInput, kOutput, kExtra };
  From from = From::kInput;
  int index = 0;
  std::vector<int> for_grads;  // saved only if one of these inputs needs a gradient; empty: any
};

// One of an op's tensors by role: workspaces are sized from the tensors the op reads when it
// runs, after precision casts and sharding have rewritten its inputs.
struct IoRef {
  bool output = false;
  int index = 0;
  bool float32 = false;  // sized as float32 whatever its dtype (an fp32 accumulation buffer)
};

struct ExtraSpec {
  std::string name;  // suffix, e.g. "mask"
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
};

struct OpRule {
  enum class Forward {
    kCompute,   // allocates its outputs
    kView,      // output 0 shares input 0's storage (PyTorch view); copies if not viewable
    kInPlace,   // may overwrite input 0 (inplace=True modules, bias add after matmul)
    kMetadata,  // shape arithmetic or constants: Python values in eager PyTorch, no memory
  };
  Forward forward = Forward::kCompute;
  std::vector<int> outputs_not_allocated;  // e.g. BatchNorm's running stats, updated in place
  std::vector<ExtraSpec> extras;           // made by the forward besides the outputs
  std::vector<SavedSpec> saved;
  std::vector<int> differentiable;    // inputs that can receive a gradient
  std::vector<int> grad_passthrough;  // inputs whose gradient is the output gradient itself
  bool grads_are_views = false;       // backward returns views of the output grad (Concat)
  // Scratch the forward holds beside its outputs: the largest of these sums. oneDNN's CPU
  // convolution reorders input and weight, or its output, into blocked layouts.
  std::vector<std::vector<IoRef>> forward_workspace;
  // Scratch copies the backward holds while it runs (an output stands for its gradient; an
  // input counts only when it receives a gradient): oneDNN's reorders of the output gradient
  // and of the input it differentiates.
  std::vector<IoRef> backward_copies;
};

struct RuleContext {
  const Graph& graph;
  const Op& op;
  Device device;

  const Tensor* in(size_t i) const {
    return i < op.inputs.size() && op.inputs[i] != kNoTensor ? &graph.tensors[op.inputs[i]]
                                                             : nullptr;
  }
  const Tensor* out(size_t i) const {
    return i < op.outputs.size() && op.outputs[i] != kNoTensor ? &graph.tensors[op.outputs[i]]
                                                               : nullptr;
  }
  // A scalar input's value when known (Dropout ratio, Clip bounds).
  std::optional<double> scalar(size_t i) const;
};

using GradRuleFn = std::function<Result<OpRule>(const RuleContext&)>;

// Null when no rule is registered for the op type.
const GradRuleFn* FindGradRule(const std::string& op_type);
std::vector<std::string> RegisteredOps();

}  // namespace vramsim

// What each ONNX op does in a PyTorch training step: whether PyTorch allocates its outputs
// or runs it as a view, which tensors autograd saves for the backward (following
// derivatives.yaml: a tensor needed only for the gradient of an input that needs none is not
// saved), which extra tensors it makes (BatchNorm's mean/invstd, dropout's mask, max-pool's
// int64 indices) and which inputs get gradients. One registered rule per op type; an op
// without a rule that needs a backward is an error that names it.
#pragma once

#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "importer/graph.h"
#include "importer/status.h"

namespace vramsim {

enum class Device { kCpu, kCuda };

// The PyTorch release whose behaviour is simulated where releases differ (autocast's op
// lists, policies/precision.cc; CPU kernels' scratch, measured on 1.13). 1.13 is what
// validation/ measured; 2.x is current.
enum class TorchVersion { k1_13, k2 };

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
  // Held only while the op's input 0 stays fp32 (scratch measured for the fp32 kernel only;
  // under a half-precision policy the kernel differs and nothing is assumed).
  bool fp32_input_only = false;
  // Of input 0's type, following it when a precision policy changes that type (dtype above is
  // input 0's type in the graph).
  bool like_input = false;
};

// One stage of a backward that runs in stages: recurrent ops walk their time steps in reverse,
// holding different scratch at different times and freeing their saved tensors as they go.
struct BackwardStage {
  std::vector<ExtraSpec> workspace;  // held while this stage runs
  std::vector<int> grads;            // input slots whose gradients this stage makes
  std::vector<int> frees_extras;     // saved extras this stage consumed: freed after it
  bool frees_output_grads = false;   // the output gradients are consumed: freed after it
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
  // Scratch of a given size the backward holds while it runs (oneDNN's gemm-based convolution
  // buffers), beside backward_copies.
  std::vector<ExtraSpec> backward_workspace;
  // A backward in stages, in this order (empty: one stage holding backward_copies while every
  // input gradient is made, then the output gradients and saved tensors go). Input gradients
  // no stage names are made after the last stage; saved tensors no stage frees go at the end.
  std::vector<BackwardStage> backward_stages;
  // Inputs the op reads as one contiguous matrix: a view that is not contiguous is copied
  // first, once per entry (a bidirectional layer copies its input for each direction), and
  // the op saves the copies instead of the input.
  std::vector<int> contiguous_inputs;
  // Weight inputs that eager PyTorch reads as the parameters themselves. An exporter's
  // parameter-only reformatting in front of them (Slice/Concat/Unsqueeze reordering an LSTM's
  // gates, stacking its directions) does not run: the plan builder drops that chain and appends
  // its parameters to the op's inputs, each receiving a gradient of its own size
  // (RuleContext::folded_into says which slot each appended input stands for).
  std::vector<int> parameter_inputs;
};

struct RuleContext {
  const Graph& graph;
  const Op& op;
  Device device;
  // For each input appended after the ONNX op's own (parameter_inputs): the slot it feeds.
  std::vector<int> folded_into = {};
  // CPU threads the target runs ops with (TargetSpec::cpu_threads): oneDNN's per-thread
  // scratch scales with it.
  int cpu_threads = 1;
  TorchVersion torch_version = TorchVersion::k2;

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

// Registers (or replaces) the rule of these op types. Rules kept in other files register
// through this: the recurrent ops' (simulator/recurrent_rules.cc, RegisterRecurrentRules).
void RegisterGradRule(std::initializer_list<const char*> op_types, GradRuleFn fn);
void RegisterRecurrentRules();

// The parameters a parameter-only reformatting chain is made of (data movement: Slice, Concat,
// Unsqueeze, Squeeze, Reshape, Flatten, Transpose, Identity, Split, Gather; other inputs are
// constants), in input order, and the chain's ops; nullopt when `t` is not such a chain's
// result, or a chain tensor is also read outside the chain and `reader`.
struct ParameterChain {
  std::vector<TensorId> parameters;
  std::vector<OpId> ops;
};
std::optional<ParameterChain> ParameterChainOf(const Graph& graph, TensorId t, OpId reader);

}  // namespace vramsim

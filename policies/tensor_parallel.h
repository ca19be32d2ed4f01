// Megatron-style tensor parallelism (--tp N), sequence parallelism (--sequence-parallel) and
// context parallelism (--cp N), per rank: the policy rewrites the TrainingPlan into what one of
// the N ranks holds.
//
// Tensor parallelism (Shoeybi et al. 2019, "Megatron-LM"; Korthikanti et al. 2022, "Reducing
// Activation Recomputation in Large Transformer Models", Sec. 4.2.1). In every repeated block
// (RepeatedBlocks: h.0, h.1, ...) the policy reads the structure, not the names: a Linear is a
// MatMul/Gemm of an activation by a 2-D parameter (through its Transpose/Cast). Walking the
// block's ops in order, a Linear whose input is whole is column-parallel (its weight and bias
// split on the output features, its output split on the last dim: QKV, MLP up and gate); every
// op reading a split tensor gives split outputs (the split dim followed through Split, Reshape,
// Transpose, the attention's MatMuls over heads, Softmax, Dropout, GELU, masks), and a Linear
// whose input is split on its last dim is row-parallel (its weight split on the input features;
// its bias and output whole: attention's output projection, MLP down). Elementwise ops
// broadcast: a replicated operand of size 1 or absent along the split dim (LLaMA's rotary
// cos/sin [s, d] built from the inv_freq buffer, the causal mask [1, 1, s, s] built at run
// time) leaves the output split; a parameter of full extent there (a bias) is split with it; a
// whole activation of full extent there is refused. SwiGLU's gate and up are column-parallel
// (their product split), down row-parallel; RMSNorm stays whole; grouped-query attention's key/
// value heads are split with the heads (repeat_kv's expand follows the split), and a size that
// does not divide them is refused naming them (Megatron replicates KV heads when N exceeds
// them: not modelled). LoRA adapters (Linear A [r, in] then Linear B [out, r], added to a base
// Linear's output reading the same input) follow PEFT's Megatron layout: beside a
// column-parallel base A is replicated and B column-parallel; beside a row-parallel base A is
// row-parallel (its r-wide partial product all-reduced) and B replicated. A split tensor read
// outside its block, a Linear split anywhere else, or a dim that does not divide by N is
// refused with one line naming the op. Heads merged with the batch into one dim
// (nn.MultiheadAttention's [s, b*a, d], after its packed in_proj [3h, h], column-parallel as
// Megatron's interleaved QKV) are followed as the split factor inside the merged dim (b entries
// before it) and back out ([s*b, h] for out_proj); the heads, not b*a, must divide by N. A pipeline
// stage holding one block takes the outermost indexed module path ("model.layers.1") for it.
// Outside the blocks: the embedding whose rows number the logits' last dim (the vocabulary) is
// vocab-parallel (rows split, output all-reduced), the Linear making the logits is column-parallel
// over the vocabulary, and the cross-entropy runs on the rank's logits shard (Megatron's
// vocab_parallel_cross_entropy; its [b, s] max/sum all-reduces are not modelled: b*s*4 bytes).
// Everything else is replicated.
//
// Megatron's conjugate operators, as output-sized tensors:
//   f (before a column-parallel Linear): identity forward; in the backward the all-reduce of
//     the input gradient, an input-sized buffer held while that backward runs.
//   g (after a row-parallel Linear, and after the vocab-parallel embedding): an all-reduce in
//     forward into an output-sized tensor (the partial sum is freed once reduced); its backward
//     passes the gradient through.
//
// Sequence parallelism (Korthikanti et al. Sec. 4.2.2): g becomes a reduce-scatter into a
// [.., s/N, h] tensor, f an all-gather of the sequence-split input into a full one that the
// Linear reads; the Linear keeps the sequence-split input for its backward and all-gathers it
// again there (a full-input-sized backward buffer), and the all-gather's backward
// reduce-scatters the gradient. Every tensor between a reduce-scatter and the next all-gather
// (LayerNorm/RMSNorm, dropout and its mask, residual adds, the final norm) holds s/N tokens.
//
// Context parallelism (--cp N; Megatron-Core's context_parallel_size, ring attention): every
// activation holds s/N tokens (the sequence dim found from the token input and followed through
// the ops). Attention's queries stay local; its keys and values are exchanged around the ring:
// what is modelled is (a) the score-sized tensors ([b, a, s/N, s]: the rank's queries against
// every key, which an unfused attention saves for its backward), and (b) K and V chunks in
// flight: the chunk being used and the one being received, each a K-sized and a V-sized local
// chunk, held across the attention's forward and again in its backward. The causal
// load-balancing (two half-chunks per rank) changes nothing in bytes.
#pragma once

#include <string>

#include "policies/policy.h"

namespace vramsim {

struct TensorParallelOptions {
  int tensor_parallel = 1;  // --tp N
  bool sequence_parallel = false;
  int context_parallel = 1;  // --cp N
};

inline constexpr int kMaxModelParallel = 1 << 16;

Status ValidateTensorParallel(const TensorParallelOptions& options);

class TensorParallelPolicy : public Policy {
 public:
  explicit TensorParallelPolicy(TensorParallelOptions options) : options_(options) {}
  std::string_view name() const override { return "tensor_parallel"; }
  Status Apply(TrainingPlan& plan) const override;

 private:
  TensorParallelOptions options_;
};

}  // namespace vramsim

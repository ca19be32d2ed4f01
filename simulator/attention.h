// Attention implementations (--attention auto|eager|math|flash|mem-efficient).
//
// Exports write attention out as ops: MatMul(q, kT) -> scale -> mask -> Softmax(last axis)
// -> Dropout -> MatMul(., v), either because the model wrote it by hand (GPT's
// CausalSelfAttention) or because torch.onnx decomposed F.scaled_dot_product_attention
// (torch/onnx/symbolic_opset14.py, scaled_dot_product_attention: Transpose of k, q and kT each
// multiplied by Sqrt(scale), MatMul, Add of a float mask (a bool mask through
// Where(mask, 0, -inf); is_causal through Expand/Trilu/Equal/Where), Softmax(axis=-1),
// Dropout, MatMul). Simulated as written, every such attention keeps [.., Lq, Lk] tensors for
// the backward (softmax's result, the dropout mask and output). PyTorch's fused SDPA kernels
// keep none of them; this file recognizes the pattern and decides, per match, what runs:
//
//   eager          as written (the ops' own rules).
//   math           as written too: _scaled_dot_product_attention_math
//                  (aten/src/ATen/native/transformers/attention.cpp) is that composite
//                  (matmul(q*sqrt(s), kT*sqrt(s)), add_ of the mask, softmax, dropout,
//                  matmul with v): its saved tensors are the same sizes as the export's
//                  (the scale multiplies q and kT instead of the scores, which changes only
//                  q- and k-sized and in-place transients), and the exporter's SDPA
//                  decomposition is that composite node for node.
//   flash          one fused op, _scaled_dot_product_flash_attention (derivatives.yaml:
//                  backward reads query, key, value, output, logsumexp, philox_seed,
//                  philox_offset). CUDA (flash_attn/flash_api.cpp, mha_fwd / mha_bwd): output
//                  [B, Lq, H, Dv] exposed as [B, H, Lq, Dv], softmax_lse fp32 [B, H, Lq],
//                  rng_state uint64 [2] and an uint64 scalar; the backward holds softmax_d fp32
//                  [B, H, round128(Lq)] and the fp32 dq accumulator
//                  [B, round128(Lq), H, round(D, D <= 128 ? 32 : 64)] beside dq, dk, dv. fp16
//                  and bf16 only, head dim <= 256, no attention mask (is_causal is fine). CPU
//                  (torch 2.2+, _scaled_dot_product_flash_attention_cpu): output and fp32
//                  logsumexp, no dropout.
//   mem-efficient  one fused op, _scaled_dot_product_efficient_attention (derivatives.yaml:
//                  backward reads query, key, value, attn_bias, output, log_sumexp,
//                  philox_seed, philox_offset). CUDA only (transformers/cuda/attention.cu,
//                  _efficient_attention_forward): output [B, Lq, H, Dv] exposed as
//                  [B, H, Lq, Dv], logsumexp fp32 [B, H, round32(Lq)] (kAlignLSE = 32); the
//                  philox seed and offset are host scalars with dropout (outside CUDA-graph
//                  capture), empty int64 device scalars without. A mask
//                  is kept as attn_bias in q's dtype (a bool mask converted, the last dim
//                  padded to a multiple of 16). The backward (attention_backward.cu,
//                  mem_eff/kernel_backward.h) holds delta fp32 (logsumexp's shape) and, for
//                  fp16/bf16, the fp32 grad_q accumulator (workspace_elements_gq), q's shape.
//   auto           hand-written attention stays eager (that is what PyTorch runs for such
//                  code); the exporter's SDPA decomposition gets the kernel PyTorch's
//                  dispatcher picks (sdp_utils.cpp, flash > mem-efficient > math): on
//                  torch-cuda flash for fp16/bf16 with head dim a multiple of 8 and <= 256
//                  and no mask but the causal one, else mem-efficient for 4-D inputs with
//                  aligned head dims, else math; on torch-cpu math (torch 2.0-2.1; 2.2+ has a
//                  CPU flash kernel: ask for it with --attention flash).
//
// Dropout inside a fused kernel keeps no mask: the kernel regenerates it from the philox
// state. A mask computed from buffers and constants alone (GPT's tril buffer sliced to
// [:T, :T]) in hand-written attention is taken as the causal mask its rewrite to SDPA would
// pass as is_causal=True; one that depends on data inputs or parameters (padding masks,
// learned biases) is an attention mask that flash cannot take.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "importer/graph.h"
#include "importer/status.h"
#include "simulator/gradient_rules.h"

namespace vramsim {

struct TrainingPlan;

enum class AttentionImpl { kAuto, kEager, kMath, kFlash, kMemEfficient };

// "auto", "eager", "math", "flash", "mem-efficient"; anything else is an error naming them.
Result<AttentionImpl> ParseAttentionImpl(const std::string& name);
std::string_view AttentionImplName(AttentionImpl impl);

struct AttentionOptions {
  AttentionImpl impl = AttentionImpl::kAuto;
  // The floating type attention computes in once the precision policy has run (bf16 under
  // --precision bf16 or amp-bf16); kUndefined: the export's own (q's).
  DType dtype = DType::kUndefined;
};

// The fused op's type; its gradient rule is registered by RegisterAttentionRules.
inline constexpr const char* kAttentionOpType = "ScaledDotProductAttention";

enum class AttentionMask {
  kNone,
  kCausal,     // the exporter's is_causal construction (Trilu)
  kStatic,     // computed from buffers and constants alone (a sliced tril buffer)
  kArbitrary,  // depends on data inputs or parameters (padding masks, learned biases)
};

// One attention in the graph.
struct AttentionMatch {
  OpId root = -1;         // MatMul(attn, v): its output is the attention's output
  std::vector<OpId> ops;  // the other matched ops (QK MatMul, scales, mask op, Softmax, ...)
  // Ops that compute the mask and are read by nothing else: dropped when the kernel takes
  // the mask as is_causal instead of reading it.
  std::vector<OpId> mask_ops;
  TensorId q = kNoTensor, k = kNoTensor, v = kNoTensor;
  bool key_transposed = false;  // k is kT [.., D, Lk] (no Transpose to absorb)
  TensorId mask = kNoTensor;    // what the mask op (Where or Add) reads beside the scores
  AttentionMask mask_kind = AttentionMask::kNone;
  double dropout_p = 0;
  bool exporter_sdpa = false;  // torch.onnx's decomposition of F.scaled_dot_product_attention
};

// Every attention in op order; ops already fused by something else (`removed`) are skipped.
// Each intermediate result is read only inside its match.
std::vector<AttentionMatch> MatchAttention(const Graph& graph,
                                           const std::vector<bool>& removed = {});

// "eager", "math", "flash" or "mem-efficient" for this match, or an error naming the node when
// the kernel asked for cannot run it (flash in fp32 on CUDA, with an attention mask, ...).
Result<std::string> ChooseAttentionKernel(const Graph& graph, const AttentionMatch& match,
                                          const AttentionOptions& options, Device device);

// A match the plan builder replaces by one fused op (flash and mem-efficient only).
struct AttentionFusion {
  OpId root = -1;
  std::string kernel;
  std::vector<OpId> absorbed;              // disappear; their results are never materialized
  std::vector<TensorId> inputs;            // q, k (or kT), v[, mask]
  std::map<std::string, Attribute> attrs;  // for the rule: kernel, dropout, causal, ...
  std::vector<int64_t> output_strides;     // [B, H, Lq, Dv] laid out as [B, Lq, H, Dv]
};

Result<std::vector<AttentionFusion>> PlanAttention(const Graph& graph,
                                                   const AttentionOptions& options, Device device,
                                                   const std::vector<bool>& removed);

// The fused op's logsumexp and fp32 backward workspaces stay fp32 whatever the precision
// policy does to q: run after the plan builder has made them (they follow q's type otherwise).
void KeepAttentionStatisticsFp32(TrainingPlan& plan);

// Registers the fused op's gradient rule (idempotent; PlanAttention calls it).
void RegisterAttentionRules();

}  // namespace vramsim

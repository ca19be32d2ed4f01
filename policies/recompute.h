// Activation checkpointing of module scopes, as torch.utils.checkpoint(..., use_reentrant=False)
// does: inside a region only its inputs are kept; in the backward the region's forward runs
// again (keeping what its ops save), then its backward.
#pragma once

#include <string>
#include <vector>

#include "policies/policy.h"

namespace vramsim {

struct RecomputeOptions {
  // Module paths as PyTorch names them ("layer1", "h.0", "encoder.layers.encoder_layer_0")
  // or node-name prefixes as they stand in the export ("/layer1/"). "A+B" makes one region of
  // several scopes (a segment: only its inputs are kept, all of it is recomputed together).
  std::vector<std::string> scopes;
  // torch.get_rng_state() kept per region for preserve_rng_state=True: a 5056-byte tensor on
  // the CPU (host memory on a CUDA target).
  uint64_t rng_state_bytes = 0;
};

// Op-level (selective) checkpointing of a region: "SCOPE:save=A|B|..." keeps from the forward
// what the ops of SCOPE named by A, B, ... make (each an ONNX op type such as Conv, a node name
// such as /h.0/attn/MatMul, or @matmul: MatMul, Gemm, Conv, ConvTranspose, Einsum and fused
// attention, what PyTorch's usual SAC policy_fn saves), and the backward's recompute runs only
// the other ops needed to rebuild what the region's backward reads. "SCOPE:save=" saves no op.
// SCOPE "*" is the whole model.
inline constexpr const char* kSaveMarker = ":save=";
// The policy name: "sac-matmul" (the whole model as one region) or "sac-matmul:SCOPES" (each
// scope of the list a region), every region saving @matmul.
inline constexpr const char* kSacMatmul = "sac-matmul";
bool IsMatmulType(const std::string& type);

// Splits "a,b,c" and validates each scope is non-empty. "h.0-31" (a prefix, a dot and an
// ascending range of indices) stands for h.0, h.1, ..., h.31; "h.0-3+h.4" is not a range.
// Entries may end in ":save=..." (op-level; the list separated by '|'), and the whole list may
// be a policy (kSacMatmul).
Result<std::vector<std::string>> ParseScopes(const std::string& list);

// The inverse for printing: runs of consecutive indices under one prefix as "h.0-31"
// (at least three), everything else as it is, comma-separated, in the given order.
std::string CompactScopes(const std::vector<std::string>& scopes);

class RecomputePolicy : public Policy {
 public:
  explicit RecomputePolicy(RecomputeOptions options) : options_(std::move(options)) {}
  std::string_view name() const override { return "recompute"; }
  Status Apply(TrainingPlan& plan) const override;

 private:
  RecomputeOptions options_;
};

// Whether op belongs to a scope (module path or node-name prefix).
bool InScope(const PlanOp& op, const std::string& scope);

}  // namespace vramsim

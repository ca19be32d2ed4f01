// The training step as the simulator runs it: the forward ops with PyTorch's memory
// behaviour resolved (views, in-place ops, saved tensors, extras, fused exporter patterns),
// the loss, the parameters and what the optimizer keeps. Built from the Graph; policies
// transform it; the simulator turns it into an event stream.
#pragma once

#include <string>
#include <vector>

#include "importer/graph.h"
#include "simulator/gradient_rules.h"
#include "simulator/trace.h"

namespace vramsim {

using PlanTensorId = int32_t;

struct PlanTensor {
  std::string name;
  DType dtype = DType::kUndefined;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements, relative to the storage
  uint64_t bytes = 0;            // of its own storage (0 for views)
  TensorRole role = TensorRole::kActivation;
  PlanTensorId view_of = -1;  // shares this tensor's storage
  bool metadata = false;      // shape arithmetic: no device memory
  bool requires_grad = false;
  bool is_extra = false;            // made by an op beside its outputs (mask, indices, stats)
  PlanTensorId dtype_follows = -1;  // takes this tensor's dtype when precision changes
  // A backward workspace that exists only while its op's input 0 is fp32 (ExtraSpec); the
  // input it was made for.
  PlanTensorId only_if_fp32 = -1;
};

// A stage of a staged backward (OpRule::backward_stages), with its workspace as plan tensors.
struct PlanBackwardStage {
  std::vector<PlanTensorId> workspace;  // held while the stage runs
  std::vector<int> grads;               // input slots whose gradients it makes
  std::vector<PlanTensorId> frees;      // saved tensors freed after it
  bool frees_output_grads = false;
};

struct PlanOp {
  std::string name;
  std::string type;
  std::string scope;                  // module path
  std::string mode;                   // the ONNX "mode" attribute (Pad, Resize): autocast's
                                      // lists name the aten op it stands for
  std::vector<PlanTensorId> inputs;   // -1 for omitted
  std::vector<PlanTensorId> outputs;  // -1 for omitted or not materialized
  std::vector<PlanTensorId> extras;   // allocated by the forward beside the outputs
  std::vector<PlanTensorId> copies;   // inputs copied to contiguous storage by the op
  std::vector<PlanTensorId> saved;    // kept for the backward (after requires-grad filtering)
  std::vector<int> grad_inputs;       // input slots that receive a gradient
  std::vector<int> grad_passthrough;  // slots whose gradient is the output gradient itself
  bool grads_are_views = false;
  bool is_view = false;  // output 0 is a view of input 0; its backward is a view too
  bool needs_backward = false;
  int region = -1;                                    // checkpoint region it belongs to, or -1
  std::vector<PlanTensorId> backward_workspace;       // held during its backward (sizes, dtypes)
  std::vector<std::vector<IoRef>> forward_workspace;  // the largest sum is held in the forward
  std::vector<IoRef> backward_copies;  // held during its backward (inputs: only grad inputs)
  // Arguments of the module call this op ends, held by Python until then (module_frames.h).
  std::vector<PlanTensorId> frame_releases;
  std::vector<PlanBackwardStage> backward_stages;  // a staged backward (recurrent ops)
  uint64_t forward_flops = 0;
  uint64_t backward_flops = 0;
};

enum class LossKind { kNone, kCrossEntropy, kMse };

enum class OptimizerImpl { kForLoop, kForeach, kFused };

// What the optimizer keeps and allocates, per parameter.
struct OptimizerSpec {
  std::string name = "sgd";
  OptimizerImpl impl = OptimizerImpl::kForLoop;
  int state_per_param = 0;          // param-sized state tensors (momentum, Adam moments)
  int step_temporaries = 0;         // param-sized temporaries alive together during its update
  uint64_t step_counter_bytes = 0;  // per-parameter step tensor (Adam's state['step'])
};

struct TargetSpec {
  std::string name = "torch-cuda";
  Device device = Device::kCuda;
  uint64_t round_bytes = 512;
  TorchVersion torch_version = TorchVersion::k2;
  int cpu_threads = 1;  // torch-cpu: intra-op threads (torch.get_num_threads())
};

// A checkpointed region (torch.utils.checkpoint, use_reentrant=False): its forward keeps only
// its inputs; in the backward its forward runs again, then its backward.
struct CheckpointRegion {
  std::string scope;
  std::vector<int> ops;          // indices into TrainingPlan::ops, forward order
  uint64_t rng_state_bytes = 0;  // preserve_rng_state: the RNG state tensor it keeps
  // Op-level (selective) checkpointing: what the ops in save_ops make (outputs, extras, copies)
  // and the region's backward or its recompute reads is kept from the forward (SAC's
  // MUST_SAVE, the min-cut partitioner's saved values); the recompute runs only the other ops
  // needed to rebuild what the region's backward reads. Without op_level the whole region
  // runs again (torch.utils.checkpoint).
  bool op_level = false;
  std::vector<int> save_ops;  // indices into TrainingPlan::ops, a subset of ops
};

// What an op-level region's recompute runs and what its forward keeps (RegionSchedule); for a
// plain region every op runs and nothing is kept.
struct RegionRecompute {
  std::vector<bool> run;             // per entry of region.ops
  std::vector<PlanTensorId> kept;    // made by save_ops, held from the forward to the recompute
  std::vector<PlanTensorId> needed;  // made in the region and read by its backward
};
// Defined with the simulator (simulator/simulate.cc), which runs it.
struct TrainingPlan;
RegionRecompute RegionSchedule(const TrainingPlan& plan, const CheckpointRegion& region);

struct TrainingPlan {
  std::vector<PlanTensor> tensors;
  std::vector<PlanOp> ops;  // forward, in schedule order
  std::vector<PlanTensorId> parameters;
  std::vector<PlanTensorId> buffers;
  std::vector<PlanTensorId> batch;    // data inputs
  std::vector<PlanTensorId> outputs;  // graph outputs
  LossKind loss = LossKind::kCrossEntropy;
  DType loss_dtype = DType::kUndefined;  // the loss computes in this type (fp32 under autocast)
  // The script upcasts the logits itself (`logits = logits.float()` under pure bf16/fp16,
  // policies/precision.h): its variable holds the fp32 copy instead of the model's logits.
  bool loss_upcast_held = false;
  OptimizerSpec optimizer;
  TargetSpec target;
  int micro_batches = 1;  // gradient accumulation: forward+backward this many times per step
  // Held until the forward ends (autocast's cache of parameter casts), then released.
  std::vector<PlanTensorId> forward_cache;
  // Small persistent device buffers besides the model's (GradScaler's scale and tracker).
  std::vector<std::pair<std::string, uint64_t>> extra_buffers;
  std::vector<CheckpointRegion> regions;
};

// False for shape arithmetic (only metadata outputs, no extras): it holds no device memory.
bool MakesTensors(const TrainingPlan& plan, const PlanOp& op);

// Bytes of a tensor's own storage from its dtype and shape (0 for views and metadata).
uint64_t StorageBytes(const PlanTensor& t);
// Bytes of the tensor's elements, whether or not it owns storage (what a copy of it takes).
uint64_t TensorBytes(const PlanTensor& t);

}  // namespace vramsim

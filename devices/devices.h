// GPU device profiles for `fit` and `max-batch`: the memory a process can use, and what the
// CUDA context and the math libraries take besides the tensors. Sources for every number are
// in devices.cc and docs/allocator.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "importer/status.h"
#include "simulator/allocator.h"

namespace vramsim {

struct DeviceProfile {
  std::string name;              // the --gpu name
  std::string product;           // as nvidia-smi names it
  std::string datasheet_memory;  // the vendor's figure ("80 GB HBM3")
  // Total device memory as the driver reports it (nvidia-smi memory.total, MiB granularity;
  // what cudaMemGetInfo returns as total).
  uint64_t capacity_bytes = 0;
  // CUDA context plus the kernels loaded into it, outside PyTorch's allocator (it never
  // shows in memory_reserved). An estimate; see devices.cc.
  uint64_t context_bytes = 0;
  // Per cuBLAS handle: CUBLAS_WORKSPACE_CONFIG's default, allocated through the caching
  // allocator on the first matmul of each thread and stream.
  uint64_t cublas_workspace_bytes = 0;
  uint64_t cublaslt_workspace_bytes = 0;  // CUBLASLT_WORKSPACE_SIZE's default, per handle
  // Handles used in a training step: the Python thread (forward, optimizer) and the autograd
  // engine's device thread (backward).
  int blas_handles = 2;
  // Kept free for cuDNN convolution workspaces (transient, algorithm dependent; PyTorch
  // falls back to algorithms with smaller workspaces when one does not fit). An allowance.
  uint64_t cudnn_workspace_bytes = 0;
  int compute_capability = 0;  // 80 for sm_80
  bool bf16 = true;            // native bf16 (Ampere and later)
  std::string sources;         // where the numbers come from, for --json

  // NCCL's communication buffers per communicator (NcclBuffers below): NCCL_BUFFSIZE per
  // channel and ring peer, the channel count NCCL would pick (an estimate), the ring's peers.
  uint64_t nccl_buffsize_bytes = 0;
  int nccl_channels = 0;
  int nccl_peers = 0;
  std::string nccl_sources;

  // What `vramsim layout`'s cost model needs (engine/layout.h); 0: not known for this GPU, and
  // layout refuses it. Peak dense bf16 tensor-core FLOP/s without sparsity (vendor datasheet);
  // NVLink bandwidth per GPU in one direction (the datasheet's total is both directions); the
  // network per GPU (an assumption: one NIC per GPU as in NVIDIA's DGX systems); host <-> GPU
  // (PCIe, one direction, the datasheet's link rate) for --offload.
  double peak_bf16_flops = 0;
  double nvlink_bytes_per_s = 0;
  double network_bytes_per_s = 0;
  double pcie_bytes_per_s = 0;
  std::string speed_sources;
};

const std::vector<DeviceProfile>& DeviceProfiles();
std::string DeviceNames();  // "a100-40gb, a100-80gb, ..."
Result<DeviceProfile> FindDevice(const std::string& name);

// The library workspaces that go through the caching allocator, as replay allocations.
std::vector<ExtraAllocation> LibraryWorkspaces(const DeviceProfile& device);

// What a step needs on a device and how much room is left.
struct DeviceBudget {
  uint64_t capacity = 0;
  uint64_t context = 0;
  uint64_t cudnn_allowance = 0;  // only when the model has convolutions
  uint64_t nccl = 0;             // NCCL's buffers (NcclBuffers), only with more than one rank
  // capacity - context - cudnn allowance - NCCL buffers: the caching allocator's limit.
  uint64_t usable = 0;
};
DeviceBudget BudgetFor(const DeviceProfile& device, bool has_convolutions, uint64_t nccl_bytes = 0);

// NCCL's communication buffers, allocated by NCCL with cudaMalloc outside PyTorch's caching
// allocator when a communicator first runs a collective (or a send/receive pair connects).
// NCCL_BUFFSIZE (default 4 MiB = 4194304 bytes, NCCL's environment-variable documentation) is
// the Simple protocol's buffer per channel and per peer connection; a ring connects each rank
// to two peers. Counted: communicators x channels x peers x NCCL_BUFFSIZE, with kNcclChannels
// channels (NCCL picks 2 to 32 by topology; 16 an estimate for NVLink/NVSwitch nodes). The LL
// and LL128 protocols' buffers and NCCL's own small structures are not counted. An estimate.
inline constexpr uint64_t kNcclBuffSize = 4194304;
inline constexpr int kNcclChannels = 16;
inline constexpr int kNcclRingPeers = 2;

// The process groups a rank of a parallel layout belongs to. Ranks are laid out as Megatron-LM
// does (tp innermost, then cp, dp, pp); a group of one rank makes no communicator.
struct ParallelGroups {
  int data_parallel = 1, tensor_parallel = 1, pipeline_parallel = 1, context_parallel = 1;
  // FSDP HYBRID_SHARD: the data-parallel ranks form a shard group of min(dp, gpus_per_node)
  // (within a node, as policies/sharding.h shards) and a replicate group across nodes.
  bool fsdp_hybrid = false;
  int gpus_per_node = 8;
  int world_size() const {
    return data_parallel * tensor_parallel * pipeline_parallel * context_parallel;
  }
};

struct NcclCommunicator {
  std::string name;  // "data parallel", "tensor parallel", ...
  int ranks = 0;
};

// NCCL's buffers on one rank: one communicator per group of more than one rank it is in
// (data parallel, or FSDP hybrid's shard and replicate groups; tensor; pipeline; context).
// Not counted: Megatron's combined groups (model parallel, data-with-context parallel, the
// tied-embedding group), which PyTorch creates but which run a collective rarely or never in a
// step, and the device-side NCCL structures. Zero on one rank.
struct NcclTerm {
  std::vector<NcclCommunicator> communicators;
  int channels = 0, peers = 0;
  uint64_t buffsize = 0;
  uint64_t bytes = 0;  // communicators x channels x peers x buffsize
  std::string sources;
};
NcclTerm NcclBuffers(const DeviceProfile& device, const ParallelGroups& groups);
// The NCCL figures every profile here shares (for `estimate`, which names no GPU).
const DeviceProfile& DefaultNcclProfile();
// "2 communicators (tensor parallel 2, data parallel 4) x 16 channels (an estimate) x 2 peers
// x NCCL_BUFFSIZE 4 MiB"
std::string NcclTermText(const NcclTerm& term);

}  // namespace vramsim

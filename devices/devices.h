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
  uint64_t usable = 0;           // capacity - context - cudnn allowance: the allocator's limit
};
DeviceBudget BudgetFor(const DeviceProfile& device, bool has_convolutions);

// NCCL's communication buffers, allocated by NCCL with cudaMalloc outside PyTorch's caching
// allocator when a communicator first runs a collective (or a send/receive pair connects).
// NCCL_BUFFSIZE (default 4 MiB = 4194304 bytes, NCCL's environment-variable documentation) is
// the Simple protocol's buffer per channel and per peer connection; a ring connects each rank
// to two peers. Counted: communicators x channels x 2 peers x 4 MiB, with kNcclChannels
// channels (NCCL picks 2 to 32 by topology; 16 an estimate for NVLink/NVSwitch nodes). The LL
// and LL128 protocols' buffers and NCCL's own small structures are not counted. An estimate.
inline constexpr uint64_t kNcclBuffSize = 4194304;
inline constexpr int kNcclChannels = 16;
uint64_t NcclBufferBytes(int communicators, int channels = kNcclChannels,
                         uint64_t buffsize = kNcclBuffSize);

}  // namespace vramsim

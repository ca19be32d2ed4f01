#include "devices/devices.h"

namespace vramsim {
namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB;

// Capacity: the vendor's datasheet gives the nominal size ("80 GB HBM3"); the byte count is
// the total the driver reports, as nvidia-smi prints it (memory.total in MiB) in many
// public logs, e.g. "81559MiB" for "NVIDIA H100 80GB HBM3". For GDDR boards with ECC on
// (T4, L4) the driver total is below the nominal size because ECC takes part of the memory.
//
// Context: PyTorch's maintainers give about 300 MB for the CUDA context since CUDA 11.7's
// lazy module loading (pytorch/pytorch#107667, "the currently used ~300MB"; more than
// 1000 MB before 11.7); a bare context measured 426 MiB on an RTX 6000 Ada with PyTorch
// 2.10 + CUDA 13.0 (unslothai/unsloth-zoo#1053); the figure depends on the GPU, driver and
// CUDA version (pytorch/pytorch#28113: 200 to 700 MB). Training also loads cuBLAS, cuDNN and
// PyTorch kernels into the context lazily. We did not measure a training process on these
// GPUs: 512 MiB is our allowance for all of them (1 GiB would be safer for CUDA < 11.7).
constexpr uint64_t kContext = 512 * MiB;

// cuBLAS workspace per handle and stream (aten/src/ATen/cuda/CublasHandlePool.cpp,
// parseChosenWorkspaceSize): ":4096:2:16:8" = 4096 KiB x 2 + 16 KiB x 8 = 8 MiB + 128 KiB
// by default, 32 MiB (4096 KiB x 8) on sm_90 (Hopper). cuBLASLt: 1 MiB
// (parseCUDABlasLtWorkspaceSize, "default size in KiB according to #73328"). Both are
// allocated with the CUDA caching allocator (getNewWorkspace, getNewCUDABlasLtWorkspace).
constexpr uint64_t kCublasDefault = 4096 * KiB * 2 + 16 * KiB * 8;
constexpr uint64_t kCublasHopper = 4096 * KiB * 8;
constexpr uint64_t kCublasLt = 1024 * KiB;

// cuDNN convolution workspaces: allocated per call through the caching allocator; the size
// depends on the algorithm cuDNN's heuristics pick, and PyTorch tries the next algorithm
// when the workspace cannot be allocated (aten/src/ATen/native/cudnn/Conv_v7.cpp,
// AlgoIterator::try_all). Not modelled per call: an allowance, not a measurement.
constexpr uint64_t kCudnnAllowance = 64 * MiB;

DeviceProfile Make(std::string name, std::string product, std::string datasheet, uint64_t total_mib,
                   int cc, bool bf16, std::string sources) {
  DeviceProfile d;
  d.name = std::move(name);
  d.product = std::move(product);
  d.datasheet_memory = std::move(datasheet);
  d.capacity_bytes = total_mib * MiB;
  d.context_bytes = kContext;
  d.cublas_workspace_bytes = cc == 90 ? kCublasHopper : kCublasDefault;
  d.cublaslt_workspace_bytes = kCublasLt;
  d.cudnn_workspace_bytes = kCudnnAllowance;
  d.compute_capability = cc;
  d.bf16 = bf16;
  d.sources = std::move(sources);
  return d;
}

std::vector<DeviceProfile> MakeProfiles() {
  return {
      Make("a100-40gb", "NVIDIA A100-SXM4-40GB / A100-PCIE-40GB", "40 GB HBM2", 40960, 80, true,
           "NVIDIA A100 Tensor Core GPU datasheet (40GB HBM2); nvidia-smi total 40960MiB"),
      Make("a100-80gb", "NVIDIA A100-SXM4-80GB", "80 GB HBM2e", 81920, 80, true,
           "NVIDIA A100 Tensor Core GPU datasheet (80GB HBM2e); nvidia-smi total 81920MiB"),
      Make("h100-80gb", "NVIDIA H100 80GB HBM3 (SXM5)", "80 GB HBM3", 81559, 90, true,
           "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM 80GB); nvidia-smi total 81559MiB"),
      Make("h200", "NVIDIA H200 (SXM)", "141 GB HBM3e", 143771, 90, true,
           "NVIDIA H200 Tensor Core GPU datasheet (141GB HBM3e); nvidia-smi total 143771MiB"),
      Make("l4", "NVIDIA L4", "24 GB GDDR6", 23034, 89, true,
           "NVIDIA L4 Tensor Core GPU datasheet (24GB GDDR6); nvidia-smi total 23034MiB (ECC "
           "on)"),
      Make("t4", "Tesla T4", "16 GB GDDR6", 15360, 75, false,
           "NVIDIA T4 Tensor Core GPU datasheet (16 GB GDDR6); nvidia-smi total 15360MiB (ECC "
           "on); Turing: no bf16 tensor cores"),
      Make("rtx4090", "NVIDIA GeForce RTX 4090", "24 GB GDDR6X", 24564, 89, true,
           "NVIDIA GeForce RTX 4090 specifications (24 GB GDDR6X); nvidia-smi total 24564MiB"),
  };
}

}  // namespace

const std::vector<DeviceProfile>& DeviceProfiles() {
  static const std::vector<DeviceProfile> profiles = MakeProfiles();
  return profiles;
}

std::string DeviceNames() {
  std::string s;
  for (const DeviceProfile& d : DeviceProfiles()) {
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s;
}

Result<DeviceProfile> FindDevice(const std::string& name) {
  for (const DeviceProfile& d : DeviceProfiles()) {
    if (d.name == name) return d;
  }
  return Error{"unknown --gpu '" + name + "' (" + DeviceNames() + ")"};
}

std::vector<ExtraAllocation> LibraryWorkspaces(const DeviceProfile& d) {
  std::vector<ExtraAllocation> out;
  // The forward runs on the Python thread's handle, the backward on the autograd engine's.
  const Phase phases[] = {Phase::kForward, Phase::kBackward};
  for (int h = 0; h < d.blas_handles && h < 2; ++h) {
    if (d.cublas_workspace_bytes)
      out.push_back({"cuBLAS workspace", d.cublas_workspace_bytes, phases[h]});
    if (d.cublaslt_workspace_bytes)
      out.push_back({"cuBLASLt workspace", d.cublaslt_workspace_bytes, phases[h]});
  }
  return out;
}

DeviceBudget BudgetFor(const DeviceProfile& d, bool has_convolutions) {
  DeviceBudget b;
  b.capacity = d.capacity_bytes;
  b.context = d.context_bytes;
  b.cudnn_allowance = has_convolutions ? d.cudnn_workspace_bytes : 0;
  uint64_t off = b.context + b.cudnn_allowance;
  b.usable = b.capacity > off ? b.capacity - off : 0;
  return b;
}

uint64_t NcclBufferBytes(int communicators, int channels, uint64_t buffsize) {
  if (communicators <= 0 || channels <= 0) return 0;
  return static_cast<uint64_t>(communicators) * static_cast<uint64_t>(channels) * 2 * buffsize;
}

}  // namespace vramsim

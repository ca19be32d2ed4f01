#include "devices/devices.h"

#include <algorithm>
#include <cstdio>

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

// NCCL's buffers (devices.h, NcclBuffers). NCCL_BUFFSIZE: "Default is 4194304 (4 MiB)" (NCCL
// documentation, Environment Variables, NCCL_BUFFSIZE). The channel count is NCCL's choice at
// communicator setup (NCCL_MIN_NCHANNELS / NCCL_MAX_NCHANNELS, up to 32 by default; topology
// dependent): 16 is our estimate for NVLink / NVSwitch nodes, not a measurement. A ring has two
// peers per rank (the previous and the next).
constexpr char kNcclSources[] =
    "NCCL_BUFFSIZE default 4194304 bytes (NCCL documentation, Environment Variables); 16 "
    "channels per communicator is an estimate (NCCL picks 2 to 32 by topology); 2 ring peers; "
    "LL/LL128 buffers not counted";

// Speeds for `vramsim layout`'s cost model (devices.h). FLOP/s: dense bf16 tensor-core peak
// without sparsity from the datasheets (A100: 312 TFLOPS; H100 SXM and H200 SXM: 989.4 TFLOPS,
// the datasheets' 1,979 being with sparsity). NVLink: A100 600 GB/s, H100 SXM and H200 900 GB/s
// per GPU, both directions together: half each way. PCIe: A100 Gen4 x16 64 GB/s, H100 / H200
// Gen5 x16 128 GB/s, both directions: half each way. Network per GPU: an assumption, one
// NIC per GPU as in DGX A100 (200 Gb/s HDR InfiniBand: 25 GB/s) and DGX H100 / H200 (400 Gb/s
// NDR: 50 GB/s). L4, T4 and RTX 4090 have no NVLink: no speeds (layout refuses them).
struct Speeds {
  double flops, nvlink, network, pcie;
  const char* sources;
};
constexpr Speeds kA100{312e12, 300e9, 25e9, 32e9,
                       "A100 datasheet: 312 TFLOPS dense bf16, NVLink 600 GB/s (300 each way), "
                       "PCIe Gen4 64 GB/s (32 each way); network 25 GB/s per GPU assumed (one "
                       "200 Gb/s HDR NIC per GPU, DGX A100)"};
constexpr Speeds kHopper{989.4e12, 450e9, 50e9, 64e9,
                         "H100 SXM / H200 SXM datasheets: 989.4 TFLOPS dense bf16 (1,979 with "
                         "sparsity), NVLink 900 GB/s (450 each way), PCIe Gen5 128 GB/s (64 "
                         "each way); network 50 GB/s per GPU assumed (one 400 Gb/s NDR NIC per "
                         "GPU, DGX H100)"};

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
  d.nccl_buffsize_bytes = kNcclBuffSize;
  d.nccl_channels = kNcclChannels;
  d.nccl_peers = kNcclRingPeers;
  d.nccl_sources = kNcclSources;
  return d;
}

DeviceProfile WithSpeeds(DeviceProfile d, const Speeds& s) {
  d.peak_bf16_flops = s.flops;
  d.nvlink_bytes_per_s = s.nvlink;
  d.network_bytes_per_s = s.network;
  d.pcie_bytes_per_s = s.pcie;
  d.speed_sources = s.sources;
  return d;
}

std::vector<DeviceProfile> MakeProfiles() {
  return {
      WithSpeeds(
          Make("a100-40gb", "NVIDIA A100-SXM4-40GB / A100-PCIE-40GB", "40 GB HBM2", 40960, 80, true,
               "NVIDIA A100 Tensor Core GPU datasheet (40GB HBM2); nvidia-smi total "
               "40960MiB"),
          kA100),
      WithSpeeds(Make("a100-80gb", "NVIDIA A100-SXM4-80GB", "80 GB HBM2e", 81920, 80, true,
                      "NVIDIA A100 Tensor Core GPU datasheet (80GB HBM2e); nvidia-smi total "
                      "81920MiB"),
                 kA100),
      WithSpeeds(Make("h100-80gb", "NVIDIA H100 80GB HBM3 (SXM5)", "80 GB HBM3", 81559, 90, true,
                      "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM 80GB); nvidia-smi total "
                      "81559MiB"),
                 kHopper),
      WithSpeeds(Make("h200", "NVIDIA H200 (SXM)", "141 GB HBM3e", 143771, 90, true,
                      "NVIDIA H200 Tensor Core GPU datasheet (141GB HBM3e); nvidia-smi total "
                      "143771MiB"),
                 kHopper),
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

DeviceBudget BudgetFor(const DeviceProfile& d, bool has_convolutions, uint64_t nccl_bytes) {
  DeviceBudget b;
  b.capacity = d.capacity_bytes;
  b.context = d.context_bytes;
  b.cudnn_allowance = has_convolutions ? d.cudnn_workspace_bytes : 0;
  b.nccl = nccl_bytes;
  uint64_t off = b.context + b.cudnn_allowance + b.nccl;
  b.usable = b.capacity > off ? b.capacity - off : 0;
  return b;
}

NcclTerm NcclBuffers(const DeviceProfile& d, const ParallelGroups& g) {
  NcclTerm t;
  t.channels = d.nccl_channels;
  t.peers = d.nccl_peers;
  t.buffsize = d.nccl_buffsize_bytes;
  t.sources = d.nccl_sources;
  if (g.world_size() <= 1) return t;
  auto add = [&](const char* name, int ranks) {
    if (ranks > 1) t.communicators.push_back({name, ranks});
  };
  add("tensor parallel", g.tensor_parallel);
  add("context parallel", g.context_parallel);
  if (g.fsdp_hybrid && g.data_parallel > 1) {
    const int shard = std::max(1, std::min(g.data_parallel, g.gpus_per_node));
    add("FSDP hybrid shard", shard);
    add("FSDP hybrid replicate", (g.data_parallel + shard - 1) / shard);
  } else {
    add("data parallel", g.data_parallel);
  }
  add("pipeline parallel", g.pipeline_parallel);
  t.bytes = static_cast<uint64_t>(t.communicators.size()) * static_cast<uint64_t>(t.channels) *
            static_cast<uint64_t>(t.peers) * t.buffsize;
  return t;
}

const DeviceProfile& DefaultNcclProfile() { return DeviceProfiles().front(); }

std::string NcclTermText(const NcclTerm& t) {
  char size[64];
  if (t.buffsize % MiB == 0) {
    std::snprintf(size, sizeof size, "%llu MiB", static_cast<unsigned long long>(t.buffsize / MiB));
  } else {
    std::snprintf(size, sizeof size, "%llu B", static_cast<unsigned long long>(t.buffsize));
  }
  std::string groups;
  for (const NcclCommunicator& c : t.communicators) {
    groups += (groups.empty() ? "" : ", ") + c.name + " " + std::to_string(c.ranks);
  }
  return std::to_string(t.communicators.size()) + " communicator" +
         (t.communicators.size() == 1 ? "" : "s") + " (" + groups + ") x " +
         std::to_string(t.channels) + " channels (an estimate) x " + std::to_string(t.peers) +
         " peers x NCCL_BUFFSIZE " + size;
}

}  // namespace vramsim

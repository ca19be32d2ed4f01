#include "engine/layout.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include "importer/importer.h"
#include "policies/accumulation.h"
#include "policies/recompute.h"
#include "policies/sharding.h"

namespace vramsim {
namespace {

bool IsFsdp(DpSharding d) {
  return d == DpSharding::kFsdpFull || d == DpSharding::kFsdpShardGradOp ||
         d == DpSharding::kFsdpHybrid;
}

int ZeroStageOf(DpSharding d) {
  switch (d) {
    case DpSharding::kZero0:
      return 0;
    case DpSharding::kZero1:
      return 1;
    case DpSharding::kZero2:
      return 2;
    default:
      return 3;
  }
}

// The device's speeds, or one line saying which are missing.
Status CheckSpeeds(const DeviceProfile& d) {
  std::vector<std::string> missing;
  if (d.peak_bf16_flops <= 0) missing.push_back("peak bf16 FLOP/s");
  if (d.nvlink_bytes_per_s <= 0) missing.push_back("NVLink bandwidth");
  if (d.network_bytes_per_s <= 0) missing.push_back("network bandwidth");
  if (d.pcie_bytes_per_s <= 0) missing.push_back("PCIe bandwidth");
  if (missing.empty()) return {};
  return Error{fmt::format(
      "--gpu {}: its device profile has no {} (devices/devices.cc), which layout's cost model "
      "needs; profiles with them: {}",
      d.name, fmt::join(missing, ", "), [] {
        std::vector<std::string> names;
        for (const DeviceProfile& p : DeviceProfiles()) {
          if (p.peak_bf16_flops > 0 && p.nvlink_bytes_per_s > 0 && p.network_bytes_per_s > 0 &&
              p.pcie_bytes_per_s > 0) {
            names.push_back(p.name);
          }
        }
        return fmt::format("{}", fmt::join(names, ", "));
      }())};
}

// Tensor / sequence parallelism arrive through EstimateFlags (policies/tensor_parallel.h)
// where the build has them.
template <class F>
bool SetTensorParallel(F& flags, int tp, bool sp) {
  if constexpr (requires {
                  flags.tensor_parallel;
                  flags.sequence_parallel;
                }) {
    flags.tensor_parallel = tp;
    flags.sequence_parallel = sp;
    return true;
  } else {
    (void)flags;
    return tp == 1 && !sp;
  }
}

std::vector<int> Divisors(int n) {
  std::vector<int> d;
  for (int i = 1; i <= n; ++i) {
    if (n % i == 0) d.push_back(i);
  }
  return d;
}

struct Shared {
  const std::string& path;
  const LayoutOptions& options;
  EstimateOptions base;
  DeviceProfile device;
  std::string checkpoint_all;    // every repeated block
  uint64_t usable = 0;           // before NCCL's buffers
  uint64_t block_out_bytes = 0;  // one block's output at micro-batch 1
  int blocks = 0;
  std::mutex mutex;
  std::map<int64_t, std::shared_ptr<const Graph>> graphs;
  std::atomic<int> simulations{0};

  Result<std::shared_ptr<const Graph>> GraphAt(int64_t micro) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = graphs.find(micro);
    if (it != graphs.end()) return it->second;
    std::map<std::string, int64_t> dims = options.dims;
    dims[options.base.dim_name] = micro;
    EstimateOptions o = base;
    o.micro_batches = 1;
    auto g = ImportForEstimate(path, dims, o);
    if (!g) return g.error();
    auto shared = std::make_shared<const Graph>(std::move(g.value()));
    graphs[micro] = shared;
    return shared;
  }
};

// FSDP hybrid's shard group: the data-parallel ranks within one node (tp innermost).
int HybridShard(const LayoutOptions& o, int tp, int dp) {
  return std::max(1, std::min(dp, o.gpus_per_node / tp));
}

// One rank's estimate of a layout: for pp > 1 the first and the last stage (all stages when
// `all_stages`).
Status Evaluate(Shared& s, LayoutCandidate& c, bool all_stages) {
  EstimateFlags f = s.options.base;
  f.data_parallel = c.dp;
  f.zero = IsFsdp(c.sharding) ? 0 : c.zero;
  f.fsdp = c.sharding == DpSharding::kFsdpFull          ? "full"
           : c.sharding == DpSharding::kFsdpShardGradOp ? "shard-grad-op"
           : c.sharding == DpSharding::kFsdpHybrid      ? "hybrid"
                                                        : "";
  // Hybrid shards within a node; with tp ranks innermost a node holds gpus_per_node / tp
  // data-parallel ranks.
  f.gpus_per_node = std::max(1, s.options.gpus_per_node / c.tp);
  f.offload = c.offload ? "optimizer" : "";
  f.pipeline_parallel = c.pp;
  if (c.virtual_stages > 1) {
    f.schedule = "interleaved";
    f.virtual_stages = c.virtual_stages;
  }
  f.accum = c.accum;
  f.checkpoint = c.checkpoint ? s.checkpoint_all : "";
  if (!SetTensorParallel(f, c.tp, c.sequence_parallel)) {
    return Error{"this build has no tensor parallelism"};
  }
  auto o = ParseEstimateFlags(f);
  if (!o) return o.error();
  auto graph = s.GraphAt(c.micro);
  if (!graph) return graph.error();
  std::vector<int> stages = {-1};
  if (c.pp > 1 && !all_stages) stages = {0, c.pp - 1};
  c.peak_bytes = 0;
  c.flops_per_gpu = 0;
  c.stage_peaks.clear();
  double psi = 0;
  int stage_blocks = c.pp > 1 ? 0 : s.blocks;
  // NCCL's buffers (devices.h) for this rank's communicators, on this device: the same on
  // every stage.
  c.nccl = NcclTermOf(*o, s.device);
  for (int stage : stages) {
    // Screening: when the first stage does not fit, the layout does not; the last is skipped.
    if (stage > 0 && !all_stages && c.peak_bytes + c.nccl.bytes > s.usable) break;
    o->pipeline_stage = stage;
    auto e = RunEstimate(**graph, *o);
    s.simulations += stage < 0 && c.pp > 1 ? c.pp : 1;
    if (!e) return e.error();
    if (!e->stage_peaks.empty()) {
      c.stage_peaks = e->stage_peaks;
    } else if (c.pp > 1) {
      c.stage_peaks.push_back(e->peak.peak_bytes);
    }
    c.peak_bytes = std::max(c.peak_bytes, e->peak.peak_bytes);
    c.flops_per_gpu =
        std::max(c.flops_per_gpu, static_cast<double>(e->step_flops_all + e->recompute_flops_all));
    psi = std::max(psi, static_cast<double>(e->parameters.trainable_bytes));
    if (c.pp > 1) stage_blocks = std::max(stage_blocks, e->pipeline.block_count);
  }
  c.simulated = true;
  c.fits = c.peak_bytes + c.nccl.bytes <= s.usable;
  c.status = c.fits ? "fits" : "does not fit";

  // The cost model (layout.h).
  const DeviceProfile& d = s.device;
  const double m = c.accum, dp = c.dp, tp = c.tp, v = c.virtual_stages;
  const int per_node = s.options.gpus_per_node;
  const double dp_bw = c.tp * c.dp <= per_node ? d.nvlink_bytes_per_s : d.network_bytes_per_s;
  double dp_seconds = 0;
  c.dp_bytes = 0;
  if (c.dp > 1) {
    switch (c.sharding) {
      case DpSharding::kZero0:
      case DpSharding::kZero1:
      case DpSharding::kZero2:
        c.dp_bytes = 2 * psi * (dp - 1) / dp;
        break;
      case DpSharding::kZero3:
      case DpSharding::kFsdpFull:
        c.dp_bytes = (2 * m + 1) * psi * (dp - 1) / dp;
        break;
      case DpSharding::kFsdpShardGradOp:
        c.dp_bytes = (m + 1) * psi * (dp - 1) / dp;
        break;
      case DpSharding::kFsdpHybrid:
        break;
    }
    dp_seconds = c.dp_bytes / dp_bw;
    if (c.sharding == DpSharding::kFsdpHybrid) {
      const double sh = c.shard, r = dp / sh;
      const double intra = (2 * m + 1) * psi * (sh - 1) / sh;
      const double inter = 2 * (psi / sh) * (r - 1) / r;
      c.dp_bytes = intra + inter;
      dp_seconds = intra / d.nvlink_bytes_per_s +
                   inter / (c.tp * c.dp <= per_node ? d.nvlink_bytes_per_s : d.network_bytes_per_s);
    }
  }
  const double act = static_cast<double>(s.block_out_bytes) * static_cast<double>(c.micro);
  c.tp_bytes = tp > 1 ? 4.0 * stage_blocks * act * m * 2 * (tp - 1) / tp : 0;
  c.pp_bytes = c.pp > 1 ? 2.0 * act * m * v : 0;
  c.comm_bytes = c.dp_bytes + c.tp_bytes + c.pp_bytes;
  const int sharded_over = c.zero >= 1 ? c.shard : 1;
  c.offload_bytes = c.offload ? 2 * psi / sharded_over : 0;
  const double pp_bw =
      c.tp * c.dp * c.pp <= per_node ? d.nvlink_bytes_per_s : d.network_bytes_per_s;
  c.bubble = c.pp > 1 ? (c.pp - 1) / (m * v) : 0;
  const double per_micro = c.flops_per_gpu / (d.peak_bf16_flops * 0.5) +
                           c.tp_bytes / d.nvlink_bytes_per_s + c.pp_bytes / pp_bw;
  c.step_seconds = per_micro * (1 + c.bubble) + dp_seconds + c.offload_bytes / d.pcie_bytes_per_s;
  return {};
}

std::string Why(const LayoutCandidate& c, uint64_t usable) {
  const size_t comms = c.nccl.communicators.size();
  std::string w = fmt::format("peak {} + NCCL buffers {} ({} communicator{}) of {} usable",
                              FormatBytes(c.peak_bytes), FormatBytes(c.nccl.bytes), comms,
                              comms == 1 ? "" : "s", FormatBytes(usable));
  w += fmt::format("; {:.1f} TFLOP per GPU per step", c.flops_per_gpu / 1e12);
  w += fmt::format("; {} moved per GPU", FormatBytes(static_cast<uint64_t>(c.comm_bytes)));
  if (c.pp > 1) {
    w += fmt::format(
        "; bubble {:.1f}% ({} micro-batches{})", 100 * c.bubble, c.accum,
        c.virtual_stages > 1 ? fmt::format(", {} virtual stages", c.virtual_stages) : "");
  }
  if (c.sharding == DpSharding::kZero3 || c.sharding == DpSharding::kFsdpFull) {
    w += "; parameters gathered twice every micro-batch";
  }
  if (c.sharding == DpSharding::kFsdpShardGradOp) w += "; parameters gathered once a micro-batch";
  if (c.sharding == DpSharding::kFsdpHybrid) {
    w += fmt::format("; shards over {} within a node, replicas across {}", c.shard,
                     c.dp / std::max(c.shard, 1));
  }
  if (c.offload) {
    w += fmt::format("; optimizer on the host, {} over PCIe",
                     FormatBytes(static_cast<uint64_t>(c.offload_bytes)));
  }
  if (c.checkpoint) w += "; recomputes every block";
  return w;
}

bool IsError(const LayoutCandidate& c) { return c.status.rfind("error: ", 0) == 0; }

}  // namespace

std::string_view DpShardingName(DpSharding s) {
  switch (s) {
    case DpSharding::kZero0:
      return "zero 0";
    case DpSharding::kZero1:
      return "zero 1";
    case DpSharding::kZero2:
      return "zero 2";
    case DpSharding::kZero3:
      return "zero 3";
    case DpSharding::kFsdpFull:
      return "fsdp full";
    case DpSharding::kFsdpShardGradOp:
      return "fsdp shard-grad-op";
    case DpSharding::kFsdpHybrid:
      return "fsdp hybrid";
  }
  return "?";
}

Status ValidateLayout(const LayoutOptions& o) {
  if (o.gpus < 1 || o.gpus > (1 << 20)) return Error{"--gpus must be between 1 and 1048576"};
  if (o.gpus_per_node < 1 || o.gpus_per_node > 1024) {
    return Error{"--gpus-per-node must be between 1 and 1024"};
  }
  if (o.global_batch < 1) return Error{"--global-batch must be at least 1"};
  if (o.threads < 0 || o.threads > 256) {
    return Error{"--threads must be between 0 (one per core) and 256"};
  }
  if (o.max_tp < 1) return Error{"--max-tp must be at least 1"};
  if (o.dims.count(o.base.dim_name)) {
    return Error{"--dim " + o.base.dim_name +
                 " is what the layout chooses (micro-batch x accumulation x dp = --global-batch)"};
  }
  return {};
}

Result<LayoutResult> SearchLayouts(const std::string& path, const LayoutOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (auto st = ValidateLayout(options); !st) return Error{st.message()};
  auto device = FindDevice(options.gpu);
  if (!device) return device.error();
  if (auto st = CheckSpeeds(*device); !st) return Error{st.message()};
  if (options.capacity_bytes) device->capacity_bytes = options.capacity_bytes;
  EstimateFlags base_flags = options.base;
  base_flags.accum = 1;
  auto base = ParseEstimateFlags(base_flags);
  if (!base) return base.error();
  if (base->target.device != Device::kCuda) {
    return Error{"layout lays a job out over GPUs: --target torch-cuda"};
  }
  Shared s{path, options, *base, *device, "", 0, 0, 0, {}, {}, {}};
  LayoutResult r;
  r.device = *device;
  r.budget = BudgetFor(*device, false);
  for (const ExtraAllocation& w : LibraryWorkspaces(*device)) r.workspace_bytes += w.bytes;
  s.usable = r.budget.usable > r.workspace_bytes ? r.budget.usable - r.workspace_bytes : 0;
  {
    EstimateFlags probe = options.base;
    r.sequence_parallel_available = SetTensorParallel(probe, 2, true);
  }

  // The blocks and a block's output bytes, from one plan at micro-batch 1.
  auto graph = s.GraphAt(1);
  if (!graph) return graph.error();
  auto probe = RunEstimate(**graph, s.base);
  if (!probe) return Error{path + ": " + probe.error().message};
  ++s.simulations;
  std::vector<std::string> blocks = RepeatedBlocks(probe->plan);
  s.blocks = static_cast<int>(blocks.size());
  r.blocks = s.blocks;
  for (size_t b = 0; b < blocks.size(); ++b) s.checkpoint_all += (b ? "," : "") + blocks[b];
  if (blocks.size() >= 2) {
    const TrainingPlan& plan = probe->plan;
    std::vector<int> made_in(plan.tensors.size(), -1);
    for (const PlanOp& op : plan.ops) {
      int in0 = InScope(op, blocks[0]) ? 0 : InScope(op, blocks[1]) ? 1 : -1;
      if (in0 == 0) {
        for (PlanTensorId t : op.outputs) {
          if (t >= 0) made_in[t] = 0;
        }
      } else if (in0 == 1) {
        for (PlanTensorId t : op.inputs) {
          if (t >= 0 && made_in[t] == 0) {
            s.block_out_bytes = std::max(s.block_out_bytes, TensorBytes(plan.tensors[t]));
          }
        }
      }
    }
  }

  // (tp, pp, virtual stages); each task searches its sharding, offload, checkpointing and
  // micro-batch.
  struct Task {
    int tp, pp, dp, v;
  };
  std::vector<Task> tasks;
  for (int tp : Divisors(options.gpus)) {
    if (tp > std::min(options.max_tp, options.gpus_per_node)) continue;
    for (int pp : Divisors(options.gpus / tp)) {
      if (pp > 1 && pp > s.blocks) continue;
      const int dp = options.gpus / tp / pp;
      tasks.push_back({tp, pp, dp, 1});
      // Interleaved 1F1B with 2 model chunks per stage, when the blocks divide into 2 pp.
      if (pp > 1 && s.blocks % (2 * pp) == 0) tasks.push_back({tp, pp, dp, 2});
    }
  }
  std::vector<std::vector<LayoutCandidate>> found(tasks.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < tasks.size(); i = next++) {
      const Task& t = tasks[i];
      std::vector<LayoutCandidate>& out = found[i];
      LayoutCandidate c;
      c.tp = t.tp;
      c.pp = t.pp;
      c.dp = t.dp;
      c.virtual_stages = t.v;
      c.sequence_parallel = t.tp > 1 && r.sequence_parallel_available;
      if (options.global_batch % t.dp != 0) {
        c.status = fmt::format("not simulated: the global batch {} does not divide over dp {}",
                               options.global_batch, t.dp);
        out.push_back(c);
        continue;
      }
      if (t.tp > 1 && !r.sequence_parallel_available) {
        c.status = "not simulated: this build has no tensor parallelism";
        out.push_back(c);
        continue;
      }
      const int64_t per_rank = options.global_batch / t.dp;
      std::vector<int64_t> micros;
      for (int64_t b = 1; b <= per_rank; b *= 2) {
        if (per_rank % b != 0 || per_rank / b > kMaxMicroBatches) continue;
        // Megatron's interleaved schedule runs the micro-batches in groups of pp.
        if (t.v > 1 && (per_rank / b) % t.pp != 0) continue;
        micros.push_back(b);
      }
      if (micros.empty()) {
        c.status = fmt::format(
            "not simulated: interleaving needs the micro-batches a multiple of pp {} ({} "
            "samples per rank)",
            t.pp, per_rank);
        out.push_back(c);
        continue;
      }
      // The sharding ladder (layout.h).
      std::vector<DpSharding> cheap = {DpSharding::kZero0};
      std::vector<DpSharding> heavy;
      if (t.dp > 1) {
        cheap = {DpSharding::kZero0, DpSharding::kZero1, DpSharding::kZero2};
        heavy = {DpSharding::kFsdpShardGradOp, DpSharding::kZero3, DpSharding::kFsdpFull};
      }
      const int hybrid_shard = HybridShard(options, t.tp, t.dp);
      const bool hybrid =
          t.dp > 1 && hybrid_shard >= 2 && t.dp > hybrid_shard && t.dp % hybrid_shard == 0;
      std::string failed;     // the first simulation's error: every layout of this task has it
      std::string cheap_fit;  // a variant where ZeRO 0-2 fits
      bool first = true;
      auto make = [&](DpSharding sh, bool offload, bool ckpt) {
        LayoutCandidate x = c;
        x.sharding = sh;
        x.zero = ZeroStageOf(sh);
        x.shard = sh == DpSharding::kZero0        ? 1
                  : sh == DpSharding::kFsdpHybrid ? hybrid_shard
                                                  : t.dp;
        x.offload = offload;
        x.checkpoint = ckpt;
        return x;
      };
      auto skip = [&](DpSharding sh, bool offload, bool ckpt, const std::string& why) {
        LayoutCandidate x = make(sh, offload, ckpt);
        x.status = "not simulated: " + why;
        out.push_back(std::move(x));
      };
      auto eval = [&](LayoutCandidate x, int64_t micro) -> LayoutCandidate {
        x.micro = micro;
        x.accum = static_cast<int>(per_rank / micro);
        if (auto st = Evaluate(s, x, false); !st) {
          x.status = "error: " + st.message();
          x.simulated = true;
          x.fits = false;
          if (first) failed = st.message();
        }
        first = false;
        return x;
      };
      // The layouts of one sharding, offload and checkpointing: pp = 1 the largest
      // micro-batch that fits, pp > 1 the smallest. Returns the fitting micro-batch, or 0.
      auto search = [&](DpSharding sh, bool offload, bool ckpt) -> int64_t {
        const LayoutCandidate base_c = make(sh, offload, ckpt);
        std::vector<LayoutCandidate> tried;
        int best = -1;
        if (t.pp == 1) {
          // The smallest micro-batch first: when it does not fit, none does (one simulation
          // for a sharding that does not fit at all).
          size_t lo = 0, hi = micros.size();
          if (micros.size() > 1) {
            LayoutCandidate x = eval(base_c, micros[0]);
            const bool fits = x.fits, error = IsError(x);
            tried.push_back(std::move(x));
            if (error || !fits) hi = 0;
            if (fits) {
              best = 0;
              lo = 1;
            }
          }
          while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            LayoutCandidate x = eval(base_c, micros[mid]);
            const bool fits = x.fits, error = IsError(x);
            tried.push_back(std::move(x));
            if (error) break;
            if (fits) {
              best = static_cast<int>(tried.size()) - 1;
              lo = mid + 1;
            } else {
              hi = mid;
            }
          }
          for (size_t k = 0; k < tried.size(); ++k) {
            if (static_cast<int>(k) != best && tried[k].fits) {
              tried[k].status = "fits (a larger micro-batch fits too)";
              tried[k].fits = false;
            }
          }
        } else {
          tried.push_back(eval(base_c, micros[0]));  // the most micro-batches: least bubble
          if (tried.back().fits) best = 0;
        }
        const int64_t fit_micro = best >= 0 ? tried[static_cast<size_t>(best)].micro : 0;
        for (LayoutCandidate& x : tried) out.push_back(std::move(x));
        return fit_micro;
      };
      const std::pair<bool, bool> variants[] = {
          {false, false}, {true, false}, {false, true}, {true, true}};  // {offload, ckpt}
      for (const auto& variant : variants) {
        // Named copies: lambdas may not capture structured bindings before C++20's P1091
        // (clang 14, which the fuzz build uses, refuses them).
        const bool offload = variant.first, ckpt = variant.second;
        auto all = [&](const std::string& why) {
          for (DpSharding sh : cheap) skip(sh, offload, ckpt, why);
          if (hybrid) skip(DpSharding::kFsdpHybrid, offload, ckpt, why);
          for (DpSharding sh : heavy) skip(sh, offload, ckpt, why);
        };
        if (!failed.empty()) {
          all("the same tp and pp failed (" + failed + ")");
          continue;
        }
        if (!cheap_fit.empty()) {
          all(cheap_fit + " fits with less recompute / PCIe traffic and no more communication");
          continue;
        }
        bool cheap_fits = false;
        for (DpSharding sh : cheap) {
          if (offload && sh == DpSharding::kZero0 && t.dp > 1) {
            skip(sh, offload, ckpt,
                 "ZeRO-Offload partitions the optimizer state over the data-parallel ranks "
                 "(ZeRO 1 or more)");
            continue;
          }
          if (cheap_fits || !failed.empty()) {
            skip(sh, offload, ckpt,
                 !failed.empty() ? "the same tp and pp failed (" + failed + ")"
                                 : "a lower ZeRO stage fits (ZeRO 0-2 move the same bytes)");
            continue;
          }
          if (search(sh, offload, ckpt) > 0) {
            cheap_fits = true;
            cheap_fit = fmt::format("{}{}{}", DpShardingName(sh), offload ? " + offload" : "",
                                    ckpt ? " + checkpointing" : "");
          }
        }
        if (!failed.empty()) {
          if (hybrid) skip(DpSharding::kFsdpHybrid, offload, ckpt, "the same tp and pp failed");
          for (DpSharding sh : heavy) skip(sh, offload, ckpt, "the same tp and pp failed");
          continue;
        }
        bool hybrid_fits = false;
        if (hybrid) hybrid_fits = search(DpSharding::kFsdpHybrid, offload, ckpt) > 0;
        if (cheap_fits || hybrid_fits) {
          for (DpSharding sh : heavy) {
            skip(sh, offload, ckpt,
                 cheap_fits ? "ZeRO 0-2 fits (fewer bytes moved)"
                            : "FSDP hybrid fits (fewer bytes across nodes)");
          }
          continue;
        }
        int64_t zero3_micro = 0;
        bool grad_op_fits = false;
        for (DpSharding sh : heavy) {
          if (sh == DpSharding::kFsdpShardGradOp) {
            grad_op_fits = search(sh, offload, ckpt) > 0;
          } else if (grad_op_fits) {
            skip(sh, offload, ckpt, "FSDP shard-grad-op fits (fewer bytes moved)");
          } else if (sh == DpSharding::kZero3) {
            zero3_micro = search(sh, offload, ckpt);
          } else if (zero3_micro > 0) {
            // FSDP full moves ZeRO 3's bytes and holds one more unit (the prefetch): PyTorch's
            // variant, simulated at ZeRO 3's micro-batch.
            out.push_back(eval(make(sh, offload, ckpt), zero3_micro));
          } else {
            skip(sh, offload, ckpt,
                 "ZeRO 3 does not fit and FSDP full holds more (the prefetched unit)");
          }
        }
      }
    }
  };
  const int wanted = options.threads > 0
                         ? options.threads
                         : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int threads = std::max(1, std::min<int>(wanted, static_cast<int>(tasks.size())));
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(work);
  work();
  for (std::thread& th : pool) th.join();
  for (auto& v : found) {
    for (LayoutCandidate& c : v) r.candidates.push_back(std::move(c));
  }

  auto rank = [&] {
    std::stable_sort(r.candidates.begin(), r.candidates.end(),
                     [](const LayoutCandidate& a, const LayoutCandidate& b) {
                       if (a.fits != b.fits) return a.fits;
                       if (a.fits) return a.step_seconds < b.step_seconds;
                       return a.simulated > b.simulated;
                     });
  };
  rank();
  // The best few, simulated stage by stage (their cost is then the worst stage's), until the
  // first `verify` that fit are all verified.
  for (int round = 0; round < 64; ++round) {
    bool changed = false;
    for (int k = 0; k < options.verify && k < static_cast<int>(r.candidates.size()); ++k) {
      LayoutCandidate& c = r.candidates[k];
      if (!c.fits || c.verified) continue;
      if (c.pp > 1) {
        if (auto st = Evaluate(s, c, true); !st) {
          c.status = "error: " + st.message();
          c.fits = false;
        }
        changed = true;
      }
      c.verified = true;
      if (!c.fits && c.status.rfind("error", 0) != 0) {
        c.status = "does not fit (a middle stage; found when every stage was simulated)";
      }
    }
    if (!changed) break;
    rank();
  }
  for (LayoutCandidate& c : r.candidates) {
    if (c.simulated && c.status.rfind("error", 0) != 0) c.why = Why(c, s.usable);
  }
  r.simulations = s.simulations;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

nlohmann::json LayoutJson(const LayoutResult& r) {
  nlohmann::json j;
  j["usable_bytes_per_gpu"] =
      r.budget.usable > r.workspace_bytes ? r.budget.usable - r.workspace_bytes : 0;
  j["capacity_bytes"] = r.budget.capacity;
  j["context_bytes"] = r.budget.context;
  j["workspace_bytes"] = r.workspace_bytes;
  j["blocks"] = r.blocks;
  j["simulations"] = r.simulations;
  j["seconds"] = r.seconds;
  j["sequence_parallel_available"] = r.sequence_parallel_available;
  j["device"] = {{"name", r.device.name},
                 {"peak_bf16_flops", r.device.peak_bf16_flops},
                 {"nvlink_bytes_per_s", r.device.nvlink_bytes_per_s},
                 {"network_bytes_per_s", r.device.network_bytes_per_s},
                 {"pcie_bytes_per_s", r.device.pcie_bytes_per_s},
                 {"speed_sources", r.device.speed_sources},
                 {"nccl_sources", r.device.nccl_sources}};
  nlohmann::json all = nlohmann::json::array();
  for (const LayoutCandidate& c : r.candidates) {
    nlohmann::json x = {
        {"tp", c.tp},
        {"sequence_parallel", c.sequence_parallel},
        {"pp", c.pp},
        {"schedule", c.pp > 1 ? (c.virtual_stages > 1 ? "interleaved" : "1f1b") : "none"},
        {"virtual_stages", c.virtual_stages},
        {"dp", c.dp},
        {"sharding", std::string(DpShardingName(c.sharding))},
        {"zero", c.zero},
        {"shard_ranks", c.shard},
        {"offload", c.offload ? "optimizer" : "none"},
        {"micro_batch", c.micro},
        {"accum", c.accum},
        {"checkpoint", c.checkpoint ? "every block" : "none"},
        {"status", c.status},
        {"fits", c.fits},
        {"verified", c.verified}};
    if (c.simulated && c.status.rfind("error", 0) != 0) {
      x["peak_bytes"] = c.peak_bytes;
      x["nccl_buffer_bytes"] = c.nccl.bytes;
      nlohmann::json comms = nlohmann::json::array();
      for (const NcclCommunicator& k : c.nccl.communicators)
        comms.push_back({{"group", k.name}, {"ranks", k.ranks}});
      x["nccl_communicators"] = comms;
      if (!c.stage_peaks.empty()) x["stage_peak_bytes"] = c.stage_peaks;
      x["flops_per_gpu"] = c.flops_per_gpu;
      x["comm_bytes_per_gpu"] = c.comm_bytes;
      x["dp_bytes_per_gpu"] = c.dp_bytes;
      x["tp_bytes_per_gpu"] = c.tp_bytes;
      x["pp_bytes_per_gpu"] = c.pp_bytes;
      x["offload_pcie_bytes_per_gpu"] = c.offload_bytes;
      x["bubble"] = c.bubble;
      x["step_seconds_model"] = c.step_seconds;
      x["why"] = c.why;
    }
    all.push_back(std::move(x));
  }
  j["layouts"] = all;
  return j;
}

std::string LayoutText(const LayoutResult& r, size_t top) {
  const uint64_t usable =
      r.budget.usable > r.workspace_bytes ? r.budget.usable - r.workspace_bytes : 0;
  size_t fit = 0, simulated = 0;
  for (const LayoutCandidate& c : r.candidates) {
    fit += c.fits;
    simulated += c.simulated;
  }
  std::string out = fmt::format(
      "{} layouts considered, {} simulated per rank ({} simulations, {} blocks) in {:.1f} s; {} "
      "fit in {} per GPU (capacity {} - CUDA context {} - cuBLAS workspaces {}; less each "
      "layout's NCCL buffers)\n",
      r.candidates.size(), simulated, r.simulations, r.blocks, r.seconds, fit, FormatBytes(usable),
      FormatBytes(r.budget.capacity), FormatBytes(r.budget.context),
      FormatBytes(r.workspace_bytes));
  if (!r.sequence_parallel_available) {
    out += "(this build has no tensor parallelism: tp = 1 only)\n";
  }
  if (fit == 0) {
    out += "nothing fits; the closest:\n";
  }
  out += fmt::format(
      "{:>3} {:>3} {:>3} {:>4} {:>2} {:>4} {:>18} {:>3} {:>5} {:>5} {:>4} {:>11} {:>9}  {}\n", "#",
      "tp", "sp", "pp", "V", "dp", "sharding", "off", "micro", "accum", "ckpt", "peak", "step (s)",
      "why");
  size_t shown = 0;
  for (const LayoutCandidate& c : r.candidates) {
    if (shown >= top) break;
    if (fit > 0 && !c.fits) break;
    if (!c.simulated) continue;
    ++shown;
    out += fmt::format(
        "{:>3} {:>3} {:>3} {:>4} {:>2} {:>4} {:>18} {:>3} {:>5} {:>5} {:>4} {:>11} {:>9.4g}  "
        "{}{}\n",
        shown, c.tp, c.sequence_parallel ? "yes" : "no", c.pp, c.virtual_stages, c.dp,
        c.dp > 1 ? DpShardingName(c.sharding) : "-", c.offload ? "yes" : "no", c.micro, c.accum,
        c.checkpoint ? "all" : "none", FormatBytes(c.peak_bytes), c.step_seconds,
        c.why.empty() ? c.status : c.why, c.verified && c.pp > 1 ? " (every stage simulated)" : "");
  }
  return out;
}

}  // namespace vramsim

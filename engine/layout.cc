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

// Peak dense bf16/fp16 FLOP/s (vendor datasheets, without sparsity) and per-GPU bandwidths:
// NVLink one direction (H100 SXM 900 GB/s total, A100 600 GB/s, halved), the network one
// 400 Gb/s InfiniBand NIC per GPU (50 GB/s). Only the ranking uses them.
struct Speeds {
  double flops = 100e12, nvlink = 100e9, network = 25e9;
};
Speeds SpeedsOf(const std::string& gpu) {
  if (gpu.rfind("h100", 0) == 0) return {989e12, 450e9, 50e9};
  if (gpu.rfind("h200", 0) == 0) return {989e12, 450e9, 50e9};
  if (gpu.rfind("a100", 0) == 0) return {312e12, 300e9, 25e9};
  return {};
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
  std::string checkpoint_all;  // every repeated block
  uint64_t usable = 0;
  uint64_t block_out_bytes = 0;  // one block's output at micro-batch 1
  int blocks = 0;
  Speeds speeds;
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

// One rank's estimate of a layout: for pp > 1 the first and the last stage (all stages when
// `all_stages`).
Status Evaluate(Shared& s, LayoutCandidate& c, bool all_stages) {
  EstimateFlags f = s.options.base;
  f.data_parallel = c.dp;
  f.zero = c.zero;
  f.pipeline_parallel = c.pp;
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
  for (int stage : stages) {
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
  // NCCL's buffers (devices.h): one communicator per parallel dimension in use.
  c.nccl_bytes = NcclBufferBytes((c.tp > 1) + (c.dp > 1) + (c.pp > 1));
  c.fits = c.peak_bytes + c.nccl_bytes <= s.usable;
  c.status = c.fits ? "fits" : "does not fit";

  // The cost model (layout.h).
  const double m = c.accum, dp = c.dp, tp = c.tp;
  const int per_node = s.options.gpus_per_node;
  double dp_bytes = dp > 1 ? (c.zero >= 3 ? 2 * m + 1 : 2) * psi * (dp - 1) / dp : 0;
  double act = static_cast<double>(s.block_out_bytes) * static_cast<double>(c.micro);
  double tp_bytes = tp > 1 ? 4.0 * stage_blocks * act * m * 2 * (tp - 1) / tp : 0;
  double pp_bytes = c.pp > 1 ? 2.0 * act * m : 0;
  c.comm_bytes = dp_bytes + tp_bytes + pp_bytes;
  const double dp_bw = c.tp * c.dp <= per_node ? s.speeds.nvlink : s.speeds.network;
  const double pp_bw = c.tp * c.dp * c.pp <= per_node ? s.speeds.nvlink : s.speeds.network;
  c.bubble = c.pp > 1 ? (c.pp - 1) / m : 0;
  double t = c.flops_per_gpu / (s.speeds.flops * 0.5) + tp_bytes / s.speeds.nvlink +
             dp_bytes / dp_bw + pp_bytes / pp_bw;
  c.step_seconds = t * (1 + c.bubble);
  return {};
}

std::string Why(const LayoutCandidate& c, uint64_t usable) {
  std::string w = fmt::format("peak {} + NCCL buffers {} of {} usable", FormatBytes(c.peak_bytes),
                              FormatBytes(c.nccl_bytes), FormatBytes(usable));
  w += fmt::format("; {:.1f} TFLOP per GPU per step", c.flops_per_gpu / 1e12);
  w += fmt::format("; {} moved per GPU", FormatBytes(static_cast<uint64_t>(c.comm_bytes)));
  if (c.pp > 1) w += fmt::format("; bubble {:.1f}% ({} micro-batches)", 100 * c.bubble, c.accum);
  if (c.zero >= 3) w += "; ZeRO 3 gathers parameters every micro-batch";
  if (c.checkpoint) w += "; recomputes every block";
  return w;
}

}  // namespace

Status ValidateLayout(const LayoutOptions& o) {
  if (o.gpus < 1 || o.gpus > (1 << 20)) return Error{"--gpus must be between 1 and 1048576"};
  if (o.gpus_per_node < 1 || o.gpus_per_node > 1024) {
    return Error{"--gpus-per-node must be between 1 and 1024"};
  }
  if (o.global_batch < 1) return Error{"--global-batch must be at least 1"};
  if (o.threads < 1 || o.threads > 256) return Error{"--threads must be between 1 and 256"};
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
  EstimateFlags base_flags = options.base;
  base_flags.accum = 1;
  auto base = ParseEstimateFlags(base_flags);
  if (!base) return base.error();
  Shared s{path, options, *base, "", 0, 0, 0, SpeedsOf(options.gpu), {}, {}, {}};
  LayoutResult r;
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

  // (tp, pp) pairs; each task searches its ZeRO stage, checkpointing and micro-batch.
  struct Task {
    int tp, pp, dp;
  };
  std::vector<Task> tasks;
  for (int tp : Divisors(options.gpus)) {
    if (tp > std::min(options.max_tp, options.gpus_per_node)) continue;
    for (int pp : Divisors(options.gpus / tp)) {
      if (pp > 1 && pp > s.blocks) continue;
      tasks.push_back({tp, pp, options.gpus / tp / pp});
    }
  }
  std::vector<std::vector<LayoutCandidate>> found(tasks.size());
  std::vector<Status> errors(tasks.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < tasks.size(); i = next++) {
      const Task& t = tasks[i];
      std::vector<LayoutCandidate>& out = found[i];
      LayoutCandidate c;
      c.tp = t.tp;
      c.pp = t.pp;
      c.dp = t.dp;
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
        if (per_rank % b == 0 && per_rank / b <= kMaxMicroBatches) micros.push_back(b);
      }
      std::vector<int> zeros = {0};
      if (t.dp > 1) zeros = {0, 1, 2, 3};
      bool done = false;
      std::string failed;
      for (bool ckpt : {false, true}) {
        for (int zero : zeros) {
          LayoutCandidate base_c = c;
          base_c.zero = zero;
          base_c.checkpoint = ckpt;
          if (done || !failed.empty()) {
            base_c.status = !failed.empty()
                                ? "not simulated: the same tp and pp failed (" + failed + ")"
                                : "not simulated: a layout with less recompute or a lower ZeRO "
                                  "stage fits (same or less communication)";
            out.push_back(base_c);
            continue;
          }
          auto eval = [&](size_t k) -> LayoutCandidate {
            LayoutCandidate x = base_c;
            x.micro = micros[k];
            x.accum = static_cast<int>(per_rank / micros[k]);
            if (auto st = Evaluate(s, x, false); !st) {
              x.status = "error: " + st.message();
              x.simulated = true;
            }
            return x;
          };
          std::vector<LayoutCandidate> tried;
          if (t.pp == 1) {
            // The largest micro-batch that fits (the peak grows with it).
            size_t lo = 0, hi = micros.size();  // fits below lo is unknown; [lo, hi) open
            int best = -1;
            while (lo < hi) {
              size_t mid = (lo + hi) / 2;
              LayoutCandidate x = eval(mid);
              bool fits = x.fits;
              bool error = x.status.rfind("error: ", 0) == 0;
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
            tried.push_back(eval(0));  // the most micro-batches: the least bubble
          }
          for (LayoutCandidate& x : tried) {
            done = done || x.fits;
            // An error (a model tensor parallelism cannot split, ...) is the same for every
            // ZeRO stage, micro-batch and checkpointing: the rest of this (tp, pp) is skipped.
            if (x.status.rfind("error: ", 0) == 0 && failed.empty()) failed = x.status.substr(7);
            out.push_back(std::move(x));
          }
        }
      }
    }
  };
  const int threads = std::max(1, std::min<int>(options.threads, static_cast<int>(tasks.size())));
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
  nlohmann::json all = nlohmann::json::array();
  for (const LayoutCandidate& c : r.candidates) {
    nlohmann::json x = {{"tp", c.tp},
                        {"sequence_parallel", c.sequence_parallel},
                        {"pp", c.pp},
                        {"dp", c.dp},
                        {"zero", c.zero},
                        {"micro_batch", c.micro},
                        {"accum", c.accum},
                        {"checkpoint", c.checkpoint ? "every block" : "none"},
                        {"status", c.status},
                        {"fits", c.fits},
                        {"verified", c.verified}};
    if (c.simulated && c.status.rfind("error", 0) != 0) {
      x["peak_bytes"] = c.peak_bytes;
      x["nccl_buffer_bytes"] = c.nccl_bytes;
      if (!c.stage_peaks.empty()) x["stage_peak_bytes"] = c.stage_peaks;
      x["flops_per_gpu"] = c.flops_per_gpu;
      x["comm_bytes_per_gpu"] = c.comm_bytes;
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
      "fit in {} per GPU (capacity {} - CUDA context {} - cuBLAS workspaces {})\n",
      r.candidates.size(), simulated, r.simulations, r.blocks, r.seconds, fit, FormatBytes(usable),
      FormatBytes(r.budget.capacity), FormatBytes(r.budget.context),
      FormatBytes(r.workspace_bytes));
  if (!r.sequence_parallel_available) {
    out += "(this build has no tensor parallelism: tp = 1 only)\n";
  }
  if (fit == 0) {
    out += "nothing fits; the closest:\n";
  }
  out += fmt::format("{:>3} {:>3} {:>3} {:>4} {:>4} {:>5} {:>5} {:>5} {:>5} {:>11} {:>9}  {}\n",
                     "#", "tp", "sp", "pp", "dp", "zero", "micro", "accum", "ckpt", "peak",
                     "step (s)", "why");
  size_t shown = 0;
  for (const LayoutCandidate& c : r.candidates) {
    if (shown >= top) break;
    if (fit > 0 && !c.fits) break;
    if (!c.simulated) continue;
    ++shown;
    out += fmt::format(
        "{:>3} {:>3} {:>3} {:>4} {:>4} {:>5} {:>5} {:>5} {:>5} {:>11} {:>9.4g}  {}{}\n", shown,
        c.tp, c.sequence_parallel ? "yes" : "no", c.pp, c.dp, c.zero, c.micro, c.accum,
        c.checkpoint ? "all" : "none", FormatBytes(c.peak_bytes), c.step_seconds,
        c.why.empty() ? c.status : c.why, c.verified && c.pp > 1 ? " (every stage simulated)" : "");
  }
  return out;
}

}  // namespace vramsim

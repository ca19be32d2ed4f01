#include "engine/fit.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "importer/onnx_reader.h"
#include "policies/accumulation.h"
#include "policies/recompute.h"
#include "policies/sharding.h"
#include "simulator/peak.h"

namespace vramsim {
namespace {

// fmt rather than "-" + string: GCC 12 at -O3 sees a bogus overlap there (-Wrestrict).
std::string Signed(int64_t bytes) {
  return bytes < 0 ? fmt::format("-{}", FormatBytes(static_cast<uint64_t>(-bytes)))
                   : FormatBytes(static_cast<uint64_t>(bytes));
}

std::string DimsText(const std::map<std::string, int64_t>& dims) {
  std::string s;
  for (const auto& [k, v] : dims) s += fmt::format("{}{}={}", s.empty() ? "" : " ", k, v);
  return s;
}

}  // namespace

Result<FitOptions> MakeFitOptions(const std::string& gpu, uint64_t capacity_override,
                                  bool expandable_segments) {
  auto device = FindDevice(gpu);
  if (!device) return device.error();
  FitOptions f;
  f.device = *device;
  if (capacity_override) f.device.capacity_bytes = capacity_override;
  f.expandable_segments = expandable_segments;
  return f;
}

namespace {

// The evaluation of an estimate on the device.
Result<FitEvaluation> EvaluateEstimate(Result<Estimate> e,
                                       const std::map<std::string, int64_t>& dims,
                                       const FitOptions& fit) {
  if (!e) return e.error();
  FitEvaluation r;
  r.dims = dims;
  r.peak_bytes = e->peak.peak_bytes;
  for (const PlanOp& op : e->plan.ops) {
    r.has_convolutions = r.has_convolutions || op.type == "Conv" || op.type == "ConvTranspose";
  }
  // NCCL's buffers with this device's figures, where the estimate counted them (CUDA, more
  // than one rank).
  if (e->nccl.bytes) r.nccl = NcclBuffers(fit.device, e->groups);
  r.budget = BudgetFor(fit.device, r.has_convolutions, r.nccl.bytes);
  AllocatorReplayOptions ro;
  ro.allocator.expandable_segments = fit.expandable_segments;
  ro.extra = LibraryWorkspaces(fit.device);
  for (const ExtraAllocation& x : ro.extra) r.workspace_bytes += x.bytes;
  auto unlimited = ReplayCachingAllocator(e->trace, ro);
  if (!unlimited) return unlimited.error();
  r.allocator = *unlimited;
  r.headroom =
      static_cast<int64_t>(r.budget.usable) - static_cast<int64_t>(r.allocator.max_reserved);
  if (r.allocator.max_reserved <= r.budget.usable) {
    r.fits = true;
  } else if (r.budget.usable > 0 && r.allocator.max_allocated <= r.budget.usable) {
    // Allocated bytes above the usable memory fail whatever the cache frees: no replay.
    ro.allocator.capacity_bytes = r.budget.usable;
    auto limited = ReplayCachingAllocator(e->trace, ro);
    if (!limited) return limited.error();
    r.fits = !limited->oom;
    r.needs_cache_flush = r.fits;
  }
  r.recompute_pct = e->overhead_pct();
  r.blocks = RepeatedBlocks(e->plan);
  r.model_state_bytes = ModelStatesAtOptimizerStart(e->trace);
  return r;
}

// Imports each set of micro-batch dims once: fit's changes of precision and checkpointing
// share the base's graph, and each accumulation count has its own.
class GraphCache {
 public:
  explicit GraphCache(const std::string& model) : model_(model) {}
  Result<Estimate> Run(const std::map<std::string, int64_t>& dims, const EstimateOptions& options) {
    auto micro = MicroBatchDims(dims, {options.micro_batches, options.batch_dim});
    if (!micro) return micro.error();
    auto key = std::make_pair(*micro, options.allow_constant_weights);
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      auto g = ImportForEstimate(model_, dims, options);
      if (!g) return g.error();
      it = graphs_.emplace(key, std::make_unique<Graph>(std::move(g.value()))).first;
    }
    auto e = RunEstimate(*it->second, options);
    if (!e) return Error{model_ + ": " + e.error().message};
    return e;
  }

 private:
  std::string model_;
  std::map<std::pair<std::map<std::string, int64_t>, bool>, std::unique_ptr<Graph>> graphs_;
};

}  // namespace

Result<FitEvaluation> EvaluateFit(const std::string& model,
                                  const std::map<std::string, int64_t>& dims,
                                  const EstimateOptions& options, const FitOptions& fit) {
  if (options.target.device != Device::kCuda) {
    return Error{"fit and max-batch model a CUDA device: use --target torch-cuda"};
  }
  return EvaluateEstimate(EstimateModel(model, dims, options), dims, fit);
}

std::vector<int64_t> AccumulationCandidates(int64_t batch, int64_t current) {
  std::vector<int64_t> out;
  if (batch < 2) return out;
  // Factor by trial division up to 10^6; a cofactor left above that is taken as prime (a
  // product of two such primes hides a few divisors, which only thins the candidates).
  std::vector<std::pair<int64_t, int>> factors;
  int64_t n = batch;
  for (int64_t p = 2; p <= 1000000 && p <= n / p; ++p) {
    int e = 0;
    while (n % p == 0) {
      n /= p;
      ++e;
    }
    if (e) factors.push_back({p, e});
  }
  if (n > 1) factors.push_back({n, 1});
  std::vector<int64_t> divisors = {1};
  for (auto [p, e] : factors) {
    size_t count = divisors.size();
    for (size_t i = 0; i < count; ++i) {
      int64_t d = divisors[i];
      for (int k = 0; k < e; ++k) {
        d *= p;  // a divisor of batch: no overflow
        if (d <= kMaxMicroBatches) divisors.push_back(d);
      }
    }
  }
  std::sort(divisors.begin(), divisors.end());
  for (int64_t d : divisors) {
    if (d > current) out.push_back(d);
  }
  constexpr size_t kAll = 64;
  if (out.size() <= kAll) return out;
  std::vector<int64_t> picked;
  for (int64_t p = 2;; p *= 2) {
    auto it = std::lower_bound(out.begin(), out.end(), p);
    if (it == out.end()) break;
    if (picked.empty() || picked.back() != *it) picked.push_back(*it);
    if (p > kMaxMicroBatches) break;
  }
  if (picked.back() != out.back()) picked.push_back(out.back());
  return picked;
}

Status CheckBatchDim(const std::string& model, const std::string& dim) {
  auto proto = ReadModel(model);
  if (!proto) return Error{proto.error().message};
  std::set<std::string> initializers, named;
  for (const auto& init : proto->graph().initializer()) initializers.insert(init.name());
  for (const auto& in : proto->graph().input()) {
    if (initializers.count(in.name()) || !in.type().has_tensor_type() ||
        !in.type().tensor_type().has_shape()) {
      continue;
    }
    for (const auto& d : in.type().tensor_type().shape().dim()) {
      if (d.has_dim_param() && !d.dim_param().empty()) named.insert(d.dim_param());
    }
  }
  if (named.count(dim)) return {};
  if (named.empty()) {
    return Error{model + ": the model has no dimension '" + dim +
                 "'; its inputs have fixed shapes - re-export with dynamic_axes"};
  }
  std::string list;
  for (const std::string& n : named) list += (list.empty() ? "" : ", ") + n;
  return Error{model + ": the model has no dimension '" + dim + "' (its inputs' named dims: " +
               list + "); name the batch with --dim-name, or re-export with dynamic_axes"};
}

std::string FitChange::Args() const {
  std::string s;
  if (!precision.empty()) s += "--precision " + precision;
  if (!checkpoint.empty()) {
    s += fmt::format("{}--checkpoint {}", s.empty() ? "" : " ", CompactScopes(checkpoint));
  }
  if (accum > 0) s += fmt::format("{}--accum {}", s.empty() ? "" : " ", accum);
  return s;
}

Result<FitReport> Fit(const std::string& model, const std::map<std::string, int64_t>& dims,
                      const EstimateOptions& options, const FitOptions& fit) {
  if (options.target.device != Device::kCuda) {
    return Error{"fit and max-batch model a CUDA device: use --target torch-cuda"};
  }
  FitReport report;
  GraphCache graphs(model);
  auto evaluate_fit = [&](const std::map<std::string, int64_t>& d,
                          const EstimateOptions& o) -> Result<FitEvaluation> {
    return EvaluateEstimate(graphs.Run(d, o), d, fit);
  };
  auto base = evaluate_fit(dims, options);
  report.simulations = 1;
  if (base && base->fits) {
    report.base = *base;
    return report;
  }

  // The changes to try.
  const bool bf16 = fit.device.bf16;
  const std::string amp = bf16 ? "amp-bf16" : "amp-fp16", pure = bf16 ? "bf16" : "fp16";
  std::string amp_change, pure_change;
  if (options.precision == "fp32") {
    amp_change = amp;
    pure_change = pure;
  } else if (options.precision.rfind("amp-", 0) == 0) {
    pure_change = pure;
  }

  // The model states first: parameters, gradients and optimizer state do not shrink with the
  // batch, accumulation or checkpointing. They come from the base evaluation, or, when the
  // requested batch could not be simulated (bytes out of range), from batch 1.
  auto batch_it = dims.find(options.batch_dim);
  auto at_batch_one = [&](const std::string& precision) {
    std::map<std::string, int64_t> one = dims;
    if (batch_it != dims.end()) one[options.batch_dim] = 1;
    EstimateOptions o = options;
    o.micro_batches = 1;
    o.precision = precision;
    ++report.simulations;
    return evaluate_fit(one, o);
  };
  std::optional<FitEvaluation> states;
  if (base) {
    states = *base;
  } else if (batch_it != dims.end() && batch_it->second > 1) {
    if (auto probe = at_batch_one(options.precision)) states = *probe;
  }
  bool only_pure = false;
  if (states && states->model_state_bytes > states->budget.usable) {
    bool pure_fits = false;
    if (!pure_change.empty()) {
      auto p = at_batch_one(pure_change);
      pure_fits = p && p->model_state_bytes <= p->budget.usable;
    }
    if (!pure_fits) {
      report.base = *states;
      report.base.fits = false;
      report.model_states_exceed = true;
      return report;
    }
    only_pure = true;  // only changes with pure half precision can fit
    amp_change.clear();
  }
  if (!base) return base.error();
  report.base = *base;

  std::vector<std::string> blocks;
  if (options.checkpoint.empty()) blocks = report.base.blocks;
  std::vector<int64_t> accums;  // divisors of the batch above the current accumulation
  if (batch_it != dims.end() && batch_it->second > 1) {
    accums = AccumulationCandidates(batch_it->second, options.micro_batches);
  }

  Status failure;
  std::map<std::string, FitEvaluation> evaluated;  // by FitChange::Args()
  evaluated.emplace("", report.base);
  auto evaluate = [&](FitChange c) -> std::optional<FitChange> {
    EstimateOptions o = options;
    if (!c.precision.empty()) o.precision = c.precision;
    if (!c.checkpoint.empty()) o.checkpoint = c.checkpoint;
    if (c.accum > 0) o.micro_batches = static_cast<int>(c.accum);
    auto r = evaluate_fit(dims, o);
    ++report.simulations;
    if (!r) {
      if (failure) failure = Error{r.error().message};
      return std::nullopt;
    }
    evaluated[c.Args()] = *r;
    if (!r->fits) return std::nullopt;
    c.result = *r;
    return c;
  };
  // The smallest accumulation that fits together with the other changes. Memory falls as K
  // grows (smaller micro-batches), so: the largest K, and when it fits, bisection between the
  // changes without accumulation (which did not fit) and it; at most ~7 simulations.
  // Reserved memory is close to affine in the micro-batch, so the change without accumulation
  // and the largest K give a first guess, checked with its neighbour below.
  auto with_accum = [&](FitChange c) -> std::optional<FitChange> {
    if (accums.empty()) return std::nullopt;
    const std::string without = c.Args();
    c.accum = static_cast<int>(accums.back());
    std::optional<FitChange> best = evaluate(c);
    if (!best) return std::nullopt;
    int lo = -1, hi = static_cast<int>(accums.size()) - 1;  // lo: does not fit; hi: fits
    auto probe = [&](int i) {
      c.accum = static_cast<int>(accums[i]);
      if (auto r = evaluate(c)) {
        best = r;
        hi = i;
      } else {
        lo = i;
      }
    };
    if (auto it = evaluated.find(without); it != evaluated.end() && hi > 0) {
      const double batch = static_cast<double>(batch_it->second);
      const double m0 = batch / std::max(options.micro_batches, 1);
      const double m1 = batch / static_cast<double>(accums.back());
      const double y0 = static_cast<double>(it->second.allocator.max_reserved);
      const double y1 = static_cast<double>(best->result.allocator.max_reserved);
      const double usable = static_cast<double>(best->result.budget.usable);
      if (m0 > m1 && y0 > y1) {
        const double m_fit = m1 + (usable - y1) * (m0 - m1) / (y0 - y1);
        int guess = hi;
        while (guess > 0 && batch / static_cast<double>(accums[guess - 1]) <= m_fit) --guess;
        if (guess < hi) probe(guess);
        if (hi == guess && guess - 1 > lo) probe(guess - 1);
      }
    }
    while (hi - lo > 1) probe(lo + (hi - lo) / 2);
    return best;
  };

  auto keep = [&](std::optional<FitChange> c) {
    if (c) report.fitting.push_back(*c);
  };
  FitChange none;
  FitChange p_amp = none, p_pure = none, ckpt = none;
  p_amp.precision = amp_change;
  p_pure.precision = pure_change;
  ckpt.checkpoint = blocks;
  // One change (with only_pure, only those with pure half precision can fit).
  if (!amp_change.empty()) keep(evaluate(p_amp));
  if (!accums.empty() && !only_pure) keep(with_accum(none));
  if (!blocks.empty() && !only_pure) keep(evaluate(ckpt));
  if (!pure_change.empty()) keep(evaluate(p_pure));
  if (!report.fitting.empty()) return report;
  // Two changes.
  for (const std::string& p : {amp_change, pure_change}) {
    if (p.empty()) continue;
    FitChange c = none;
    c.precision = p;
    if (!accums.empty()) keep(with_accum(c));
    if (!blocks.empty()) {
      c.checkpoint = blocks;
      keep(evaluate(c));
    }
  }
  if (!blocks.empty() && !accums.empty() && !only_pure) keep(with_accum(ckpt));
  if (!report.fitting.empty()) return report;
  // Three.
  if (!blocks.empty() && !accums.empty()) {
    for (const std::string& p : {amp_change, pure_change}) {
      if (p.empty()) continue;
      FitChange c = ckpt;
      c.precision = p;
      keep(with_accum(c));
    }
  }
  if (report.fitting.empty() && !failure) return Error{failure.message()};
  return report;
}

Result<MaxBatchReport> MaxBatch(const std::string& model, std::map<std::string, int64_t> dims,
                                const EstimateOptions& options, const FitOptions& fit,
                                int64_t limit) {
  if (auto s = CheckBatchDim(model, options.batch_dim); !s) return Error{s.message()};
  MaxBatchReport rep;
  rep.dim_name = options.batch_dim;
  rep.step = std::max(options.micro_batches, 1);
  const int64_t max_m = std::max<int64_t>(limit / rep.step, 1);
  std::map<int64_t, FitEvaluation> seen;
  Status failure;
  auto eval = [&](int64_t m) -> const FitEvaluation* {
    if (auto it = seen.find(m); it != seen.end()) return &it->second;
    dims[rep.dim_name] = m * rep.step;
    auto r = EvaluateFit(model, dims, options, fit);
    if (!r) {
      failure = Error{r.error().message};
      return nullptr;
    }
    rep.probes.push_back({m * rep.step, *r});
    return &seen.emplace(m, *r).first->second;
  };
  auto fail = [&]() -> Result<MaxBatchReport> { return Error{failure.message()}; };

  const FitEvaluation* e1 = eval(1);
  if (!e1) return fail();
  if (!e1->fits) {
    rep.above_max = *e1;
    return rep;
  }
  const double usable = static_cast<double>(e1->budget.usable);
  auto solve = [&](double slope, double intercept) -> int64_t {
    if (slope <= 0) return max_m;
    double m = std::floor((usable - intercept) / slope);
    if (!(m >= 1)) return 1;
    return static_cast<int64_t>(std::min<double>(m, static_cast<double>(max_m)));
  };
  // Two sizes give a line; a third at its answer refines it.
  int64_t m_b = 1;
  if (max_m >= 2) {
    const FitEvaluation* e2 = eval(2);
    if (!e2) return fail();
    double y1 = static_cast<double>(e1->allocator.max_reserved);
    double y2 = static_cast<double>(e2->allocator.max_reserved);
    rep.slope_bytes = y2 - y1;
    rep.intercept_bytes = y1 - rep.slope_bytes;
    int64_t m_a = solve(rep.slope_bytes, rep.intercept_bytes);
    m_b = m_a;
    if (m_a > 2) {
      const FitEvaluation* ea = eval(m_a);
      if (!ea) return fail();
      double ya = static_cast<double>(ea->allocator.max_reserved);
      rep.slope_bytes = (ya - y2) / static_cast<double>(m_a - 2);
      rep.intercept_bytes = y2 - 2 * rep.slope_bytes;
      m_b = solve(rep.slope_bytes, rep.intercept_bytes);
    }
  }
  // Verify around the answer: the largest batch whose reserved peak stays within the usable
  // memory, then the largest that fits at all (PyTorch freeing its cache when cudaMalloc
  // fails). lo satisfies the predicate (0: not even batch 1), hi does not (0: none below the
  // limit); a gallop from the start, then bisection.
  struct Bound {
    int64_t lo = 0, hi = 0;
  };
  auto boundary = [&](auto pred, int64_t start) -> std::optional<Bound> {
    auto test = [&](int64_t m) -> std::optional<bool> {
      const FitEvaluation* e = eval(m);
      if (!e) return std::nullopt;
      return pred(*e);
    };
    Bound b;
    auto t = test(start);
    if (!t) return std::nullopt;
    if (*t) {
      b.lo = start;
      for (int64_t d = 1;; d *= 2) {
        int64_t m = std::min(max_m, b.lo + d);
        if (m == b.lo) break;
        auto u = test(m);
        if (!u) return std::nullopt;
        if (!*u) {
          b.hi = m;
          break;
        }
        b.lo = m;
      }
    } else {
      b.hi = start;
      for (int64_t d = 1; b.hi > 1; d *= 2) {
        int64_t m = std::max<int64_t>(1, b.hi - d);
        auto u = test(m);
        if (!u) return std::nullopt;
        if (*u) {
          b.lo = m;
          break;
        }
        b.hi = m;
      }
    }
    while (b.hi > 0 && b.hi - b.lo > 1) {
      int64_t mid = b.lo + (b.hi - b.lo) / 2;
      auto u = test(mid);
      if (!u) return std::nullopt;
      (*u ? b.lo : b.hi) = mid;
    }
    return b;
  };
  auto no_flush =
      boundary([](const FitEvaluation& e) { return e.fits && !e.needs_cache_flush; }, m_b);
  if (!no_flush) return fail();
  rep.max_batch_without_cache_flush = no_flush->lo * rep.step;
  auto any =
      boundary([](const FitEvaluation& e) { return e.fits; }, std::max<int64_t>(no_flush->lo, 1));
  if (!any) return fail();
  const int64_t lo = any->lo, hi = any->hi;
  rep.max_batch = lo * rep.step;
  rep.at_max = *eval(lo);
  if (hi > 0) {
    const FitEvaluation* above = eval(hi);
    if (!above) return fail();
    rep.above_max = *above;
  }
  return rep;
}

nlohmann::json FitEvaluationJson(const FitEvaluation& e) {
  nlohmann::json j;
  j["dims"] = e.dims;
  j["fits"] = e.fits;
  j["needs_cache_flush"] = e.needs_cache_flush;
  j["headroom_bytes"] = e.headroom;
  j["peak_bytes"] = e.peak_bytes;
  j["workspace_bytes"] = e.workspace_bytes;
  j["max_allocated_bytes"] = e.allocator.max_allocated;
  j["max_reserved_bytes"] = e.allocator.max_reserved;
  j["fragmentation_bytes"] = e.allocator.fragmentation_bytes;
  j["segments"] = e.allocator.segments;
  j["usable_bytes"] = e.budget.usable;
  j["nccl_buffer_bytes"] = e.budget.nccl;
  j["recompute_pct"] = e.recompute_pct;
  j["model_state_bytes"] = e.model_state_bytes;
  return j;
}

namespace {

nlohmann::json DeviceJson(const FitOptions& fit, const DeviceBudget& b) {
  const DeviceProfile& d = fit.device;
  return {{"name", d.name},
          {"product", d.product},
          {"datasheet_memory", d.datasheet_memory},
          {"capacity_bytes", b.capacity},
          {"context_bytes", b.context},
          {"cudnn_allowance_bytes", b.cudnn_allowance},
          {"nccl_buffer_bytes", b.nccl},
          {"usable_bytes", b.usable},
          {"cublas_workspace_bytes", d.cublas_workspace_bytes},
          {"cublaslt_workspace_bytes", d.cublaslt_workspace_bytes},
          {"blas_handles", d.blas_handles},
          {"expandable_segments", fit.expandable_segments},
          {"sources", d.sources},
          {"nccl_sources", d.nccl_sources}};
}

std::string BudgetText(const FitOptions& fit, const FitEvaluation& e) {
  const DeviceProfile& d = fit.device;
  std::string s = fmt::format("gpu {} ({}, {}): {} total\n", d.name, d.product, d.datasheet_memory,
                              FormatBytes(e.budget.capacity));
  s += fmt::format("  CUDA context (estimate)      {:>12}\n", FormatBytes(e.budget.context));
  if (e.budget.cudnn_allowance) {
    s += fmt::format("  cuDNN workspace allowance    {:>12}\n",
                     FormatBytes(e.budget.cudnn_allowance));
  }
  if (e.budget.nccl) {
    s += fmt::format("  NCCL buffers (estimate)      {:>12}  = {}\n", FormatBytes(e.budget.nccl),
                     NcclTermText(e.nccl));
  }
  s += fmt::format("  left for PyTorch's allocator {:>12}\n", FormatBytes(e.budget.usable));
  return s;
}

std::string EvaluationText(const FitEvaluation& e) {
  std::string s;
  s += fmt::format("  tensors at the peak          {:>12}\n", FormatBytes(e.peak_bytes));
  s += fmt::format("  cuBLAS/cuBLASLt workspaces   {:>12}\n", FormatBytes(e.workspace_bytes));
  s += fmt::format("  max allocated                {:>12}\n",
                   FormatBytes(e.allocator.max_allocated));
  s += fmt::format("  max reserved                 {:>12}  ({} more than max allocated)\n",
                   FormatBytes(e.allocator.max_reserved),
                   FormatBytes(e.allocator.fragmentation_bytes));
  return s;
}

}  // namespace

nlohmann::json FitReportJson(const FitReport& r, const FitOptions& fit) {
  nlohmann::json j = FitEvaluationJson(r.base);
  j["gpu"] = DeviceJson(fit, r.base.budget);
  j["simulations"] = r.simulations;
  j["model_states_exceed"] = r.model_states_exceed;
  nlohmann::json changes = nlohmann::json::array();
  for (const FitChange& c : r.fitting) {
    nlohmann::json x = FitEvaluationJson(c.result);
    x["args"] = c.Args();
    if (!c.precision.empty()) x["precision"] = c.precision;
    if (!c.checkpoint.empty()) x["checkpoint"] = c.checkpoint;
    if (c.accum > 0) x["accum"] = c.accum;
    changes.push_back(x);
  }
  j["suggestion"] = changes.empty() ? nlohmann::json(nullptr) : changes[0];
  j["alternatives"] = changes;
  return j;
}

std::string FitReportText(const FitReport& r, const FitOptions& fit) {
  std::string s = BudgetText(fit, r.base);
  if (r.model_states_exceed) {
    s += fmt::format(
        "  model states                 {:>12}  (parameters, gradients, optimizer "
        "state)\n",
        FormatBytes(r.base.model_state_bytes));
    s += fmt::format(
        "fits: no; the model states alone exceed the {} left for PyTorch's allocator by {}, so "
        "no batch size, gradient accumulation, checkpointing or mixed precision can fit (nor "
        "pure half precision); shard them (--data-parallel N --zero 3) or use a larger GPU\n",
        FormatBytes(r.base.budget.usable),
        FormatBytes(r.base.model_state_bytes - r.base.budget.usable));
    return s;
  }
  s += fmt::format("step ({}):\n", DimsText(r.base.dims));
  s += EvaluationText(r.base);
  if (r.base.fits && !r.base.needs_cache_flush) {
    s += fmt::format("fits: yes, headroom {}\n", Signed(r.base.headroom));
    return s;
  }
  if (r.base.fits) {
    s += fmt::format(
        "fits: yes, but only because PyTorch frees its cached segments when cudaMalloc fails "
        "(reserved is {} over; slower steps)\n",
        FormatBytes(static_cast<uint64_t>(-r.base.headroom)));
    return s;
  }
  s += fmt::format("fits: no, short by {}\n", FormatBytes(static_cast<uint64_t>(-r.base.headroom)));
  if (r.fitting.empty()) {
    s += "no combination of mixed precision, checkpointing of the repeated blocks and gradient "
         "accumulation fits\n";
    return s;
  }
  s += fmt::format("smallest change that fits: {}\n", r.fitting[0].Args());
  for (const FitChange& c : r.fitting) {
    s += fmt::format("  {:<40} reserved {:>12}, headroom {}{}{}\n", c.Args(),
                     FormatBytes(c.result.allocator.max_reserved), Signed(c.result.headroom),
                     c.result.needs_cache_flush ? " (with cache flushes)" : "",
                     c.checkpoint.empty()
                         ? ""
                         : fmt::format(", recompute {:.1f}% of the step", c.result.recompute_pct));
  }
  // Pure half precision is not amp: say what it changes beyond the activations.
  for (const FitChange& c : r.fitting) {
    if (c.precision == "bf16" || c.precision == "fp16") {
      s += fmt::format(
          "note: --precision {0} is pure {0}: parameters, gradients and the optimizer state "
          "(Adam's two moments) are {0} too, which can hurt convergence; amp keeps fp32 "
          "weights and moments\n",
          c.precision);
      break;
    }
  }
  return s;
}

nlohmann::json MaxBatchJson(const MaxBatchReport& r, const FitOptions& fit) {
  nlohmann::json j;
  j["max_batch"] = r.max_batch;
  j["max_batch_without_cache_flush"] = r.max_batch_without_cache_flush;
  j["dim_name"] = r.dim_name;
  j["batch_step"] = r.step;
  j["simulations"] = r.simulations();
  const FitEvaluation* any = r.at_max ? &*r.at_max : r.above_max ? &*r.above_max : nullptr;
  if (any) j["gpu"] = DeviceJson(fit, any->budget);
  j["affine"] = {{"slope_bytes_per_step", r.slope_bytes}, {"intercept_bytes", r.intercept_bytes}};
  nlohmann::json probes = nlohmann::json::array();
  for (const auto& [b, e] : r.probes) {
    probes.push_back(
        {{"batch", b}, {"max_reserved_bytes", e.allocator.max_reserved}, {"fits", e.fits}});
  }
  j["probes"] = probes;
  j["at_max"] = r.at_max ? FitEvaluationJson(*r.at_max) : nlohmann::json(nullptr);
  j["above_max"] = r.above_max ? FitEvaluationJson(*r.above_max) : nlohmann::json(nullptr);
  return j;
}

std::string MaxBatchText(const MaxBatchReport& r, const FitOptions& fit) {
  std::string s;
  const FitEvaluation* any = r.at_max ? &*r.at_max : r.above_max ? &*r.above_max : nullptr;
  if (any) s += BudgetText(fit, *any);
  if (r.max_batch == 0) {
    s += fmt::format("max {}: none; {}={} does not fit (reserved {})\n", r.dim_name, r.dim_name,
                     r.step, any ? FormatBytes(any->allocator.max_reserved) : "?");
    return s;
  }
  s += fmt::format("max {}: {}  ({} simulations)\n", r.dim_name, r.max_batch, r.simulations());
  if (r.max_batch_without_cache_flush != r.max_batch) {
    s += fmt::format(
        "  (up to {} without PyTorch freeing its cached segments on a failed cudaMalloc)\n",
        r.max_batch_without_cache_flush);
  }
  if (r.at_max && r.at_max->needs_cache_flush) {
    // Reserved over the usable memory and still "fits": say why, or it reads as a bug.
    s += fmt::format(
        "  at {}: reserved {} is {} over the {} usable, yet the step runs: when cudaMalloc "
        "fails, PyTorch frees its cached unused segments and retries, and the tensors alive at "
        "once (allocated peak {}) stay within the usable memory; such steps are slower (the "
        "frees synchronize the device)\n",
        r.max_batch, FormatBytes(r.at_max->allocator.max_reserved),
        FormatBytes(r.at_max->allocator.max_reserved > r.at_max->budget.usable
                        ? r.at_max->allocator.max_reserved - r.at_max->budget.usable
                        : 0),
        FormatBytes(r.at_max->budget.usable), FormatBytes(r.at_max->allocator.max_allocated));
  } else if (r.at_max) {
    s += fmt::format("  at {}: reserved {}, headroom {}\n", r.max_batch,
                     FormatBytes(r.at_max->allocator.max_reserved), Signed(r.at_max->headroom));
  }
  if (r.above_max) {
    s += fmt::format("  at {}: reserved {}: does not fit\n", r.max_batch + r.step,
                     FormatBytes(r.above_max->allocator.max_reserved));
  }
  return s;
}

}  // namespace vramsim

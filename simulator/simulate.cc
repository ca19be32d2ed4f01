#include "simulator/simulate.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <set>

#include "simulator/peak.h"

namespace vramsim {
namespace {

// The most bytes one simulated step may allocate in all: every sum of live bytes downstream
// (the peak, the allocator's reserved memory, headroom as int64) then stays in range.
constexpr uint64_t kMaxStepBytes = uint64_t{1} << 62;

// What an op's extra output (named "<op>:<what>" by the plan builder) is, for reports: a
// max-pool's indices are not the op's activation, and "made by MaxPool" did not say so.
std::string ExtraWhy(const std::string& tensor, const PlanOp& op, bool saved) {
  std::string what = tensor.size() > op.name.size() + 1 && tensor.rfind(op.name + ":", 0) == 0
                         ? tensor.substr(op.name.size() + 1)
                         : tensor;
  static const std::map<std::string, std::string> kKnown = {
      {"indices", "argmax indices"},  {"mask", "dropout mask"},
      {"save_mean", "batch mean"},    {"save_invstd", "batch inverse std"},
      {"mean", "normalization mean"}, {"rstd", "normalization inverse std"}};
  if (auto it = kKnown.find(what); it != kKnown.end()) what = it->second;
  return saved ? what + " " + op.type + " " + op.name + " keeps for its backward"
               : what + " made by " + op.type + " " + op.name;
}

class Runtime {
 public:
  Runtime(const TrainingPlan& plan, const SimulateOptions& options)
      : plan_(plan), options_(options), regions_(&plan.regions) {
    region_of_.reserve(plan.ops.size());
    for (const PlanOp& op : plan.ops) region_of_.push_back(op.region);
  }

  // The planner's question (ForwardHeldBytes): the first micro-batch's forward with `regions`
  // checkpointed in place of plan.regions, with tracing off (no names, steps or events).
  Runtime(const TrainingPlan& plan, const std::vector<std::vector<int>>& regions,
          uint64_t rng_state_bytes, const SimulateOptions& options)
      : plan_(plan), options_(options), tracing_(false) {
    own_regions_.resize(regions.size());
    region_of_.assign(plan.ops.size(), -1);
    for (size_t r = 0; r < regions.size(); ++r) {
      own_regions_[r].ops = regions[r];
      own_regions_[r].rng_state_bytes = rng_state_bytes;
      for (int i : regions[r]) region_of_[i] = static_cast<int>(r);
    }
    regions_ = &own_regions_;
  }

  // Bytes (each storage rounded up to round_bytes) the forward allocated that are still
  // allocated when it ends.
  Result<uint64_t> ForwardHeld(uint64_t round_bytes) {
    Setup();
    const size_t first = bytes_.size();
    Forward();
    EndForward();
    uint64_t held = 0;
    for (size_t b = first; b < bytes_.size() && !overflow_; ++b) {
      if (refs_[b] <= 0) continue;
      uint64_t r = RoundUp(bytes_[b], round_bytes);
      if (r > kMaxStepBytes - held) overflow_ = true;
      held += r;
    }
    if (overflow_) return OverflowError();
    return held;
  }

  Result<Trace> Run() {
    Setup();
    const int k = std::max(plan_.micro_batches, 1);
    const int passes = SimulatedMicroBatches(plan_, options_);
    for (int pass = 0; pass < passes; ++pass) {
      if (pass > 0) ResetPass();
      if (k > 1) {
        const std::string of = " of " + std::to_string(k);
        std::string name = "micro-batch " + std::to_string(pass + 1) + of;
        if (pass == 1 && passes < k) {
          name += " (micro-batches 2.." + std::to_string(k) +
                  " are identical in memory: gradients exist, the previous activations are "
                  "gone; simulated once)";
        }
        Step(Phase::kForward, name, "micro-batch", "");
      }
      Forward();
      EndForward();
      if (auto s = Loss(); !s) return Error{s.message()};
      Backward();
    }
    Optimizer();
    End();
    if (overflow_) return OverflowError();
    return std::move(trace_);
  }

 private:
  static Error OverflowError() {
    return Error{
        "the step's tensors add up to more than 2^62 bytes (4 EiB): the byte counts would "
        "overflow; use smaller dims"};
  }

  int RegionOf(const PlanOp& op) const { return region_of_[&op - plan_.ops.data()]; }
  const std::vector<CheckpointRegion>& Regions() const { return *regions_; }

  // ---- storage -------------------------------------------------------------------------
  void Step(Phase phase, std::string name, std::string type, std::string scope) {
    if (!tracing_) return;
    trace_.steps.push_back({phase, std::move(name), std::move(type), std::move(scope), 0});
  }
  StepId Now() const { return static_cast<StepId>(trace_.steps.size()) - 1; }

  BufferId Alloc(const std::string& name, uint64_t bytes, Category cat, DType dtype,
                 const std::vector<int64_t>& shape, const std::string& scope, std::string why) {
    if (bytes > kMaxStepBytes || allocated_ > kMaxStepBytes - bytes) {
      overflow_ = true;
      bytes = 0;  // the step is refused at the end; keep the sums in range meanwhile
    }
    allocated_ += bytes;
    refs_.push_back(1);
    if (!tracing_) {
      bytes_.push_back(bytes);
      return static_cast<BufferId>(bytes_.size()) - 1;
    }
    trace_.buffers.push_back({name, bytes, cat, dtype, shape, scope, std::move(why)});
    BufferId id = static_cast<BufferId>(trace_.buffers.size()) - 1;
    trace_.events.push_back({Event::Kind::kAlloc, id, Now()});
    return id;
  }
  BufferId AllocLike(const PlanTensor& t, const std::string& name, Category cat,
                     const std::string& scope, std::string why) {
    return Alloc(name, TensorBytes(t), cat, t.dtype, t.shape, scope, std::move(why));
  }
  PlanTensorId Io(const PlanOp& op, IoRef ref) const {
    const std::vector<PlanTensorId>& v = ref.output ? op.outputs : op.inputs;
    return ref.index < static_cast<int>(v.size()) ? v[ref.index] : -1;
  }
  // The op's forward scratch (the largest of its alternatives), allocated after its outputs
  // and freed before its inputs are released.
  void ForwardWorkspace(const PlanOp& op) {
    uint64_t most = 0;
    for (const std::vector<IoRef>& sum : op.forward_workspace) {
      uint64_t bytes = 0;
      for (IoRef ref : sum) {
        PlanTensorId t = Io(op, ref);
        if (t < 0 || plan_.tensors[t].metadata) continue;
        uint64_t b = TensorBytes(plan_.tensors[t]);
        bytes = b > UINT64_MAX - bytes ? UINT64_MAX : bytes + b;  // Alloc refuses it
      }
      most = std::max(most, bytes);
    }
    if (most == 0) return;
    Unref(Alloc(op.name + ":workspace", most, Category::kTransient, DType::kUInt8, {}, op.scope,
                "forward workspace"));
  }
  void Ref(BufferId b) { ++refs_[b]; }
  void Unref(BufferId b) {
    if (b < 0) return;
    if (--refs_[b] == 0 && tracing_) trace_.events.push_back({Event::Kind::kFree, b, Now()});
  }

  DType LossDType() const {
    return plan_.loss_dtype == DType::kUndefined ? plan_.tensors[plan_.outputs[0]].dtype
                                                 : plan_.loss_dtype;
  }

  // ---- forward tensors -----------------------------------------------------------------
  PlanTensorId Root(PlanTensorId t) const {
    while (plan_.tensors[t].view_of >= 0) t = plan_.tensors[t].view_of;
    return t;
  }

  void Materialize(PlanTensorId t, const std::string& scope, const std::string& producer) {
    const PlanTensor& x = plan_.tensors[t];
    if (x.metadata || storage_[t] >= 0) return;
    if (x.view_of >= 0 && storage_[x.view_of] >= 0) {
      storage_[t] = storage_[x.view_of];
      Ref(storage_[t]);
      return;
    }
    PlanTensorId root = Root(t);
    bool saved = saved_root_[root];
    if (!tracing_) {
      storage_[t] = Alloc(std::string(), TensorBytes(x), Category::kTransient, x.dtype, {}, scope,
                          std::string());
      return;
    }
    std::string why = saved ? "saved for the backward of " + saver_[root]
                            : "read by " + producer + "'s consumers";
    storage_[t] = AllocLike(x, x.name, saved ? Category::kSavedActivations : Category::kTransient,
                            scope, why);
  }

  void Release(PlanTensorId t) {
    if (t < 0 || plan_.tensors[t].metadata || storage_[t] < 0) return;
    if (--holds_[t] > 0) return;
    Unref(storage_[t]);
    storage_[t] = -1;
  }

  void Setup() {
    size_t n = plan_.tensors.size();
    storage_.assign(n, -1);
    holds_.assign(n, 0);
    saved_root_.assign(n, false);
    if (tracing_) saver_.assign(n, "");
    grad_.assign(n, -1);
    for (const PlanOp& op : plan_.ops) {
      for (PlanTensorId t : DistinctInputs(op)) ++holds_[t];
      for (PlanTensorId t : op.frame_releases) ++holds_[t];  // a module call's arguments
      if (RegionOf(op) >= 0) continue;  // a checkpointed op keeps nothing in the forward
      for (PlanTensorId t : op.saved) {
        ++holds_[t];
        PlanTensorId root = Root(t);
        if (tracing_ && !saved_root_[root]) saver_[root] = op.name;
        saved_root_[root] = true;
      }
    }
    // A checkpointed region keeps its inputs until its backward has run.
    region_inputs_.assign(Regions().size(), {});
    std::vector<int> inside(n, -1);  // the region whose op makes the tensor
    for (size_t r = 0; r < Regions().size(); ++r) {
      const int mark = static_cast<int>(r);
      for (int i : Regions()[r].ops) {
        for (PlanTensorId t : plan_.ops[i].outputs) {
          if (t >= 0) inside[t] = mark;
        }
      }
      for (int i : Regions()[r].ops) {
        for (PlanTensorId t : plan_.ops[i].inputs) {
          if (t < 0 || inside[t] == mark || plan_.tensors[t].metadata || IsPersistent(t)) continue;
          if (std::find(region_inputs_[r].begin(), region_inputs_[r].end(), t) !=
              region_inputs_[r].end()) {
            continue;
          }
          region_inputs_[r].push_back(t);
          ++holds_[t];
        }
      }
    }
    // Op-level regions: what their saved ops make and the recompute needs stays from the forward.
    schedules_.clear();
    for (const CheckpointRegion& region : Regions()) {
      schedules_.push_back(RegionSchedule(plan_, region));
      for (PlanTensorId t : schedules_.back().kept) {
        ++holds_[t];
        PlanTensorId root = Root(t);
        if (tracing_ && !saved_root_[root]) saver_[root] = region.scope + " (saved op)";
        saved_root_[root] = true;
      }
    }
    for (PlanTensorId t : plan_.outputs) ++holds_[t];  // the training script holds the outputs
    for (PlanTensorId t : plan_.forward_cache) ++holds_[t];
    if (!plan_.outputs.empty() && plan_.loss != LossKind::kNone) ++holds_[plan_.outputs[0]];
    base_holds_ = holds_;
    // Parameters receiving a gradient, in order of first use (the optimizer's param list).
    std::vector<bool> gets_grad(n, false);
    for (const PlanOp& op : plan_.ops) {
      for (int k : op.grad_inputs) {
        PlanTensorId t = op.inputs[k];
        if (plan_.tensors[t].role == TensorRole::kParameter) gets_grad[t] = true;
      }
    }
    Step(Phase::kSetup, "steady state", "setup", "");
    for (PlanTensorId p : plan_.parameters) {
      storage_[p] = AllocLike(plan_.tensors[p], plan_.tensors[p].name, Category::kParameters, "",
                              "parameter");
      holds_[p] = 1 << 30;
      if (gets_grad[p]) trained_.push_back(p);
    }
    for (PlanTensorId b : plan_.buffers) {
      storage_[b] =
          AllocLike(plan_.tensors[b], plan_.tensors[b].name, Category::kBuffers, "", "buffer");
      holds_[b] = 1 << 30;
    }
    // With gradient accumulation the whole batch stays resident; micro-batches are its chunks.
    int64_t whole = std::max(plan_.micro_batches, 1);
    auto whole_batch = [&](PlanTensor* t) {
      if (t->shape.empty()) return;
      if (__builtin_mul_overflow(t->shape[0], whole, &t->shape[0])) {
        overflow_ = true;
        t->shape[0] = 0;
      }
    };
    for (PlanTensorId b : plan_.batch) {
      PlanTensor full = plan_.tensors[b];
      whole_batch(&full);
      storage_[b] = AllocLike(full, full.name, Category::kBatch, "", "batch input");
      holds_[b] = 1 << 30;
    }
    if (plan_.loss != LossKind::kNone && !plan_.outputs.empty()) {
      const PlanTensor& logits = plan_.tensors[plan_.outputs[0]];
      PlanTensor labels;
      labels.shape = logits.shape;
      if (plan_.loss == LossKind::kCrossEntropy) {
        labels.dtype = DType::kInt64;
        if (!labels.shape.empty()) labels.shape.pop_back();
      } else {
        labels.dtype = logits.dtype;
      }
      whole_batch(&labels);
      labels_ = AllocLike(labels, "labels", Category::kBatch, "", "batch labels");
    }
    for (const auto& [name, bytes] : plan_.extra_buffers) {
      Alloc(name, bytes, Category::kBuffers, DType::kFloat32, {}, "", "training-loop buffer");
    }
    if (!tracing_) return;  // the forward replays never reach the optimizer
    const OptimizerSpec& opt = plan_.optimizer;
    for (PlanTensorId p : trained_) {
      const PlanTensor& t = plan_.tensors[p];
      for (int k = 0; k < opt.state_per_param; ++k) {
        state_.push_back(AllocLike(t, opt.name + " state " + std::to_string(k) + " of " + t.name,
                                   Category::kOptimizerState, "", "optimizer state"));
      }
      if (opt.step_counter_bytes) {
        state_.push_back(Alloc(opt.name + " step of " + t.name, opt.step_counter_bytes,
                               Category::kOptimizerState, DType::kFloat32, {}, "",
                               "optimizer step counter"));
      }
    }
  }

  bool IsPersistent(PlanTensorId t) const {
    TensorRole r = plan_.tensors[t].role;
    return r == TensorRole::kParameter || r == TensorRole::kBuffer || r == TensorRole::kDataInput;
  }

  // ---- checkpoint recomputation ----------------------------------------------------------
  void Recompute(int r) {
    const CheckpointRegion& region = Regions()[r];
    Step(Phase::kBackward, "recompute " + region.scope, "checkpoint recompute", region.scope);
    DropRecomputed();
    const RegionRecompute& schedule = schedules_[r];
    std::map<PlanTensorId, bool> saved;
    for (size_t k = 0; k < region.ops.size(); ++k) {
      const PlanOp& op = plan_.ops[region.ops[k]];
      std::vector<PlanTensorId> seen;
      for (PlanTensorId t : op.inputs) {
        if (!schedule.run[k]) break;
        if (t < 0 || std::find(seen.begin(), seen.end(), t) != seen.end()) continue;
        seen.push_back(t);
        ++rholds_[t];
      }
      for (PlanTensorId t : op.saved) {
        ++rholds_[t];
        saved[Root(t)] = true;
      }
    }
    const std::vector<PlanTensorId>* inputs = &region_inputs_[r];
    for (const std::vector<PlanTensorId>* from : {inputs, &schedule.kept}) {
      for (PlanTensorId t : *from) {
        if (storage_[t] < 0 || rstorage_.count(t)) continue;
        rstorage_[t] = storage_[t];
        Ref(storage_[t]);
      }
    }
    // Kept tensors now belong to the recompute: the forward's hold goes.
    ReleaseKept(r);
    auto rrelease = [&](PlanTensorId t) {
      auto it = rstorage_.find(t);
      if (it == rstorage_.end()) return;
      if (--rholds_[t] > 0) return;
      Unref(it->second);
      rstorage_.erase(it);
    };
    auto make = [&](PlanTensorId t, const PlanOp& op) {
      const PlanTensor& x = plan_.tensors[t];
      if (x.metadata || IsPersistent(t)) return;
      if (x.view_of >= 0 && rstorage_.count(x.view_of)) {
        rstorage_[t] = rstorage_[x.view_of];
        Ref(rstorage_[t]);
      } else if (x.view_of >= 0 && storage_[x.view_of] >= 0) {
        // A view of something the recompute did not make (a parameter's transpose): no copy.
        rstorage_[t] = storage_[x.view_of];
        Ref(rstorage_[t]);
      } else {
        bool keep = saved.count(Root(t)) > 0;
        rstorage_[t] = AllocLike(
            x, x.name, keep ? Category::kSavedActivations : Category::kTransient, op.scope,
            keep ? "recomputed for the backward of " + region.scope
                 : "recomputed by " + region.scope);
      }
    };
    bool first = true;
    for (size_t k = 0; k < region.ops.size(); ++k) {
      if (!schedule.run[k]) continue;
      const PlanOp& op = plan_.ops[region.ops[k]];
      // One step per recomputed op, so the peak inside a recompute names its op.
      if (!first && MakesTensors(plan_, op))
        Step(Phase::kBackward, "recompute " + op.name, op.type, op.scope);
      first = false;
      for (PlanTensorId t : op.copies) make(t, op);
      for (PlanTensorId t : op.extras) make(t, op);
      for (PlanTensorId t : op.outputs) {
        if (t >= 0) make(t, op);
      }
      ForwardWorkspace(op);
      std::vector<PlanTensorId> seen;
      for (PlanTensorId t : op.inputs) {
        if (t < 0 || std::find(seen.begin(), seen.end(), t) != seen.end()) continue;
        seen.push_back(t);
        rrelease(t);
      }
      // What the recompute made but nothing in the region reads or saves is dropped.
      for (std::vector<PlanTensorId> made : {op.copies, op.extras, op.outputs}) {
        for (PlanTensorId t : made) {
          if (t >= 0 && rstorage_.count(t) && rholds_[t] == 0) {
            ++rholds_[t];
            rrelease(t);
          }
        }
      }
    }
    // Region inputs nobody in the region saves were only needed to recompute.
    for (PlanTensorId t : region_inputs_[r]) {
      if (rstorage_.count(t) && !saved.count(Root(t))) {
        rholds_[t] = 1;
        rrelease(t);
      }
    }
    // Kept tensors the recompute did not read and nothing in the region saves.
    for (PlanTensorId t : schedule.kept) {
      if (rstorage_.count(t) && rholds_[t] == 0) {
        rholds_[t] = 1;
        rrelease(t);
      }
    }
    recomputed_[r] = true;
  }

  // Whatever a recompute kept that no backward released (ops no gradient reached).
  void DropRecomputed() {
    for (const auto& [t, b] : rstorage_) Unref(b);
    rstorage_.clear();
    rholds_.clear();
  }

  void ReleaseSaved(const PlanOp& op, const std::vector<PlanTensorId>& already = {}) {
    for (PlanTensorId t : op.saved) {
      if (std::find(already.begin(), already.end(), t) == already.end()) ReleaseSavedTensor(op, t);
    }
  }
  void ReleaseSavedTensor(const PlanOp& op, PlanTensorId t) {
    if (RegionOf(op) < 0) {
      Release(t);
      return;
    }
    auto it = rstorage_.find(t);
    if (it == rstorage_.end()) return;
    if (--rholds_[t] > 0) return;
    Unref(it->second);
    rstorage_.erase(it);
  }

  // The forward's holds on what an op-level region's saved ops made, once.
  void ReleaseKept(int r) {
    if (kept_released_[r]) return;
    kept_released_[r] = true;
    for (PlanTensorId t : schedules_[r].kept) Release(t);
  }

  // After the region's last backward op: drop what the checkpoint kept.
  void FinishRegion(int r) {
    if (finished_[r]) return;
    finished_[r] = true;
    ReleaseKept(r);
    for (PlanTensorId t : region_inputs_[r]) Release(t);
    if (rng_[r] >= 0) Unref(rng_[r]);
    rng_[r] = -1;
  }

  void Forward() {
    rng_.assign(Regions().size(), -1);
    recomputed_.assign(Regions().size(), false);
    finished_.assign(Regions().size(), false);
    kept_released_.assign(Regions().size(), false);
    for (const PlanOp& op : plan_.ops) {
      if (!MakesTensors(plan_, op)) {
        // Shape arithmetic reads only metadata, but it still counted as a reader.
        ReleaseInputs(op);
        continue;
      }
      if (tracing_) Step(Phase::kForward, op.name, op.type, op.scope);
      if (int r = RegionOf(op); r >= 0 && rng_[r] < 0 && Regions()[r].rng_state_bytes) {
        rng_[r] = Alloc("rng state of " + Regions()[r].scope, Regions()[r].rng_state_bytes,
                        Category::kTransient, DType::kUInt8, {}, op.scope,
                        "checkpoint's preserved RNG state");
      }
      for (PlanTensorId t : op.copies) {
        storage_[t] =
            AllocLike(plan_.tensors[t], plan_.tensors[t].name,
                      saved_root_[t] ? Category::kSavedActivations : Category::kTransient, op.scope,
                      saved_root_[t] ? "saved for the backward of " + op.name
                                     : "contiguous copy made by " + op.name);
        ++holds_[t];
      }
      for (PlanTensorId t : op.extras) {
        storage_[t] = AllocLike(
            plan_.tensors[t], plan_.tensors[t].name,
            saved_root_[t] ? Category::kSavedActivations : Category::kTransient, op.scope,
            tracing_ ? ExtraWhy(plan_.tensors[t].name, op, saved_root_[t]) : std::string());
        ++holds_[t];
      }
      for (PlanTensorId t : op.outputs) {
        if (t >= 0) Materialize(t, op.scope, op.name);
      }
      ForwardWorkspace(op);
      // Inputs read for the last time, then what this op made but nobody reads.
      ReleaseInputs(op);
      for (PlanTensorId t : op.copies) Release(t);
      for (PlanTensorId t : op.extras) Release(t);
      for (PlanTensorId t : op.outputs) {
        if (t >= 0 && storage_[t] >= 0 && holds_[t] == 0) {
          ++holds_[t];
          Release(t);
        }
      }
    }
  }

  // The next micro-batch: activations start over; parameter gradients persist.
  void ResetPass() {
    for (size_t t = 0; t < holds_.size(); ++t) {
      if (holds_[t] >= (1 << 29)) continue;  // parameters, buffers, batch
      holds_[t] = base_holds_[t];
      storage_[t] = -1;
      if (plan_.tensors[t].role != TensorRole::kParameter) grad_[t] = -1;
    }
  }

  // The forward is over: autocast drops its cast cache, and the script now holds the outputs
  // by its variable (until it is reassigned after the next forward, or the step returns).
  void EndForward() {
    for (PlanTensorId t : plan_.forward_cache) Release(t);
    std::vector<BufferId> held;
    for (PlanTensorId t : plan_.outputs) {
      if (storage_[t] < 0) continue;
      Ref(storage_[t]);
      held.push_back(storage_[t]);
      Release(t);
    }
    for (BufferId b : held_outputs_) Unref(b);
    held_outputs_ = std::move(held);
  }

  // The op's inputs, each once (an op may read a tensor twice: x * x); a scratch vector reused
  // from op to op, valid until the next call.
  const std::vector<PlanTensorId>& DistinctInputs(const PlanOp& op) {
    seen_.clear();
    for (PlanTensorId t : op.inputs) {
      if (t >= 0 && std::find(seen_.begin(), seen_.end(), t) == seen_.end()) seen_.push_back(t);
    }
    return seen_;
  }

  void ReleaseInputs(const PlanOp& op) {
    for (PlanTensorId t : DistinctInputs(op)) Release(t);
    for (PlanTensorId t : op.frame_releases) Release(t);  // the module call returns
  }

  Status Loss() {
    if (plan_.outputs.empty()) return Error{"the model has no output to train"};
    PlanTensorId out = plan_.outputs[0];
    const PlanTensor& logits = plan_.tensors[out];
    if (logits.metadata) return Error{"the first graph output '" + logits.name + "' is a constant"};
    if (plan_.loss == LossKind::kNone) return {};
    Step(Phase::kLoss, "loss", plan_.loss == LossKind::kMse ? "mse_loss" : "cross_entropy", "");
    PlanTensor scalar;
    scalar.dtype = logits.dtype;
    if (plan_.loss == LossKind::kCrossEntropy) {
      if (!IsFloating(logits.dtype) || logits.shape.empty()) {
        return Error{"cross-entropy needs floating logits with a class dimension; '" + logits.name +
                     "' is not (try --loss mse or --loss none)"};
      }
      // log_softmax (saved) then nll_loss (loss and total_weight, saved); under autocast the
      // logits are first cast to float32, the loss's type.
      PlanTensor in = logits;
      BufferId cast = -1;
      if (LossDType() != logits.dtype) {
        in.dtype = LossDType();
        cast = AllocLike(in, "float(" + logits.name + ")", Category::kTransient, "",
                         "autocast input of the loss");
      }
      log_probs_ = AllocLike(in, "log_softmax(" + logits.name + ")", Category::kSavedActivations,
                             "", "saved for the backward of the loss");
      if (cast >= 0 && plan_.loss_upcast_held) {
        // `logits = logits.float()`: the script's variable now names the fp32 copy, and the
        // model's own logits go unless something else holds them.
        auto held = std::find(held_outputs_.begin(), held_outputs_.end(), storage_[out]);
        if (held != held_outputs_.end()) {
          Unref(*held);
          *held = cast;
          cast = -1;
        }
      }
      Unref(cast);
      scalar.dtype = in.dtype;
      Release(out);
      total_weight_ = AllocLike(scalar, "nll_loss total_weight", Category::kSavedActivations, "",
                                "saved for the backward of the loss");
    } else {
      Release(out);  // mse saves its input and target, which stay alive anyway
      ++holds_[out];
    }
    BufferId previous = loss_;
    loss_ = AllocLike(scalar, "loss", Category::kTransient, "", "the loss");
    Unref(previous);  // the script's `loss` variable now names the new one
    return {};
  }

  // A new gradient contribution for tensor t, whose storage the caller holds one reference to.
  void AddGrad(PlanTensorId t, BufferId b) {
    const PlanTensor& x = plan_.tensors[t];
    if (grad_[t] < 0) {
      if (x.role == TensorRole::kParameter && refs_[b] > 1) {
        // AccumulateGrad clones a gradient it cannot steal.
        grad_[t] =
            AllocLike(x, "grad of " + x.name, Category::kGradients, "", "parameter gradient");
        Unref(b);
      } else {
        grad_[t] = b;
      }
      return;
    }
    if (x.role == TensorRole::kParameter || refs_[grad_[t]] == 1) {
      Unref(b);  // accumulated in place
      return;
    }
    BufferId sum = AllocLike(x, "grad of " + x.name, Category::kTransient, "", "gradient sum");
    Unref(grad_[t]);
    Unref(b);
    grad_[t] = sum;
  }

  void Backward() {
    PlanTensorId out = plan_.outputs[0];
    Step(Phase::kBackward, "loss backward", "loss backward", "");
    PlanTensor scalar;
    scalar.dtype = plan_.tensors[out].dtype;
    if (plan_.loss == LossKind::kCrossEntropy) {
      PlanTensor in = plan_.tensors[out];
      in.dtype = LossDType();
      scalar.dtype = in.dtype;
      BufferId g_loss =
          AllocLike(scalar, "grad of loss", Category::kTransient, "", "loss gradient");
      BufferId g_logp =
          AllocLike(in, "grad of log_softmax", Category::kTransient, "", "loss gradient");
      Unref(g_loss);
      Unref(total_weight_);
      BufferId g_out = AllocLike(in, "grad of " + plan_.tensors[out].name, Category::kTransient, "",
                                 "loss gradient");
      Unref(g_logp);
      Unref(log_probs_);
      if (in.dtype != plan_.tensors[out].dtype) {
        // The cast's backward converts the gradient back to the logits' type.
        BufferId g_half = AllocLike(plan_.tensors[out], "grad of " + plan_.tensors[out].name,
                                    Category::kTransient, "", "loss gradient");
        Unref(g_out);
        g_out = g_half;
      }
      AddGrad(out, g_out);
    } else if (plan_.loss == LossKind::kMse) {
      BufferId g_loss =
          AllocLike(scalar, "grad of loss", Category::kTransient, "", "loss gradient");
      BufferId g_out = AllocLike(plan_.tensors[out], "grad of " + plan_.tensors[out].name,
                                 Category::kTransient, "", "loss gradient");
      Unref(g_loss);
      Release(out);
      AddGrad(out, g_out);
    } else {
      AddGrad(out, AllocLike(plan_.tensors[out], "grad of " + plan_.tensors[out].name,
                             Category::kTransient, "", "output gradient"));
    }
    std::vector<const PlanOp*> skipped;
    for (auto it = plan_.ops.rbegin(); it != plan_.ops.rend(); ++it) {
      const PlanOp& op = *it;
      if (!op.needs_backward) continue;
      std::vector<PlanTensorId> outs;
      for (PlanTensorId t : op.outputs) {
        if (t >= 0 && grad_[t] >= 0) outs.push_back(t);
      }
      if (outs.empty()) {
        skipped.push_back(&op);
        continue;
      }
      if (int r = RegionOf(op); r >= 0 && !recomputed_[r]) Recompute(r);
      Step(Phase::kBackward, op.name, op.type + " backward", op.scope);
      std::vector<BufferId> workspace;
      for (PlanTensorId w : op.backward_workspace) {
        // The op's input as the policies left it (autocast retargets it to a cast).
        if (plan_.tensors[w].only_if_fp32 >= 0 && !op.inputs.empty() && op.inputs[0] >= 0 &&
            plan_.tensors[op.inputs[0]].dtype != DType::kFloat32) {
          continue;
        }
        workspace.push_back(AllocLike(plan_.tensors[w], op.name + ":backward workspace",
                                      Category::kTransient, op.scope, "backward workspace"));
      }
      for (IoRef ref : op.backward_copies) {
        PlanTensorId t = Io(op, ref);
        if (t < 0 || plan_.tensors[t].metadata) continue;
        PlanTensor like = plan_.tensors[t];
        if (ref.float32) like.dtype = DType::kFloat32;
        workspace.push_back(AllocLike(like, op.name + ":backward copy of " + like.name,
                                      Category::kTransient, op.scope,
                                      ref.output ? "output gradient reordered by the backward"
                                                 : "input reordered by the backward"));
      }
      auto make_grad = [&](int k) {
        PlanTensorId x = op.inputs[k];
        const PlanTensor& xt = plan_.tensors[x];
        bool passthrough = std::find(op.grad_passthrough.begin(), op.grad_passthrough.end(), k) !=
                               op.grad_passthrough.end() &&
                           (op.is_view || xt.shape == plan_.tensors[outs[0]].shape);
        if ((passthrough || op.grads_are_views) && outs.size() == 1 &&
            (op.is_view || !(op.type == "Sub" && k == 1))) {
          BufferId g = grad_[outs[0]];
          Ref(g);
          AddGrad(x, g);
          return;
        }
        bool param = xt.role == TensorRole::kParameter;
        AddGrad(x, AllocLike(xt, "grad of " + xt.name,
                             param && grad_[x] < 0 ? Category::kGradients : Category::kTransient,
                             op.scope, param ? "parameter gradient" : "activation gradient"));
      };
      auto free_output_grads = [&] {
        for (PlanTensorId t : outs) {
          if (grad_[t] >= 0) Unref(grad_[t]);
          grad_[t] = -1;
        }
      };
      // A staged backward (recurrent ops): each stage holds its workspace while it makes its
      // gradients, then frees what it consumed.
      std::vector<int> made;
      std::vector<PlanTensorId> released;
      for (const PlanBackwardStage& stage : op.backward_stages) {
        std::vector<BufferId> held;
        for (PlanTensorId w : stage.workspace) {
          held.push_back(AllocLike(plan_.tensors[w], plan_.tensors[w].name, Category::kTransient,
                                   op.scope, "backward workspace"));
        }
        for (int k : stage.grads) {
          // A slot named by two stages gets two contributions (a bidirectional layer's input).
          if (std::find(op.grad_inputs.begin(), op.grad_inputs.end(), k) == op.grad_inputs.end())
            continue;
          if (std::find(made.begin(), made.end(), k) == made.end()) made.push_back(k);
          make_grad(k);
        }
        for (BufferId b : held) Unref(b);
        for (PlanTensorId t : stage.frees) {
          if (std::find(released.begin(), released.end(), t) != released.end()) continue;
          released.push_back(t);
          ReleaseSavedTensor(op, t);
        }
        if (stage.frees_output_grads) free_output_grads();
      }
      for (int k : op.grad_inputs) {
        if (std::find(made.begin(), made.end(), k) == made.end()) make_grad(k);
      }
      for (BufferId b : workspace) Unref(b);
      free_output_grads();
      ReleaseSaved(op, released);
      if (int r = RegionOf(op); r >= 0 && &op == &plan_.ops[FirstBackwardOp(r)]) FinishRegion(r);
    }
    Step(Phase::kBackward, "backward done", "release graph", "");
    for (const PlanOp* op : skipped) {
      if (RegionOf(*op) < 0) ReleaseSaved(*op);
    }
    DropRecomputed();
    for (size_t r = 0; r < Regions().size(); ++r) FinishRegion(static_cast<int>(r));
    for (PlanTensorId t : plan_.outputs) {
      if (grad_[t] >= 0) {
        Unref(grad_[t]);
        grad_[t] = -1;
      }
    }
  }

  // The region's last node with saved tensors to run in the backward (its first in forward
  // order): autograd frees the checkpoint's inputs and RNG state when that node has run.
  // Views of parameters (weight transposes) save nothing and may run later.
  int FirstBackwardOp(int r) const {
    for (int i : Regions()[r].ops) {
      if (plan_.ops[i].needs_backward && !plan_.ops[i].saved.empty()) return i;
    }
    for (int i : Regions()[r].ops) {
      if (plan_.ops[i].needs_backward) return i;
    }
    return Regions()[r].ops.front();
  }

  void Optimizer() {
    const OptimizerSpec& opt = plan_.optimizer;
    Step(Phase::kOptimizer, "optimizer step", opt.name, "");
    auto temps_for = [&](PlanTensorId p, std::vector<BufferId>* out) {
      for (int k = 0; k < opt.step_temporaries; ++k) {
        out->push_back(AllocLike(plan_.tensors[p],
                                 opt.name + " temporary of " + plan_.tensors[p].name,
                                 Category::kTransient, "", "optimizer step temporary"));
      }
    };
    if (opt.impl == OptimizerImpl::kForeach) {
      std::vector<BufferId> temps;
      for (PlanTensorId p : trained_) temps_for(p, &temps);
      for (BufferId b : temps) Unref(b);
    } else if (opt.impl == OptimizerImpl::kForLoop) {
      for (PlanTensorId p : trained_) {
        std::vector<BufferId> temps;
        temps_for(p, &temps);
        for (BufferId b : temps) Unref(b);
      }
    }
    Step(Phase::kOptimizer, "zero_grad", "zero_grad(set_to_none=True)", "");
    for (PlanTensorId p : trained_) {
      if (grad_[p] >= 0) Unref(grad_[p]);
      grad_[p] = -1;
    }
  }

  void End() {
    Step(Phase::kEnd, "end of step", "release outputs", "");
    for (BufferId b : held_outputs_) Unref(b);
    held_outputs_.clear();
    Unref(loss_);
  }

  const TrainingPlan& plan_;
  const SimulateOptions& options_;
  const std::vector<CheckpointRegion>* regions_ = nullptr;
  std::vector<CheckpointRegion> own_regions_;  // ForwardHeld's regions
  std::vector<int> region_of_;                 // op index -> region, or -1
  bool tracing_ = true;
  std::vector<PlanTensorId> seen_;  // DistinctInputs' scratch
  std::vector<uint64_t> bytes_;     // with tracing off, each buffer's bytes (in place of trace_)
  uint64_t allocated_ = 0;          // every allocation of the step, summed
  bool overflow_ = false;
  Trace trace_;
  std::vector<int32_t> refs_;
  std::vector<BufferId> storage_;
  std::vector<int32_t> holds_;
  std::vector<bool> saved_root_;
  std::vector<std::string> saver_;
  std::vector<BufferId> grad_;
  std::vector<PlanTensorId> trained_;
  std::vector<BufferId> state_;
  std::vector<int32_t> base_holds_;
  std::vector<std::vector<PlanTensorId>> region_inputs_;
  std::vector<BufferId> rng_;
  std::vector<bool> recomputed_, finished_, kept_released_;
  std::vector<RegionRecompute> schedules_;  // per region
  std::map<PlanTensorId, BufferId> rstorage_;
  std::map<PlanTensorId, int32_t> rholds_;
  std::vector<BufferId> held_outputs_;
  BufferId labels_ = -1, log_probs_ = -1, total_weight_ = -1, loss_ = -1;
};

}  // namespace

RegionRecompute RegionSchedule(const TrainingPlan& plan, const CheckpointRegion& region) {
  RegionRecompute out;
  out.run.assign(region.ops.size(), !region.op_level);
  if (!region.op_level) return out;
  std::set<int> save(region.save_ops.begin(), region.save_ops.end());
  std::map<PlanTensorId, bool> made;  // made in the region -> needed
  auto persistent = [&](PlanTensorId t) {
    TensorRole r = plan.tensors[t].role;
    return plan.tensors[t].metadata || r == TensorRole::kParameter || r == TensorRole::kBuffer ||
           r == TensorRole::kDataInput;
  };
  for (int i : region.ops) {
    const PlanOp& op = plan.ops[i];
    for (const std::vector<PlanTensorId>* v : {&op.copies, &op.extras, &op.outputs}) {
      for (PlanTensorId t : *v) {
        if (t >= 0 && !persistent(t)) made[t] = false;
      }
    }
  }
  for (int i : region.ops) {
    for (PlanTensorId t : plan.ops[i].saved) {
      auto it = made.find(t);
      if (it != made.end() && !it->second) {
        it->second = true;
        out.needed.push_back(t);
      }
    }
  }
  // Backwards through the region: an op that makes something needed is either saved (what it
  // made is kept) or runs again (and what it reads becomes needed).
  for (size_t k = region.ops.size(); k-- > 0;) {
    const PlanOp& op = plan.ops[region.ops[k]];
    std::vector<PlanTensorId> wanted;
    for (const std::vector<PlanTensorId>* v : {&op.copies, &op.extras, &op.outputs}) {
      for (PlanTensorId t : *v) {
        auto it = t >= 0 ? made.find(t) : made.end();
        if (it != made.end() && it->second &&
            std::find(wanted.begin(), wanted.end(), t) == wanted.end())
          wanted.push_back(t);
      }
    }
    if (wanted.empty()) continue;
    if (save.count(region.ops[k])) {
      out.kept.insert(out.kept.end(), wanted.begin(), wanted.end());
      continue;
    }
    out.run[k] = true;
    for (PlanTensorId t : op.inputs) {
      if (t < 0) continue;
      if (auto it = made.find(t); it != made.end()) it->second = true;
    }
  }
  std::reverse(out.kept.begin(), out.kept.end());
  return out;
}

int SimulatedMicroBatches(const TrainingPlan& plan, const SimulateOptions& options) {
  const int k = std::max(plan.micro_batches, 1);
  return options.every_micro_batch ? k : std::min(k, 2);
}

Result<Trace> Simulate(const TrainingPlan& plan, const SimulateOptions& options) {
  return Runtime(plan, options).Run();
}

Result<uint64_t> ForwardHeldBytes(const TrainingPlan& plan,
                                  const std::vector<std::vector<int>>& regions,
                                  uint64_t rng_state_bytes, uint64_t round_bytes) {
  for (const std::vector<int>& r : regions) {
    for (int i : r) {
      if (i < 0 || static_cast<size_t>(i) >= plan.ops.size())
        return Error{"a checkpoint region names op " + std::to_string(i) + ", not in the plan"};
    }
  }
  SimulateOptions options;
  return Runtime(plan, regions, rng_state_bytes, options).ForwardHeld(round_bytes);
}

}  // namespace vramsim

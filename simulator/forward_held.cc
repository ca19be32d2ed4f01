#include "simulator/forward_held.h"

#include <algorithm>

#include "simulator/peak.h"

namespace vramsim {

namespace {

// The forward half of simulate.cc's Runtime with storages as reference counts and no trace.
class ForwardReplay {
 public:
  ForwardReplay(const TrainingPlan& plan, const std::vector<std::vector<int>>& regions,
                uint64_t rng_state_bytes)
      : plan_(plan), regions_(regions), rng_state_bytes_(rng_state_bytes) {}

  uint64_t Run(uint64_t round_bytes) {
    Setup();
    Forward();
    EndForward();
    uint64_t held = 0;
    for (size_t s = 0; s < refs_.size(); ++s) {
      if (refs_[s] > 0 && !persistent_[s]) held += RoundUp(bytes_[s], round_bytes);
    }
    return held;
  }

 private:
  using StorageId = int32_t;

  StorageId Alloc(uint64_t bytes, bool persistent) {
    refs_.push_back(1);
    bytes_.push_back(bytes);
    persistent_.push_back(persistent);
    return static_cast<StorageId>(refs_.size()) - 1;
  }
  StorageId AllocLike(const PlanTensor& t) { return Alloc(TensorBytes(t), false); }
  void Unref(StorageId s) {
    if (s >= 0) --refs_[s];
  }

  bool IsPersistent(PlanTensorId t) const {
    TensorRole r = plan_.tensors[t].role;
    return r == TensorRole::kParameter || r == TensorRole::kBuffer || r == TensorRole::kDataInput;
  }

  void Setup() {
    size_t n = plan_.tensors.size();
    storage_.assign(n, -1);
    holds_.assign(n, 0);
    region_of_.assign(plan_.ops.size(), -1);
    for (size_t r = 0; r < regions_.size(); ++r) {
      for (int i : regions_[r]) region_of_[i] = static_cast<int>(r);
    }
    for (size_t i = 0; i < plan_.ops.size(); ++i) {
      const PlanOp& op = plan_.ops[i];
      seen_.clear();
      for (PlanTensorId t : op.inputs) {
        if (t < 0 || std::find(seen_.begin(), seen_.end(), t) != seen_.end()) continue;
        seen_.push_back(t);
        ++holds_[t];
      }
      for (PlanTensorId t : op.frame_releases) ++holds_[t];  // a module call's arguments
      if (region_of_[i] >= 0) continue;  // a checkpointed op keeps nothing in the forward
      for (PlanTensorId t : op.saved) ++holds_[t];
    }
    // A checkpointed region keeps its inputs until its backward has run.
    std::vector<int> inside(n, -1);
    for (size_t r = 0; r < regions_.size(); ++r) {
      int mark = static_cast<int>(r);
      for (int i : regions_[r]) {
        for (PlanTensorId t : plan_.ops[i].outputs) {
          if (t >= 0) inside[t] = mark;
        }
      }
      std::vector<PlanTensorId> kept;
      for (int i : regions_[r]) {
        for (PlanTensorId t : plan_.ops[i].inputs) {
          if (t < 0 || inside[t] == mark || plan_.tensors[t].metadata || IsPersistent(t)) continue;
          if (std::find(kept.begin(), kept.end(), t) != kept.end()) continue;
          kept.push_back(t);
          ++holds_[t];
        }
      }
    }
    for (PlanTensorId t : plan_.outputs) ++holds_[t];
    for (PlanTensorId t : plan_.forward_cache) ++holds_[t];
    if (!plan_.outputs.empty() && plan_.loss != LossKind::kNone) ++holds_[plan_.outputs[0]];
    for (const std::vector<PlanTensorId>* list :
         {&plan_.parameters, &plan_.buffers, &plan_.batch}) {
      for (PlanTensorId p : *list) {
        storage_[p] = Alloc(0, true);
        holds_[p] = 1 << 30;
      }
    }
  }

  void Materialize(PlanTensorId t) {
    const PlanTensor& x = plan_.tensors[t];
    if (x.metadata || storage_[t] >= 0) return;
    if (x.view_of >= 0 && storage_[x.view_of] >= 0) {
      storage_[t] = storage_[x.view_of];
      ++refs_[storage_[t]];
      return;
    }
    storage_[t] = AllocLike(x);
  }

  void Release(PlanTensorId t) {
    if (t < 0 || plan_.tensors[t].metadata || storage_[t] < 0) return;
    if (--holds_[t] > 0) return;
    Unref(storage_[t]);
    storage_[t] = -1;
  }

  void ReleaseInputs(const PlanOp& op) {
    seen_.clear();
    for (PlanTensorId t : op.inputs) {
      if (t < 0 || std::find(seen_.begin(), seen_.end(), t) != seen_.end()) continue;
      seen_.push_back(t);
      Release(t);
    }
    for (PlanTensorId t : op.frame_releases) Release(t);  // the module call returns
  }

  void Forward() {
    std::vector<bool> rng(regions_.size(), false);
    for (size_t i = 0; i < plan_.ops.size(); ++i) {
      const PlanOp& op = plan_.ops[i];
      bool any = false;
      for (PlanTensorId t : op.outputs) any = any || (t >= 0 && !plan_.tensors[t].metadata);
      if (!any && op.extras.empty()) {
        ReleaseInputs(op);
        continue;
      }
      int r = region_of_[i];
      if (r >= 0 && !rng[r] && rng_state_bytes_) {
        rng[r] = true;
        Alloc(rng_state_bytes_, false);  // held until the region's backward
      }
      for (PlanTensorId t : op.copies) {
        storage_[t] = AllocLike(plan_.tensors[t]);
        ++holds_[t];
      }
      for (PlanTensorId t : op.extras) {
        storage_[t] = AllocLike(plan_.tensors[t]);
        ++holds_[t];
      }
      for (PlanTensorId t : op.outputs) {
        if (t >= 0) Materialize(t);
      }
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

  // The forward cache is dropped; the script holds the outputs by its variable.
  void EndForward() {
    for (PlanTensorId t : plan_.forward_cache) Release(t);
    for (PlanTensorId t : plan_.outputs) {
      if (storage_[t] < 0) continue;
      ++refs_[storage_[t]];
      Release(t);
    }
  }

  const TrainingPlan& plan_;
  const std::vector<std::vector<int>>& regions_;
  uint64_t rng_state_bytes_;
  std::vector<int> region_of_;
  std::vector<StorageId> storage_;
  std::vector<int32_t> holds_;
  std::vector<int32_t> refs_;
  std::vector<uint64_t> bytes_;
  std::vector<bool> persistent_;
  std::vector<PlanTensorId> seen_;  // scratch: an op's distinct inputs
};

}  // namespace

uint64_t ForwardHeldBytes(const TrainingPlan& plan, const std::vector<std::vector<int>>& regions,
                          uint64_t rng_state_bytes, uint64_t round_bytes) {
  return ForwardReplay(plan, regions, rng_state_bytes).Run(round_bytes);
}

}  // namespace vramsim

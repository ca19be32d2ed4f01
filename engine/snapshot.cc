#include "engine/snapshot.h"

#include "devices/devices.h"

namespace vramsim {

Result<MemorySnapshotOptions> MakeMemorySnapshotOptions(const SnapshotOptions& o) {
  MemorySnapshotOptions m;
  m.replay.warmup_step = o.warmup_step;
  if (!o.gpu.empty()) {
    auto d = FindDevice(o.gpu);
    if (!d) return d.error();
    m.replay.extra = LibraryWorkspaces(*d);
  }
  return m;
}

Result<MemorySnapshotSummary> WriteEstimateSnapshot(const Estimate& e, const std::string& path,
                                                    const SnapshotOptions& o) {
  if (e.plan.target.device != Device::kCuda) {
    return Error{"--snapshot writes a CUDA caching allocator's snapshot: use --target torch-cuda"};
  }
  auto m = MakeMemorySnapshotOptions(o);
  if (!m) return m.error();
  return WriteMemorySnapshotFile(e.trace, *m, path);
}

Result<SnapshotComparison> CompareSnapshotWithModel(const std::string& snapshot_path,
                                                    const std::string& model,
                                                    const std::map<std::string, int64_t>& dims,
                                                    const EstimateOptions& options,
                                                    const CompareOptions& o) {
  if (!(o.divergence_fraction > 0 && o.divergence_fraction < 1)) {
    return Error{"--threshold must be in (0, 1), the share of the larger peak"};
  }
  if (options.target.device != Device::kCuda) {
    return Error{"compare holds a CUDA snapshot against the prediction: use --target torch-cuda"};
  }
  auto doc = ReadPickleFile(snapshot_path);
  if (!doc) return Error{snapshot_path + ": " + doc.error().message};
  auto m = MakeMemorySnapshotOptions(o.snapshot);
  if (!m) return m.error();
  auto e = EstimateModel(model, dims, options);
  if (!e) return e.error();
  SnapshotCompareOptions co;
  co.divergence_fraction = o.divergence_fraction;
  co.max_rows = o.max_rows;
  auto c = CompareSnapshotWithTrace(doc->root(), e->trace, *m, co);
  if (!c) return Error{snapshot_path + ": " + c.error().message};
  return c;
}

}  // namespace vramsim

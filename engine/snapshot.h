// PyTorch memory snapshots for front ends: the estimate's step written as one
// (`estimate --snapshot`), and a real run's snapshot held against the prediction for the same
// model and step (`vramsim compare`). The formats are reports/memory_snapshot*.h's.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "engine/estimate.h"
#include "importer/status.h"
#include "reports/memory_snapshot.h"
#include "reports/memory_snapshot_compare.h"

namespace vramsim {

struct SnapshotOptions {
  // A device profile name (devices/): its cuBLAS/cuBLASLt workspaces are allocated through
  // the allocator as on that GPU. Empty: none (the tensors alone).
  std::string gpu;
  // Record the second step, after a warm-up one, as a user who starts
  // _record_memory_history() after one step does (the default); false: the first step.
  bool warmup_step = true;
};

// The allocator replay a snapshot is written from, for these options.
Result<MemorySnapshotOptions> MakeMemorySnapshotOptions(const SnapshotOptions& o);

// The estimate's step as a snapshot pickle at `path`.
Result<MemorySnapshotSummary> WriteEstimateSnapshot(const Estimate& e, const std::string& path,
                                                    const SnapshotOptions& o = {});

struct CompareOptions {
  SnapshotOptions snapshot;
  double divergence_fraction = 0.05;  // the timelines part where they differ by this share
  size_t max_rows = 20;               // tensors listed
};

// Reads the real snapshot (safely: plain data only), estimates the model's step and compares.
Result<SnapshotComparison> CompareSnapshotWithModel(const std::string& snapshot_path,
                                                    const std::string& model,
                                                    const std::map<std::string, int64_t>& dims,
                                                    const EstimateOptions& options,
                                                    const CompareOptions& o = {});

}  // namespace vramsim

// `vramsim compare`: a memory snapshot of a real run (torch.cuda.memory._dump_snapshot())
// held against the predicted one (reports/memory_snapshot.h). Both sides are read by the same
// code, so a prediction compared with itself shows no difference.
//
// From a snapshot, for one device:
// - With device_traces: allocations are replayed in order as MemoryViz does (an allocation
//   alive before the recording started is one whose free is recorded without its alloc, or
//   an active block of the final segments that no recorded alloc made). Allocated bytes count
//   each request rounded up to 512 B (the block PyTorch hands out, short of the unsplit
//   remainders only the allocator knows), so the peak is comparable with
//   torch.cuda.max_memory_allocated(); the requested bytes (what MemoryViz plots) are kept
//   too. Reserved bytes start at the final segments' total less the recorded segment
//   allocs plus frees and follow segment_alloc/free/map/unmap.
// - Without device_traces (or an empty one): the final segments only; the figures are the
//   state when the snapshot was taken.
// The allocated-bytes timelines are indexed by allocation order: point 0 is before the first
// recorded allocation, point k just after the k-th. They part where the two differ by more
// than `divergence_fraction` of the larger peak.
// The tensors alive at the real peak are matched to those alive at the predicted peak: equal
// rounded size first, then within `size_tolerance`; among candidates the one whose frames
// share most words with the real one's (op and module names, file names), then the nearest in
// allocation order.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "importer/status.h"
#include "reports/memory_snapshot.h"

namespace vramsim {

struct SnapshotCompareOptions {
  double divergence_fraction = 0.05;
  double size_tolerance = 0.05;  // second matching pass: sizes within this fraction
  int device = -1;               // -1: the device with the most trace entries (or segments)
  size_t max_rows = 20;          // tensors listed in the JSON and text
  uint64_t max_work = uint64_t{1} << 28;  // values visited per snapshot (shared memo values)
};

// One allocation read from a snapshot.
struct SnapshotAllocation {
  int64_t order = -1;  // index among the recorded allocs; -1 when alive before the recording
  uint64_t addr = 0;
  uint64_t size = 0;               // requested bytes
  uint64_t rounded = 0;            // the block: size rounded up to 512 B
  std::string category;            // "" when absent
  std::string label;               // its first two frames, "file:line:name < ..."
  std::vector<std::string> words;  // from all frames, for matching
};

struct SnapshotFigures {
  bool has_trace = false;
  uint64_t trace_entries = 0;
  uint64_t allocations = 0;     // recorded allocs
  uint64_t peak_allocated = 0;  // rounded
  uint64_t peak_requested = 0;  // as requested
  uint64_t peak_reserved = 0;
  int64_t peak_point = 0;        // timeline point of the (first) allocated peak
  uint64_t final_allocated = 0;  // active blocks of the final segments
  uint64_t final_reserved = 0;   // segments' total size
  uint64_t segments = 0;
  uint64_t alive_at_peak = 0;        // tensors
  uint64_t alive_at_peak_bytes = 0;  // rounded
};

// What one snapshot says, read once.
struct SnapshotTimeline {
  int device = 0;
  SnapshotFigures figures;
  std::vector<uint64_t> allocated;              // per timeline point, rounded bytes
  std::vector<SnapshotAllocation> allocations;  // recorded allocs by order
  std::vector<SnapshotAllocation> at_peak;      // alive at the peak, largest first
  std::vector<std::string> notes;
};

Result<SnapshotTimeline> ReadSnapshotTimeline(PickleRef root,
                                              const SnapshotCompareOptions& options = {});

struct SnapshotTensorMatch {
  SnapshotAllocation real;
  std::optional<SnapshotAllocation> predicted;
  bool exact_size = false;
  double scope_score = 0;  // shared words, 0 to 1
};

struct SnapshotComparison {
  SnapshotFigures real, predicted;
  // The allocator model's own figures when the prediction came from a trace.
  std::optional<uint64_t> model_max_allocated, model_max_reserved;
  double divergence_fraction = 0;
  uint64_t divergence_threshold_bytes = 0;
  struct Divergence {
    int64_t point = 0;  // timeline point
    uint64_t real_bytes = 0, predicted_bytes = 0;
    std::optional<SnapshotAllocation> real_alloc, predicted_alloc;  // made at that point
  };
  std::optional<Divergence> divergence;
  // The first allocation whose rounded size differs between the two orders (any amount).
  std::optional<Divergence> first_size_mismatch;
  std::vector<SnapshotTensorMatch> at_peak;  // every real tensor alive at its peak
  std::vector<SnapshotAllocation> predicted_unmatched;
  uint64_t matched = 0, matched_bytes = 0;
  uint64_t real_unmatched = 0, real_unmatched_bytes = 0;
  uint64_t predicted_unmatched_bytes = 0;
  size_t max_rows = 20;
  std::vector<std::string> notes;
};

Result<SnapshotComparison> CompareSnapshots(PickleRef real, PickleRef predicted,
                                            const SnapshotCompareOptions& options = {});

// The prediction written as a snapshot (WriteMemorySnapshot, in memory) and compared with
// the real one; the allocator model's figures are filled in.
Result<SnapshotComparison> CompareSnapshotWithTrace(PickleRef real, const Trace& trace,
                                                    const MemorySnapshotOptions& snapshot,
                                                    const SnapshotCompareOptions& options = {});

// {"real": {...}, "predicted": {...}, "model": {...}, "divergence": {...} | null,
//  "first_size_mismatch": ..., "at_peak": {"matched", "matched_bytes", ..., "rows": [...]},
//  "notes": [...]}; bytes as integers.
nlohmann::json SnapshotComparisonJson(const SnapshotComparison& c);
// A few lines: the figures side by side, where the timelines part, the largest tensors at
// the real peak with their match.
std::string RenderSnapshotComparison(const SnapshotComparison& c);

}  // namespace vramsim

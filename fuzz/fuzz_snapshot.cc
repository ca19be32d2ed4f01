// bytes -> the pickle reader (reports/memory_snapshot.h ParsePickle) -> the snapshot timeline
// (reports/memory_snapshot_compare.h) -> a comparison of the snapshot with itself. Seeds: the
// PyTorch-format fixtures (tests/data/snapshot/*.pickle) and snapshots vramsim writes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "reports/memory_snapshot.h"
#include "reports/memory_snapshot_compare.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 20)) return -1;
  vramsim::PickleLimits limits;
  limits.max_values = 1 << 18;  // bounds the parser's memory per input
  auto doc =
      vramsim::ParsePickle(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!doc) {
    if (doc.error().message.empty()) __builtin_trap();  // every refusal says why
    return 0;
  }
  vramsim::SnapshotCompareOptions options;
  options.max_work = 1 << 20;  // memo-shared values: bounded work, not bounded bytes
  auto t = vramsim::ReadSnapshotTimeline(doc->root(), options);
  if (!t) return 0;
  // Invariants of a timeline read from any input.
  if (t->allocated.size() != t->figures.allocations + 1) __builtin_trap();
  if (t->allocations.size() != t->figures.allocations) __builtin_trap();
  if (t->at_peak.size() != t->figures.alive_at_peak) __builtin_trap();
  if (t->figures.peak_point < 0 ||
      static_cast<uint64_t>(t->figures.peak_point) >= t->allocated.size() ||
      t->allocated[static_cast<size_t>(t->figures.peak_point)] != t->figures.peak_allocated) {
    __builtin_trap();
  }
  auto c = vramsim::CompareSnapshots(doc->root(), doc->root(), options);
  if (!c) return 0;
  // A snapshot compared with itself never diverges.
  if (c->divergence || c->first_size_mismatch) __builtin_trap();
  (void)vramsim::RenderSnapshotComparison(*c);
  (void)vramsim::SnapshotComparisonJson(*c).dump();
  return 0;
}

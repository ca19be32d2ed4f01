#include "simulator/peak.h"

#include <algorithm>
#include <cassert>

namespace vramsim {

uint64_t RoundUp(uint64_t bytes, uint64_t multiple) {
  if (multiple <= 1) return bytes;
  return (bytes + multiple - 1) / multiple * multiple;
}

PeakReport FindPeak(const Trace& trace, uint64_t round_bytes) {
  PeakReport report;
  std::vector<uint8_t> live(trace.buffers.size(), 0);
  uint64_t current = 0;
  for (size_t i = 0; i < trace.events.size(); ++i) {
    const Event& e = trace.events[i];
    uint64_t bytes = RoundUp(trace.buffers[e.buffer].bytes, round_bytes);
    if (e.kind == Event::Kind::kAlloc) {
      assert(!live[e.buffer]);
      live[e.buffer] = 1;
      current += bytes;
      if (current > report.peak_bytes) {
        report.peak_bytes = current;
        report.peak_step = e.step;
        report.peak_event = i;
      }
    } else {
      assert(live[e.buffer]);
      live[e.buffer] = 0;
      current -= bytes;
    }
  }
  // Replay up to the peak to list what was alive then.
  std::fill(live.begin(), live.end(), 0);
  for (size_t i = 0; i <= report.peak_event && i < trace.events.size(); ++i) {
    const Event& e = trace.events[i];
    live[e.buffer] = e.kind == Event::Kind::kAlloc;
  }
  for (size_t b = 0; b < live.size(); ++b) {
    if (!live[b]) continue;
    report.live_at_peak.push_back(static_cast<BufferId>(b));
    report.by_category[static_cast<size_t>(trace.buffers[b].category)] +=
        RoundUp(trace.buffers[b].bytes, round_bytes);
  }
  std::stable_sort(
      report.live_at_peak.begin(), report.live_at_peak.end(),
      [&](BufferId a, BufferId b) { return trace.buffers[a].bytes > trace.buffers[b].bytes; });
  return report;
}

uint64_t ModelStatesAtOptimizerStart(const Trace& trace, uint64_t round_bytes) {
  uint64_t live = 0;
  for (const Event& e : trace.events) {
    if (trace.steps[e.step].phase == Phase::kOptimizer) break;
    const Buffer& b = trace.buffers[e.buffer];
    if (b.category != Category::kParameters && b.category != Category::kGradients &&
        b.category != Category::kOptimizerState) {
      continue;
    }
    uint64_t bytes = RoundUp(b.bytes, round_bytes);
    live = e.kind == Event::Kind::kAlloc ? live + bytes : live - bytes;
  }
  return live;
}

namespace {

// Categories no checkpoint plan changes the lifetime of (the batch only grows).
bool PlanInvariant(Category c) {
  return c == Category::kParameters || c == Category::kBuffers || c == Category::kGradients ||
         c == Category::kOptimizerState || c == Category::kBatch;
}

}  // namespace

StepFloor RecomputeFloor(const Trace& trace, uint64_t round_bytes) {
  // The step each buffer is freed at (-1: never freed).
  std::vector<StepId> freed_at(trace.buffers.size(), -1);
  for (const Event& e : trace.events)
    if (e.kind == Event::Kind::kFree) freed_at[e.buffer] = e.step;
  // Live activation buffers by the step that frees them, to seed each step's working set.
  std::vector<uint8_t> live(trace.buffers.size(), 0);
  StepFloor floor;
  uint64_t invariant = 0, working = 0;
  StepId step = -1;
  size_t best_event = 0;
  for (size_t i = 0; i < trace.events.size(); ++i) {
    const Event& e = trace.events[i];
    const Buffer& b = trace.buffers[e.buffer];
    uint64_t bytes = RoundUp(b.bytes, round_bytes);
    if (e.step != step) {
      step = e.step;
      working = 0;
      // Buffers already alive that this step frees: it reads them.
      for (size_t j = i; j < trace.events.size() && trace.events[j].step == step; ++j) {
        const Event& f = trace.events[j];
        if (f.kind == Event::Kind::kFree && live[f.buffer] &&
            !PlanInvariant(trace.buffers[f.buffer].category))
          working += RoundUp(trace.buffers[f.buffer].bytes, round_bytes);
      }
    }
    bool inv = PlanInvariant(b.category);
    if (e.kind == Event::Kind::kAlloc) {
      live[e.buffer] = 1;
      (inv ? invariant : working) += bytes;
      if (invariant + working > floor.bytes) {
        floor.bytes = invariant + working;
        floor.step = step;
        floor.invariant_bytes = invariant;
        best_event = i;
      }
    } else {
      live[e.buffer] = 0;
      (inv ? invariant : working) -= bytes;
    }
  }
  if (floor.step < 0) return floor;
  // The working set at the floor: the step's non-invariant buffers alive after best_event
  // that the step allocated or frees.
  std::fill(live.begin(), live.end(), 0);
  for (size_t i = 0; i <= best_event; ++i)
    live[trace.events[i].buffer] = trace.events[i].kind == Event::Kind::kAlloc;
  std::vector<uint8_t> allocated_here(trace.buffers.size(), 0);
  for (const Event& e : trace.events)
    if (e.step == floor.step && e.kind == Event::Kind::kAlloc) allocated_here[e.buffer] = 1;
  for (size_t b = 0; b < live.size(); ++b) {
    if (!live[b] || PlanInvariant(trace.buffers[b].category)) continue;
    if (allocated_here[b] || freed_at[b] == floor.step)
      floor.working.push_back(static_cast<BufferId>(b));
  }
  std::stable_sort(floor.working.begin(), floor.working.end(), [&](BufferId a, BufferId b) {
    return trace.buffers[a].bytes > trace.buffers[b].bytes;
  });
  return floor;
}

}  // namespace vramsim

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

}  // namespace vramsim

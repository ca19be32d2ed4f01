#include "reports/timeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace vramsim::report_internal {

const std::array<const char*, kCategoryCount> kCategoryColors = {
    "#4e79a7",  // parameters
    "#76b7b2",  // buffers
    "#f28e2b",  // gradients
    "#b07aa1",  // optimizer state
    "#e15759",  // saved activations
    "#edc948",  // transient
    "#59a14f",  // batch
};

uint64_t Total(const CategoryBytes& bytes) {
  uint64_t total = 0;
  for (uint64_t b : bytes) total += b;
  return total;
}

Result<Timeline> BuildTimeline(const ReportInput& in) {
  if (in.trace == nullptr) return Error{"report: no trace to report on"};
  const Trace& trace = *in.trace;
  Timeline t;
  t.round_bytes = in.plan != nullptr ? std::max<uint64_t>(in.plan->target.round_bytes, 1) : 1;
  const size_t steps = trace.steps.size();
  if (steps == 0 && !trace.events.empty()) {
    return Error{"report: the trace has " + std::to_string(trace.events.size()) +
                 " events but no steps"};
  }
  t.end.assign(steps, CategoryBytes{});
  t.high.assign(steps, CategoryBytes{});
  t.peaks_mid_step.assign(steps, false);
  t.made_at.assign(trace.buffers.size(), -1);

  std::vector<uint8_t> live(trace.buffers.size(), 0);
  CategoryBytes current{};
  size_t step = 0;  // events are in step order; a stray earlier step counts in the current one
  size_t next_event = 0;
  for (size_t s = 0; s < steps; ++s) {
    CategoryBytes start = current, high = current;
    uint64_t high_total = Total(current);
    for (; next_event < trace.events.size(); ++next_event) {
      const Event& e = trace.events[next_event];
      size_t at = e.step < 0 ? 0 : std::min(static_cast<size_t>(e.step), steps - 1);
      step = std::max(step, at);
      if (step > s) break;
      if (e.buffer < 0 || static_cast<size_t>(e.buffer) >= trace.buffers.size()) {
        return Error{fmt::format("report: event {} refers to buffer {}, but the trace has {}",
                                 next_event, e.buffer, trace.buffers.size())};
      }
      const Buffer& b = trace.buffers[e.buffer];
      uint64_t bytes = RoundUp(b.bytes, t.round_bytes);
      auto& cat = current[static_cast<size_t>(b.category)];
      if (e.kind == Event::Kind::kAlloc) {
        if (live[e.buffer]) {
          return Error{fmt::format("report: event {} allocates buffer {} ('{}') twice", next_event,
                                   e.buffer, b.name)};
        }
        live[e.buffer] = 1;
        if (t.made_at[e.buffer] < 0) t.made_at[e.buffer] = static_cast<StepId>(s);
        cat += bytes;
        uint64_t total = Total(current);
        if (total > high_total) {
          high_total = total;
          high = current;
        }
      } else {
        if (!live[e.buffer]) {
          return Error{fmt::format("report: event {} frees buffer {} ('{}'), which is not live",
                                   next_event, e.buffer, b.name)};
        }
        live[e.buffer] = 0;
        cat -= bytes;
      }
    }
    t.end[s] = current;
    t.high[s] = high;
    t.peaks_mid_step[s] = high_total > Total(start) && high_total > Total(current);
  }

  if (in.peak != nullptr) {
    t.peak = *in.peak;
    for (BufferId b : t.peak.live_at_peak) {
      if (b < 0 || static_cast<size_t>(b) >= trace.buffers.size()) {
        return Error{fmt::format("report: the peak lists buffer {}, but the trace has {}", b,
                                 trace.buffers.size())};
      }
    }
    if (t.peak.peak_step >= static_cast<StepId>(steps)) {
      return Error{fmt::format("report: the peak is at step {}, but the trace has {}",
                               t.peak.peak_step, steps)};
    }
  } else {
    t.peak = FindPeak(trace, t.round_bytes);
  }
  return t;
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.2f} {}", v, kUnits[u]);
}

std::string GroupDigits(uint64_t value) {
  std::string digits = std::to_string(value), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string ScopeGroup(const Buffer& buffer) { return BufferModule(buffer); }

Status WriteTextFile(const std::string& path, std::string_view content, std::string_view what) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return Error{
        fmt::format("cannot open '{}' to write the {}: {}", path, what, std::strerror(errno))};
  }
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out) return Error{fmt::format("cannot write the {} to '{}'", what, path)};
  return {};
}

}  // namespace vramsim::report_internal

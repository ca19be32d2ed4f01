// The step as Chrome trace / Perfetto JSON (the "JSON Object Format" of the Trace Event
// Format). The time axis is the schedule: step i is the complete slice [i, i+1) microseconds.
// Counters of live bytes are sampled at 0 and after every step (ts = i + 1); a step whose
// high-water mark lies above both its start and its end (outputs allocated before inputs are
// freed) gets one more sample at its middle (ts = i + 0.5) so that the peak shows.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>

#include "reports/report.h"
#include "reports/timeline.h"

namespace vramsim {
namespace {

using nlohmann::json;
using report_internal::CategoryBytes;

constexpr int kPid = 1;

// Tracks (threads), in display order.
enum Track : int { kStepTrack = 1, kForwardTrack, kLossTrack, kBackwardTrack, kOptimizerTrack };
constexpr std::pair<Track, const char*> kTracks[] = {
    {kStepTrack, "step"},         {kForwardTrack, "forward"},     {kLossTrack, "loss"},
    {kBackwardTrack, "backward"}, {kOptimizerTrack, "optimizer"},
};

Track TrackOf(Phase p) {
  switch (p) {
    case Phase::kForward:
      return kForwardTrack;
    case Phase::kLoss:
      return kLossTrack;
    case Phase::kBackward:
      return kBackwardTrack;
    case Phase::kOptimizer:
      return kOptimizerTrack;
    case Phase::kSetup:
    case Phase::kEnd:
      break;
  }
  return kStepTrack;
}

json CategoryArgs(const CategoryBytes& bytes) {
  json args = json::object();
  for (size_t c = 0; c < kCategoryCount; ++c) {
    args[std::string(CategoryName(static_cast<Category>(c)))] = bytes[c];
  }
  return args;
}

void AddCounters(double ts, const CategoryBytes& bytes, std::vector<json>* events) {
  events->push_back({{"ph", "C"},
                     {"pid", kPid},
                     {"name", "live bytes"},
                     {"ts", ts},
                     {"args", CategoryArgs(bytes)}});
  events->push_back({{"ph", "C"},
                     {"pid", kPid},
                     {"name", "live bytes total"},
                     {"ts", ts},
                     {"args", {{"total", report_internal::Total(bytes)}}}});
}

}  // namespace

Status WriteChromeTrace(const ReportInput& in, const std::string& path) {
  auto timeline = report_internal::BuildTimeline(in);
  if (!timeline) return timeline.error();
  const Trace& trace = *in.trace;
  const report_internal::Timeline& t = *timeline;

  std::vector<json> events;
  events.reserve(trace.steps.size() * 4 + 16);
  events.push_back({{"ph", "M"},
                    {"pid", kPid},
                    {"name", "process_name"},
                    {"args", {{"name", "vramsim: " + in.model}}}});
  if (!in.summary.empty()) {
    events.push_back({{"ph", "M"},
                      {"pid", kPid},
                      {"name", "process_labels"},
                      {"args", {{"labels", in.summary}}}});
  }
  for (const auto& [tid, name] : kTracks) {
    events.push_back({{"ph", "M"},
                      {"pid", kPid},
                      {"tid", tid},
                      {"name", "thread_name"},
                      {"args", {{"name", name}}}});
    events.push_back({{"ph", "M"},
                      {"pid", kPid},
                      {"tid", tid},
                      {"name", "thread_sort_index"},
                      {"args", {{"sort_index", tid}}}});
  }

  for (size_t i = 0; i < trace.steps.size(); ++i) {
    const Step& s = trace.steps[i];
    json args = {{"step", i},
                 {"phase", PhaseName(s.phase)},
                 {"op_type", s.op_type},
                 {"live_bytes_after", report_internal::Total(t.end[i])},
                 {"high_water_bytes", report_internal::Total(t.high[i])}};
    if (!s.scope.empty()) args["scope"] = s.scope;
    if (s.flops != 0) args["flops"] = s.flops;
    events.push_back({{"ph", "X"},
                      {"pid", kPid},
                      {"tid", TrackOf(s.phase)},
                      {"ts", static_cast<double>(i)},
                      {"dur", 1.0},
                      {"name", s.name.empty() ? s.op_type : s.name},
                      {"cat", PhaseName(s.phase)},
                      {"args", std::move(args)}});
  }

  AddCounters(0.0, CategoryBytes{}, &events);
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    if (t.peaks_mid_step[i]) AddCounters(static_cast<double>(i) + 0.5, t.high[i], &events);
    AddCounters(static_cast<double>(i) + 1, t.end[i], &events);
  }

  const PeakReport& peak = t.peak;
  if (peak.peak_step >= 0) {
    size_t i = static_cast<size_t>(peak.peak_step);
    const Step& s = trace.steps[i];
    double ts = static_cast<double>(i) + (t.peaks_mid_step[i] ? 0.5 : 1.0);
    events.push_back({{"ph", "i"},
                      {"s", "g"},
                      {"pid", kPid},
                      {"tid", TrackOf(s.phase)},
                      {"ts", ts},
                      {"name", "peak " + report_internal::FormatBytes(peak.peak_bytes)},
                      {"cat", "peak"},
                      {"args",
                       {{"peak_bytes", peak.peak_bytes},
                        {"step", i},
                        {"op", s.name},
                        {"op_type", s.op_type},
                        {"phase", PhaseName(s.phase)},
                        {"live_tensors", peak.live_at_peak.size()},
                        {"by_category", CategoryArgs(peak.by_category)}}}});
  }

  // One event a line: still one JSON document, and easy to grep.
  constexpr auto kReplace = json::error_handler_t::replace;
  std::string out = "{\"traceEvents\": [\n";
  for (size_t i = 0; i < events.size(); ++i) {
    out += events[i].dump(-1, ' ', false, kReplace);
    out += i + 1 < events.size() ? ",\n" : "\n";
  }
  json other = {{"generator", "vramsim"},
                {"model", in.model},
                {"summary", in.summary},
                {"peak_bytes", peak.peak_bytes},
                {"peak_step", peak.peak_step},
                {"round_bytes", t.round_bytes},
                {"time_axis", "1 us = 1 step of the schedule; live bytes after each step"}};
  out += "],\n\"otherData\": ";
  out += other.dump(-1, ' ', false, kReplace);
  out += "}\n";
  return report_internal::WriteTextFile(path, out, "trace");
}

}  // namespace vramsim

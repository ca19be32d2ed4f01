// Internals shared by the reports: one replay of the event stream into live bytes per step and
// per category, and small formatting helpers. Not part of the reports' public interface.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "importer/status.h"
#include "reports/report.h"

namespace vramsim::report_internal {

using CategoryBytes = std::array<uint64_t, kCategoryCount>;

uint64_t Total(const CategoryBytes& bytes);

struct Timeline {
  // Each allocation counts rounded up to this (the plan's target, as the peak finder counts).
  uint64_t round_bytes = 1;
  std::vector<CategoryBytes> end;    // live after all of step i's events
  std::vector<CategoryBytes> high;   // at step i's high-water mark (its start included)
  std::vector<bool> peaks_mid_step;  // the high-water is above both the start and the end
  std::vector<StepId> made_at;       // per buffer: the step that allocated it, -1 if none
  PeakReport peak;                   // the caller's, or found here with the same rounding
};

// Checks the trace (buffer ids, alloc/free pairing, steps) and replays it.
Result<Timeline> BuildTimeline(const ReportInput& in);

// "1.23 GiB", "512.0 MiB", "12 B".
std::string FormatBytes(uint64_t bytes);
// "12,345,678".
std::string GroupDigits(uint64_t value);
// & < > " ' as entities.
std::string HtmlEscape(std::string_view text);
// "[8, 3, 224, 224]", "[]" for a scalar.
std::string ShapeString(const std::vector<int64_t>& shape);

// The module scope a buffer belongs to: its own scope; else, for parameters, buffers,
// gradients and optimizer state, the module prefix of the parameter name it is about
// ("adam state 0 of layer1.0.conv1.weight" -> "layer1.0.conv1"); else "(none)".
std::string ScopeGroup(const Buffer& buffer);

// Writes the whole file, or says why not.
Status WriteTextFile(const std::string& path, std::string_view content, std::string_view what);

// Category colours, shared by the HTML pages (index = Category).
extern const std::array<const char*, kCategoryCount> kCategoryColors;

// Inline CSS and JS of the pages.
extern const char* const kReportCss;
extern const char* const kReportJs;

}  // namespace vramsim::report_internal

// The HTML report: one self-contained page. The tables are written here as HTML; the chart is
// drawn in the browser as inline SVG by the page's own script (kReportJs) from a JSON island
// with at most kMaxChartPoints points, so the page stays small for long schedules.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "reports/report.h"
#include "reports/timeline.h"

namespace vramsim {
namespace {

using nlohmann::json;
using report_internal::CategoryBytes;
using report_internal::FormatBytes;
using report_internal::GroupDigits;
using report_internal::HtmlEscape;

constexpr size_t kMaxChartPoints = 2000;
constexpr size_t kMaxTensorRows = 1000;
constexpr size_t kMaxScopeRows = 500;

// Bottom to top: what stays for the whole step first.
constexpr Category kStackOrder[] = {Category::kParameters,     Category::kBuffers,
                                    Category::kOptimizerState, Category::kGradients,
                                    Category::kBatch,          Category::kSavedActivations,
                                    Category::kTransient};

// Shading of the phases in the chart, index = Phase.
constexpr const char* kPhaseColors[] = {"#eceef1", "#e3edfa", "#fadcd8",
                                        "#fbefcf", "#dcf0e1", "#eceef1"};
constexpr Phase kPhases[] = {Phase::kSetup,    Phase::kForward,   Phase::kLoss,
                             Phase::kBackward, Phase::kOptimizer, Phase::kEnd};

std::string CategoryLabel(Category c) {
  std::string name(CategoryName(c));
  std::replace(name.begin(), name.end(), '_', ' ');
  return name;
}

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "0%";
  double p = 100.0 * static_cast<double>(part) / static_cast<double>(whole);
  return fmt::format("{:.{}f}%", p, p < 10 ? 1 : 0);
}

std::string CategoryChip(Category c) {
  return fmt::format(R"(<span class="cat" style="--c:{}">{}</span>)",
                     report_internal::kCategoryColors[static_cast<size_t>(c)],
                     HtmlEscape(CategoryLabel(c)));
}

std::string BytesCell(uint64_t bytes) {
  return fmt::format(R"(<td class="num" data-bytes="{}" title="{} bytes">{}</td>)", bytes,
                     GroupDigits(bytes), FormatBytes(bytes));
}

// A horizontal bar split by category, widths relative to `whole`.
std::string CompositionBar(const CategoryBytes& bytes, uint64_t whole, const char* cls) {
  std::string out = fmt::format(R"(<div class="{}">)", cls);
  for (Category c : kStackOrder) {
    uint64_t b = bytes[static_cast<size_t>(c)];
    if (b == 0 || whole == 0) continue;
    out += fmt::format(R"(<span style="width:{:.3f}%;background:{}" title="{}: {}"></span>)",
                       100.0 * static_cast<double>(b) / static_cast<double>(whole),
                       report_internal::kCategoryColors[static_cast<size_t>(c)],
                       HtmlEscape(CategoryLabel(c)), FormatBytes(b));
  }
  return out + "</div>";
}

// The chart's data: per step its high-water mark by category, at most kMaxChartPoints of them
// (each keeps the step with the largest total of its run of steps, and the peak's step).
json ChartData(const ReportInput& in, const report_internal::Timeline& t) {
  const Trace& trace = *in.trace;
  const size_t n = trace.steps.size();
  json categories = json::array();
  for (size_t c = 0; c < kCategoryCount; ++c) {
    categories.push_back({{"name", CategoryLabel(static_cast<Category>(c))},
                          {"color", report_internal::kCategoryColors[c]}});
  }
  json stack = json::array();
  for (Category c : kStackOrder) stack.push_back(static_cast<int>(c));

  json points = json::array(), labels = json::array();
  const size_t per = n == 0 ? 1 : (n + kMaxChartPoints - 1) / kMaxChartPoints;
  for (size_t first = 0; first < n; first += per) {
    size_t last = std::min(n, first + per), best = first;
    for (size_t i = first; i < last; ++i) {
      if (report_internal::Total(t.high[i]) > report_internal::Total(t.high[best])) best = i;
    }
    if (t.peak.peak_step >= 0 && static_cast<size_t>(t.peak.peak_step) >= first &&
        static_cast<size_t>(t.peak.peak_step) < last) {
      best = static_cast<size_t>(t.peak.peak_step);
    }
    json p = json::array({best});
    for (uint64_t b : t.high[best]) p.push_back(b);
    points.push_back(std::move(p));
    const Step& s = trace.steps[best];
    labels.push_back({s.name, s.op_type, PhaseName(s.phase), s.scope});
  }

  json phase_colors = json::object();
  for (Phase p : kPhases)
    phase_colors[std::string(PhaseName(p))] = kPhaseColors[static_cast<int>(p)];
  json phases = json::array();
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && trace.steps[j].phase == trace.steps[i].phase) ++j;
    phases.push_back({PhaseName(trace.steps[i].phase), i, j});
    i = j;
  }

  json peak = nullptr;
  if (t.peak.peak_step >= 0) {
    const Step& s = trace.steps[static_cast<size_t>(t.peak.peak_step)];
    peak = {{"bytes", t.peak.peak_bytes},
            {"step", t.peak.peak_step},
            {"name", s.name},
            {"op", s.op_type},
            {"phase", PhaseName(s.phase)}};
  }
  return {{"model", in.model},
          {"steps", n},
          {"categories", categories},
          {"stack", stack},
          {"points", points},
          {"labels", labels},
          {"phases", phases},
          {"phase_colors", phase_colors},
          {"peak", peak},
          {"round_bytes", t.round_bytes}};
}

// JSON inside <script>: no '<' may appear, or "</script>" in a name would end the element.
std::string ScriptSafeJson(const json& j) {
  std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace), out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<') {
      out += "\\u003c";  // only ever inside a JSON string
    } else {
      out += c;
    }
  }
  return out;
}

std::string MadeBy(const Trace& trace, StepId step) {
  if (step < 0) return "";
  const Step& s = trace.steps[static_cast<size_t>(step)];
  std::string name = s.name.empty() ? s.op_type : s.name;
  std::string phase(PhaseName(s.phase));
  std::string detail = s.op_type.empty() || s.op_type == name || s.op_type == phase
                           ? phase
                           : s.op_type + ", " + phase;
  return fmt::format(
      R"(<span class="name">{}</span><br><span class="muted small">{}, step {}</span>)",
      HtmlEscape(name), HtmlEscape(detail), step);
}

std::string TensorTable(const Trace& trace, const report_internal::Timeline& t) {
  std::vector<BufferId> live = t.peak.live_at_peak;
  std::stable_sort(live.begin(), live.end(), [&](BufferId a, BufferId b) {
    return trace.buffers[a].bytes > trace.buffers[b].bytes;
  });
  std::string out = fmt::format(
      "<p class=\"note\">{} tensors, largest first{}.</p>\n<div class=\"scroll\">\n"
      "<table id=\"tensors\" class=\"data\">\n<thead><tr><th class=\"num\">#</th><th>tensor</th>"
      "<th>made by</th><th>scope</th><th>shape</th><th>dtype</th><th class=\"num\">bytes</th>"
      "<th>category</th><th>why alive</th></tr></thead>\n<tbody>\n",
      GroupDigits(live.size()),
      live.size() > kMaxTensorRows ? fmt::format(" (the first {} listed)", kMaxTensorRows) : "");
  for (size_t i = 0; i < live.size() && i < kMaxTensorRows; ++i) {
    const Buffer& b = trace.buffers[live[i]];
    out += fmt::format(
        "<tr><td class=\"num muted\">{}</td><td class=\"name\">{}</td><td class=\"made\">{}</td>"
        "<td class=\"mono wrap\">{}</td><td class=\"mono nowrap\">{}</td><td "
        "class=\"mono\">{}</td>{}"
        "<td>{}</td><td class=\"why\">{}</td></tr>\n",
        i + 1, HtmlEscape(b.name), MadeBy(trace, t.made_at[live[i]]), HtmlEscape(b.scope),
        b.shape.empty() && b.dtype == DType::kUndefined ? ""
                                                        : report_internal::ShapeString(b.shape),
        b.dtype == DType::kUndefined ? "" : HtmlEscape(DTypeName(b.dtype)), BytesCell(b.bytes),
        CategoryChip(b.category), HtmlEscape(b.why));
  }
  if (live.size() > kMaxTensorRows) {
    uint64_t rest = 0;
    for (size_t i = kMaxTensorRows; i < live.size(); ++i) rest += trace.buffers[live[i]].bytes;
    out += fmt::format(
        "<tr class=\"rest\"><td></td><td colspan=\"5\">… {} more tensors</td>{}<td colspan=\"2\">"
        "</td></tr>\n",
        GroupDigits(live.size() - kMaxTensorRows), BytesCell(rest));
  }
  return out + "</tbody>\n</table>\n</div>\n";
}

std::string ScopeTable(const Trace& trace, const report_internal::Timeline& t) {
  struct Group {
    CategoryBytes bytes{};
    size_t tensors = 0;
    BufferId largest = -1;
  };
  std::map<std::string, Group> groups;
  for (BufferId id : t.peak.live_at_peak) {
    const Buffer& b = trace.buffers[id];
    Group& g = groups[report_internal::ScopeGroup(b)];
    g.bytes[static_cast<size_t>(b.category)] += RoundUp(b.bytes, t.round_bytes);
    ++g.tensors;
    if (g.largest < 0 || b.bytes > trace.buffers[g.largest].bytes) g.largest = id;
  }
  std::vector<std::pair<std::string, Group>> rows(groups.begin(), groups.end());
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return report_internal::Total(a.second.bytes) > report_internal::Total(b.second.bytes);
  });
  uint64_t top = rows.empty() ? 0 : report_internal::Total(rows.front().second.bytes);
  uint64_t all = 0;
  for (const auto& [name, g] : rows) all += report_internal::Total(g.bytes);

  std::string out = fmt::format(
      "<p class=\"note\">{} scopes. Activations count under the module whose op made them; "
      "parameters, their gradients and optimizer state under the module their name names; "
      "the rest under (none). Bytes as the allocator counts them (rounded up to {} B).</p>\n"
      "<div class=\"scroll\">\n<table id=\"scopes\" class=\"data\">\n<thead><tr><th>scope</th>"
      "<th class=\"num\">bytes</th><th class=\"num\">share</th><th class=\"num\">tensors</th>"
      "<th class=\"barcol\">by category</th><th>largest tensor</th></tr></thead>\n<tbody>\n",
      GroupDigits(rows.size()), t.round_bytes);
  for (size_t i = 0; i < rows.size() && i < kMaxScopeRows; ++i) {
    const auto& [name, g] = rows[i];
    uint64_t total = report_internal::Total(g.bytes);
    out += fmt::format(
        "<tr><td class=\"name\">{}</td>{}<td class=\"num\">{}</td><td class=\"num\">{}</td>"
        "<td class=\"barcol\">{}</td><td class=\"name muted\">{}</td></tr>\n",
        HtmlEscape(name), BytesCell(total), Percent(total, all), g.tensors,
        CompositionBar(g.bytes, top, "minibar"),
        g.largest < 0 ? "" : HtmlEscape(trace.buffers[g.largest].name));
  }
  if (rows.size() > kMaxScopeRows) {
    uint64_t rest = 0;
    for (size_t i = kMaxScopeRows; i < rows.size(); ++i) {
      rest += report_internal::Total(rows[i].second.bytes);
    }
    out += fmt::format(
        "<tr class=\"rest\"><td>… {} more scopes</td>{}<td class=\"num\">{}</td>"
        "<td colspan=\"3\"></td></tr>\n",
        GroupDigits(rows.size() - kMaxScopeRows), BytesCell(rest), Percent(rest, all));
  }
  return out + "</tbody>\n</table>\n</div>\n";
}

std::string Legend(const Trace& trace, const report_internal::Timeline& t) {
  // The figures are those at the peak, not the step's maxima per category: say so.
  std::string out =
      fmt::format("<div class=\"legend\"><span class=\"muted\">at the peak ({}):</span>\n",
                  FormatBytes(t.peak.peak_bytes));
  for (Category c : kStackOrder) {
    uint64_t b = t.peak.by_category[static_cast<size_t>(c)];
    out += fmt::format(
        "<div class=\"key\"><span class=\"swatch\" style=\"background:{}\"></span>"
        "<span class=\"kname\">{}</span><span class=\"kval\">{}</span>"
        "<span class=\"muted\">{}</span></div>\n",
        report_internal::kCategoryColors[static_cast<size_t>(c)], HtmlEscape(CategoryLabel(c)),
        FormatBytes(b), Percent(b, t.peak.peak_bytes));
  }
  out += "</div>\n<div class=\"legend phases\"><span class=\"muted\">shading:</span>\n";
  for (Phase p : kPhases) {
    if (p == Phase::kEnd) continue;  // shaded like the setup
    size_t steps = 0;
    for (const Step& s : trace.steps) steps += s.phase == p;
    out += fmt::format(
        "<div class=\"key\"><span class=\"swatch band\" style=\"background:{}\"></span>"
        "<span>{}</span><span class=\"muted\">{} step{}</span></div>\n",
        kPhaseColors[static_cast<int>(p)], PhaseName(p), GroupDigits(steps), steps == 1 ? "" : "s");
  }
  return out + "</div>\n";
}

}  // namespace

Status WriteHtmlReport(const ReportInput& in, const std::string& path) {
  auto timeline = report_internal::BuildTimeline(in);
  if (!timeline) return timeline.error();
  const Trace& trace = *in.trace;
  const report_internal::Timeline& t = *timeline;
  const PeakReport& peak = t.peak;

  std::string peak_text = FormatBytes(peak.peak_bytes);
  std::string title = "vramsim: " + in.model + " \u2014 peak " + peak_text;
  if (!in.summary.empty()) title += " \u2014 " + in.summary;

  std::string where = "no allocation in this step";
  if (peak.peak_step >= 0) {
    const Step& s = trace.steps[static_cast<size_t>(peak.peak_step)];
    where = fmt::format("at step {} of {}: {}", peak.peak_step, trace.steps.size(),
                        HtmlEscape(DescribeStep(s)));
  }

  std::string page;
  page.reserve(64 * 1024 + trace.steps.size() * 16);
  page += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  page += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  page += "<title>" + HtmlEscape(title) + "</title>\n<style>\n";
  page += report_internal::kReportCss;
  page += "</style>\n</head>\n<body>\n<header>\n";
  page += fmt::format(
      "<h1><span class=\"model\">{}</span> <span class=\"peakbadge\">peak {}</span></h1>\n",
      HtmlEscape(in.model), peak_text);
  if (!in.summary.empty()) {
    page += "<p class=\"summary\">" + HtmlEscape(in.summary) + "</p>\n";
  }
  page += fmt::format(
      "<p class=\"peakline\">Peak <b>{}</b> <span class=\"muted\">({} bytes)</span> {} "
      "&middot; {} tensors live</p>\n</header>\n",
      peak_text, GroupDigits(peak.peak_bytes), where, GroupDigits(peak.live_at_peak.size()));

  page += "<section class=\"card\">\n<h2>Live memory over the step</h2>\n";
  const size_t per_point = (trace.steps.size() + kMaxChartPoints - 1) / kMaxChartPoints;
  page += fmt::format(
      "<p class=\"note\">Stacked by category, in schedule order. Each point is {}; the "
      "shading marks the phases. Hover for the op and the bytes.</p>\n",
      per_point > 1 ? fmt::format("the highest high-water mark of {} consecutive steps ({} steps "
                                  "drawn as at most {} points)",
                                  per_point, GroupDigits(trace.steps.size()), kMaxChartPoints)
                    : std::string("one step's high-water mark"));
  page +=
      "<div id=\"chart\" class=\"chart\"><noscript>The chart is drawn by the page's script; "
      "the tables below need none.</noscript></div>\n<div id=\"tip\" class=\"tip\" "
      "hidden></div>\n";
  page += Legend(trace, t);
  page += "</section>\n";

  page += "<section class=\"card\">\n<h2>Tensors alive at the peak</h2>\n";
  page += TensorTable(trace, t);
  page += "</section>\n<section class=\"card\">\n<h2>Memory at the peak by module scope</h2>\n";
  page += ScopeTable(trace, t);
  page += "</section>\n";
  page += fmt::format(
      "<footer>Made by vramsim from a simulated training step: {} steps, {} allocations "
      "and frees. Nothing on this page is fetched from elsewhere.</footer>\n",
      GroupDigits(trace.steps.size()), GroupDigits(trace.events.size()));
  page += "<script type=\"application/json\" id=\"vramsim-data\">";
  page += ScriptSafeJson(ChartData(in, t));
  page += "</script>\n<script>\n";
  page += report_internal::kReportJs;
  page += "</script>\n</body>\n</html>\n";
  return report_internal::WriteTextFile(path, page, "HTML report");
}

}  // namespace vramsim

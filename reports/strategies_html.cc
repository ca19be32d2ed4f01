// `vramsim strategies --html`: peak bytes against recompute overhead, one colour per strategy
// and one point per budget, drawn here as inline SVG (the page needs no script), and the table.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <string>

#include "reports/report.h"
#include "reports/timeline.h"

namespace vramsim {
namespace {

using report_internal::FormatBytes;
using report_internal::GroupDigits;
using report_internal::HtmlEscape;

constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1",
                                    "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac"};

double NiceStep(double range, int count) {
  double raw = range / count;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

// Byte ticks in one binary unit chosen from the largest value.
struct ByteAxis {
  double unit = 1;
  const char* name = "B";
  double step = 1, max = 1;
};

ByteAxis MakeByteAxis(double top) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  ByteAxis a;
  size_t u = 0;
  while (u + 1 < std::size(kUnits) && top >= a.unit * 1024) {
    a.unit *= 1024;
    ++u;
  }
  a.name = kUnits[u];
  a.step = NiceStep(top / a.unit, 5) * a.unit;
  a.max = std::ceil(top / a.step) * a.step;
  return a;
}

// Overhead as plotted: finite and not negative.
double Pct(const StrategyRow& r) {
  return std::isfinite(r.overhead_pct) ? std::max(0.0, r.overhead_pct) : 0.0;
}

std::string Trim(double v) {
  std::string s = fmt::format("{:.2f}", v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string Scatter(const std::vector<StrategyRow>& rows,
                    const std::map<std::string, const char*>& colour) {
  constexpr int W = 1000, H = 440, L = 84, R = 24, T = 24, B = 50;
  constexpr int iw = W - L - R, ih = H - T - B;
  double top_bytes = 1, top_pct = 0;
  for (const StrategyRow& r : rows) {
    top_bytes = std::max(top_bytes, static_cast<double>(std::max(r.peak_bytes, r.budget_bytes)));
    top_pct = std::max(top_pct, Pct(r));
  }
  ByteAxis ya = MakeByteAxis(top_bytes * 1.08);
  double xrange = std::max(1.0, top_pct * 1.1);
  double xstep = NiceStep(xrange, 8);
  double xmax = std::ceil(xrange / xstep) * xstep;
  auto X = [&](double pct) { return L + pct / xmax * iw; };
  auto Y = [&](double bytes) { return T + ih - bytes / ya.max * ih; };

  std::string svg = fmt::format(
      "<svg id=\"scatter\" class=\"scatter\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "role=\"img\" aria-label=\"peak memory against recompute overhead\">\n<g class=\"grid\">\n",
      W, H, W, H);
  for (double v = 0; v <= ya.max + ya.step / 2; v += ya.step) {
    svg += fmt::format(
        "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/><text class=\"ylab\" x=\"{}\" "
        "y=\"{:.1f}\" dy=\"0.32em\" text-anchor=\"end\">{}</text>\n",
        L, L + iw, Y(v), Y(v), L - 8, Y(v), v == 0 ? "0" : Trim(v / ya.unit) + " " + ya.name);
  }
  for (double p = 0; p <= xmax + xstep / 2; p += xstep) {
    svg += fmt::format(
        "<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\"/><text class=\"xlab\" "
        "x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}%</text>\n",
        X(p), X(p), T, T + ih, X(p), T + ih + 18, Trim(p));
  }
  svg += "</g>\n";
  svg += fmt::format(
      "<g class=\"axis\"><line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/><line x1=\"{}\" x2=\"{}\" "
      "y1=\"{}\" y2=\"{}\"/></g>\n<text class=\"axis-title\" x=\"{}\" y=\"{}\" "
      "text-anchor=\"middle\">recompute overhead (% of the step's FLOPs)</text>\n<text "
      "class=\"axis-title\" transform=\"rotate(-90)\" x=\"{}\" y=\"16\" "
      "text-anchor=\"middle\">peak memory</text>\n",
      L, L + iw, T + ih, T + ih, L, L, T, T + ih, L + iw / 2, H - 8, -(T + ih / 2));

  // The budgets, dashed: a point above its budget's line does not fit it.
  std::vector<uint64_t> budgets;
  for (const StrategyRow& r : rows) budgets.push_back(r.budget_bytes);
  std::sort(budgets.begin(), budgets.end());
  budgets.erase(std::unique(budgets.begin(), budgets.end()), budgets.end());
  for (uint64_t b : budgets) {
    svg += fmt::format(
        "<g class=\"budget\"><line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" "
        "stroke=\"#888\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1f}\" dy=\"-4\" "
        "text-anchor=\"end\" class=\"xlab\">budget {}</text></g>\n",
        L, L + iw, Y(static_cast<double>(b)), Y(static_cast<double>(b)), L + iw - 4,
        Y(static_cast<double>(b)), FormatBytes(b));
  }

  // Strategies with equal results land on one spot: each marker there is shifted sideways
  // (and its title names the others) so none hides another.
  std::map<std::pair<long, long>, std::vector<const StrategyRow*>> spots;
  for (const StrategyRow& r : rows) {
    spots[{std::lround(X(Pct(r))), std::lround(Y(static_cast<double>(r.peak_bytes)))}].push_back(
        &r);
  }
  std::map<const StrategyRow*, double> shift;
  std::map<const StrategyRow*, std::string> also;
  for (const auto& [spot, at] : spots) {
    for (size_t k = 0; k < at.size(); ++k) {
      shift[at[k]] = (static_cast<double>(k) - static_cast<double>(at.size() - 1) / 2) * 10.0;
      for (const StrategyRow* o : at) {
        if (o != at[k]) also[at[k]] += (also[at[k]].empty() ? "" : ", ") + o->strategy;
      }
    }
  }

  // One line per strategy through its points, in budget order, then the points; lines differ
  // in dashes too, so coinciding ones stay apart.
  static constexpr const char* kDashes[] = {"", "8 3", "2 3", "10 3 2 3", "4 4", "1 2"};
  std::map<std::string, std::vector<const StrategyRow*>> series;
  for (const StrategyRow& r : rows) series[r.strategy].push_back(&r);
  for (auto& [name, points] : series) {
    std::stable_sort(points.begin(), points.end(), [](const StrategyRow* a, const StrategyRow* b) {
      return a->budget_bytes < b->budget_bytes;
    });
    if (points.size() < 2) continue;
    std::string d;
    for (const StrategyRow* r : points) {
      d += fmt::format("{}{:.1f},{:.1f}", d.empty() ? "M" : "L", X(Pct(*r)) + shift[r],
                       Y(static_cast<double>(r->peak_bytes)));
    }
    size_t index = static_cast<size_t>(std::distance(series.begin(), series.find(name)));
    svg += fmt::format("<path class=\"series\" stroke=\"{}\" stroke-dasharray=\"{}\" d=\"{}\"/>\n",
                       colour.at(name), kDashes[index % std::size(kDashes)], d);
  }
  for (const StrategyRow& r : rows) {
    const char* c = colour.at(r.strategy);
    svg += fmt::format(
        "<circle class=\"pt\" data-strategy=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"6\" "
        "stroke=\"{}\" fill=\"{}\"><title>{}: budget {}, peak {}, overhead {:.2f}%{}{}</title>"
        "</circle>\n",
        HtmlEscape(r.strategy), X(Pct(r)) + shift[&r], Y(static_cast<double>(r.peak_bytes)), c,
        r.fits ? c : "#fff", HtmlEscape(r.strategy), FormatBytes(r.budget_bytes),
        FormatBytes(r.peak_bytes), r.overhead_pct, r.fits ? "" : " (does not fit)",
        also[&r].empty() ? std::string() : HtmlEscape("; same result as " + also[&r]));
  }
  return svg + "</svg>\n";
}

}  // namespace

Status WriteStrategiesHtml(const std::string& model, const std::vector<StrategyRow>& rows,
                           const std::string& path) {
  std::map<std::string, const char*> colour;
  std::vector<std::string> order;
  for (const StrategyRow& r : rows) {
    if (colour.count(r.strategy)) continue;
    colour[r.strategy] = kPalette[order.size() % std::size(kPalette)];
    order.push_back(r.strategy);
  }

  std::string title = "vramsim strategies: " + model;
  std::string page = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  page += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  page += "<title>" + HtmlEscape(title) + "</title>\n<style>\n";
  page += report_internal::kReportCss;
  page += "</style>\n</head>\n<body>\n<header>\n";
  page += fmt::format("<h1><span class=\"model\">{}</span></h1>\n", HtmlEscape(model));
  page += fmt::format(
      "<p class=\"summary\">{} strategies, {} plans: peak memory against the recompute they "
      "cost</p>\n</header>\n",
      order.size(), rows.size());

  page += "<section class=\"card\">\n<h2>Peak against recompute overhead</h2>\n";
  page +=
      "<p class=\"note\">One colour per strategy, one point per budget; a hollow point's plan "
      "does not fit its budget (dashed lines: the budgets). Points of strategies with equal "
      "results sit side by side. Lower and further left is better.</p>\n";
  page += Scatter(rows, colour);
  page += "<div class=\"legend\">\n";
  for (const std::string& s : order) {
    page += fmt::format(
        "<div class=\"key\"><span class=\"swatch\" style=\"background:{}\"></span>"
        "<span class=\"kname\">{}</span></div>\n",
        colour[s], HtmlEscape(s));
  }
  page += "</div>\n</section>\n";

  page +=
      "<section class=\"card\">\n<h2>Plans</h2>\n<div class=\"scroll\">\n<table id=\"strategies\" "
      "class=\"data\">\n<thead><tr><th>strategy</th><th class=\"num\">budget</th>"
      "<th class=\"num\">peak</th><th class=\"num\">recompute overhead</th>"
      "<th class=\"num\">solve time</th><th>fits</th></tr></thead>\n<tbody>\n";
  for (const StrategyRow& r : rows) {
    page += fmt::format(
        "<tr><td><span class=\"cat\" style=\"--c:{}\">{}</span></td>"
        "<td class=\"num\" title=\"{} bytes\">{}</td><td class=\"num\" title=\"{} bytes\">{}</td>"
        "<td class=\"num\">{:.2f}%</td><td class=\"num\">{:.1f} ms</td><td class=\"{}\">{}</td>"
        "</tr>\n",
        colour[r.strategy], HtmlEscape(r.strategy), GroupDigits(r.budget_bytes),
        FormatBytes(r.budget_bytes), GroupDigits(r.peak_bytes), FormatBytes(r.peak_bytes),
        r.overhead_pct, r.solve_ms, r.fits ? "fit-yes" : "fit-no", r.fits ? "yes" : "no");
  }
  page += "</tbody>\n</table>\n</div>\n</section>\n";
  page += "<footer>Made by vramsim. Nothing on this page is fetched from elsewhere.</footer>\n";
  page += "</body>\n</html>\n";
  return report_internal::WriteTextFile(path, page, "strategies page");
}

}  // namespace vramsim

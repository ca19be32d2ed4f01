// Reports people can look at: the step as a Chrome trace / Perfetto JSON, and one
// self-contained HTML page. They read the simulator's event stream; they change nothing.
#pragma once

#include <string>
#include <vector>

#include "importer/status.h"
#include "simulator/peak.h"
#include "simulator/plan.h"
#include "simulator/trace.h"

namespace vramsim {

struct ReportInput {
  std::string model;    // shown in titles
  std::string summary;  // one line: dims, optimizer, precision...
  const TrainingPlan* plan = nullptr;
  const Trace* trace = nullptr;
  const PeakReport* peak = nullptr;
};

// traceEvents JSON: one slice per step on forward, backward and optimizer tracks, counter
// tracks of live bytes per category.
Status WriteChromeTrace(const ReportInput& in, const std::string& path);

// The page: live memory over the step stacked by category with the peak marked, the tensors
// alive at the peak (name, op, scope, shape, dtype, bytes, why alive), a per-scope table.
Status WriteHtmlReport(const ReportInput& in, const std::string& path);

// One row of `vramsim strategies`: a strategy's plan at one budget.
struct StrategyRow {
  std::string strategy;
  uint64_t budget_bytes = 0;
  uint64_t peak_bytes = 0;
  double overhead_pct = 0;  // recompute FLOPs as a share of the step's FLOPs
  double solve_ms = 0;
  bool fits = false;
};

// Peak against recompute overhead per strategy, with the table.
Status WriteStrategiesHtml(const std::string& model, const std::vector<StrategyRow>& rows,
                           const std::string& path);

}  // namespace vramsim

// Plan and strategies, the library layer under `vramsim plan` / `vramsim strategies` and the
// Python vramsim.plan / vramsim.strategies: what to checkpoint so that a training step fits a
// memory budget (an ONNX model: planners/checkpoint_planner.h), or what to recompute in a
// rematerialization benchmark graph (planners/planner_remat.h). Options are validated here with
// the CLI's flag names in the messages, so both front ends give the same ones; plain functions,
// the front ends print what comes back.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/estimate.h"
#include "importer/status.h"
#include "planners/checkpoint_planner.h"
#include "planners/planner_remat.h"
#include "reports/report.h"

namespace vramsim {

// "6GiB", "512MiB", "1.5GB", "1000000": bytes (KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB
// of 1000; units are case-insensitive). `flag` names the option in the error.
Result<uint64_t> ParseByteSize(const std::string& text, const std::string& flag);

// The ranges, as --help prints them and as errors quote them.
inline constexpr double kMaxBudgetFraction = 100;
inline constexpr const char* kBudgetFractionRange = "in (0, 100]";
inline constexpr double kMaxTimeLimitS = 1e6;
inline constexpr const char* kTimeLimitRange = "in (0, 1e6]";

struct PlanSearchOptions {
  // The budget, exactly one of: a size as text (ParseByteSize: "6GiB", "4096"), or a fraction
  // of the peak without checkpointing (for a remat graph, of its baseline order's peak).
  std::string budget;
  std::optional<double> budget_fraction;
  std::string strategy;  // ONNX models: run only this one (StrategyNames()); empty: all
  // ONNX models: the MILP's limit; remat graphs: the whole call, wall clock.
  double time_limit_s = 60;
};

struct StrategiesOptions {
  std::vector<std::string> budgets;  // sizes as text (ParseByteSize), at least one
  std::string strategy;              // run only this one; empty: all
  double time_limit_s = 60;          // the MILP's limit
};

// Plan calls these itself; they are separate so that the CLI checks in its historical order
// (options, then for an ONNX model the budget, then --checkpoint, then --dim).
// The numbers' ranges (--budget-fraction, --time-limit).
Status CheckPlanOptions(const PlanSearchOptions& options);
// For an ONNX model: one budget, readable (a remat graph is read before its budget is looked at).
Status CheckOnnxPlanBudget(const PlanSearchOptions& options);
// Plan and strategies choose --checkpoint themselves.
Status CheckPlannerTraining(const EstimateFlags& training);
// A remat-graph JSON (by its extension, else by its first character), not an ONNX model.
bool IsRematGraphFile(const std::string& path);

// plan on an ONNX model: the result of each strategy run and the best of them.
struct OnnxPlan {
  std::vector<PlanResult> results;
  size_t best = 0;
  int micro_batches = 1;  // FLOPs in the reports are the whole step's: all K micro-batches
  uint64_t budget_bytes = 0;
  uint64_t baseline_peak_bytes = 0;  // no checkpointing
  std::vector<std::string> blocks;   // the candidate regions
  // Parameters, gradients and optimizer state at the optimizer step: no plan goes below.
  uint64_t model_state_bytes = 0;
  bool ModelStatesExceedBudget() const { return model_state_bytes > budget_bytes; }
  // The least any plan can peak at (simulator/peak.h RecomputeFloor) and where, in words.
  uint64_t floor_bytes = 0;
  std::string floor_where;
  bool BudgetBelowFloor() const { return floor_bytes > budget_bytes; }
  std::string block_model;  // how their savings were modelled
  bool block_model_checked = false;
  int setup_simulations = 0;
  int simulations_total = 0;
  double setup_ms = 0;
  double solve_ms = 0;  // the problem and the strategies, wall clock
  const PlanResult& chosen() const { return results[best]; }
};

// plan on a remat graph.
struct RematPlan {
  std::string graph;
  size_t nodes = 0, edges = 0;
  uint64_t baseline_peak_bytes = 0, budget_bytes = 0;
  double baseline_cost = 0;
  double time_limit_s = 0;
  // No schedule found: why, whether none can exist at all, the least budget one can fit.
  std::optional<std::string> error;
  bool proven_infeasible = false;
  uint64_t least_feasible_budget = 0;
  // Otherwise the schedule and its independent replay (the numbers reported).
  RematSolution solution;
  ReplayStats replay;
  nlohmann::json schedule;  // RematScheduleJson: the sequence of computations and frees
};

struct PlanReport {
  std::variant<OnnxPlan, RematPlan> plan;
  bool fits() const;
};

// plan: ONNX models get the checkpoint plan with the least recompute that fits (dims and the
// training flags as for estimate, without --checkpoint); remat graphs the cheapest schedule
// (dims and training flags unused). A plan that does not fit is a report (fits() false), not an
// error; errors are bad input.
Result<PlanReport> Plan(const std::string& model, const std::map<std::string, int64_t>& dims,
                        const EstimateFlags& training, const PlanSearchOptions& options);

// The CLI's --json object (for a remat graph without a schedule too).
nlohmann::json PlanJson(const PlanReport& report);
// The CLI's text; empty for a remat graph without a schedule.
std::string PlanText(const PlanReport& report);
// Why it does not fit, one line (the CLI's stderr after "vramsim: "); empty when it fits.
std::string PlanNoFitMessage(const PlanReport& report);

struct StrategiesRow {
  uint64_t budget_bytes = 0;
  PlanResult result;
};

struct StrategiesReport {
  std::string model;  // as given
  uint64_t baseline_peak_bytes = 0;
  uint64_t floor_bytes = 0;  // as OnnxPlan's: no plan peaks below it
  std::string floor_where;
  std::vector<std::string> blocks;
  std::string block_model;
  double setup_ms = 0;
  int micro_batches = 1;
  std::vector<StrategiesRow> rows;  // by budget, then strategy, in the order run
};

// Every strategy (or the one named) at every budget, on one model.
Result<StrategiesReport> Strategies(const std::string& model,
                                    const std::map<std::string, int64_t>& dims,
                                    const EstimateFlags& training,
                                    const StrategiesOptions& options);
// The numbers' ranges and the budgets, before the model is read.
Status CheckStrategiesOptions(const StrategiesOptions& options);

nlohmann::json StrategiesJson(const StrategiesReport& report);
std::string StrategiesText(const StrategiesReport& report);
// The table and chart as a self-contained HTML page (the CLI's --html).
Status WriteStrategiesReportHtml(const StrategiesReport& report, const std::string& path);

}  // namespace vramsim

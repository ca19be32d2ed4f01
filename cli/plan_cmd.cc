#include "cli/plan_cmd.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cli/estimate.h"

namespace vramsim {

namespace {

constexpr int kExitNoFit = 1;
constexpr int kExitBadInput = 2;

[[noreturn]] void Exit(int code) {
  std::cout.flush();
  std::fflush(stdout);
  std::fflush(stderr);
  std::exit(code);
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "vramsim: error: %s\n", message.c_str());
  return kExitBadInput;
}

struct Flags {
  std::string model;
  std::vector<std::string> dims;
  EstimateFlags training;
  std::string budgets, html;
  PlanSearchOptions plan;
  double budget_fraction = 0;  // plan.budget_fraction when given
  bool json = false;
};

// The checks engine/plan.h makes too, in the order the CLI has always made them, so that a
// command line with several mistakes keeps reporting the same one.
int RunPlan(const Flags& f) {
  std::map<std::string, int64_t> dims;
  if (auto s = CheckPlanOptions(f.plan); !s) return Fail(s.message());
  if (!IsRematGraphFile(f.model)) {  // a remat graph takes no --dim or training flags
    if (auto s = CheckOnnxPlanBudget(f.plan); !s) return Fail(s.message());
    if (auto s = CheckPlannerTraining(f.training); !s) return Fail(s.message());
    if (auto s = ParseDimSpecs(f.dims, &dims); !s) return Fail(s.message());
  }
  auto r = Plan(f.model, dims, f.training, f.plan);
  if (!r) return Fail(r.error().message);
  if (f.json) {
    std::cout << PlanJson(*r).dump(1) << "\n";
  } else {
    std::cout << PlanText(*r);
  }
  if (!r->fits()) {
    std::fprintf(stderr, "vramsim: %s\n", PlanNoFitMessage(*r).c_str());
    return kExitNoFit;
  }
  return 0;
}

int RunStrategiesCmd(const Flags& f) {
  StrategiesOptions o;
  o.strategy = f.plan.strategy;
  o.time_limit_s = f.plan.time_limit_s;
  // --budgets A,B: each piece a size; an empty flag is "no budgets", an empty piece is not.
  for (size_t pos = 0; !f.budgets.empty() && pos <= f.budgets.size();) {
    size_t comma = f.budgets.find(',', pos);
    if (comma == std::string::npos) comma = f.budgets.size();
    o.budgets.push_back(f.budgets.substr(pos, comma - pos));
    pos = comma + 1;
  }
  if (auto s = CheckStrategiesOptions(o); !s) return Fail(s.message());
  if (auto s = CheckPlannerTraining(f.training); !s) return Fail(s.message());
  std::map<std::string, int64_t> dims;
  if (auto s = ParseDimSpecs(f.dims, &dims); !s) return Fail(s.message());
  auto r = Strategies(f.model, dims, f.training, o);
  if (!r) return Fail(r.error().message);
  if (!f.html.empty()) {
    if (auto s = WriteStrategiesReportHtml(*r, f.html); !s) return Fail(s.message());
    std::cerr << "vramsim: strategies report written to " << f.html << "\n";
  }
  if (f.json) {
    std::cout << StrategiesJson(*r).dump(1) << "\n";
  } else {
    std::cout << StrategiesText(*r);
  }
  return 0;
}

}  // namespace

void RegisterPlanCommands(CLI::App& app) {
  static Flags plan_flags, strat_flags;
  auto* plan =
      app.add_subcommand("plan", "Choose what to checkpoint so that the step fits a memory budget");
  plan->add_option("model", plan_flags.model, "ONNX file, or a remat-graph JSON (networkx)")
      ->required();
  plan->add_option("--dim", plan_flags.dims, "Bind a symbolic dimension, NAME=VALUE (repeatable)");
  AddTrainingFlags(plan, &plan_flags.training);
  plan->add_option("--budget", plan_flags.plan.budget,
                   "Memory budget: bytes, or 6GiB, 512MiB, 8GB...");
  auto* fraction =
      plan->add_option("--budget-fraction", plan_flags.budget_fraction,
                       std::string("Budget as a fraction of the peak without checkpointing, ") +
                           kBudgetFractionRange);
  plan->add_option("--strategy", plan_flags.plan.strategy,
                   "Run only this strategy (" + StrategyNames() + ")");
  plan->add_option("--time-limit", plan_flags.plan.time_limit_s,
                   std::string("Seconds: on a remat graph the whole command's wall clock (the "
                               "best schedule found by then is the answer); on an ONNX model the "
                               "MILP strategy's solve and the remat strategy's safety cut, ") +
                       kTimeLimitRange)
      ->capture_default_str();
  plan->add_flag("--json", plan_flags.json, "Print one JSON object");
  plan->callback([fraction] {
    if (fraction->count() > 0) plan_flags.plan.budget_fraction = plan_flags.budget_fraction;
    if (int rc = RunPlan(plan_flags)) Exit(rc);
  });

  auto* strategies = app.add_subcommand(
      "strategies", "Every checkpointing strategy's peak, overhead and solve time per budget");
  strategies->add_option("model", strat_flags.model, "ONNX file")->required();
  strategies->add_option("--dim", strat_flags.dims,
                         "Bind a symbolic dimension, NAME=VALUE (repeatable)");
  AddTrainingFlags(strategies, &strat_flags.training);
  strategies->add_option("--budgets", strat_flags.budgets, "Budgets, SIZE[,SIZE]...")->required();
  strategies->add_option("--strategy", strat_flags.plan.strategy, "Run only this strategy");
  strategies
      ->add_option("--time-limit", strat_flags.plan.time_limit_s,
                   std::string("Seconds for the MILP strategy's solve and the remat strategy's "
                               "safety cut at each budget, ") +
                       kTimeLimitRange)
      ->capture_default_str();
  strategies->add_option("--html", strat_flags.html, "Write the table and chart as an HTML page");
  strategies->add_flag("--json", strat_flags.json, "Print one JSON object");
  strategies->callback([] {
    if (int rc = RunStrategiesCmd(strat_flags)) Exit(rc);
  });
}

}  // namespace vramsim

void RegisterPlanStrategiesCommands(CLI::App& app) { vramsim::RegisterPlanCommands(app); }

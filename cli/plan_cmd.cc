#include "cli/plan_cmd.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/estimate.h"
#include "importer/importer.h"
#include "importer/remat_graph.h"
#include "planners/checkpoint_planner.h"
#include "planners/planner_remat.h"
#include "policies/accumulation.h"
#include "reports/report.h"

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
  std::string budget, budgets, strategy, html;
  double budget_fraction = 0;
  bool budget_fraction_given = false;
  double time_limit = 60;
  bool json = false;
};

// The ranges, as --help prints them and as errors quote them.
constexpr double kMaxBudgetFraction = 100;
const char* const kBudgetFractionRange = "in (0, 100]";
constexpr double kMaxTimeLimit = 1e6;
const char* const kTimeLimitRange = "in (0, 1e6]";

// The numeric flags CLI11 does not range-check for us (NaN passes its Range validator).
Status CheckNumericFlags(const Flags& f) {
  if (f.budget_fraction_given &&
      !(f.budget_fraction > 0 && f.budget_fraction <= kMaxBudgetFraction)) {
    return Error{fmt::format("--budget-fraction must be {}, got {}", kBudgetFractionRange,
                             f.budget_fraction)};
  }
  if (!(f.time_limit > 0 && f.time_limit <= kMaxTimeLimit)) {
    return Error{fmt::format("--time-limit must be a number of seconds {}, got {}", kTimeLimitRange,
                             f.time_limit)};
  }
  return {};
}

bool LooksLikeRematGraph(const std::string& path) {
  auto ends = [&](const char* ext) {
    std::string e = ext;
    if (path.size() < e.size()) return false;
    std::string tail = path.substr(path.size() - e.size());
    std::transform(tail.begin(), tail.end(), tail.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return tail == e;
  };
  if (ends(".json")) return true;
  if (ends(".onnx")) return false;
  std::ifstream in(path, std::ios::binary);
  char c = 0;
  while (in.get(c) && std::isspace(static_cast<unsigned char>(c))) {
  }
  return in && c == '{';
}

// ---------------------------------------------------------------------------------------------
// plan GRAPH.json

// --budget SIZE or --budget-fraction F (of `baseline`, the no-recompute peak), exactly one.
Result<uint64_t> ResolveBudget(const Flags& f, uint64_t baseline) {
  if (!f.budget.empty() && f.budget_fraction > 0)
    return Error{"give --budget or --budget-fraction, not both"};
  if (!f.budget.empty()) return ParseByteSize(f.budget, "--budget");
  if (f.budget_fraction > 0) {
    double b = std::floor(f.budget_fraction * static_cast<double>(baseline));
    if (!(b >= 1)) return Error{"--budget-fraction: a budget under one byte"};
    if (b >= 9.2e18) return Error{"--budget-fraction: the budget is too large"};
    return static_cast<uint64_t>(b);
  }
  return Error{"plan needs --budget SIZE (e.g. 6GiB) or --budget-fraction F"};
}

int RunRematPlan(const Flags& f) {
  auto start = std::chrono::steady_clock::now();
  auto g = LoadRematGraph(f.model);
  if (!g) return Fail(g.error().message);
  uint64_t baseline = BaselinePeak(*g);
  auto resolved = ResolveBudget(f, baseline);
  if (!resolved) return Fail(resolved.error().message);
  uint64_t budget = *resolved;
  if (!f.strategy.empty())
    return Fail("--strategy applies to ONNX models; a remat graph runs the optimal planner");
  // --time-limit bounds the whole command: the planner gets what loading the graph left.
  RematOptions options;
  options.time_limit_s =
      f.time_limit -
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto sol = SolveRemat(*g, budget, options);
  double base_cost = BaselineCost(*g);
  if (!sol) {
    if (f.json) {
      // proven_infeasible: no schedule at all can fit (not only none was found in time).
      bool proven = InfeasibilityProof(*g, budget).has_value();
      nlohmann::json j{
          {"graph", g->name},
          {"nodes", g->nodes.size()},
          {"baseline_peak", baseline},
          {"budget", budget},
          {"budget_fraction", static_cast<double>(budget) / static_cast<double>(baseline)},
          {"fits", false},
          {"proven_infeasible", proven},
          {"least_feasible_budget", LeastFeasibleBudget(*g)},
          {"least_feasible_fraction",
           static_cast<double>(LeastFeasibleBudget(*g)) / static_cast<double>(baseline)},
          {"time_limit_s", f.time_limit},
          {"error", sol.error().message}};
      std::cout << j.dump(1) << "\n";
    }
    std::fprintf(stderr, "vramsim: no schedule fits the budget of %s: %s\n",
                 FormatBytes(budget).c_str(), sol.error().message.c_str());
    return kExitNoFit;
  }
  // The independent check: replay the schedule and compare.
  auto replay = ReplaySequence(*g, sol->steps);
  if (!replay) return Fail("internal: the plan fails its replay: " + replay.error().message);
  if (replay->peak_bytes != sol->peak_bytes ||
      std::abs(replay->cost - sol->cost) > 1e-6 * base_cost)
    return Fail("internal: the replay disagrees with the planner");
  bool fits = replay->peak_bytes <= budget;
  double increase = base_cost > 0 ? 100.0 * (replay->cost - base_cost) / base_cost : 0.0;
  if (f.json) {
    nlohmann::json j;
    j["graph"] = g->name;
    j["nodes"] = g->nodes.size();
    j["edges"] = g->edge_count();
    j["baseline_peak"] = baseline;
    j["budget"] = budget;
    j["budget_fraction"] = static_cast<double>(budget) / static_cast<double>(baseline);
    j["peak"] = replay->peak_bytes;
    j["fits"] = fits;
    j["baseline_cost"] = base_cost;
    j["cost"] = replay->cost;
    j["recompute_cost"] = replay->cost - base_cost;
    j["cost_increase_pct"] = increase;
    j["optimal"] = fits && sol->optimal;
    j["gap_pct"] = fits ? nlohmann::json(sol->gap_pct()) : nlohmann::json(nullptr);
    j["lower_bound"] = sol->lower_bound;  // on the cost, in Checkmate's stage space
    j["lower_bound_increase_pct"] =
        base_cost > 0 ? 100.0 * (sol->lower_bound - base_cost) / base_cost : 0.0;
    j["lower_bound_source"] = sol->bound_source;  // milp, lp or baseline
    j["proven_infeasible"] = false;
    j["method"] = sol->method;
    j["computations"] = replay->computations;
    j["solve_ms"] = sol->solve_ms;
    j["time_limit_s"] = f.time_limit;
    j["replay_checked"] = true;
    j["note"] = sol->note;
    std::cout << j.dump(1) << "\n";
  } else {
    std::cout << fmt::format(
        "graph: {} ({} nodes, {} edges)\n"
        "budget: {} ({:.3f} of the baseline peak {})\n"
        "peak: {} (replayed) {}\n"
        "recompute: +{:.3f}% cost ({} computations for {} nodes), by {}\n"
        "{}, gap {:.3f}% (lower bound +{:.3f}%, from the {}); solved in {:.0f} ms{}\n",
        g->name, g->nodes.size(), g->edge_count(), FormatBytes(budget),
        static_cast<double>(budget) / static_cast<double>(baseline), FormatBytes(baseline),
        FormatBytes(replay->peak_bytes), fits ? "fits" : "OVER the budget", increase,
        replay->computations, g->nodes.size(), sol->method,
        sol->optimal ? "proven optimal" : "not proven optimal", sol->gap_pct(),
        base_cost > 0 ? 100.0 * (sol->lower_bound - base_cost) / base_cost : 0.0, sol->bound_source,
        sol->solve_ms, sol->note.empty() ? std::string() : std::string(" (") + sol->note + ")");
  }
  if (!fits) {
    std::fprintf(stderr, "vramsim: no schedule found fits the budget of %s; the best peaks at %s\n",
                 FormatBytes(budget).c_str(), FormatBytes(replay->peak_bytes).c_str());
    return kExitNoFit;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// plan MODEL.onnx / strategies MODEL.onnx

struct Loaded {
  std::unique_ptr<Graph> graph;
  std::map<std::string, int64_t> dims;
};

Result<Loaded> LoadModel(const Flags& f, EstimateOptions* options) {
  if (!f.training.checkpoint.empty())
    return Error{"--checkpoint is what the planner chooses; leave it out"};
  Loaded l;
  if (auto s = ParseDimSpecs(f.dims, &l.dims); !s) return Error{s.message()};
  auto eo = ParseEstimateFlags(f.training);
  if (!eo) return eo.error();
  *options = *eo;
  auto micro = MicroBatchDims(l.dims, {options->micro_batches, options->batch_dim});
  if (!micro) return micro.error();
  ImportOptions io;
  io.dims = *micro;
  io.allow_constant_weights = options->allow_constant_weights;
  auto graph = ImportModel(f.model, io);
  if (!graph) return graph.error();
  l.graph = std::make_unique<Graph>(std::move(graph.value()));
  return l;
}

// FLOPs for the whole step: the planner counts one micro-batch; all K run.
nlohmann::json ResultJson(const PlanResult& r, int micro_batches) {
  const uint64_t k = static_cast<uint64_t>(std::max(micro_batches, 1));
  return {{"strategy", r.strategy},
          {"budget_bytes", r.budget_bytes},
          {"peak_bytes", r.peak_bytes},
          {"fits", r.fits},
          {"recompute_flops", r.recompute_flops * k},
          {"step_flops", r.step_flops * k},
          {"overhead_pct", r.overhead_pct},
          {"checkpoint", r.checkpoint},
          {"optimal", r.optimal},
          {"solve_ms", r.solve_ms},
          {"simulations", r.simulations},
          {"note", r.note}};
}

std::string ScopeList(const std::vector<std::string>& scopes) {
  if (scopes.empty()) return "(none)";
  std::string s;
  for (const auto& x : scopes) s += (s.empty() ? "" : ",") + x;
  return s;
}

int RunOnnxPlan(const Flags& f) {
  if (!f.budget.empty() && f.budget_fraction > 0)
    return Fail("give --budget or --budget-fraction, not both");
  if (!f.budget.empty()) {
    if (auto b = ParseByteSize(f.budget, "--budget"); !b) return Fail(b.error().message);
  } else if (f.budget_fraction <= 0) {
    return Fail("plan needs --budget SIZE (e.g. 6GiB) or --budget-fraction F");
  }
  EstimateOptions options;
  auto loaded = LoadModel(f, &options);
  if (!loaded) return Fail(loaded.error().message);
  auto start = std::chrono::steady_clock::now();
  auto problem = MakePlanProblem(*loaded->graph, options);
  if (!problem) return Fail(f.model + ": " + problem.error().message);
  uint64_t baseline = problem->baseline.peak.peak_bytes;
  auto resolved = ResolveBudget(f, baseline);
  if (!resolved) return Fail(resolved.error().message);
  uint64_t budget = *resolved;
  StrategyOptions so;
  so.milp_time_limit_s = f.time_limit;
  size_t best = 0;
  auto results = RunStrategies(*problem, budget, f.strategy, &best, so);
  if (!results) return Fail(results.error().message);
  double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const PlanResult& r = (*results)[best];
  int simulations = problem->setup_simulations;
  for (const PlanResult& x : *results) simulations += x.simulations;
  if (f.json) {
    nlohmann::json j = ResultJson(r, options.micro_batches);
    j["strategy_solve_ms"] = r.solve_ms;
    j["solve_ms"] = total_ms;
    j["setup_ms"] = problem->setup_ms;
    j["block_model"] = problem->block_model;
    j["setup_simulations"] = problem->setup_simulations;
    j["simulations_total"] = simulations;
    j["baseline_peak_bytes"] = baseline;
    j["blocks"] = problem->blocks.scopes;
    nlohmann::json all = nlohmann::json::array();
    for (const PlanResult& x : *results) all.push_back(ResultJson(x, options.micro_batches));
    j["strategies"] = all;
    std::cout << j.dump(1) << "\n";
  } else {
    std::cout << fmt::format(
        "plan ({}): checkpoint {}\n"
        "peak: {} simulated, budget {}: {} (no checkpointing: {})\n"
        "recompute: {:.2f} GFLOP, {:.2f}% of the step{}\n"
        "solved in {:.0f} ms ({} candidate blocks, {:.0f} ms to model them; {} simulated steps "
        "in all){}\n",
        r.strategy, ScopeList(r.checkpoint), FormatBytes(r.peak_bytes), FormatBytes(budget),
        r.fits ? "fits" : "DOES NOT FIT", FormatBytes(baseline),
        static_cast<double>(r.recompute_flops) * std::max(options.micro_batches, 1) / 1e9,
        r.overhead_pct, r.optimal ? " (optimal under the block model)" : "", total_ms,
        problem->blocks.size(), problem->setup_ms, simulations,
        r.note.empty() ? std::string() : fmt::format("\nnote: {}", r.note));
    if (!problem->model_checked && problem->blocks.size() > 0)
      std::cout << fmt::format("note: block model {}\n", problem->block_model);
  }
  if (!r.fits) {
    std::fprintf(stderr,
                 "vramsim: no checkpoint plan fits the budget of %s; the best found (%s) peaks "
                 "at %s\n",
                 FormatBytes(budget).c_str(), r.strategy.c_str(),
                 FormatBytes(r.peak_bytes).c_str());
    return kExitNoFit;
  }
  return 0;
}

int RunStrategiesCmd(const Flags& f) {
  if (f.budgets.empty()) return Fail("strategies needs --budgets SIZE[,SIZE]... (e.g. 4GiB,6GiB)");
  std::vector<uint64_t> budgets;
  size_t pos = 0;
  while (pos <= f.budgets.size()) {
    size_t comma = f.budgets.find(',', pos);
    if (comma == std::string::npos) comma = f.budgets.size();
    auto b = ParseByteSize(f.budgets.substr(pos, comma - pos), "--budgets");
    if (!b) return Fail(b.error().message);
    budgets.push_back(*b);
    pos = comma + 1;
  }
  EstimateOptions options;
  auto loaded = LoadModel(f, &options);
  if (!loaded) return Fail(loaded.error().message);
  auto problem = MakePlanProblem(*loaded->graph, options);
  if (!problem) return Fail(f.model + ": " + problem.error().message);
  StrategyOptions so;
  so.milp_time_limit_s = f.time_limit;
  std::vector<StrategyRow> rows;
  nlohmann::json all = nlohmann::json::array();
  std::string text = fmt::format(
      "{}: no checkpointing peaks at {}; {} candidate blocks ({:.0f} ms to model: {})\n"
      "{:<12} {:>11} {:>11} {:>5} {:>9} {:>10} {:>8}\n",
      f.model, FormatBytes(problem->baseline.peak.peak_bytes), problem->blocks.size(),
      problem->setup_ms, problem->block_model, "strategy", "budget", "peak", "fits", "overhead",
      "solve ms", "regions");
  for (uint64_t budget : budgets) {
    auto results = RunStrategies(*problem, budget, f.strategy, nullptr, so);
    if (!results) return Fail(results.error().message);
    for (const PlanResult& r : *results) {
      rows.push_back({r.strategy, budget, r.peak_bytes, r.overhead_pct, r.solve_ms, r.fits});
      all.push_back(ResultJson(r, options.micro_batches));
      text += fmt::format("{:<12} {:>11} {:>11} {:>5} {:>8.2f}% {:>10.1f} {:>8}\n", r.strategy,
                          FormatBytes(budget), FormatBytes(r.peak_bytes), r.fits ? "yes" : "no",
                          r.overhead_pct, r.solve_ms, r.checkpoint.size());
    }
  }
  if (!f.html.empty()) {
    if (auto s = WriteStrategiesHtml(f.model, rows, f.html); !s) return Fail(s.message());
    std::cerr << "vramsim: strategies report written to " << f.html << "\n";
  }
  if (f.json) {
    nlohmann::json j{{"model", f.model},
                     {"baseline_peak_bytes", problem->baseline.peak.peak_bytes},
                     {"blocks", problem->blocks.scopes},
                     {"setup_ms", problem->setup_ms},
                     {"block_model", problem->block_model},
                     {"rows", all}};
    std::cout << j.dump(1) << "\n";
  } else {
    std::cout << text;
  }
  return 0;
}

}  // namespace

Result<uint64_t> ParseByteSize(const std::string& text, const std::string& flag) {
  std::string s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  size_t num_start = i;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  std::string number = s.substr(num_start, i - num_start);
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  std::string unit = s.substr(i);
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto bad = [&] {
    return Error{flag + ": '" + text +
                 "' is not a size (bytes, or a number with KiB/MiB/GiB/TiB or KB/MB/GB/TB)"};
  };
  if (number.empty() || std::count(number.begin(), number.end(), '.') > 1) return bad();
  static const std::map<std::string, double> kUnits = {{"", 1},
                                                       {"b", 1},
                                                       {"kib", 1024.0},
                                                       {"mib", 1048576.0},
                                                       {"gib", 1073741824.0},
                                                       {"tib", 1099511627776.0},
                                                       {"kb", 1e3},
                                                       {"mb", 1e6},
                                                       {"gb", 1e9},
                                                       {"tb", 1e12},
                                                       {"k", 1024.0},
                                                       {"m", 1048576.0},
                                                       {"g", 1073741824.0}};
  auto u = kUnits.find(unit);
  if (u == kUnits.end()) return bad();
  double v = std::strtod(number.c_str(), nullptr) * u->second;
  // Below 2^63: llround's range, and int64 arithmetic on budgets stays exact enough.
  if (!std::isfinite(v) || v >= 9.2e18)
    return Error{flag + ": '" + text + "' is too large (at most 8 EiB)"};
  if (v < 1) return Error{flag + ": '" + text + "' must be at least one byte"};
  if ((unit.empty() || unit == "b") && number.find('.') != std::string::npos)
    return Error{flag + ": '" + text + "': a byte count must be a whole number"};
  return static_cast<uint64_t>(std::llround(v));
}

void RegisterPlanCommands(CLI::App& app) {
  static Flags plan_flags, strat_flags;
  auto* plan =
      app.add_subcommand("plan", "Choose what to checkpoint so that the step fits a memory budget");
  plan->add_option("model", plan_flags.model, "ONNX file, or a remat-graph JSON (networkx)")
      ->required();
  plan->add_option("--dim", plan_flags.dims, "Bind a symbolic dimension, NAME=VALUE (repeatable)");
  AddTrainingFlags(plan, &plan_flags.training);
  plan->add_option("--budget", plan_flags.budget, "Memory budget: bytes, or 6GiB, 512MiB, 8GB...");
  auto* fraction =
      plan->add_option("--budget-fraction", plan_flags.budget_fraction,
                       std::string("Budget as a fraction of the peak without checkpointing, ") +
                           kBudgetFractionRange);
  plan->add_option("--strategy", plan_flags.strategy,
                   "Run only this strategy (" + StrategyNames() + ")");
  plan->add_option("--time-limit", plan_flags.time_limit,
                   std::string("MILP time limit in seconds, ") + kTimeLimitRange)
      ->capture_default_str();
  plan->add_flag("--json", plan_flags.json, "Print one JSON object");
  plan->callback([fraction] {
    plan_flags.budget_fraction_given = fraction->count() > 0;
    if (auto s = CheckNumericFlags(plan_flags); !s) Exit(Fail(s.message()));
    int rc =
        LooksLikeRematGraph(plan_flags.model) ? RunRematPlan(plan_flags) : RunOnnxPlan(plan_flags);
    if (rc) Exit(rc);
  });

  auto* strategies = app.add_subcommand(
      "strategies", "Every checkpointing strategy's peak, overhead and solve time per budget");
  strategies->add_option("model", strat_flags.model, "ONNX file")->required();
  strategies->add_option("--dim", strat_flags.dims,
                         "Bind a symbolic dimension, NAME=VALUE (repeatable)");
  AddTrainingFlags(strategies, &strat_flags.training);
  strategies->add_option("--budgets", strat_flags.budgets, "Budgets, SIZE[,SIZE]...")->required();
  strategies->add_option("--strategy", strat_flags.strategy, "Run only this strategy");
  strategies
      ->add_option("--time-limit", strat_flags.time_limit,
                   std::string("MILP time limit in seconds, ") + kTimeLimitRange)
      ->capture_default_str();
  strategies->add_option("--html", strat_flags.html, "Write the table and chart as an HTML page");
  strategies->add_flag("--json", strat_flags.json, "Print one JSON object");
  strategies->callback([] {
    if (auto s = CheckNumericFlags(strat_flags); !s) Exit(Fail(s.message()));
    int rc = RunStrategiesCmd(strat_flags);
    if (rc) Exit(rc);
  });
}

}  // namespace vramsim

void RegisterPlanStrategiesCommands(CLI::App& app) { vramsim::RegisterPlanCommands(app); }

#include "engine/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <utility>

#include "importer/importer.h"
#include "importer/remat_graph.h"
#include "policies/accumulation.h"
#include "policies/recompute.h"

namespace vramsim {

namespace {

using Clock = std::chrono::steady_clock;

// --budget SIZE or --budget-fraction F (of `baseline`, the no-recompute peak), exactly one.
Result<uint64_t> ResolveBudget(const PlanSearchOptions& o, uint64_t baseline) {
  if (!o.budget.empty() && o.budget_fraction)
    return Error{"give --budget or --budget-fraction, not both"};
  if (!o.budget.empty()) return ParseByteSize(o.budget, "--budget");
  if (o.budget_fraction) {
    double b = std::floor(*o.budget_fraction * static_cast<double>(baseline));
    if (!(b >= 1)) return Error{"--budget-fraction: a budget under one byte"};
    if (b >= 9.2e18) return Error{"--budget-fraction: the budget is too large"};
    return static_cast<uint64_t>(b);
  }
  return Error{"plan needs --budget SIZE (e.g. 6GiB) or --budget-fraction F"};
}

double Fraction(uint64_t part, uint64_t whole) {
  return static_cast<double>(part) / static_cast<double>(whole);
}

// ---------------------------------------------------------------------------------------------
// plan GRAPH.json

Result<PlanReport> PlanRematGraph(const std::string& path, const PlanSearchOptions& o,
                                  Clock::time_point start) {
  auto g = LoadRematGraph(path);
  if (!g) return g.error();
  RematPlan p;
  p.graph = g->name;
  p.nodes = g->nodes.size();
  p.edges = g->edge_count();
  p.baseline_peak_bytes = BaselinePeak(*g);
  p.time_limit_s = o.time_limit_s;
  auto budget = ResolveBudget(o, p.baseline_peak_bytes);
  if (!budget) return budget.error();
  p.budget_bytes = *budget;
  if (!o.strategy.empty())
    return Error{"--strategy applies to ONNX models; a remat graph runs the optimal planner"};
  // The time limit bounds the whole call: the planner gets what loading the graph left.
  RematOptions options;
  options.time_limit_s =
      o.time_limit_s - std::chrono::duration<double>(Clock::now() - start).count();
  auto sol = SolveRemat(*g, p.budget_bytes, options);
  p.baseline_cost = BaselineCost(*g);
  if (!sol) {
    p.error = sol.error().message;
    // proven_infeasible: no schedule at all can fit (not only none was found in time).
    p.proven_infeasible = InfeasibilityProof(*g, p.budget_bytes).has_value();
    p.least_feasible_budget = LeastFeasibleBudget(*g);
    return PlanReport{std::move(p)};
  }
  // The independent check: replay the schedule and compare.
  auto replay = ReplaySequence(*g, sol->steps);
  if (!replay) return Error{"internal: the plan fails its replay: " + replay.error().message};
  if (replay->peak_bytes != sol->peak_bytes ||
      std::abs(replay->cost - sol->cost) > 1e-6 * p.baseline_cost)
    return Error{"internal: the replay disagrees with the planner"};
  p.schedule = RematScheduleJson(*g, *sol);  // needs the graph's ids: made while we have it
  p.solution = std::move(sol.value());
  p.replay = *replay;
  return PlanReport{std::move(p)};
}

nlohmann::json RematJson(const RematPlan& p) {
  const double fraction = Fraction(p.budget_bytes, p.baseline_peak_bytes);
  if (p.error) {
    return {{"graph", p.graph},
            {"nodes", p.nodes},
            {"baseline_peak", p.baseline_peak_bytes},
            {"budget", p.budget_bytes},
            {"budget_fraction", fraction},
            {"fits", false},
            {"proven_infeasible", p.proven_infeasible},
            {"least_feasible_budget", p.least_feasible_budget},
            {"least_feasible_fraction", Fraction(p.least_feasible_budget, p.baseline_peak_bytes)},
            {"time_limit_s", p.time_limit_s},
            {"error", *p.error}};
  }
  const RematSolution& sol = p.solution;
  const double base_cost = p.baseline_cost;
  const bool fits = p.replay.peak_bytes <= p.budget_bytes;
  nlohmann::json j;
  j["graph"] = p.graph;
  j["nodes"] = p.nodes;
  j["edges"] = p.edges;
  j["baseline_peak"] = p.baseline_peak_bytes;
  j["budget"] = p.budget_bytes;
  j["budget_fraction"] = fraction;
  j["peak"] = p.replay.peak_bytes;
  j["fits"] = fits;
  j["baseline_cost"] = base_cost;
  j["cost"] = p.replay.cost;
  j["recompute_cost"] = p.replay.cost - base_cost;
  j["cost_increase_pct"] = base_cost > 0 ? 100.0 * (p.replay.cost - base_cost) / base_cost : 0.0;
  j["optimal"] = fits && sol.optimal;
  j["gap_pct"] = fits ? nlohmann::json(sol.gap_pct()) : nlohmann::json(nullptr);
  j["lower_bound"] = sol.lower_bound;  // on the cost, in Checkmate's stage space
  j["lower_bound_increase_pct"] =
      base_cost > 0 ? 100.0 * (sol.lower_bound - base_cost) / base_cost : 0.0;
  j["lower_bound_source"] = sol.bound_source;  // milp, lp or baseline
  j["proven_infeasible"] = false;
  j["method"] = sol.method;
  j["computations"] = p.replay.computations;
  j["solve_ms"] = sol.solve_ms;
  j["time_limit_s"] = p.time_limit_s;
  j["replay_checked"] = true;
  j["note"] = sol.note;
  // The computations and frees in order, by the graph file's node ids:
  // validation/remat_check.py replays them from the graph alone.
  j["schedule"] = p.schedule;
  return j;
}

std::string RematText(const RematPlan& p) {
  if (p.error) return "";
  const RematSolution& sol = p.solution;
  const double base_cost = p.baseline_cost;
  const bool fits = p.replay.peak_bytes <= p.budget_bytes;
  return fmt::format(
      "graph: {} ({} nodes, {} edges)\n"
      "budget: {} ({:.3f} of the baseline peak {})\n"
      "peak: {} (replayed) {}\n"
      "recompute: +{:.3f}% cost ({} computations for {} nodes), by {}\n"
      "{}, gap {:.3f}% (lower bound +{:.3f}%, from the {}); solved in {:.0f} ms{}\n",
      p.graph, p.nodes, p.edges, FormatBytes(p.budget_bytes),
      Fraction(p.budget_bytes, p.baseline_peak_bytes), FormatBytes(p.baseline_peak_bytes),
      FormatBytes(p.replay.peak_bytes), fits ? "fits" : "OVER the budget",
      base_cost > 0 ? 100.0 * (p.replay.cost - base_cost) / base_cost : 0.0, p.replay.computations,
      p.nodes, sol.method, sol.optimal ? "proven optimal" : "not proven optimal", sol.gap_pct(),
      base_cost > 0 ? 100.0 * (sol.lower_bound - base_cost) / base_cost : 0.0, sol.bound_source,
      sol.solve_ms, sol.note.empty() ? std::string() : std::string(" (") + sol.note + ")");
}

// ---------------------------------------------------------------------------------------------
// plan MODEL.onnx / strategies MODEL.onnx

struct Loaded {
  std::unique_ptr<Graph> graph;
  EstimateOptions options;
};

Result<Loaded> LoadModel(const std::string& model, const std::map<std::string, int64_t>& dims,
                         const EstimateFlags& training) {
  if (auto s = CheckPlannerTraining(training); !s) return Error{s.message()};
  Loaded l;
  auto eo = ParseEstimateFlags(training);
  if (!eo) return eo.error();
  l.options = *eo;
  auto micro = MicroBatchDims(dims, {l.options.micro_batches, l.options.batch_dim});
  if (!micro) return micro.error();
  ImportOptions io;
  io.dims = *micro;
  io.allow_constant_weights = l.options.allow_constant_weights;
  auto graph = ImportModel(model, io);
  if (!graph) return graph.error();
  l.graph = std::make_unique<Graph>(std::move(graph.value()));
  return l;
}

// The aten ops PyTorch's SAC policy_fn sees for an ONNX op type (the common ones).
std::vector<std::string> AtenOf(const std::string& type) {
  static const std::map<std::string, std::vector<std::string>> kAten = {
      {"MatMul", {"aten.mm", "aten.bmm"}},
      {"Gemm", {"aten.addmm", "aten.mm"}},
      {"Conv", {"aten.convolution"}},
      {"ConvTranspose", {"aten.convolution"}},
      {"Einsum", {"aten.bmm"}},
      {"ScaledDotProductAttention",
       {"aten._scaled_dot_product_flash_attention",
        "aten._scaled_dot_product_efficient_attention"}},
      {"BatchNormalization", {"aten.native_batch_norm", "aten.cudnn_batch_norm"}},
      {"LayerNormalization", {"aten.native_layer_norm"}},
      {"Relu", {"aten.relu"}},
      {"Softmax", {"aten._softmax"}},
      {"MaxPool", {"aten.max_pool2d_with_indices"}},
      {"Add", {"aten.add"}},
      {"Mul", {"aten.mul"}}};
  auto it = kAten.find(type);
  return it == kAten.end() ? std::vector<std::string>{} : it->second;
}

// An op-level entry ("SCOPE:save=A|B") as a PyTorch user applies it: the modules to wrap in
// torch.utils.checkpoint (use_reentrant=False) and, for a selective-checkpointing context_fn,
// what its policy_fn returns MUST_SAVE for (everything else PREFER_RECOMPUTE): ONNX node
// names, their op types (torch.onnx names nodes "/module/path/Type_N") and the aten ops.
nlohmann::json PyTorchRegion(const std::string& entry) {
  nlohmann::json j;
  size_t m = entry.find(kSaveMarker);
  std::string scope = entry.substr(0, m);
  std::vector<std::string> modules;
  for (size_t pos = 0;;) {
    size_t plus = scope.find('+', pos);
    modules.push_back(scope.substr(pos, plus == std::string::npos ? plus : plus - pos));
    if (plus == std::string::npos) break;
    pos = plus + 1;
  }
  j["modules"] = modules;
  if (m == std::string::npos) {
    j["policy"] = "checkpoint";
    return j;
  }
  j["policy"] = "selective";
  std::vector<std::string> nodes, types, aten;
  auto add = [](std::vector<std::string>* v, const std::string& x) {
    if (std::find(v->begin(), v->end(), x) == v->end()) v->push_back(x);
  };
  std::string list = entry.substr(m + std::string(kSaveMarker).size());
  for (size_t pos = 0; !list.empty();) {
    size_t bar = list.find('|', pos);
    std::string token = list.substr(pos, bar == std::string::npos ? bar : bar - pos);
    std::vector<std::string> ts;
    if (token == "@matmul") {
      ts = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "ScaledDotProductAttention"};
    } else if (token.find('/') == std::string::npos) {
      ts = {token};
    } else {
      add(&nodes, token);
      std::string type = token.substr(token.rfind('/') + 1);
      size_t u = type.rfind('_');
      if (u != std::string::npos && u + 1 < type.size() &&
          std::all_of(type.begin() + u + 1, type.end(), [](char c) { return std::isdigit(c); }))
        type = type.substr(0, u);
      ts = {type};
    }
    for (const std::string& t : ts) {
      add(&types, t);
      for (const std::string& a : AtenOf(t)) add(&aten, a);
    }
    if (bar == std::string::npos) break;
    pos = bar + 1;
  }
  j["must_save_nodes"] = nodes;
  j["must_save_onnx_types"] = types;
  j["must_save_aten"] = aten;
  return j;
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
          {"note", r.note},
          {"pytorch", [&] {
             nlohmann::json regions = nlohmann::json::array();
             for (const std::string& e : r.checkpoint) regions.push_back(PyTorchRegion(e));
             return regions;
           }()}};
}

// "the backward of /relu/Relu (Relu): its tensors a (196 MiB), b (196 MiB) and 215 MiB of
// parameters, gradients, optimizer state, buffers and batch".
std::string FloorWhere(const Trace& trace, const StepFloor& f) {
  if (f.step < 0) return "";
  std::string tensors;
  size_t shown = 0;
  uint64_t rest = 0;
  for (BufferId b : f.working) {
    const Buffer& x = trace.buffers[b];
    if (shown < 4) {
      tensors += fmt::format("{}{} ({})", shown ? ", " : "", x.name, FormatBytes(x.bytes));
      ++shown;
    } else {
      rest += x.bytes;
    }
  }
  if (rest) tensors += fmt::format(" and {} more", FormatBytes(rest));
  return fmt::format(
      "{} needs its own tensors {} at once, beside {} of parameters, gradients, optimizer "
      "state, buffers and batch",
      DescribeStep(trace.steps[f.step]), tensors.empty() ? "(none)" : tensors,
      FormatBytes(f.invariant_bytes));
}

std::string ScopeList(const std::vector<std::string>& scopes) {
  if (scopes.empty()) return "(none)";
  return CompactScopes(scopes);  // "h.0-31": a list --checkpoint accepts back
}

Result<PlanReport> PlanOnnx(const std::string& model, const std::map<std::string, int64_t>& dims,
                            const EstimateFlags& training, const PlanSearchOptions& o) {
  if (auto s = CheckOnnxPlanBudget(o); !s) return Error{s.message()};
  auto loaded = LoadModel(model, dims, training);
  if (!loaded) return loaded.error();
  auto start = Clock::now();
  auto problem = MakePlanProblem(*loaded->graph, loaded->options);
  if (!problem) return Error{model + ": " + problem.error().message};
  OnnxPlan p;
  p.baseline_peak_bytes = problem->baseline.peak.peak_bytes;
  auto budget = ResolveBudget(o, p.baseline_peak_bytes);
  if (!budget) return budget.error();
  p.budget_bytes = *budget;
  StrategyOptions so;
  so.milp_time_limit_s = o.time_limit_s;
  auto results = RunStrategies(*problem, p.budget_bytes, o.strategy, &p.best, so);
  if (!results) return results.error();
  p.solve_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  p.results = std::move(results.value());
  p.micro_batches = loaded->options.micro_batches;
  p.blocks = problem->blocks.scopes;
  p.model_state_bytes = problem->model_state_bytes;
  p.floor_bytes = problem->floor.bytes;
  p.floor_where = FloorWhere(problem->baseline.trace, problem->floor);
  p.block_model = problem->block_model;
  p.block_model_checked = problem->model_checked;
  p.setup_simulations = problem->setup_simulations;
  p.setup_ms = problem->setup_ms;
  p.simulations_total = problem->setup_simulations;
  for (const PlanResult& x : p.results) p.simulations_total += x.simulations;
  return PlanReport{std::move(p)};
}

nlohmann::json OnnxJson(const OnnxPlan& p) {
  const PlanResult& r = p.chosen();
  nlohmann::json j = ResultJson(r, p.micro_batches);
  j["strategy_solve_ms"] = r.solve_ms;
  j["solve_ms"] = p.solve_ms;
  j["setup_ms"] = p.setup_ms;
  j["block_model"] = p.block_model;
  j["setup_simulations"] = p.setup_simulations;
  j["simulations_total"] = p.simulations_total;
  j["baseline_peak_bytes"] = p.baseline_peak_bytes;
  j["model_state_bytes"] = p.model_state_bytes;
  j["model_states_exceed_budget"] = p.ModelStatesExceedBudget();
  j["floor_bytes"] = p.floor_bytes;
  j["floor_where"] = p.floor_where;
  j["budget_below_floor"] = p.BudgetBelowFloor();
  j["blocks"] = p.blocks;
  nlohmann::json all = nlohmann::json::array();
  for (const PlanResult& x : p.results) all.push_back(ResultJson(x, p.micro_batches));
  j["strategies"] = all;
  return j;
}

std::string OnnxText(const OnnxPlan& p) {
  const PlanResult& r = p.chosen();
  // When nothing fits, the plan shown is only the lowest peak found: no plan was picked.
  std::string s = r.fits ? "" : "no plan fits; the lowest peak found:\n";
  if (p.ModelStatesExceedBudget()) {
    s += fmt::format(
        "the model states alone (parameters, gradients, optimizer state: {}) exceed the budget "
        "of {}: no checkpointing can fit it; change the precision, optimizer or sharding\n",
        FormatBytes(p.model_state_bytes), FormatBytes(p.budget_bytes));
  } else if (p.BudgetBelowFloor()) {
    s += fmt::format(
        "no plan can fit: whatever is saved or recomputed, {} ({} = {:.2f} of the peak without "
        "checkpointing, above the budget of {})\n",
        p.floor_where, FormatBytes(p.floor_bytes),
        static_cast<double>(p.floor_bytes) / static_cast<double>(p.baseline_peak_bytes),
        FormatBytes(p.budget_bytes));
  }
  s += fmt::format(
      "plan ({}): checkpoint {}\n"
      "peak: {} simulated, budget {}: {} (no checkpointing: {})\n"
      "recompute: {:.2f} GFLOP, {:.2f}% of the step{}\n"
      "solved in {:.0f} ms ({} candidate blocks, {:.0f} ms to model them; {} simulated steps "
      "in all){}\n",
      r.strategy, ScopeList(r.checkpoint), FormatBytes(r.peak_bytes), FormatBytes(p.budget_bytes),
      r.fits ? "fits" : "DOES NOT FIT", FormatBytes(p.baseline_peak_bytes),
      static_cast<double>(r.recompute_flops) * std::max(p.micro_batches, 1) / 1e9, r.overhead_pct,
      r.optimal ? " (optimal under the block model)" : "", p.solve_ms, p.blocks.size(), p.setup_ms,
      p.simulations_total, r.note.empty() ? std::string() : fmt::format("\nnote: {}", r.note));
  if (!p.block_model_checked && !p.blocks.empty())
    s += fmt::format("note: block model {}\n", p.block_model);
  return s;
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

// NaN fails these comparisons, so it is refused too.
Status CheckPlanOptions(const PlanSearchOptions& o) {
  if (o.budget_fraction && !(*o.budget_fraction > 0 && *o.budget_fraction <= kMaxBudgetFraction)) {
    return Error{fmt::format("--budget-fraction must be {}, got {}", kBudgetFractionRange,
                             *o.budget_fraction)};
  }
  if (!(o.time_limit_s > 0 && o.time_limit_s <= kMaxTimeLimitS)) {
    return Error{fmt::format("--time-limit must be a number of seconds {}, got {}", kTimeLimitRange,
                             o.time_limit_s)};
  }
  return {};
}

Status CheckOnnxPlanBudget(const PlanSearchOptions& o) {
  if (!o.budget.empty() && o.budget_fraction)
    return Error{"give --budget or --budget-fraction, not both"};
  if (!o.budget.empty()) {
    if (auto b = ParseByteSize(o.budget, "--budget"); !b) return b.error();
  } else if (!o.budget_fraction) {
    return Error{"plan needs --budget SIZE (e.g. 6GiB) or --budget-fraction F"};
  }
  return {};
}

Status CheckPlannerTraining(const EstimateFlags& training) {
  if (!training.checkpoint.empty())
    return Error{"--checkpoint is what the planner chooses; leave it out"};
  return {};
}

bool IsRematGraphFile(const std::string& path) {
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

bool PlanReport::fits() const {
  if (const auto* o = std::get_if<OnnxPlan>(&plan)) return o->chosen().fits;
  const RematPlan& r = std::get<RematPlan>(plan);
  return !r.error && r.replay.peak_bytes <= r.budget_bytes;
}

Result<PlanReport> Plan(const std::string& model, const std::map<std::string, int64_t>& dims,
                        const EstimateFlags& training, const PlanSearchOptions& options) {
  auto start = Clock::now();
  if (auto s = CheckPlanOptions(options); !s) return Error{s.message()};
  if (IsRematGraphFile(model)) return PlanRematGraph(model, options, start);
  return PlanOnnx(model, dims, training, options);
}

nlohmann::json PlanJson(const PlanReport& report) {
  if (const auto* o = std::get_if<OnnxPlan>(&report.plan)) return OnnxJson(*o);
  return RematJson(std::get<RematPlan>(report.plan));
}

std::string PlanText(const PlanReport& report) {
  if (const auto* o = std::get_if<OnnxPlan>(&report.plan)) return OnnxText(*o);
  return RematText(std::get<RematPlan>(report.plan));
}

std::string PlanNoFitMessage(const PlanReport& report) {
  if (report.fits()) return "";
  if (const auto* o = std::get_if<OnnxPlan>(&report.plan)) {
    if (o->ModelStatesExceedBudget()) {
      return fmt::format("no checkpoint plan fits the budget of {}: the model states alone are {}",
                         FormatBytes(o->budget_bytes), FormatBytes(o->model_state_bytes));
    }
    if (o->BudgetBelowFloor()) {
      return fmt::format("no checkpoint plan can fit the budget of {}: no plan peaks below {} ({})",
                         FormatBytes(o->budget_bytes), FormatBytes(o->floor_bytes), o->floor_where);
    }
    return fmt::format("no checkpoint plan fits the budget of {}; the best found ({}) peaks at {}",
                       FormatBytes(o->budget_bytes), o->chosen().strategy,
                       FormatBytes(o->chosen().peak_bytes));
  }
  const RematPlan& r = std::get<RematPlan>(report.plan);
  if (r.error) {
    return fmt::format("no schedule fits the budget of {}: {}", FormatBytes(r.budget_bytes),
                       *r.error);
  }
  return fmt::format("no schedule found fits the budget of {}; the best peaks at {}",
                     FormatBytes(r.budget_bytes), FormatBytes(r.replay.peak_bytes));
}

Status CheckStrategiesOptions(const StrategiesOptions& o) {
  PlanSearchOptions time_limit;
  time_limit.time_limit_s = o.time_limit_s;
  if (auto s = CheckPlanOptions(time_limit); !s) return s;
  if (o.budgets.empty()) return Error{"strategies needs --budgets SIZE[,SIZE]... (e.g. 4GiB,6GiB)"};
  for (const std::string& b : o.budgets) {
    if (auto r = ParseByteSize(b, "--budgets"); !r) return r.error();
  }
  return {};
}

Result<StrategiesReport> Strategies(const std::string& model,
                                    const std::map<std::string, int64_t>& dims,
                                    const EstimateFlags& training,
                                    const StrategiesOptions& options) {
  if (auto s = CheckStrategiesOptions(options); !s) return Error{s.message()};
  std::vector<uint64_t> budgets;
  for (const std::string& b : options.budgets) budgets.push_back(*ParseByteSize(b, "--budgets"));
  auto loaded = LoadModel(model, dims, training);
  if (!loaded) return loaded.error();
  auto problem = MakePlanProblem(*loaded->graph, loaded->options);
  if (!problem) return Error{model + ": " + problem.error().message};
  StrategiesReport rep;
  rep.model = model;
  rep.baseline_peak_bytes = problem->baseline.peak.peak_bytes;
  rep.floor_bytes = problem->floor.bytes;
  rep.floor_where = FloorWhere(problem->baseline.trace, problem->floor);
  rep.blocks = problem->blocks.scopes;
  rep.block_model = problem->block_model;
  rep.setup_ms = problem->setup_ms;
  rep.micro_batches = loaded->options.micro_batches;
  StrategyOptions so;
  so.milp_time_limit_s = options.time_limit_s;
  for (uint64_t budget : budgets) {
    auto results = RunStrategies(*problem, budget, options.strategy, nullptr, so);
    if (!results) return results.error();
    for (PlanResult& r : *results) rep.rows.push_back({budget, std::move(r)});
  }
  return rep;
}

nlohmann::json StrategiesJson(const StrategiesReport& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const StrategiesRow& row : r.rows) rows.push_back(ResultJson(row.result, r.micro_batches));
  return {{"model", r.model},
          {"baseline_peak_bytes", r.baseline_peak_bytes},
          {"floor_bytes", r.floor_bytes},
          {"floor_where", r.floor_where},
          {"blocks", r.blocks},
          {"setup_ms", r.setup_ms},
          {"block_model", r.block_model},
          {"rows", rows}};
}

std::string StrategiesText(const StrategiesReport& r) {
  std::string text = fmt::format(
      "{}: no checkpointing peaks at {}; {} candidate blocks ({:.0f} ms to model: {})\n"
      "no plan peaks below {} ({:.2f} of it): {}\n"
      "{:<12} {:>11} {:>11} {:>5} {:>9} {:>10} {:>8}\n",
      r.model, FormatBytes(r.baseline_peak_bytes), r.blocks.size(), r.setup_ms, r.block_model,
      FormatBytes(r.floor_bytes),
      r.baseline_peak_bytes
          ? static_cast<double>(r.floor_bytes) / static_cast<double>(r.baseline_peak_bytes)
          : 0.0,
      r.floor_where, "strategy", "budget", "peak", "fits", "overhead", "solve ms", "regions");
  for (const StrategiesRow& row : r.rows) {
    const PlanResult& x = row.result;
    text += fmt::format("{:<12} {:>11} {:>11} {:>5} {:>8.2f}% {:>10.1f} {:>8}\n", x.strategy,
                        FormatBytes(row.budget_bytes), FormatBytes(x.peak_bytes),
                        x.fits ? "yes" : "no", x.overhead_pct, x.solve_ms, x.checkpoint.size());
  }
  return text;
}

Status WriteStrategiesReportHtml(const StrategiesReport& r, const std::string& path) {
  std::vector<StrategyRow> rows;
  for (const StrategiesRow& row : r.rows) {
    const PlanResult& x = row.result;
    rows.push_back(
        {x.strategy, row.budget_bytes, x.peak_bytes, x.overhead_pct, x.solve_ms, x.fits});
  }
  return WriteStrategiesHtml(r.model, rows, path);
}

}  // namespace vramsim

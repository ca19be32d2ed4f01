// Choosing what to checkpoint in a training plan under a memory budget.
//
// A PlanProblem is a model imported once with its training options: the baseline estimate, the
// candidate blocks (FindBlockScopes) and the block-chain model measured by simulating
// (planner_blocks.h). Strategies share one interface; each returns the scopes to checkpoint,
// and every plan is replayed through the simulator (RunEstimate with those scopes): the peak,
// recompute FLOPs and overhead reported are the simulator's.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/estimate.h"
#include "importer/graph.h"
#include "importer/status.h"
#include "policies/planner_blocks.h"

namespace vramsim {

// The repeated module scopes of a plan, in forward order: the children of the outermost
// modules whose children are all numbered alike ("0", "1", ... or "encoder_layer_0", ...) and
// all contain sub-modules. Empty when the plan has none.
std::vector<std::string> FindBlockScopes(const TrainingPlan& plan);

// Live bytes (rounded as the peak is) at their highest during each step of a trace.
std::vector<uint64_t> StepHighs(const Trace& trace, uint64_t round_bytes);

struct PlanProblem {
  const Graph* graph = nullptr;
  EstimateOptions options;  // options.checkpoint is ignored
  Estimate baseline;
  BlockModel blocks;
  double setup_ms = 0;  // baseline + one simulation per block
};

Result<PlanProblem> MakePlanProblem(const Graph& graph, EstimateOptions options);

struct PlanResult {
  std::string strategy;
  std::vector<std::string> checkpoint;  // scopes, "A+B" for a multi-block segment
  uint64_t budget_bytes = 0;
  uint64_t peak_bytes = 0;  // simulated
  uint64_t recompute_flops = 0;
  uint64_t step_flops = 0;
  double overhead_pct = 0;
  bool fits = false;
  bool optimal = false;  // proven optimal under the block model (dp, milp)
  double solve_ms = 0;
  int simulations = 0;
  std::string note;
};

class CheckpointStrategy {
 public:
  virtual ~CheckpointStrategy() = default;
  virtual std::string_view name() const = 0;
  virtual std::string_view description() const = 0;
  // The plan with the least recompute whose simulated peak fits, else the lowest peak found.
  virtual Result<PlanResult> Solve(const PlanProblem& problem, uint64_t budget_bytes) const = 0;
};

struct StrategyOptions {
  double milp_time_limit_s = 60;
};

// none, every-k, chen-sqrt, chen-greedy, dp, milp, dtr.
std::vector<std::unique_ptr<CheckpointStrategy>> AllStrategies(const StrategyOptions& o = {});
std::unique_ptr<CheckpointStrategy> MakeStrategy(std::string_view name,
                                                 const StrategyOptions& o = {});
std::string StrategyNames();

// Runs the strategies (all, or the one named) and returns every result; `best` gets the index
// of the fitting plan with the least recompute (then the lowest peak), or of the lowest peak
// when none fits.
Result<std::vector<PlanResult>> RunStrategies(const PlanProblem& problem, uint64_t budget,
                                              const std::string& only, size_t* best,
                                              const StrategyOptions& o = {});

// Replays a set of scopes through the simulator.
Result<PlanResult> EvaluateCheckpoint(const PlanProblem& problem,
                                      const std::vector<std::string>& scopes, uint64_t budget);

}  // namespace vramsim

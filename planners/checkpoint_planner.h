// Choosing what to checkpoint in a training plan under a memory budget.
//
// A PlanProblem is a model imported once with its training options: the baseline estimate, the
// candidate blocks (FindBlockScopes) and the block-chain model (planner_blocks.h). The model is
// derived from the one simulated baseline step: each block's savings from a replay of the
// forward with the block checkpointed (simulator/simulate.h's ForwardHeldBytes), checked against
// two simulated steps (every block checkpointed, every other one); when they disagree, each block
// is measured by simulating it checkpointed on its own. Strategies share one interface; each
// returns the scopes to checkpoint, and every plan is replayed through the simulator (RunEstimate
// with those scopes): the peak, recompute FLOPs and overhead reported are the simulator's.
// Strategies that choose among many candidate plans simulate them cheapest first while the model
// says they fit.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/estimate.h"
#include "importer/graph.h"
#include "importer/status.h"
#include "planners/planner_blocks.h"
#include "simulator/peak.h"

namespace vramsim {

// The repeated module scopes of a plan, in forward order: the children of the outermost
// modules whose children are all numbered alike ("0", "1", ... or "encoder_layer_0", ...) and
// all contain sub-modules. Empty when the plan has none.
std::vector<std::string> FindBlockScopes(const TrainingPlan& plan);

// Live bytes (rounded as the peak is) at their highest during each step of a trace.
std::vector<uint64_t> StepHighs(const Trace& trace, uint64_t round_bytes);

// Simulated plans by scope list, shared by the strategies (and copies) of one problem.
struct PlanCache;

struct PlanProblem {
  const Graph* graph = nullptr;
  EstimateOptions options;  // options.checkpoint is ignored
  Estimate baseline;
  BlockModel blocks;
  std::vector<std::vector<int>> block_ops;  // each block's ops in baseline.plan, forward order
  uint64_t rng_state_bytes = 0;             // kept per checkpointed region
  uint64_t forward_held = 0;  // ForwardHeldBytes of the baseline: activations held at the loss
  // Parameters, gradients and optimizer state at the optimizer step (rounded as the peak is):
  // checkpointing leaves them as they are, so no plan's peak is below this.
  uint64_t model_state_bytes = 0;
  // The least any plan can peak at, whatever it saves or recomputes (simulator/peak.h).
  StepFloor floor;
  // The block model's savings were derived and agreed with the simulated checks: strategies
  // screen candidate plans with it. False when they were measured one block at a time.
  bool model_checked = false;
  std::string block_model;  // how the model was made, for reports
  int setup_simulations = 0;
  double setup_ms = 0;
  std::shared_ptr<PlanCache> cache;
};

enum class BlockMeasure {
  kDerive,    // from the baseline trace and forward replays, checked by two simulated steps
  kSimulate,  // one simulated step per block (the fallback when the derived model disagrees)
};

Result<PlanProblem> MakePlanProblem(const Graph& graph, EstimateOptions options,
                                    BlockMeasure measure = BlockMeasure::kDerive);

// Drops the simulated plans the strategies added to the problem's cache (keeping the setup's),
// so that the next strategy solves from cold; for benchmarks.
void ForgetStrategyPlans(const PlanProblem& problem);

// The block model's peak and the exact recompute FLOPs of a scope list whose entries are
// candidate blocks or runs of consecutive ones joined by '+' (a segment: its savings are
// derived from a forward replay, and count from the level after its last block); nullopt for
// anything else.
struct CheckpointPrediction {
  uint64_t peak_bytes = 0;
  uint64_t recompute_flops = 0;
};
std::optional<CheckpointPrediction> PredictCheckpoint(const PlanProblem& problem,
                                                      const std::vector<std::string>& scopes);

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
  int simulations = 0;  // run by this strategy (plans already simulated for the problem are reused)
  std::string note;
};

// The better of two plans: one that fits over one that does not; of two that fit, the least
// recompute; otherwise the lower peak.
bool BetterPlanResult(const PlanResult& a, const PlanResult& b);

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

// none, every-k, chen-sqrt, chen-greedy, dp, milp, dtr, and the op-level sac-matmul, min-cut,
// knapsack (planners/op_level.h).
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

// EvaluateCheckpoint through the problem's cache of simulated plans, which the strategies of
// one run share (ForgetStrategyPlans empties it); `simulated` says whether it ran the simulator.
Result<PlanResult> CachedCheckpoint(const PlanProblem& problem,
                                    const std::vector<std::string>& scopes, uint64_t budget,
                                    bool* simulated = nullptr);

}  // namespace vramsim

// Op-level checkpoint plans (simulator/plan.h's op-level regions, policies/recompute.h's
// "SCOPE:save=..." entries): inside each checkpointed region some ops' outputs are kept from the
// forward and the backward's recompute runs only what is needed to rebuild the rest.
//
// The regions are the candidate blocks and the runs of ops between them (the stem, the head),
// each run named by its ops' module scopes joined by '+'. Three rules choose what each region
// saves:
//   sac-matmul  PyTorch's usual selective-checkpointing policy_fn: MUST_SAVE the outputs of
//               matmul, conv and attention ops (policies/recompute.h's @matmul), recompute the
//               rest;
//   min-cut     torch.compile's min-cut partitioner (torch/_functorch/partitioners.py): the
//               region's values form a flow graph (each value an edge of its size, region inputs
//               and parameters at the source, what the region's backward reads at the sink,
//               matmul/conv/attention outputs banned from recompute: tied to the source); the
//               minimum cut (Boost.Graph's push-relabel max-flow) is what is saved;
//   knapsack    activation_memory_budget: a 0-1 knapsack over the banned (matmul-type) ops'
//               outputs, maximizing the forward FLOPs not recomputed with their bytes at most a
//               fraction b in [0, 1] of all of theirs; those not chosen may be recomputed, and
//               the min cut is taken again. b is searched (bisection) for the least recompute
//               whose simulated peak fits the byte budget.
// Every plan is replayed through the simulator (EvaluateCheckpoint); its peak is what is reported.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "importer/remat_graph.h"
#include "planners/checkpoint_planner.h"

namespace vramsim {

struct OpLevelRegion {
  std::string scope;     // as --checkpoint takes it: "layer1.0", "conv1+bn1+relu+maxpool"
  std::vector<int> ops;  // indices into the baseline plan's ops, forward order
};

// A tensor no plan frees or remakes: shape metadata, parameters, buffers, the batch.
bool PersistentTensor(const PlanTensor& t);
// The tensor whose storage t lives in: itself, or what it is a view of (through views).
PlanTensorId StorageRoot(const TrainingPlan& plan, PlanTensorId t);

// Simulates candidate plans (lists of --checkpoint entries, through the problem's cache:
// CachedCheckpoint) and keeps the best (BetterPlanResult), for the op-level strategies.
class OpSearch {
 public:
  OpSearch(const PlanProblem& p, uint64_t budget, std::string name);
  // The simulated plan; `improved` (when given) says whether it became the best.
  Result<PlanResult> Try(const std::vector<std::string>& entries, bool* improved = nullptr);
  bool have() const { return have_; }
  // The best plan, with the solve time, the simulations run and `note`.
  Result<PlanResult> Finish(const std::string& note);

 private:
  const PlanProblem& p_;
  uint64_t budget_;
  std::string name_;
  std::chrono::steady_clock::time_point start_;
  PlanResult best_;
  bool have_ = false;
  int sims_ = 0;
};

// The regions op-level strategies checkpoint: every block, and every run of ops between
// blocks that module scopes name exactly (ops without a scope stay outside).
std::vector<OpLevelRegion> OpLevelRegions(const PlanProblem& problem);

// The region sets the op-level strategies plan over: OpLevelRegions, and, where it reaches a
// lower peak, the same with each run between blocks cut into groups of its module scopes
// ("conv1+bn1", "relu+maxpool" instead of "conv1+bn1+relu+maxpool"). A checkpointed region
// recomputes all it drops when its backward starts, so one region over a stem holds the stem's
// recomputed activations beside the gradients of its last ops; cut in two, the second part's
// backward runs before the first part is recomputed. Of the ways to cut each run (all of them
// up to 5 possible cuts, else one cut at a time), the simulator judges: the one whose plan with
// every region checkpointed and nothing saved peaks lowest, the fewest regions on a tie.
// Cuts only where the run's ops of the scopes before all come before those after.
std::vector<std::vector<OpLevelRegion>> OpLevelRegionSets(const PlanProblem& problem);

// The min-cut rule on one region: the ops whose outputs are saved. `banned` ops may not be
// recomputed (their outputs are saved when needed).
std::vector<int> MinCutSaveOps(const TrainingPlan& plan, const std::vector<int>& region_ops,
                               const std::vector<bool>& banned);

// "SCOPE:save=NAME|NAME" for the ops given (node names).
std::string OpLevelEntry(const TrainingPlan& plan, const std::string& scope,
                         const std::vector<int>& save_ops);

// The model's training step as a tensor-level remat graph (planners/op_level_remat.cc): forward
// ops, the loss, then the backward ops in reverse order; forward_op[v] is node v's op in the
// plan, -1 for the loss and the backward nodes.
struct TrainingRematGraph {
  RematGraph graph;
  std::vector<int> forward_op;
  // For each forward op, the nodes whose storage its outputs live in: its own, and for an
  // in-place op or a view the earlier node that made the storage.
  std::vector<std::vector<int>> storage_nodes;
};
Result<TrainingRematGraph> MakeTrainingRematGraph(const TrainingPlan& plan);

// remat: the tensor-level planner on that graph, projected per region (op_level_remat.cc).
std::unique_ptr<CheckpointStrategy> MakeRematOpLevelStrategy(double time_limit_s);

// sac-matmul, min-cut, knapsack, remat.
void AddOpLevelStrategies(std::vector<std::unique_ptr<CheckpointStrategy>>* strategies,
                          const StrategyOptions& options);

}  // namespace vramsim

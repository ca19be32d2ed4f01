// The `remat` op-level strategy: the tensor-level planner (planners/planner_remat.h) on the
// model's own training step, its schedule projected onto what PyTorch can apply.
//
// The step as a RematGraph: one node per forward op (its output: the storage its outputs and
// contiguous copies take; what it makes beside them, BatchNorm's statistics or a dropout mask, is
// a second node with the same inputs and cost), one for the loss (the logits' gradient), one per
// forward op that has a backward, in reverse order (its output: the gradients of its activation
// inputs). A forward node reads the
// producers of its inputs; a backward node reads the producers of what its op saves and the
// backward nodes of the ops that read its outputs (or the loss). Parameters, their gradients and
// optimizer state are what no schedule changes: they are left out, and the simulator judges.
// Backward nodes cost more than all the forward ops together, so a schedule remakes an activation
// rather than a gradient (PyTorch cannot recompute a backward op).
//
// The projection: a forward op the schedule computes more than once is recomputed, the others
// are saved, per op-level region (OpLevelRegions); a region with nothing recomputed is not
// checkpointed. The simulator replays the plan. Its memory differs from the graph's (a region's
// recompute runs when its backward starts, not op by op; workspaces, rounding), so the planner's
// budget is searched (bisection) for the cheapest projected plan whose simulated peak fits.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>

#include "planners/op_level.h"
#include "planners/planner_remat.h"

namespace vramsim {

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

Result<TrainingRematGraph> MakeTrainingRematGraph(const TrainingPlan& plan) {
  const int n = static_cast<int>(plan.ops.size());
  std::map<PlanTensorId, int> maker;      // root tensor -> the node that makes its storage
  std::map<PlanTensorId, int> output_of;  // tensor (exact) -> the forward op it is an output of
  std::vector<RematNode> nodes;
  std::vector<std::pair<int, int>> edges;
  TrainingRematGraph out;
  double forward_cost = 0;
  // The node that made t's storage, or -1 (omitted, persistent, or made by no op).
  auto made_by = [&](PlanTensorId t) {
    if (t < 0 || PersistentTensor(plan.tensors[t])) return -1;
    auto it = maker.find(StorageRoot(plan, t));
    return it == maker.end() ? -1 : it->second;
  };
  auto add_node = [&](RematNode node, const std::set<int>& deps, int op) {
    const int id = static_cast<int>(nodes.size());
    for (int d : deps) edges.emplace_back(d, id);
    nodes.push_back(std::move(node));
    out.forward_op.push_back(op);
    return id;
  };
  for (int i = 0; i < n; ++i) {
    const PlanOp& op = plan.ops[i];
    std::set<int> deps;
    for (PlanTensorId t : op.inputs)
      if (int d = made_by(t); d >= 0) deps.insert(d);
    // In GFLOP, plus a little so that remaking a free op (a view, a reshape) still costs
    // something: the schedule does not remake what it has no reason to.
    const double cost = static_cast<double>(op.forward_flops) * 1e-9 + 1e-6;
    forward_cost += cost;
    // Its outputs (and the contiguous copies it makes) are one node, what it makes beside them
    // (BatchNorm's statistics, dropout's mask) another with the same inputs and cost: a backward
    // that reads only the small statistics does not hold the large output alive.
    std::vector<PlanTensorId> main_made, extra_made;
    uint64_t main_bytes = 0, extra_bytes = 0;
    for (const std::vector<PlanTensorId>* list : {&op.outputs, &op.copies, &op.extras}) {
      const bool extra = list == &op.extras;
      for (PlanTensorId t : *list) {
        if (t < 0 || PersistentTensor(plan.tensors[t])) continue;
        if (list == &op.outputs) output_of.emplace(t, i);
        PlanTensorId r = StorageRoot(plan, t);
        if (maker.count(r)) continue;  // in place, or a view of an earlier op's output
        (extra ? extra_made : main_made).push_back(r);
        (extra ? extra_bytes : main_bytes) += StorageBytes(plan.tensors[r]);
      }
    }
    // The nodes whose storage its outputs live in (an in-place op or a view writes another's).
    std::set<int> holds;
    for (PlanTensorId t : op.outputs)
      if (int d = made_by(t); d >= 0) holds.insert(d);
    RematNode main;
    main.name = op.name;
    main.cost = cost;
    main.memory = main_bytes;
    const int m = add_node(std::move(main), deps, i);
    for (PlanTensorId r : main_made) maker[r] = m;
    holds.insert(m);
    out.storage_nodes.emplace_back(holds.begin(), holds.end());
    if (!extra_made.empty()) {
      RematNode ex;
      ex.name = op.name + ".extras";
      ex.cost = cost;
      ex.memory = extra_bytes;
      const int e = add_node(std::move(ex), deps, i);
      for (PlanTensorId r : extra_made) maker[r] = e;
    }
  }
  // The loss: reads the graph outputs, makes their gradient.
  std::set<PlanTensorId> graph_outputs;
  int loss = -1;
  {
    RematNode node;
    node.name = "loss";
    node.cost = 1e-6;
    std::set<int> deps;
    for (PlanTensorId t : plan.outputs) {
      if (t < 0) continue;
      graph_outputs.insert(t);
      node.memory += TensorBytes(plan.tensors[t]);
      if (int d = made_by(t); d >= 0) deps.insert(d);
    }
    loss = add_node(std::move(node), deps, -1);
  }
  // Who reads each op's outputs (the tensors themselves: a gradient flows per tensor, through
  // views and in-place ops by their own backward).
  std::vector<std::set<int>> readers(n);
  for (int k = 0; k < n; ++k) {
    for (PlanTensorId t : plan.ops[k].inputs) {
      if (t < 0) continue;
      auto it = output_of.find(t);
      if (it != output_of.end() && it->second != k) readers[it->second].insert(k);
    }
  }
  std::vector<int> backward_node(n, -1);
  for (int i = n - 1; i >= 0; --i) {
    const PlanOp& op = plan.ops[i];
    if (!op.needs_backward) continue;
    RematNode node;
    node.name = op.name + ".backward";
    node.backward = true;
    node.cost = forward_cost + 1;
    if (!op.grads_are_views) {
      for (int slot : op.grad_inputs) {
        if (slot < 0 || slot >= static_cast<int>(op.inputs.size())) continue;
        if (std::find(op.grad_passthrough.begin(), op.grad_passthrough.end(), slot) !=
            op.grad_passthrough.end())
          continue;  // the output's gradient itself
        PlanTensorId t = op.inputs[slot];
        if (t >= 0 && !PersistentTensor(plan.tensors[t]))
          node.memory += TensorBytes(plan.tensors[t]);
      }
    }
    std::set<int> deps;
    for (PlanTensorId t : op.saved)
      if (int d = made_by(t); d >= 0) deps.insert(d);
    // The gradient of its outputs: from the backward of each reader, or from the loss.
    bool reaches_loss = false;
    for (PlanTensorId t : op.outputs)
      if (t >= 0 && graph_outputs.count(t)) reaches_loss = true;
    for (int k : readers[i])
      if (backward_node[k] >= 0) deps.insert(backward_node[k]);
    if (reaches_loss) deps.insert(loss);
    if (deps.empty()) deps.insert(loss);  // its gradient is zero, made after the loss
    backward_node[i] = add_node(std::move(node), deps, -1);
  }
  auto g = MakeRematGraph(std::move(nodes), edges, "training step");
  if (!g) return g.error();
  out.graph = std::move(*g);
  return out;
}

namespace {

constexpr int kBisectionSteps = 8;
// Eviction passes' work in all, in node x (node + edge) visits (one pass is about n (n + e)):
// about 4 s on this project's machine (GPT-48: 29 passes).
constexpr double kRematWork = 2.5e9;

class RematStrategy : public CheckpointStrategy {
 public:
  explicit RematStrategy(double time_limit_s) : time_limit_s_(time_limit_s) {}
  std::string_view name() const override { return "remat"; }
  std::string_view description() const override {
    return "op-level: the tensor-level remat planner on the model's training graph, its schedule "
           "projected per region (what it never remakes is saved); its budget searched to fit";
  }
  Result<PlanResult> Solve(const PlanProblem& p, uint64_t budget) const override {
    const auto start = Clock::now();
    OpSearch plans(p, budget, std::string(name()));
    const TrainingPlan& plan = p.baseline.plan;
    auto tg = MakeTrainingRematGraph(plan);
    if (!tg) return tg.error();
    const RematGraph& g = tg->graph;
    const auto region_sets = OpLevelRegionSets(p);
    int solves = 0;
    std::string best_how;
    const uint64_t top = BaselinePeak(g);
    const double base_cost = BaselineCost(g);
    // An eviction pass costs O(n (n + edges)): on large graphs fewer passes, fixed by the
    // graph's size (not by the clock) so that the answer does not depend on the machine. Up to
    // 12 weightings per bisection step and 100 search passes while the work allows.
    const double pass_work =
        static_cast<double>(g.nodes.size()) * static_cast<double>(g.nodes.size() + g.edge_count());
    const int passes = static_cast<int>(std::clamp(kRematWork / pass_work, 10.0, 1000.0));
    const int weightings = std::clamp(passes / (kBisectionSteps + 2), 1, 12);
    const int search_passes =
        std::clamp(passes - weightings * (kBisectionSteps + 2), 0, kRematSearchPasses);
    // One planner run at `x` bytes, projected and simulated.
    auto at = [&](uint64_t x, double seconds, bool search) -> Result<PlanResult> {
      Result<RematSolution> sol =
          SolveRematEvict(g, x, seconds, weightings, search ? search_passes : 0);
      ++solves;
      if (!sol) return sol.error();
      std::vector<int> computed(g.nodes.size(), 0);
      for (const RematStep& s : sol->steps)
        if (s.kind == RematStep::Kind::kCompute) ++computed[s.node];
      std::vector<bool> remade(plan.ops.size(), false);
      for (size_t v = 0; v < g.nodes.size(); ++v)
        if (tg->forward_op[v] >= 0 && computed[v] > 1) remade[tg->forward_op[v]] = true;
      // Saving an in-place op's output or a view holds the storage it lives in: when that
      // storage's maker is remade, so is the op.
      for (size_t i = 0; i < plan.ops.size(); ++i)
        for (int v : tg->storage_nodes[i])
          if (computed[v] > 1) remade[i] = true;
      // The schedule projected onto each region set; the better plan is kept.
      Result<PlanResult> res = Error{"no region set"};
      for (const auto& regions : region_sets) {
        std::vector<std::string> entries;
        for (const OpLevelRegion& r : regions) {
          std::vector<int> save;
          bool any = false;
          for (int i : r.ops) {
            if (remade[i]) {
              any = true;
            } else if (MakesTensors(plan, plan.ops[i])) {
              save.push_back(i);  // shape arithmetic holds no memory: not listed
            }
          }
          if (any) entries.push_back(OpLevelEntry(plan, r.scope, save));
        }
        bool improved = false;
        auto r = plans.Try(entries, &improved);
        if (!r) return r.error();
        if (improved) {
          best_how =
              fmt::format("{} at {} B of the graph's {} B ({:.3f}; {:+.3f}% compute on it)",
                          sol->method, x, top, static_cast<double>(x) / static_cast<double>(top),
                          100.0 * (sol->cost / base_cost - 1));
        }
        // The bisection follows whether the schedule fits on either set.
        if (!res || (r->fits && !res->fits)) res = std::move(r);
      }
      return res;
    };
    const uint64_t least = LeastFeasibleBudget(g);
    // The graph leaves out what no plan changes (parameters, gradients, optimizer state, the
    // batch); the difference of the two baselines says how much of the budget that takes.
    const uint64_t sim_peak = p.baseline.peak.peak_bytes;
    const uint64_t other = sim_peak > top ? sim_peak - top : 0;
    // (max of min, not std::clamp: no precondition on least <= top to break.)
    const uint64_t x0 = std::max(least, std::min(top, budget > other ? budget - other : least));
    // A bisection over the planner's budget, a fixed number of heuristic runs (each with the
    // same weightings), so that the answer does not depend on the machine's speed; then the
    // eviction search
    // at the best budget. The time limit is only a safety cut, said in the note when it acts.
    bool cut = false;
    auto run = [&](uint64_t x, bool search) -> bool {
      const double left = time_limit_s_ - SecondsSince(start);
      if (left <= 0) {
        cut = true;
        return false;
      }
      auto r = at(x, left, search);
      if (SecondsSince(start) >= time_limit_s_) cut = true;  // the run itself was cut short
      return r && r->fits;
    };
    uint64_t lo = least, hi = std::max(top, least);  // lo: fits (or the least), hi: does not
    std::optional<uint64_t> fit_x;
    if (run(x0, false)) {
      lo = x0;
      fit_x = x0;
    } else {
      hi = x0;
    }
    for (int k = 0; k < kBisectionSteps && hi > lo + 1 && !cut; ++k) {
      const uint64_t mid = lo + (hi - lo) / 2;
      if (run(mid, false)) {
        lo = mid;
        fit_x = mid;
      } else {
        hi = mid;
      }
    }
    if (!fit_x && least < x0 && !cut && run(least, false)) fit_x = least;
    if (!cut) run(fit_x.value_or(least), true);
    // No schedule under any budget tried: the graph's baseline (nothing remade) is the plan.
    if (!plans.have()) {
      auto r = at(top, 0, false);
      if (!r) return r.error();
    }
    return plans.Finish(fmt::format(
        "training graph of {} nodes; {} planner runs of {} eviction passes, {} search passes{}; "
        "best: {}",
        g.nodes.size(), solves, weightings, search_passes,
        cut ? " (stopped at the time limit: a slower machine gets fewer)" : "", best_how));
  }

 private:
  double time_limit_s_;
};

}  // namespace

std::unique_ptr<CheckpointStrategy> MakeRematOpLevelStrategy(double time_limit_s) {
  return std::make_unique<RematStrategy>(time_limit_s);
}

}  // namespace vramsim

// The block-chain model of checkpointing a training plan: the candidate blocks are repeated
// module scopes in a chain (layer1.0..layer4.1, h.0..h.47, ...); checkpointing block i lowers
// the live memory by saved[i] bytes wherever i's forward has finished and its backward has
// not started, and costs forward_flops[i] of recompute.
//
// level[k] (k = 0..n) is the most memory the baseline step holds at any point where exactly
// blocks 0..k-1 are in that state (measured from the simulator's trace), so
//   peak(C) = max_k (level[k] - sum_{i in C, i < k} saved[i]).
// The model is what the DP, the MILP and the heuristics optimize; every plan they produce is
// replayed through the simulator (planners/checkpoint_planner.h), whose peak is reported.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "importer/status.h"

namespace vramsim {

struct BlockModel {
  std::vector<std::string> scopes;
  std::vector<uint64_t> forward_flops;
  std::vector<int64_t> saved;   // may be <= 0: checkpointing it saves nothing
  std::vector<uint64_t> level;  // n + 1 entries

  size_t size() const { return scopes.size(); }
  uint64_t Peak(const std::vector<bool>& checkpointed) const;
  uint64_t Flops(const std::vector<bool>& checkpointed) const;
};

struct BlockChoice {
  std::vector<bool> checkpointed;
  uint64_t flops = 0;       // recompute FLOPs
  uint64_t model_peak = 0;  // peak under the model
  bool optimal = false;     // proven optimal under the model
  double gap_pct = 0;       // MILP: relative gap when stopped by the time limit
};

// Least recompute FLOPs with model peak <= budget: a Pareto DP over (bytes saved so far,
// FLOPs) with the level constraints checked as each block is passed. Exact (dominated states
// are dropped; when a stage holds more than 200000 states, states are bucketed at 1/100000 of
// the budget, and the result is no longer marked optimal). Error when even all blocks do not fit.
Result<BlockChoice> SolveBlocksDp(const BlockModel& m, uint64_t budget);

// The same problem as a 0/1 MILP solved by CBC (min sum f_i x_i s.t. for every k,
// sum_{i<k} saved_i x_i >= level_k - budget), with a time limit.
Result<BlockChoice> SolveBlocksMilp(const BlockModel& m, uint64_t budget, double time_limit_s);

// DTR-style (Kirisame et al.) on the chain: the forward runs block by block; whenever the model
// memory is over the budget, the held block with the smallest f / (saved * staleness) is
// evicted (checkpointed: recomputed on demand in its backward). A heuristic.
Result<BlockChoice> SolveBlocksDtr(const BlockModel& m, uint64_t budget);

// Every subset (n <= 20), for tests.
Result<BlockChoice> SolveBlocksBruteForce(const BlockModel& m, uint64_t budget);

}  // namespace vramsim

// Running a solver in a child process that streams results back and is killed at a deadline
// (CBC and CLP check their time limits only between phases).
#pragma once

#include <functional>
#include <vector>

#include "planners/remat/internal.h"

namespace vramsim {
namespace remat_internal {

// Runs `work` in a child process, which sends messages (vectors of doubles) as it goes, and
// returns every message that arrived in full by `end`; the child is killed then if it has not
// finished. CBC and CLP check their time limits only between phases (presolve, the root LP of a
// large model, a round of cuts), so only a separate process can be stopped on time. Without a
// process (fork fails), `work` runs here, unbounded.
struct Streamed {
  std::vector<std::vector<double>> messages;
  bool finished = false;  // the child exited normally before the deadline
  // It ended before the deadline without finishing: a signal or a failed exit (CBC aborts on
  // some of its own assertions, e.g. in its diving heuristic's reduced-cost fixing).
  bool crashed = false;
};

using Send = std::function<void(const std::vector<double>&)>;

Streamed RunStreaming(Clock::time_point end, bool quiet,
                      const std::function<void(const Send&)>& work);

}  // namespace remat_internal
}  // namespace vramsim

// RematScheduleJson: a solution's explicit schedule with the nodes named as the graph file names
// them, for plan --json and the independent checker validation/remat_check.py.
#include "planners/planner_remat.h"

namespace vramsim {

nlohmann::json RematScheduleJson(const RematGraph& g, const RematSolution& sol) {
  // A node as the file names it: its id parsed back (integer or string), else its index.
  auto id = [&](int v) -> nlohmann::json {
    if (v >= 0 && static_cast<size_t>(v) < g.ids.size()) {
      auto parsed = nlohmann::json::parse(g.ids[v], nullptr, false);
      if (!parsed.is_discarded()) return parsed;
    }
    return v;
  };
  nlohmann::json steps = nlohmann::json::array();
  size_t computations = 0;
  for (const RematStep& s : sol.steps) {
    bool compute = s.kind == RematStep::Kind::kCompute;
    computations += compute ? 1 : 0;
    steps.push_back(nlohmann::json::array({compute ? "compute" : "free", id(s.node)}));
  }
  return {{"format", "vramsim-remat-schedule/1"},
          {"graph", g.name},
          {"nodes", g.nodes.size()},
          {"static_bytes", g.static_bytes},
          {"peak_bytes", sol.peak_bytes},
          {"cost", sol.cost},
          {"computations", computations},
          {"method", sol.method},
          {"steps", std::move(steps)}};
}

}  // namespace vramsim

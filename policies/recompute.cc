#include "policies/recompute.h"

#include <algorithm>
#include <set>

namespace vramsim {

Result<std::vector<std::string>> ParseScopes(const std::string& list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    std::string s = list.substr(pos, comma - pos);
    if (s.empty() || s.front() == '+' || s.back() == '+' || s.find("++") != std::string::npos)
      return Error{"--checkpoint has an empty scope in '" + list + "'"};
    out.push_back(s);
    pos = comma + 1;
  }
  return out;
}

bool InScope(const PlanOp& op, const std::string& scope) {
  if (!scope.empty() && scope[0] == '/') return op.name.rfind(scope, 0) == 0;
  return op.scope == scope ||
         (op.scope.size() > scope.size() && op.scope.compare(0, scope.size(), scope) == 0 &&
          op.scope[scope.size()] == '.');
}

Status RecomputePolicy::Apply(TrainingPlan& plan) const {
  for (const std::string& spec : options_.scopes) {
    // "A+B": one region spanning several scopes (a segment of blocks).
    std::vector<std::string> parts;
    for (size_t pos = 0;;) {
      size_t plus = spec.find('+', pos);
      parts.push_back(spec.substr(pos, plus == std::string::npos ? plus : plus - pos));
      if (plus == std::string::npos) break;
      pos = plus + 1;
    }
    for (const std::string& part : parts) {
      if (part.empty()) return Error{"--checkpoint has an empty scope in '" + spec + "'"};
      if (parts.size() > 1 && std::none_of(plan.ops.begin(), plan.ops.end(),
                                           [&](const PlanOp& op) { return InScope(op, part); })) {
        return Error{"--checkpoint " + part + " (in " + spec + ") matches no op"};
      }
    }
    const std::string& scope = spec;
    CheckpointRegion region;
    region.scope = scope;
    region.rng_state_bytes = options_.rng_state_bytes;
    int index = static_cast<int>(plan.regions.size());
    for (size_t i = 0; i < plan.ops.size(); ++i) {
      PlanOp& op = plan.ops[i];
      if (std::none_of(parts.begin(), parts.end(),
                       [&](const std::string& p) { return InScope(op, p); }))
        continue;
      if (op.region >= 0) {
        return Error{"--checkpoint scopes " + plan.regions[op.region].scope + " and " + scope +
                     " overlap (nested checkpoints are not supported)"};
      }
      op.region = index;
      region.ops.push_back(static_cast<int>(i));
    }
    if (region.ops.empty()) {
      std::set<std::string> top;
      for (const PlanOp& op : plan.ops) {
        if (!op.scope.empty())
          top.insert(op.scope.substr(0, op.scope.find('.', op.scope.find('.') + 1)));
      }
      std::string examples;
      for (const auto& t : top) {
        if (examples.size() > 60) break;
        if (!examples.empty()) examples += ", ";
        examples += t;
      }
      return Error{"--checkpoint " + scope + " matches no op (module scopes here include " +
                   examples + ")"};
    }
    plan.regions.push_back(std::move(region));
  }
  return {};
}

}  // namespace vramsim

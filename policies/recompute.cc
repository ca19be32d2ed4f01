#include "policies/recompute.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

namespace vramsim {

namespace {

// A non-negative decimal without sign or leading zeros (so "h.01" is no index), or nullopt.
std::optional<int64_t> Index(std::string_view digits) {
  if (digits.empty() || digits.size() > 9 || (digits.size() > 1 && digits[0] == '0'))
    return std::nullopt;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// "h.12" -> ("h.", 12).
std::optional<std::pair<std::string, int64_t>> SplitIndex(const std::string& scope) {
  size_t dot = scope.rfind('.');
  if (dot == std::string::npos || dot == 0 || scope.find('+') != std::string::npos)
    return std::nullopt;
  auto i = Index(std::string_view(scope).substr(dot + 1));
  if (!i) return std::nullopt;
  return std::make_pair(scope.substr(0, dot + 1), *i);
}

struct ScopeRange {
  std::string prefix;  // empty: not a range
  int64_t first = 0, last = 0;
};

// Limits what one "h.0-N" may expand to: a model has far fewer blocks.
constexpr int64_t kMaxRangeScopes = 100000;

Result<ScopeRange> IndexRange(const std::string& s) {
  size_t dot = s.rfind('.');
  if (dot == std::string::npos || dot == 0 || s.find('+') != std::string::npos) return ScopeRange{};
  std::string_view tail = std::string_view(s).substr(dot + 1);
  size_t dash = tail.find('-');
  if (dash == std::string_view::npos) return ScopeRange{};
  auto first = Index(tail.substr(0, dash)), last = Index(tail.substr(dash + 1));
  if (!first || !last) return ScopeRange{};
  if (*last < *first)
    return Error{"--checkpoint range '" + s + "' ends before it starts (write " +
                 s.substr(0, dot + 1) + std::to_string(*last) + "-" + std::to_string(*first) + ")"};
  if (*last - *first >= kMaxRangeScopes)
    return Error{"--checkpoint range '" + s + "' names over " + std::to_string(kMaxRangeScopes) +
                 " scopes"};
  return ScopeRange{s.substr(0, dot + 1), *first, *last};
}

}  // namespace

Result<std::vector<std::string>> ParseScopes(const std::string& text) {
  // "sac-matmul" / "sac-matmul:SCOPES": the policy on the whole model or on each scope.
  std::string list = text, suffix;
  if (text == kSacMatmul)
    return std::vector<std::string>{std::string("*") + kSaveMarker + "@matmul"};
  if (text.rfind(std::string(kSacMatmul) + ":", 0) == 0) {
    list = text.substr(std::string(kSacMatmul).size() + 1);
    suffix = std::string(kSaveMarker) + "@matmul";
    if (list.empty()) return Error{"--checkpoint " + text + " names no scope"};
  }
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    std::string s = list.substr(pos, comma - pos);
    std::string save;  // ":save=..." of an op-level entry
    if (size_t m = s.find(kSaveMarker); m != std::string::npos) {
      save = s.substr(m);
      s = s.substr(0, m);
      if (!suffix.empty())
        return Error{"--checkpoint " + text + ": a scope under a policy takes no save list"};
    } else {
      save = suffix;
    }
    if (s.empty() || s.front() == '+' || s.back() == '+' || s.find("++") != std::string::npos)
      return Error{"--checkpoint has an empty scope in '" + list + "'"};
    auto range = IndexRange(s);
    if (!range) return range.error();
    if (range->prefix.empty()) {
      out.push_back(s + save);
    } else {
      for (int64_t i = range->first; i <= range->last; ++i)
        out.push_back(range->prefix + std::to_string(i) + save);
    }
    pos = comma + 1;
  }
  return out;
}

std::string CompactScopes(const std::vector<std::string>& scopes) {
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : ",") + s; };
  for (size_t i = 0; i < scopes.size();) {
    auto split = SplitIndex(scopes[i]);
    size_t j = i + 1;
    if (split) {
      while (j < scopes.size()) {
        auto next = SplitIndex(scopes[j]);
        if (!next || next->first != split->first ||
            next->second != split->second + static_cast<int64_t>(j - i))
          break;
        ++j;
      }
    }
    if (j - i >= 3) {
      add(scopes[i] + "-" + std::to_string(split->second + static_cast<int64_t>(j - i - 1)));
    } else {
      for (size_t k = i; k < j; ++k) add(scopes[k]);
    }
    i = j;
  }
  return out;
}

bool InScope(const PlanOp& op, const std::string& scope) {
  if (scope == "*") return true;
  if (!scope.empty() && scope[0] == '/') return op.name.rfind(scope, 0) == 0;
  return op.scope == scope ||
         (op.scope.size() > scope.size() && op.scope.compare(0, scope.size(), scope) == 0 &&
          op.scope[scope.size()] == '.');
}

bool IsMatmulType(const std::string& type) {
  static const std::set<std::string> kTypes = {
      "MatMul", "Gemm",          "Conv",          "ConvTranspose",
      "Einsum", "MatMulInteger", "QLinearMatMul", "ScaledDotProductAttention"};
  return kTypes.count(type) > 0;
}

Status RecomputePolicy::Apply(TrainingPlan& plan) const {
  for (const std::string& entry : options_.scopes) {
    // "SCOPE:save=A|B": op-level; A, B op types, node names or @matmul.
    std::string spec = entry;
    std::vector<std::string> save_tokens;
    bool op_level = false;
    if (size_t m = entry.find(kSaveMarker); m != std::string::npos) {
      op_level = true;
      spec = entry.substr(0, m);
      std::string list = entry.substr(m + std::string(kSaveMarker).size());
      for (size_t pos = 0; !list.empty();) {
        size_t bar = list.find('|', pos);
        std::string token = list.substr(pos, bar == std::string::npos ? bar : bar - pos);
        if (token.empty()) return Error{"--checkpoint " + entry + " has an empty save entry"};
        save_tokens.push_back(token);
        if (bar == std::string::npos) break;
        pos = bar + 1;
      }
    }
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
    region.op_level = op_level;
    std::vector<bool> token_used(save_tokens.size(), false);
    for (int i : region.ops) {
      const PlanOp& op = plan.ops[i];
      bool save = false;
      for (size_t k = 0; k < save_tokens.size(); ++k) {
        const std::string& t = save_tokens[k];
        if ((t == "@matmul" && IsMatmulType(op.type)) || t == op.type || t == op.name) {
          save = true;
          token_used[k] = true;
        }
      }
      if (save) region.save_ops.push_back(i);
    }
    for (size_t k = 0; k < save_tokens.size(); ++k) {
      if (!token_used[k] && save_tokens[k] != "@matmul" && !region.ops.empty())
        return Error{"--checkpoint " + entry + ": save entry '" + save_tokens[k] +
                     "' is no op type or node name in " + scope};
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

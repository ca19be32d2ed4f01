#include "policies/sharding.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "policies/recompute.h"

namespace vramsim {
namespace {

uint64_t Numel(const PlanTensor& t) {
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
  return n;
}

// "encoder_layer_11" -> "encoder_layer_", "0" -> "", "attn" -> nullopt.
std::optional<std::string> IndexedStem(const std::string& name) {
  size_t end = name.size();
  while (end > 0 && name[end - 1] >= '0' && name[end - 1] <= '9') --end;
  if (end == name.size()) return std::nullopt;
  return name.substr(0, end);
}

}  // namespace

Status ValidateSharding(const ShardingOptions& o) {
  if (o.world_size < 1 || o.world_size > (1 << 20)) {
    return Error{"--data-parallel must be between 1 and 1048576, got " +
                 std::to_string(o.world_size)};
  }
  if (o.zero_stage < 0 || o.zero_stage > 3) {
    return Error{"--zero must be 0, 1, 2 or 3, got " + std::to_string(o.zero_stage)};
  }
  if (o.zero_stage > 0 && o.world_size < 2) {
    return Error{"--zero " + std::to_string(o.zero_stage) +
                 " shards over the data-parallel ranks: give --data-parallel N (N >= 2)"};
  }
  if (o.bucket_bytes == 0) return Error{"the DDP bucket size must be positive"};
  return {};
}

Result<FsdpMode> ParseFsdpMode(const std::string& name) {
  if (name.empty() || name == "none") return FsdpMode::kNone;
  if (name == "full") return FsdpMode::kFullShard;
  if (name == "shard-grad-op") return FsdpMode::kShardGradOp;
  if (name == "hybrid") return FsdpMode::kHybridShard;
  return Error{"unknown --fsdp '" + name + "' (full, shard-grad-op, hybrid)"};
}

Status ApplyFsdpMode(FsdpMode mode, int gpus_per_node, ShardingOptions* o) {
  if (mode == FsdpMode::kNone) return {};
  if (o->zero_stage != 0) return Error{"--fsdp and --zero are two ways to say one thing: give one"};
  if (o->world_size < 2)
    return Error{"--fsdp shards over the data-parallel ranks: give --data-parallel N (N >= 2)"};
  if (gpus_per_node < 1) return Error{"--gpus-per-node must be at least 1"};
  o->zero_stage = 3;
  o->reshard_after_forward = mode != FsdpMode::kShardGradOp;
  o->backward_prefetch = true;
  if (mode == FsdpMode::kHybridShard) {
    o->world_size = std::min(o->world_size, gpus_per_node);
    if (o->world_size < 2) {
      return Error{"--fsdp hybrid shards within a node: --gpus-per-node must be at least 2"};
    }
  }
  return {};
}

ModelStates ZeroModelStates(double psi, double param_bytes, double grad_bytes, double k, int n,
                            int stage) {
  const double nd = n;
  ModelStates m;
  m.params = param_bytes * psi / (stage >= 3 ? nd : 1.0);
  m.grads = grad_bytes * psi / (stage >= 2 ? nd : 1.0);
  m.optimizer = k * psi / (stage >= 1 ? nd : 1.0);
  return m;
}

std::vector<uint64_t> DdpBuckets(const std::vector<std::pair<uint64_t, int>>& grads,
                                 uint64_t first_cap, uint64_t cap) {
  // torch/csrc/distributed/c10d/reducer.cpp, compute_bucket_assignment_by_size: tensors in
  // reverse order, one open bucket per dtype, closed once it reaches its limit; the limits
  // are [first_cap, cap] and advance per dtype.
  struct Open {
    uint64_t bytes = 0;
    bool first = true;
  };
  std::map<int, Open> open;
  std::vector<uint64_t> out;
  for (auto it = grads.rbegin(); it != grads.rend(); ++it) {
    Open& b = open[it->second];
    b.bytes += it->first;
    if (b.bytes >= (b.first ? first_cap : cap)) {
      out.push_back(b.bytes);
      b.bytes = 0;
      b.first = false;
    }
  }
  for (const auto& [dtype, b] : open) {
    if (b.bytes) out.push_back(b.bytes);
  }
  return out;
}

std::vector<std::string> RepeatedBlocks(const TrainingPlan& plan) {
  std::vector<std::string> paths;  // every module path and its prefixes, in order of first use
  std::set<std::string> seen;
  for (const PlanOp& op : plan.ops) {
    if (op.scope.empty()) continue;
    size_t pos = 0;
    while (true) {
      size_t dot = op.scope.find('.', pos);
      std::string prefix = op.scope.substr(0, dot);
      if (seen.insert(prefix).second) paths.push_back(prefix);
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
  }
  std::map<std::pair<std::string, std::string>, std::set<std::string>> groups;
  auto split = [](const std::string& p) {
    size_t dot = p.rfind('.');
    return dot == std::string::npos ? std::make_pair(std::string(), p)
                                    : std::make_pair(p.substr(0, dot), p.substr(dot + 1));
  };
  for (const std::string& p : paths) {
    auto [parent, last] = split(p);
    if (auto stem = IndexedStem(last)) groups[{parent, *stem}].insert(p);
  }
  std::set<std::string> repeated;
  for (const auto& [key, members] : groups) {
    if (members.size() >= 2) repeated.insert(members.begin(), members.end());
  }
  std::vector<std::string> chosen;
  for (const std::string& p : paths) {
    if (!repeated.count(p)) continue;
    bool nested = false;
    for (const std::string& q : chosen) {
      nested =
          nested || (p.size() > q.size() && p.compare(0, q.size(), q) == 0 && p[q.size()] == '.');
    }
    if (!nested) chosen.push_back(p);
  }
  return chosen;
}

Status ShardingPolicy::Apply(TrainingPlan& plan) const {
  if (auto s = ValidateSharding(options_); !s) return s;
  const int n = options_.world_size;
  const bool offload_grads = options_.offload_gradients || options_.offload_params;
  if (n <= 1 && !offload_grads) return {};
  // One rank with offload: ZeRO-Offload's single-GPU setting, ZeRO 2 over one rank.
  const int stage = n <= 1 ? 2 : options_.zero_stage;
  const size_t count = plan.tensors.size();
  std::vector<bool> trained(count, false);
  std::vector<std::vector<int>> readers(count);
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const PlanOp& op = plan.ops[i];
    for (int k : op.grad_inputs) {
      PlanTensorId t = op.inputs[k];
      if (t >= 0 && plan.tensors[t].role == TensorRole::kParameter) trained[t] = true;
    }
    for (PlanTensorId t : op.inputs) {
      if (t >= 0 && (readers[t].empty() || readers[t].back() != static_cast<int>(i))) {
        readers[t].push_back(static_cast<int>(i));
      }
    }
  }
  std::vector<PlanTensorId> params;
  for (PlanTensorId p : plan.parameters) {
    if (trained[p] && !readers[p].empty()) params.push_back(p);
  }
  if (params.empty()) return {};
  // Frozen parameters (--freeze / --trainable) have no gradient and no optimizer state: DDP
  // and ZeRO 1-2 leave them whole on every rank; ZeRO 3 (FSDP FULL_SHARD) partitions them
  // too, gathering them like the others but never reducing a gradient.
  std::vector<PlanTensorId> frozen;
  if (stage >= 3) {
    for (PlanTensorId p : plan.parameters) {
      const PlanTensor& t = plan.tensors[p];
      if (!trained[p] && !t.requires_grad && t.role == TensorRole::kParameter &&
          !readers[p].empty()) {
        frozen.push_back(p);
      }
    }
  }

  const bool zro = stage == 1 && options_.zero_redundancy_optimizer;
  if (stage == 0 || zro) {
    std::vector<std::pair<uint64_t, int>> grads;
    for (PlanTensorId p : params) {
      grads.push_back({StorageBytes(plan.tensors[p]), static_cast<int>(plan.tensors[p].dtype)});
    }
    std::vector<uint64_t> buckets = DdpBuckets(grads, kDdpFirstBucketBytes, options_.bucket_bytes);
    for (size_t b = 0; b < buckets.size(); ++b) {
      plan.extra_buffers.push_back({"DDP gradient bucket " + std::to_string(b), buckets[b]});
    }
    if (!zro) return {};
    // ZeroRedundancyOptimizer._partition_parameters (torch 1.13): parameters sorted by
    // numel, largest first (a stable sort), each to the rank with the fewest elements (the
    // first such rank). This rank's optimizer steps only its own parameters; the others'
    // stay whole with their gradients (kept until zero_grad) but leave the optimizer's list,
    // as buffers, so that they get no optimizer state and no step temporaries.
    std::vector<PlanTensorId> order = params;
    std::stable_sort(order.begin(), order.end(), [&](PlanTensorId a, PlanTensorId b) {
      return Numel(plan.tensors[a]) > Numel(plan.tensors[b]);
    });
    std::vector<uint64_t> sizes(n, 0);
    std::vector<int> owner(count, -1);
    for (PlanTensorId p : order) {
      const int r = static_cast<int>(std::min_element(sizes.begin(), sizes.end()) - sizes.begin());
      owner[p] = r;
      sizes[r] += Numel(plan.tensors[p]);
    }
    const int rank =
        options_.zero_rank >= 0 && options_.zero_rank < n
            ? options_.zero_rank
            : static_cast<int>(std::max_element(sizes.begin(), sizes.end()) - sizes.begin());
    std::vector<PlanTensorId> kept;
    for (PlanTensorId p : plan.parameters) {
      if (owner[p] >= 0 && owner[p] != rank) {
        plan.tensors[p].name += " (stepped by rank " + std::to_string(owner[p]) + ")";
        plan.buffers.push_back(p);
      } else {
        kept.push_back(p);
      }
    }
    plan.parameters = std::move(kept);
    return {};
  }

  // Sharding units: a parameter belongs to the first block holding all its readers.
  std::vector<std::string> blocks;
  if (stage >= 2) blocks = options_.units.empty() ? RepeatedBlocks(plan) : options_.units;
  struct Group {
    int unit = -1;  // index into blocks, -1 for the rest of the model
    DType dtype = DType::kUndefined;
    bool frozen = false;  // ZeRO 3's shards of frozen parameters: gathered, no gradient
    std::vector<PlanTensorId> params;
    int first_reader = 0;
    uint64_t numel = 0;
  };
  std::vector<Group> groups;
  std::map<std::tuple<int, int, bool>, size_t> group_of;
  std::vector<bool> is_frozen(count, false);
  for (PlanTensorId p : frozen) is_frozen[p] = true;
  params.insert(params.end(), frozen.begin(), frozen.end());
  for (PlanTensorId p : params) {
    int unit = -1;
    for (size_t b = 0; b < blocks.size() && unit < 0; ++b) {
      bool all = true;
      for (int r : readers[p]) all = all && InScope(plan.ops[r], blocks[b]);
      if (all) unit = static_cast<int>(b);
    }
    const PlanTensor& t = plan.tensors[p];
    auto key = std::make_tuple(unit, static_cast<int>(t.dtype), static_cast<bool>(is_frozen[p]));
    auto it = group_of.find(key);
    if (it == group_of.end()) {
      it = group_of.emplace(key, groups.size()).first;
      groups.push_back({unit, t.dtype, is_frozen[p], {}, readers[p].front(), 0});
    }
    Group& g = groups[it->second];
    g.params.push_back(p);
    g.first_reader = std::min(g.first_reader, readers[p].front());
    g.numel += Numel(t);
  }

  // Where each group's op goes. Ops that only transform parameters (the transpose of a
  // Linear weight, an autocast cast) are scheduled early in an export; they move to just
  // after the group's op, which goes before the first op that also reads activations.
  std::vector<int> tag(count, -1);  // the group a parameter-only tensor derives from
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    for (PlanTensorId p : groups[gi].params) tag[p] = static_cast<int>(gi);
  }
  std::vector<bool> derived(count, false);  // computed from parameters and constants only
  for (size_t t = 0; t < count; ++t) {
    TensorRole r = plan.tensors[t].role;
    derived[t] = plan.tensors[t].metadata || r == TensorRole::kParameter ||
                 r == TensorRole::kBuffer || r == TensorRole::kConstant;
  }
  const int kNone = std::numeric_limits<int>::max();
  std::vector<int> anchor(groups.size(), kNone);
  std::vector<int> op_tag(plan.ops.size(), -1);  // parameter-only ops of a group
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const PlanOp& op = plan.ops[i];
    bool only = true;
    int t_in = -1;
    for (PlanTensorId t : op.inputs) {
      if (t < 0) continue;
      only = only && derived[t];
      if (t_in < 0 && tag[t] >= 0) t_in = tag[t];
    }
    if (only) {
      op_tag[i] = t_in;
      for (const auto* list : {&op.outputs, &op.extras, &op.copies}) {
        for (PlanTensorId t : *list) {
          if (t < 0) continue;
          derived[t] = true;
          tag[t] = t_in;
        }
      }
      continue;
    }
    for (PlanTensorId t : op.inputs) {
      if (t >= 0 && tag[t] >= 0) anchor[tag[t]] = std::min(anchor[tag[t]], static_cast<int>(i));
    }
  }
  std::vector<bool> moves(plan.ops.size(), false);
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    int g = op_tag[i];
    moves[i] = g >= 0 && anchor[g] != kNone && static_cast<int>(i) < anchor[g];
  }
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    if (anchor[gi] != kNone) groups[gi].first_reader = anchor[gi];
  }

  auto add_tensor = [&](PlanTensor t) {
    t.bytes = StorageBytes(t);
    plan.tensors.push_back(std::move(t));
    return static_cast<PlanTensorId>(plan.tensors.size()) - 1;
  };
  std::vector<PlanTensorId> replacement(count, -1);
  std::map<PlanTensorId, std::vector<PlanTensorId>> new_params;  // first param -> shard (+ rest)
  std::vector<std::pair<int, PlanOp>> inserted;                  // (before op, op)
  std::vector<std::pair<int, PlanTensorId>> workspaces;          // (unit, regathered buffer)
  for (const Group& g : groups) {
    const std::string unit = g.unit >= 0 ? blocks[g.unit] : "model";
    const std::string dtype(DTypeName(g.dtype));
    const uint64_t shard_numel = (g.numel + n - 1) / n;
    const std::string what = g.frozen ? ", frozen" : "";
    PlanTensor shard;
    shard.name = "zero shard of " + unit + " (" + dtype + what + ")";
    shard.dtype = g.dtype;
    shard.shape = {static_cast<int64_t>(shard_numel)};
    shard.strides = {1};
    shard.role = TensorRole::kParameter;
    shard.requires_grad = !g.frozen;
    PlanTensorId s = add_tensor(shard);
    PlanOp op;
    op.scope = g.unit >= 0 ? blocks[g.unit] : "";
    op.inputs = {s};
    if (!g.frozen && offload_grads) {
      // The reduce-scatter's output, the rank's gradient partition, is copied to the host and
      // freed; the unit's whole gradients go with it. No gradient stays on the GPU, and the
      // shard gets no optimizer state here (the host steps it).
      PlanTensor out = shard;
      out.name = "gradient partition of " + unit + " (" + dtype + "), copied to the host";
      out.role = TensorRole::kActivation;
      out.requires_grad = false;
      op.backward_workspace.push_back(add_tensor(out));
      op.needs_backward = true;
    } else if (!g.frozen) {
      // The shard receives the partition's gradient: the optimizer keeps state for it. ZeRO 1
      // runs no backward here: the whole gradients stay until the step (see sharding.h).
      op.grad_inputs = {0};
      op.needs_backward = stage >= 2;
    }
    PlanTensorId base;
    if (stage < 3) {
      // The rest of the flat parameter buffer: this rank's partition is the shard itself.
      op.name = (n > 1 ? "zero gradient reduce-scatter of " : "gradients to the host of ") + unit;
      op.type = "ReduceScatter";
      if (g.numel > shard_numel) {
        PlanTensor rest = shard;
        rest.name = "zero unowned params of " + unit + " (" + dtype + ")";
        rest.shape = {static_cast<int64_t>(g.numel - shard_numel)};
        rest.requires_grad = false;
        base = add_tensor(rest);
        op.inputs.push_back(base);
        new_params[g.params.front()] = {s, base};
      } else {
        base = s;  // one rank: the shard is the whole buffer
        new_params[g.params.front()] = {s};
      }
    } else {
      PlanTensor flat = shard;
      flat.name = "all-gathered params of " + unit + " (" + dtype + what + ")";
      flat.shape = {static_cast<int64_t>(shard_numel * n)};
      flat.role = TensorRole::kActivation;
      flat.requires_grad = false;
      base = add_tensor(flat);
      op.outputs.push_back(base);
      op.name = "fsdp all-gather of " + unit;
      op.type = "AllGather";
      if (options_.offload_params) {
        // The shard comes in from the host into a staging buffer, gathered from there.
        op.forward_workspace = {{IoRef{false, 0, false}}};
      }
      // SHARD_GRAD_OP: the gathered parameters stay until the unit's backward has run (its
      // gather op's backward comes after every op of the unit), recompute or not.
      if (!options_.reshard_after_forward && g.unit >= 0) op.saved.push_back(base);
      // Offloaded: the shard is on the host, not among the GPU's parameters.
      new_params[g.params.front()] = {};
      if (!options_.offload_params) new_params[g.params.front()] = {s};
      if (g.unit >= 0 && options_.reshard_after_forward) {
        PlanTensor again = flat;
        again.name = "params of " + unit + " gathered again for its backward";
        workspaces.push_back({g.unit, add_tensor(again)});
      }
    }
    for (PlanTensorId p : g.params) {
      PlanTensor v = plan.tensors[p];
      v.view_of = base;
      v.bytes = 0;
      v.requires_grad = !g.frozen;
      v.role = TensorRole::kParameter;  // its gradient is a parameter gradient
      PlanTensorId id = add_tensor(v);
      plan.tensors[id].bytes = 0;
      replacement[p] = id;
      op.outputs.push_back(id);
    }
    inserted.push_back({g.first_reader, std::move(op)});
  }

  // Readers take the replacements; ZeRO-3 units free their gathered parameters after the
  // forward (nothing saves them) and gather them again for the backward.
  // (Whatever a reader saves that views the gathered buffer goes too: FSDP frees the
  // buffer's storage whatever still refers to it.)
  std::set<PlanTensorId> resharded;  // gathered buffers of the units (not the outermost)
  // FSDP SHARD_GRAD_OP (reshard_after_forward=False): the gathered parameters stay from the
  // forward to the backward (held by whatever saves them), nothing is gathered again.
  if (stage >= 3 && options_.reshard_after_forward) {
    for (const Group& g : groups) {
      if (g.unit < 0) continue;
      resharded.insert(plan.tensors[replacement[g.params.front()]].view_of);
    }
  }
  auto views_resharded = [&](PlanTensorId t) {
    for (int hops = 0; t >= 0 && hops < 1000; ++hops) {
      if (resharded.count(t)) return true;
      PlanTensorId v = plan.tensors[t].view_of;
      if (v >= 0 && static_cast<size_t>(v) < count && replacement[v] >= 0) v = replacement[v];
      t = v;
    }
    return false;
  };
  for (PlanOp& op : plan.ops) {
    for (PlanTensorId& t : op.inputs) {
      if (t >= 0 && static_cast<size_t>(t) < count && replacement[t] >= 0) t = replacement[t];
    }
    for (PlanTensorId& t : op.saved) {
      if (t >= 0 && static_cast<size_t>(t) < count && replacement[t] >= 0) t = replacement[t];
    }
    std::erase_if(op.saved, views_resharded);
  }
  for (size_t t = 0; t < count; ++t) {
    PlanTensorId v = plan.tensors[t].view_of;
    if (v >= 0 && static_cast<size_t>(v) < count && replacement[v] >= 0) {
      plan.tensors[t].view_of = replacement[v];
    }
  }
  for (PlanTensorId& t : plan.forward_cache) {
    if (t >= 0 && static_cast<size_t>(t) < count && replacement[t] >= 0) t = replacement[t];
  }
  for (const auto& [unit, w] : workspaces) {
    for (PlanOp& op : plan.ops) {
      if (!op.needs_backward) continue;
      if (InScope(op, blocks[unit])) op.backward_workspace.push_back(w);
      // BACKWARD_PRE prefetch: the unit whose backward runs next (the one before it in the
      // forward) is gathered while this one's backward runs: two units gathered at once.
      if (options_.backward_prefetch && unit + 1 < static_cast<int>(blocks.size()) &&
          InScope(op, blocks[unit + 1])) {
        op.backward_workspace.push_back(w);
      }
    }
  }

  // Parameters: each group's shard (and for ZeRO 1-2 the rest of its flat buffer) takes the
  // place of its first parameter; the parameters themselves are no longer allocated.
  std::vector<PlanTensorId> parameters;
  for (PlanTensorId p : plan.parameters) {
    auto it = new_params.find(p);
    if (it != new_params.end()) {
      parameters.insert(parameters.end(), it->second.begin(), it->second.end());
    } else if (static_cast<size_t>(p) >= count || replacement[p] < 0) {
      parameters.push_back(p);
    }
  }
  plan.parameters = std::move(parameters);

  // Each group's op goes right before its anchor, followed by the parameter-only ops moved
  // there; checkpoint regions follow their ops.
  std::vector<std::vector<size_t>> before(plan.ops.size() + 1);  // anchor -> group indices
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    before[std::min<size_t>(groups[gi].first_reader, plan.ops.size())].push_back(gi);
  }
  std::vector<PlanOp> ops;
  std::vector<int> moved(plan.ops.size(), -1);
  for (size_t i = 0; i <= plan.ops.size(); ++i) {
    for (size_t gi : before[i]) {
      ops.push_back(std::move(inserted[gi].second));
      for (size_t j = 0; j < i; ++j) {
        if (!moves[j] || op_tag[j] != static_cast<int>(gi)) continue;
        moved[j] = static_cast<int>(ops.size());
        ops.push_back(std::move(plan.ops[j]));
      }
    }
    if (i == plan.ops.size() || moves[i]) continue;
    moved[i] = static_cast<int>(ops.size());
    ops.push_back(std::move(plan.ops[i]));
  }
  plan.ops = std::move(ops);
  for (CheckpointRegion& r : plan.regions) {
    for (int& i : r.ops) i = moved[i];
    std::sort(r.ops.begin(), r.ops.end());
  }
  return {};
}

}  // namespace vramsim

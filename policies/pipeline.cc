#include "policies/pipeline.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "policies/recompute.h"
#include "policies/sharding.h"

namespace vramsim {

Result<PipelineSchedule> ParsePipelineSchedule(const std::string& name) {
  if (name == "1f1b") return PipelineSchedule::k1F1B;
  if (name == "interleaved") return PipelineSchedule::kInterleaved;
  if (name == "gpipe") return PipelineSchedule::kGPipe;
  return Error{"unknown --schedule '" + name + "' (1f1b, interleaved, gpipe)"};
}

std::string_view PipelineScheduleName(PipelineSchedule s) {
  switch (s) {
    case PipelineSchedule::k1F1B:
      return "1f1b";
    case PipelineSchedule::kInterleaved:
      return "interleaved";
    case PipelineSchedule::kGPipe:
      return "gpipe";
  }
  return "?";
}

Status ValidatePipeline(const PipelineOptions& o, int micro_batches) {
  if (o.stages < 1 || o.stages > 4096) {
    return Error{"--pp must be between 1 and 4096, got " + std::to_string(o.stages)};
  }
  if (o.virtual_stages < 1 || o.virtual_stages > 1024) {
    return Error{"--virtual-stages must be between 1 and 1024, got " +
                 std::to_string(o.virtual_stages)};
  }
  if (o.virtual_stages > 1 && o.schedule != PipelineSchedule::kInterleaved) {
    return Error{"--virtual-stages applies to --schedule interleaved only"};
  }
  if (o.schedule == PipelineSchedule::kInterleaved && o.stages > 1 && o.virtual_stages < 2) {
    return Error{"--schedule interleaved needs --virtual-stages V (V >= 2)"};
  }
  if (o.schedule == PipelineSchedule::kInterleaved && o.stages > 1 && micro_batches < o.stages) {
    return Error{"--schedule interleaved needs at least --pp micro-batches (--accum " +
                 std::to_string(micro_batches) + " < --pp " + std::to_string(o.stages) + ")"};
  }
  if (!o.boundaries.empty() && o.stages < 2) return Error{"--stages needs --pp N (N >= 2)"};
  return {};
}

InFlight InFlightMicroBatches(PipelineSchedule schedule, int p, int v, int m, int i) {
  const uint64_t pu = static_cast<uint64_t>(std::max(p, 1));
  const uint64_t mu = static_cast<uint64_t>(std::max(m, 1));
  const uint64_t iu = static_cast<uint64_t>(std::clamp(i, 0, std::max(p, 1) - 1));
  switch (schedule) {
    case PipelineSchedule::kGPipe:
      return {mu, 1};
    case PipelineSchedule::k1F1B:
      return {std::min(pu - iu, mu), 1};
    case PipelineSchedule::kInterleaved: {
      const uint64_t vu = static_cast<uint64_t>(std::max(v, 1));
      uint64_t chunks = (pu - iu - 1) * 2 + (vu - 1) * pu + 1;
      return {std::min(chunks, mu * vu), vu};
    }
  }
  return {1, 1};
}

namespace {

int BlockOf(const PlanOp& op, const std::vector<std::string>& blocks,
            const std::map<std::string, int>& index) {
  // The block is a prefix of the op's scope: walk the scope's prefixes.
  const std::string& s = op.scope;
  for (size_t pos = 0;;) {
    size_t dot = s.find('.', pos);
    auto it = index.find(s.substr(0, dot));
    if (it != index.end() && InScope(op, blocks[it->second])) return it->second;
    if (dot == std::string::npos) return -1;
    pos = dot + 1;
  }
}

}  // namespace

Result<StageAssignment> AssignStages(const TrainingPlan& plan, const PipelineOptions& o) {
  StageAssignment a;
  const int chunks = o.stages * o.virtual_stages;
  a.blocks = RepeatedBlocks(plan);
  const int n = static_cast<int>(a.blocks.size());
  if (n < chunks) {
    return Error{"--pp " + std::to_string(o.stages) +
                 (o.virtual_stages > 1 ? " x --virtual-stages " + std::to_string(o.virtual_stages)
                                       : std::string()) +
                 " needs at least " + std::to_string(chunks) + " repeated blocks; the model has " +
                 std::to_string(n) + (n ? " (" + a.blocks.front() + "...)" : std::string())};
  }
  std::map<std::string, int> index;
  for (int b = 0; b < n; ++b) index[a.blocks[b]] = b;
  std::vector<int> block_of(plan.ops.size(), -1);
  for (size_t i = 0; i < plan.ops.size(); ++i) block_of[i] = BlockOf(plan.ops[i], a.blocks, index);

  // Weights: parameter bytes read by a block's ops (each once) plus its ops' output bytes.
  a.block_weight.assign(n, 0);
  uint64_t before = 0, after = 0;
  std::vector<int> param_block(plan.tensors.size(), -2);
  int first_block_op = -1, last_block_op = -1;
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    if (block_of[i] >= 0) {
      if (first_block_op < 0) first_block_op = static_cast<int>(i);
      last_block_op = static_cast<int>(i);
    }
  }
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const PlanOp& op = plan.ops[i];
    uint64_t w = 0;
    for (PlanTensorId t : op.outputs) {
      if (t >= 0) w += StorageBytes(plan.tensors[t]);
    }
    for (PlanTensorId t : op.inputs) {
      if (t < 0 || plan.tensors[t].role != TensorRole::kParameter) continue;
      if (param_block[t] != -2) continue;
      param_block[t] = block_of[i];
      w += StorageBytes(plan.tensors[t]);
    }
    if (block_of[i] >= 0) {
      a.block_weight[block_of[i]] += w;
    } else if (static_cast<int>(i) < first_block_op) {
      before += w;
    } else if (static_cast<int>(i) > last_block_op) {
      after += w;
    }
  }

  // Chunk boundaries.
  a.chunk_first_block.assign(chunks, 0);
  if (!o.boundaries.empty()) {
    if (static_cast<int>(o.boundaries.size()) != chunks - 1) {
      return Error{"--stages names " + std::to_string(o.boundaries.size()) + " boundaries; --pp " +
                   std::to_string(o.stages) +
                   (o.virtual_stages > 1 ? " x " + std::to_string(o.virtual_stages) : "") +
                   " needs " + std::to_string(chunks - 1) + " (the blocks where stages 1.. begin)"};
    }
    int previous = 0;
    for (int c = 1; c < chunks; ++c) {
      auto it = index.find(o.boundaries[c - 1]);
      if (it == index.end()) {
        return Error{"--stages " + o.boundaries[c - 1] + " is not one of the model's repeated " +
                     "blocks (" + a.blocks.front() + " .. " + a.blocks.back() + ")"};
      }
      if (it->second <= previous) {
        return Error{
            "--stages boundaries must be in increasing block order, after the first "
            "block; " +
            o.boundaries[c - 1] + " is not"};
      }
      previous = it->second;
      a.chunk_first_block[c] = it->second;
    }
  } else {
    // Contiguous split of n blocks into `chunks` parts minimizing the largest part (DP).
    std::vector<uint64_t> prefix(n + 1, 0);
    for (int b = 0; b < n; ++b) prefix[b + 1] = prefix[b] + a.block_weight[b];
    auto part = [&](int from, int to, int c) {  // blocks [from, to) as chunk c
      uint64_t w = prefix[to] - prefix[from];
      if (c == 0) w += before;
      if (c == chunks - 1) w += after;
      return w;
    };
    const uint64_t kInf = std::numeric_limits<uint64_t>::max();
    // best[c][b]: the smallest largest part splitting blocks [0, b) into c + 1 chunks.
    std::vector<std::vector<uint64_t>> best(chunks, std::vector<uint64_t>(n + 1, kInf));
    std::vector<std::vector<int>> from(chunks, std::vector<int>(n + 1, 0));
    for (int b = 1; b <= n; ++b) best[0][b] = part(0, b, 0);
    for (int c = 1; c < chunks; ++c) {
      for (int b = c + 1; b <= n; ++b) {
        for (int s = c; s < b; ++s) {
          if (best[c - 1][s] == kInf) continue;
          uint64_t v = std::max(best[c - 1][s], part(s, b, c));
          if (v < best[c][b]) {
            best[c][b] = v;
            from[c][b] = s;
          }
        }
      }
    }
    int b = n;
    for (int c = chunks - 1; c > 0; --c) {
      a.chunk_first_block[c] = from[c][b];
      b = from[c][b];
    }
  }
  std::vector<int> stage_of_block(n, 0);
  for (int c = 0; c < chunks; ++c) {
    int end = c + 1 < chunks ? a.chunk_first_block[c + 1] : n;
    for (int b = a.chunk_first_block[c]; b < end; ++b) stage_of_block[b] = c % o.stages;
  }

  // Ops: in a block, its stage; otherwise the earliest stage among their consumers, or with
  // no consumer, the stage of the last chunk.
  a.stage_of_op.assign(plan.ops.size(), -1);
  std::vector<int> consumer_stage(plan.tensors.size(), std::numeric_limits<int>::max());
  const int last = (chunks - 1) % o.stages;
  for (size_t k = plan.ops.size(); k-- > 0;) {
    const PlanOp& op = plan.ops[k];
    int s = -1;
    if (block_of[k] >= 0) {
      s = stage_of_block[block_of[k]];
    } else {
      int m = std::numeric_limits<int>::max();
      for (const auto* list : {&op.outputs, &op.extras}) {
        for (PlanTensorId t : *list) {
          if (t >= 0) m = std::min(m, consumer_stage[t]);
        }
      }
      s = m == std::numeric_limits<int>::max() ? last : m;
    }
    a.stage_of_op[k] = s;
    for (PlanTensorId t : op.inputs) {
      // A view's consumers consume its base too.
      for (int hops = 0; t >= 0 && hops < 64; ++hops) {
        consumer_stage[t] = std::min(consumer_stage[t], s);
        t = plan.tensors[t].view_of;
      }
    }
  }
  return a;
}

Status KeepStage(TrainingPlan& plan, const StageAssignment& a, int stage, int stages) {
  const size_t count = plan.tensors.size();
  std::vector<int> producer_stage(count, -1);  // -1: no producing op (parameters, batch...)
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const PlanOp& op = plan.ops[i];
    for (const auto* list : {&op.outputs, &op.extras}) {
      for (PlanTensorId t : *list) {
        if (t >= 0) producer_stage[t] = a.stage_of_op[i];
      }
    }
  }
  // Read by ops of other stages than the producer's.
  std::vector<bool> sent(count, false);
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    for (PlanTensorId t : plan.ops[i].inputs) {
      if (t >= 0 && producer_stage[t] >= 0 && producer_stage[t] != a.stage_of_op[i]) sent[t] = true;
    }
  }
  // The chunk of each block (interleaved: a stage runs several), to send a chunk's outputs
  // when it ends.
  std::map<std::string, int> block_index;
  for (size_t b = 0; b < a.blocks.size(); ++b) block_index[a.blocks[b]] = static_cast<int>(b);
  std::vector<int> chunk_of_block(a.blocks.size(), 0);
  for (size_t c = 0; c < a.chunk_first_block.size(); ++c) {
    for (size_t b = a.chunk_first_block[c]; b < a.blocks.size(); ++b) {
      chunk_of_block[b] = static_cast<int>(c);
    }
  }
  std::vector<PlanTensorId> clone(count, -1);
  std::vector<PlanOp> ops;
  std::set<PlanTensorId> used;
  std::vector<PlanTensorId> pending;  // made here, read by another stage, not yet sent
  PlanTensorId handle = -1;           // the last send's handle while no receive has taken it
  int chunk = -1;                     // of the last block op kept
  // A send of what the running chunk made for other stages, with its handle (a 4-byte
  // tensor standing for the send's completion): its backward receives the gradients of what
  // it sent (the backward's receive buffers, alive from then on). A send in the middle of the
  // stage (an interleaved chunk's end) hands its handle to the next receive, whose backward
  // (sending that receive's gradient back) makes the handle's gradient: the chunk's gradients
  // are received when the backward reaches that point, not when it starts.
  auto flush = [&](bool final) -> Status {
    if (pending.empty() && !final) return {};
    PlanTensor s;
    s.name = "pipeline send (stage " + std::to_string(stage) +
             (final ? std::string(")") : ", chunk " + std::to_string(chunk) + ")");
    s.dtype = DType::kFloat32;
    s.shape = {1};
    s.strides = {1};
    s.role = TensorRole::kActivation;
    PlanOp send;
    send.name = "pipeline send to stage " + std::to_string((stage + 1) % stages);
    send.type = "PipelineSend";
    for (PlanTensorId t : pending) {
      const PlanTensor& x = plan.tensors[t];
      if (x.requires_grad && IsFloating(x.dtype)) {
        send.grad_inputs.push_back(static_cast<int>(send.inputs.size()));
      }
      send.inputs.push_back(t);
      used.insert(t);
    }
    pending.clear();
    if (final && send.inputs.empty()) {
      return Error{"pipeline stage " + std::to_string(stage) +
                   " hands nothing to the next stage (no tensor crosses its boundary)"};
    }
    if (final && send.grad_inputs.empty()) {
      return Error{"pipeline stage " + std::to_string(stage) +
                   " hands on no tensor that needs a gradient: its parameters would not train"};
    }
    if (handle >= 0) {  // an earlier send's handle no receive took: its gradient comes from here
      send.grad_inputs.push_back(static_cast<int>(send.inputs.size()));
      send.grad_passthrough.push_back(static_cast<int>(send.inputs.size()));
      send.inputs.push_back(handle);
      handle = -1;
    }
    s.requires_grad = !send.grad_inputs.empty();
    s.bytes = StorageBytes(s);
    plan.tensors.push_back(std::move(s));
    send.outputs = {static_cast<PlanTensorId>(plan.tensors.size()) - 1};
    send.needs_backward = !send.grad_inputs.empty();
    if (send.needs_backward) handle = send.outputs[0];
    ops.push_back(std::move(send));
    return {};
  };
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    if (a.stage_of_op[i] != stage) continue;
    PlanOp op = plan.ops[i];
    if (const int b = BlockOf(op, a.blocks, block_index); b >= 0) {
      const int c = chunk_of_block[b];
      if (chunk >= 0 && c != chunk) {
        if (auto s = flush(false); !s) return s;
      }
      chunk = c;
    }
    for (PlanTensorId& t : op.inputs) {
      if (t < 0 || producer_stage[t] < 0 || producer_stage[t] == stage) continue;
      if (clone[t] < 0) {
        // A copy: plan.tensors grows below, which would leave a reference dangling.
        const PlanTensor orig = plan.tensors[t];
        PlanTensor c;
        c.name = "received " + orig.name;
        c.dtype = orig.dtype;
        c.shape = orig.shape;
        c.strides.assign(orig.shape.size(), 1);
        for (size_t d = orig.shape.size(); d-- > 1;) {
          c.strides[d - 1] = c.strides[d] * std::max<int64_t>(orig.shape[d], 1);
        }
        c.metadata = orig.metadata;
        c.requires_grad = orig.requires_grad;
        c.role = TensorRole::kActivation;
        c.bytes = StorageBytes(c);
        plan.tensors.push_back(std::move(c));
        clone[t] = static_cast<PlanTensorId>(plan.tensors.size()) - 1;
        PlanOp recv;
        recv.name = "pipeline recv " + orig.name;
        recv.type = "PipelineRecv";
        recv.scope = op.scope;
        recv.outputs = {clone[t]};
        // Its backward sends the gradient back and frees it.
        recv.needs_backward = plan.tensors[clone[t]].requires_grad;
        if (handle >= 0 && recv.needs_backward) {
          // Received after the previous chunk's send: that send's gradients come after this
          // gradient has gone back.
          recv.inputs = {handle};
          recv.grad_inputs = {0};
          used.insert(handle);
          handle = -1;
        }
        ops.push_back(std::move(recv));
      }
      t = clone[t];
    }
    for (auto* list : {&op.saved, &op.copies}) {
      for (PlanTensorId& t : *list) {
        if (t >= 0 && static_cast<size_t>(t) < count && clone[t] >= 0) t = clone[t];
      }
    }
    for (PlanTensorId t : op.inputs) {
      if (t >= 0) used.insert(t);
    }
    for (const auto* list : {&op.outputs, &op.extras}) {
      for (PlanTensorId t : *list) {
        if (t >= 0 && sent[t] && !plan.tensors[t].metadata) pending.push_back(t);
      }
    }
    ops.push_back(std::move(op));
  }
  // Views made in this stage of a received tensor view its receive buffer.
  for (size_t t = 0; t < count; ++t) {
    PlanTensorId v = plan.tensors[t].view_of;
    if (producer_stage[t] == stage && v >= 0 && static_cast<size_t>(v) < count && clone[v] >= 0) {
      plan.tensors[t].view_of = clone[v];
    }
  }
  const bool last = stage == stages - 1;
  if (!last) {
    if (auto s = flush(true); !s) return s;
    plan.outputs = {ops.back().outputs[0]};
    plan.loss = LossKind::kNone;
  } else {
    if (handle >= 0 || !pending.empty()) {
      return Error{"pipeline stage " + std::to_string(stage) +
                   " sends a chunk's output that no later receive of the stage follows"};
    }
    std::vector<PlanTensorId> outputs;
    for (PlanTensorId t : plan.outputs) {
      if (t >= 0 && producer_stage[t] == stage) outputs.push_back(t);
    }
    if (outputs.empty() || outputs.front() != plan.outputs.front()) {
      return Error{"the model's first output is not made by the last pipeline stage"};
    }
    plan.outputs = std::move(outputs);
  }
  plan.ops = std::move(ops);
  auto keep = [&](std::vector<PlanTensorId>& list) {
    std::erase_if(list, [&](PlanTensorId t) { return !used.count(t); });
  };
  keep(plan.parameters);
  keep(plan.buffers);
  keep(plan.batch);
  return {};
}

uint64_t ForwardLeftBytes(const Trace& trace, uint64_t round_bytes) {
  int64_t live = 0, at_start = -1;
  for (const Event& e : trace.events) {
    Phase ph = trace.steps[e.step].phase;
    if (at_start < 0 && ph == Phase::kForward) at_start = live;
    if (ph == Phase::kLoss || ph == Phase::kBackward || ph == Phase::kOptimizer) break;
    int64_t b = static_cast<int64_t>(RoundUp(trace.buffers[e.buffer].bytes, round_bytes));
    live += e.kind == Event::Kind::kAlloc ? b : -b;
  }
  if (at_start < 0) return 0;
  return live > at_start ? static_cast<uint64_t>(live - at_start) : 0;
}

PeakReport PipelinePeak(const Trace& trace, uint64_t round_bytes, uint64_t extra_first,
                        uint64_t extra_later) {
  PeakReport report;
  uint64_t current = 0;
  // Steps from the second simulated micro-batch on (Simulate marks each with a step of type
  // "micro-batch").
  StepId later = static_cast<StepId>(trace.steps.size());
  for (size_t s = 0, seen = 0; s < trace.steps.size(); ++s) {
    if (trace.steps[s].op_type == "micro-batch" && ++seen == 2) {
      later = static_cast<StepId>(s);
      break;
    }
  }
  auto extra_at = [&](StepId step) {
    Phase ph = trace.steps[step].phase;
    if (ph != Phase::kForward && ph != Phase::kLoss && ph != Phase::kBackward) return uint64_t{0};
    return step >= later ? extra_later : extra_first;
  };
  for (size_t i = 0; i < trace.events.size(); ++i) {
    const Event& e = trace.events[i];
    uint64_t bytes = RoundUp(trace.buffers[e.buffer].bytes, round_bytes);
    if (e.kind == Event::Kind::kFree) {
      current -= bytes;
      continue;
    }
    current += bytes;
    uint64_t total = current + extra_at(e.step);
    if (total > report.peak_bytes) {
      report.peak_bytes = total;
      report.peak_step = e.step;
      report.peak_event = i;
    }
  }
  std::vector<uint8_t> live(trace.buffers.size(), 0);
  for (size_t i = 0; i <= report.peak_event && i < trace.events.size(); ++i) {
    const Event& e = trace.events[i];
    live[e.buffer] = e.kind == Event::Kind::kAlloc;
  }
  for (size_t b = 0; b < live.size(); ++b) {
    if (!live[b]) continue;
    report.live_at_peak.push_back(static_cast<BufferId>(b));
    report.by_category[static_cast<size_t>(trace.buffers[b].category)] +=
        RoundUp(trace.buffers[b].bytes, round_bytes);
  }
  if (report.peak_step >= 0) {
    report.by_category[static_cast<size_t>(Category::kSavedActivations)] +=
        extra_at(report.peak_step);
  }
  std::stable_sort(
      report.live_at_peak.begin(), report.live_at_peak.end(),
      [&](BufferId a, BufferId b) { return trace.buffers[a].bytes > trace.buffers[b].bytes; });
  return report;
}

}  // namespace vramsim

// Pipeline parallelism, per stage (--pp N --schedule 1f1b|interleaved|gpipe --virtual-stages V,
// micro-batches from --accum, optional --stages boundaries).
//
// The model's repeated blocks (RepeatedBlocks in policies/sharding.h) are split into N x V
// contiguous chunks; chunk c runs on stage c mod N (V = 1 but for the interleaved schedule).
// Ops outside the blocks go with the stage of their first consumer (the embedding and the
// masks with the first stage), or, with no consumer, with the last (the head and the loss).
// Without --stages the chunks are balanced by memory: the split minimizes the largest chunk,
// a block weighing its parameters' bytes plus the bytes its ops' outputs take (one
// micro-batch), the ops before the first block counting with the first chunk and those after
// the last block with the last chunk.
//
// One stage's TrainingPlan keeps that stage's ops; what it reads from another stage arrives
// through a "pipeline recv" op placed before its first reader (an activation-sized receive
// buffer; its gradient is what the stage sends back in the backward), and what each of its
// chunks hands on goes to a "pipeline send" op at the chunk's end whose backward receives the
// output gradients (the backward's receive buffers). A stage other than the last has no loss:
// its backward starts from the received gradients of its last chunk. Under the interleaved
// schedule a stage runs several chunks: a chunk's send hands a 4-byte handle to the next
// chunk's first receive, whose backward (sending that chunk's input gradient back) makes the
// handle's gradient, so each chunk's output gradients are received when the backward reaches
// the chunk, not when it starts (the last stage sends its earlier chunks' outputs the same
// way).
//
// Micro-batches in flight (activations saved for the backward that a stage holds at once):
//  - GPipe: all m micro-batches' forwards run before any backward: m.
//  - 1F1B (PipeDream-Flush; Narayanan et al. 2021, Korthikanti et al. 2022 Sec. 4.2.3):
//    stage i (0-based) runs p - i - 1 warm-up forwards and then one more before its first
//    backward: min(p - i, m); the first stage holds p.
//  - Interleaved 1F1B with V model chunks per stage: Megatron-LM's schedule
//    (megatron/core/pipeline_parallel/schedules.py, forward_backward_pipelining_with_
//    interleaving) runs (p - i - 1) * 2 + (V - 1) * p warm-up chunk-forwards, each holding
//    1/V of a micro-batch's activations of the stage, plus the one in flight:
//    min((p - i - 1) * 2 + (V - 1) * p + 1, m * V) / V micro-batches. For the first stage
//    that is p + (p - 1) / V = p (1 + (p - 1) / (p V)), Korthikanti et al.'s factor (and
//    interleaved_schedule_memory_penalty in Megatron's theoretical_memory_usage.py).
// The stage's peak is the simulated step (one micro-batch in flight) with the activations of
// the other in-flight micro-batches added over its forward and backward:
//   peak = max over the forward/backward of (live + (others in flight) x A),
// A the bytes one micro-batch's forward leaves allocated when it ends (saved activations,
// what it sends and received). With f micro-batches in flight at most, the first micro-batch
// (no gradients yet) has f - 1 others beside it; a later one (gradients exist: the simulated
// second micro-batch) at most min(f, m - 1) - 1, the schedule draining as it ends (1F1B:
// micro-batch k's backward has min(p - i, m - k + 1) - 1 others; GPipe: m - k). The optimizer
// step's memory is the simulated one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "importer/status.h"
#include "simulator/peak.h"
#include "simulator/plan.h"
#include "simulator/trace.h"

namespace vramsim {

enum class PipelineSchedule { k1F1B, kInterleaved, kGPipe };
Result<PipelineSchedule> ParsePipelineSchedule(const std::string& name);
std::string_view PipelineScheduleName(PipelineSchedule s);

struct PipelineOptions {
  int stages = 1;  // --pp
  PipelineSchedule schedule = PipelineSchedule::k1F1B;
  int virtual_stages = 1;  // --virtual-stages (interleaved only)
  // --stages: the blocks where chunks 1..N*V-1 begin (module scopes from RepeatedBlocks),
  // empty: balanced by memory.
  std::vector<std::string> boundaries;
};

// Flags that are wrong whatever the model: N, V in range, V > 1 only with interleaved.
Status ValidatePipeline(const PipelineOptions& options, int micro_batches);

// Micro-batches of activations stage `stage` holds at once, as num / den.
struct InFlight {
  uint64_t num = 1, den = 1;
};
InFlight InFlightMicroBatches(PipelineSchedule schedule, int stages, int virtual_stages,
                              int micro_batches, int stage);

// The stage (0..N-1) each op of the plan runs on, and the chunk boundaries chosen.
struct StageAssignment {
  std::vector<int> stage_of_op;
  std::vector<std::string> blocks;     // RepeatedBlocks
  std::vector<int> chunk_first_block;  // index into blocks, per chunk
  std::vector<uint64_t> block_weight;  // bytes, per block
};
Result<StageAssignment> AssignStages(const TrainingPlan& plan, const PipelineOptions& options);

// Keeps the ops of one stage (plan as built, before the policies), with receive and send ops.
Status KeepStage(TrainingPlan& plan, const StageAssignment& assignment, int stage, int stages);

// Bytes the first micro-batch's forward leaves allocated when it ends (rounded as the peak is).
uint64_t ForwardLeftBytes(const Trace& trace, uint64_t round_bytes);

// The stage's peak with more bytes of in-flight activations alive over the forward and
// backward: extra_first over the first simulated micro-batch, extra_later over the second
// (which stands for micro-batches 2..m); counted as saved activations in by_category;
// live_at_peak lists the simulated buffers alive then.
PeakReport PipelinePeak(const Trace& trace, uint64_t round_bytes, uint64_t extra_first,
                        uint64_t extra_later);

// What an estimate of one stage reports about the pipeline.
struct PipelineStageReport {
  int stage = 0, stages = 1;
  PipelineSchedule schedule = PipelineSchedule::k1F1B;
  InFlight in_flight;
  uint64_t micro_batch_bytes = 0;         // A
  uint64_t extra_bytes = 0;               // (in_flight - 1) x A: beside the first micro-batch
  uint64_t extra_later_bytes = 0;         // beside the later ones
  uint64_t simulated_peak = 0;            // one micro-batch in flight
  std::vector<std::string> first_blocks;  // the blocks its chunks begin with
  int block_count = 0;
};

}  // namespace vramsim

// Tensor, sequence and context parallelism per rank (policies/tensor_parallel.h).
//
// The activation tests hold the simulated per-layer activation bytes against Korthikanti et
// al. 2022, "Reducing Activation Recomputation in Large Transformer Models" (arXiv 2205.05198),
// Sec. 4 (16-bit activations, 1-byte dropout masks, per transformer layer):
//   no parallelism:            s*b*h*(34 + 5*a*s/h)
//     attention 11sbh + 5as^2b: QKV input 2sbh, Q and K 4sbh, softmax output 2as^2b, its
//       dropout mask as^2b and output 2as^2b, V 2sbh, projection input 2sbh, dropout mask sbh;
//     MLP 19sbh: first Linear input 2sbh, GELU input 8sbh, second Linear input 8sbh, dropout
//       mask sbh; two LayerNorm inputs 4sbh.
//   tensor parallel (Eq. 2):   s*b*h*(10 + 24/t + 5*a*s/(h*t))
//   + sequence parallel (Eq. 3): s*b*h*(34/t + 5*a*s/(h*t))
// on GPT exports shaped like the paper's models (validation/export_korthikanti.py keeps each
// model's heads a and a*s/h, h and s scaled down), run in pure bf16 (--precision bf16). The
// export differs from the paper's accounting by two terms, both added to the formula below:
//   - LayerNorm's saved statistics: mean and rstd, [b, s, 1] each in the activations' 16-bit
//     type as vramsim keeps them under pure bf16, for both norms: 2 * 2 * 2*s*b = 8sb bytes (the
//     paper counts the norm's input only); / t under sequence parallelism (the statistics
//     follow the sequence-split input).
//   - the causal mask: masked_fill saves its bool condition ~bias[:, :, :s, :s], s^2 bytes per
//     layer (the paper's attention has no mask tensor); whole on every rank (it broadcasts over
//     the heads).
// A layer's bytes are the saved activations its ops made, alive when the forward ends, for the
// middle layer h.1 of three (its input, made by h.0, is counted there; its output, which h.2
// saves, is counted here: the same size).
#include "policies/tensor_parallel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string>

#include "engine/estimate.h"
#include "policies/sharding.h"

namespace vramsim {
namespace {

struct Shape {
  const char* name;
  int64_t a, h, s;  // heads, hidden, sequence of the export
};
// validation/export_korthikanti.py: the 22B, 175B, 530B and 1T models of the paper's Table 3
// (all at t = 8), h and s divided by 16 or 32.
const Shape kShapes[] = {{"korthikanti22b", 64, 384, 128},
                         {"korthikanti175b", 96, 384, 64},
                         {"korthikanti530b", 128, 640, 64},
                         {"korthikanti1t", 160, 800, 64}};
constexpr int64_t kBatch = 2;
constexpr int64_t kVocab = 512;
constexpr int64_t kLayers = 3;

std::string ModelPath(const Shape& m) {
  return std::string(VRAMSIM_KORTHIKANTI) + "/" + m.name + ".onnx";
}

Result<Estimate> RunModel(const std::string& path, std::map<std::string, int64_t> dims,
                          EstimateFlags flags) {
  auto options = ParseEstimateFlags(flags);
  if (!options) return options.error();
  return EstimateModel(path, dims, *options);
}

bool InLayer(const std::string& scope, const std::string& layer) {
  return scope == layer || scope.rfind(layer + ".", 0) == 0;
}

// Saved activations made by the layer's ops, alive when the forward ends.
uint64_t LayerActivationBytes(const Estimate& e, const std::string& layer) {
  StepId last_forward = -1;
  for (size_t s = 0; s < e.trace.steps.size(); ++s) {
    if (e.trace.steps[s].phase == Phase::kForward) last_forward = static_cast<StepId>(s);
  }
  std::set<BufferId> live;
  for (const Event& ev : e.trace.events) {
    if (ev.step > last_forward) break;
    if (ev.kind == Event::Kind::kAlloc) {
      live.insert(ev.buffer);
    } else {
      live.erase(ev.buffer);
    }
  }
  uint64_t bytes = 0;
  const bool debug = std::getenv("VRAMSIM_TP_DEBUG") != nullptr;
  for (BufferId b : live) {
    const Buffer& buf = e.trace.buffers[b];
    if (buf.category != Category::kSavedActivations || !InLayer(buf.scope, layer)) continue;
    bytes += buf.bytes;
    if (debug) std::cout << buf.bytes << "  " << buf.name << "  " << buf.why << "\n";
  }
  return bytes;
}

EstimateFlags Bf16(int tp, bool sp) {
  EstimateFlags f;
  f.precision = "bf16";
  f.attention = "eager";
  f.tensor_parallel = tp;
  f.sequence_parallel = sp;
  return f;
}

// The formula's terms, in bytes, and the export's two extra terms.
double Paper(const Shape& m, int t, bool tp, bool sp) {
  const double s = m.s, b = kBatch, h = m.h, a = m.a;
  if (!tp) return s * b * h * (34 + 5 * a * s / h);
  if (!sp) return s * b * h * (10 + 24.0 / t + 5 * a * s / (h * t));
  return s * b * h * (34.0 / t + 5 * a * s / (h * t));
}
double ExportExtra(const Shape& m, int t, bool sp) {
  const double s = m.s, b = kBatch;
  const double norm_stats = 8 * s * b / (sp ? t : 1);
  const double causal_mask = s * s;
  return norm_stats + causal_mask;
}

void ExpectLayerMatches(const Shape& m, int t, bool tp, bool sp) {
  auto e = RunModel(ModelPath(m), {{"batch", kBatch}, {"seq", m.s}}, Bf16(tp ? t : 1, sp));
  ASSERT_TRUE(e) << e.error().message;
  const double measured = static_cast<double>(LayerActivationBytes(*e, "h.1"));
  const double expected = Paper(m, t, tp, sp) + ExportExtra(m, t, sp);
  std::cout << m.name << (tp ? " --tp " + std::to_string(t) : std::string(" no tp"))
            << (sp ? " --sequence-parallel" : "") << ": layer h.1 "
            << static_cast<uint64_t>(measured) << " B = formula "
            << std::llround(Paper(m, t, tp, sp)) << " + export "
            << std::llround(ExportExtra(m, t, sp)) << " (measured / formula "
            << measured / Paper(m, t, tp, sp) << ")\n";
  EXPECT_NEAR(measured / expected, 1.0, 0.05)
      << m.name << " t=" << t << (sp ? " sp" : "") << ": measured " << measured
      << ", formula + export terms " << expected << " (formula alone " << Paper(m, t, tp, sp)
      << ")";
  // The agreement is in fact exact: every term is accounted for.
  EXPECT_EQ(static_cast<int64_t>(measured), std::llround(expected))
      << m.name << " t=" << t << (sp ? " sp" : "");
}

TEST(Korthikanti, NoParallelismMatchesFormula) {
  for (const Shape& m : kShapes) ExpectLayerMatches(m, 8, false, false);
}
TEST(Korthikanti, TensorParallelMatchesEquation2) {
  for (const Shape& m : kShapes) ExpectLayerMatches(m, 8, true, false);
}
TEST(Korthikanti, SequenceParallelMatchesEquation3) {
  for (const Shape& m : kShapes) ExpectLayerMatches(m, 8, true, true);
}
TEST(Korthikanti, OtherTensorParallelSizes) {
  for (int t : {2, 4}) {
    ExpectLayerMatches(kShapes[0], t, true, false);
    ExpectLayerMatches(kShapes[0], t, true, true);
  }
}

// Context parallelism (--cp c, no tensor parallelism): every activation holds s/c tokens;
// attention's score-sized tensors are the rank's queries against every key, [b, a, s/c, s]
// (softmax output 2, its dropout mask 1 and output 2 bytes per element), and so is the causal
// mask's condition ([s/c, s] bytes). The K/V chunks in flight are freed when the attention's
// forward ends, so a layer keeps
//   (s/c)*b*h*34 + 5*a*(s/c)*s*b + (s/c)*s + 8*(s/c)*b
TEST(ContextParallel, LayerHoldsItsShareOfTheSequence) {
  for (int c : {2, 4}) {
    for (const Shape& m : kShapes) {
      EstimateFlags f = Bf16(1, false);
      f.context_parallel = c;
      auto e = RunModel(ModelPath(m), {{"batch", kBatch}, {"seq", m.s}}, f);
      ASSERT_TRUE(e) << e.error().message;
      const int64_t sc = m.s / c;
      const int64_t want =
          sc * kBatch * m.h * 34 + 5 * m.a * sc * m.s * kBatch + sc * m.s + 8 * sc * kBatch;
      EXPECT_EQ(static_cast<int64_t>(LayerActivationBytes(*e, "h.1")), want)
          << m.name << " cp " << c;
    }
  }
}

TEST(ContextParallel, KeyValueChunksInFlight) {
  // The ring's K and V chunks (in use + arriving: 2 x [b, a, s/c, d] each, 16-bit) are held
  // across each attention's forward: the estimate names them.
  EstimateFlags f = Bf16(1, false);
  f.context_parallel = 2;
  auto e = RunModel(ModelPath(kShapes[0]), {{"batch", kBatch}, {"seq", kShapes[0].s}}, f);
  ASSERT_TRUE(e) << e.error().message;
  const Shape& m = kShapes[0];
  const uint64_t chunk = 2 * kBatch * m.a * (m.s / 2) * (m.h / m.a) * 2;
  int found = 0;
  for (const Buffer& b : e->trace.buffers) {
    if (b.name.find("context parallel: K chunks") == std::string::npos) continue;
    EXPECT_EQ(b.bytes, chunk) << b.name;
    ++found;
  }
  EXPECT_GE(found, 3);  // one per layer's forward (and again in its backward)
}

// Model states per rank: parameters, gradients and optimizer state alive when the optimizer
// step starts (exact bytes), for examples/gpt.onnx (nanoGPT: L = 4 layers, h = 256, a = 4,
// vocab V = 512, position table S = 256, untied LM head), fp32 Adam.
//
// Parameters per tensor-parallel rank, exactly: each layer's c_attn (3h*h + 3h), attention
// c_proj weight (h*h), c_fc (4h*h + 4h) and MLP c_proj weight (4h*h) split t ways; the two
// row-parallel biases (h each) and both LayerNorms (2h each) whole; the vocab-parallel wte and
// lm_head (V*h each) split; wpe (S*h) and ln_f (2h) whole:
//   psi_t = L*(12h^2/t + 7h/t + 6h) + 2Vh/t + Sh + 2h
// Megatron's theoretical_memory_usage.py (compute_weight_and_optimizer_memory) approximates the
// same count as (12Lh^2 (1 + 13/(12h)) + 2Vh) / t, dividing the norms and row biases too and
// leaving out the position table. ZeRO then divides over the d data-parallel ranks as
// ZeroModelStates has it (Rajbhandari et al. 2020): params 4 psi_t (/ d at stage 3),
// grads 4 psi_t (/ d at stage >= 2), Adam's two moments 8 psi_t (/ d at stage >= 1).
struct States {
  uint64_t params = 0, grads = 0, optimizer = 0;
};
States StatesAtOptimizerStart(const Estimate& e) {
  States s;
  for (const Event& ev : e.trace.events) {
    if (e.trace.steps[ev.step].phase == Phase::kOptimizer) break;
    const Buffer& b = e.trace.buffers[ev.buffer];
    uint64_t* slot = b.category == Category::kParameters       ? &s.params
                     : b.category == Category::kGradients      ? &s.grads
                     : b.category == Category::kOptimizerState ? &s.optimizer
                                                               : nullptr;
    if (!slot) continue;
    *slot = ev.kind == Event::Kind::kAlloc ? *slot + b.bytes : *slot - b.bytes;
  }
  return s;
}

TEST(ModelStates, TensorParallelTimesZero) {
  const double L = 4, h = 256, V = 512, S = 256;
  for (int t : {1, 2, 4}) {
    const double psi = L * (12 * h * h / t + 7 * h / t + 6 * h) + 2 * V * h / t + S * h + 2 * h;
    for (auto [d, stage] : {std::pair{1, 0}, {4, 0}, {4, 1}, {4, 2}, {4, 3}}) {
      EstimateFlags f;
      f.tensor_parallel = t;
      f.data_parallel = d;
      f.zero = stage;
      auto e =
          RunModel(std::string(VRAMSIM_EXAMPLES) + "/gpt.onnx", {{"batch", 2}, {"seq", 128}}, f);
      ASSERT_TRUE(e) << e.error().message;
      const States got = StatesAtOptimizerStart(*e);
      const ModelStates want = ZeroModelStates(psi, 4, 4, 8, d, stage);
      const std::string what = "tp " + std::to_string(t) + ", dp " + std::to_string(d) + ", zero " +
                               std::to_string(stage);
      // ZeRO's flat shards round each unit up to a multiple of d elements; Adam keeps a 4-byte
      // step counter per parameter tensor (per shard under ZeRO): both well under 0.1%.
      EXPECT_NEAR(got.params / want.params, 1.0, 1e-3) << what << ": " << got.params;
      // ZeRO 1 keeps whole gradients until the step (policies/sharding.h): G psi.
      EXPECT_NEAR(got.grads / want.grads, 1.0, 1e-3) << what << ": " << got.grads;
      EXPECT_NEAR(got.optimizer / want.optimizer, 1.0, 1e-3) << what << ": " << got.optimizer;
      if (stage == 0) {
        EXPECT_EQ(got.params, static_cast<uint64_t>(4 * psi)) << what;
      }
    }
    // FSDP on the tensor-parallel shards: FULL_SHARD and SHARD_GRAD_OP hold all three states
    // sharded at rest, as ZeRO 3 over the 4 data-parallel ranks; HYBRID_SHARD with 2
    // data-parallel ranks per node shards over those 2 (and replicates across nodes).
    for (auto [fsdp, shards] : {std::pair{"full", 4}, {"shard-grad-op", 4}, {"hybrid", 2}}) {
      EstimateFlags f;
      f.tensor_parallel = t;
      f.data_parallel = 4;
      f.fsdp = fsdp;
      f.gpus_per_node = 2;
      auto e =
          RunModel(std::string(VRAMSIM_EXAMPLES) + "/gpt.onnx", {{"batch", 2}, {"seq", 128}}, f);
      ASSERT_TRUE(e) << e.error().message;
      const States got = StatesAtOptimizerStart(*e);
      const ModelStates want = ZeroModelStates(psi, 4, 4, 8, shards, 3);
      const std::string what = "tp " + std::to_string(t) + ", fsdp " + fsdp;
      EXPECT_NEAR(got.params / want.params, 1.0, 1e-3) << what << ": " << got.params;
      EXPECT_NEAR(got.grads / want.grads, 1.0, 1e-3) << what << ": " << got.grads;
      EXPECT_NEAR(got.optimizer / want.optimizer, 1.0, 1e-3) << what << ": " << got.optimizer;
    }
  }
}

// With pipeline stages (policies/pipeline.h) the policy splits the stage's own blocks: the
// 48-layer GPT example (h = 256, V = 512) in 2 stages, stage 1 (h.24..h.47, ln_f, lm_head) at
// --tp 2 holds 24*(12h^2/t + 7h/t + 6h) + 2h + Vh/t parameters, 4 bytes each.
TEST(ModelStates, TensorParallelPipelineStage) {
  const double h = 256, V = 512, t = 2;
  EstimateFlags f;
  f.tensor_parallel = 2;
  f.pipeline_parallel = 2;
  f.pipeline_stage = 1;
  f.accum = 4;
  auto e = RunModel(std::string(VRAMSIM_EXAMPLES) + "/gpt48.onnx", {{"batch", 8}, {"seq", 256}}, f);
  ASSERT_TRUE(e) << e.error().message;
  const double psi = 24 * (12 * h * h / t + 7 * h / t + 6 * h) + 2 * h + V * h / t;
  EXPECT_EQ(StatesAtOptimizerStart(*e).params, static_cast<uint64_t>(4 * psi));
}

// ---- LLaMA (tests/data/llama_tp, exported by python/vramsim/export.py; see its README) ----
// llama_tiny: vramsim.models.llama:tiny, L = 2 layers, h = 64, a = 4 heads of hd = 16, 2 KV
// heads (GQA, kv width 32), SwiGLU width f = 176, vocab V = 256, RMSNorm, rotary embeddings
// (cos/sin built at run time from the buffer model.rotary_emb.inv_freq [8], replicated: it
// broadcasts over the heads), a causal mask built at run time ([1, 1, s, s], broadcast), no
// biases, untied lm_head. llama_tiny_lora: the same with r = 4 LoRA on q_proj and v_proj.
std::string LlamaPath(const std::string& name) {
  return std::string(VRAMSIM_LLAMA_TP) + "/" + name + ".onnx";
}

// Parameters per rank (elements), by hand:
//   per layer: q_proj h*h = 4096, k_proj and v_proj h*32 = 2048 each, o_proj h*h = 4096
//     (column, column, column, row: all / t); gate_proj, up_proj, down_proj f*h = 11264 each
//     (column, column, row: / t); input_layernorm and post_attention_layernorm h = 64 each,
//     whole.
//   outside: embed_tokens V*h = 16384 and lm_head V*h = 16384 vocab-parallel (/ t); model.norm
//     h = 64 and rotary inv_freq 8, whole.
//   psi_t = L*((2*4096 + 2*2048 + 3*11264)/t + 2*64) + 2*16384/t + 64 + 8
// t = 1: 125248 (the export's 501024 bytes of fp32 weights are 4 * 125248 + 4 * 8 for the
// buffer: 4 * 125256); t = 2: 62792.
TEST(Llama, ModelStatesPerRank) {
  for (int t : {1, 2}) {
    const double L = 2;
    const double psi =
        L * ((2 * 4096.0 + 2 * 2048 + 3 * 11264) / t + 2 * 64) + 2 * 16384.0 / t + 64 + 8;
    EstimateFlags f;
    f.tensor_parallel = t;
    f.freeze = {"model.rotary_emb.inv_freq"};  // a buffer: held, not trained
    auto e = RunModel(LlamaPath("llama_tiny"), {{"batch", 2}, {"seq", 32}}, f);
    ASSERT_TRUE(e) << e.error().message;
    const States got = StatesAtOptimizerStart(*e);
    EXPECT_EQ(got.params, static_cast<uint64_t>(4 * psi)) << "tp " << t;
    EXPECT_EQ(got.grads, static_cast<uint64_t>(4 * (psi - 8))) << "tp " << t;
    // Adam: two fp32 moments per trained element (and a 4-byte step counter per tensor).
    EXPECT_NEAR(got.optimizer / (8 * (psi - 8)), 1.0, 1e-3) << "tp " << t;
  }
}

// A pipeline stage holding a single block: the tiny LLaMA's 2 layers over 2 stages, stage 1
// (model.layers.1, model.norm, lm_head) at --tp 2 holds 23,168 (a layer's psi_t, as above) +
// 64 + 16384/2 parameters. The rotary buffer inv_freq is not among them: the ops building cos
// and sin go with the stage of their first consumer, layers.0 (policies/pipeline.h), and stage
// 1 receives cos and sin.
TEST(Llama, TensorParallelSingleBlockStage) {
  EstimateFlags f;
  f.tensor_parallel = 2;
  f.pipeline_parallel = 2;
  f.pipeline_stage = 1;
  f.accum = 2;
  f.freeze = {"model.rotary_emb.inv_freq"};
  auto e = RunModel(LlamaPath("llama_tiny"), {{"batch", 2}, {"seq", 32}}, f);
  ASSERT_TRUE(e) << e.error().message;
  const double psi = (2 * 4096.0 + 2 * 2048 + 3 * 11264) / 2 + 2 * 64 + 64 + 16384 / 2;
  EXPECT_EQ(StatesAtOptimizerStart(*e).params, static_cast<uint64_t>(4 * psi));
}

// Saved activations of one LLaMA layer (model.layers.1, the last: its input is made by
// layers.0, its output is saved by the final norm and counted here), pure bf16 (2 bytes), eager
// attention, by hand in Korthikanti's manner. B = s*b tokens, h = 64, a = 4, f = 176; the
// backward keeps, per layer:
//   each RMSNorm (x * rsqrt(mean(x^2) + eps) * w, exported as Pow, ReduceMean, Add, Sqrt, Div,
//     Mul, Mul): sqrt(var + eps) and its reciprocal [b, s, 1] (2B), x times the reciprocal
//     (Bh, for the weight's gradient) and the weighted result (Bh, the Linears' input): 2B + 2Bh,
//     twice; the first norm's input is the previous layer's output, the second's is the
//     residual sum x2 (Bh, read by its Pow's backward);
//   attention: q after rotary (Bh; rotary multiplies by cos/sin, made outside the layer and
//     frozen, so nothing else), k and v after repeat_kv, the contiguous copies expand +
//     reshape make of GQA's 2 KV heads repeated to 4 (Bh each), the softmax output
//     [b, a, s, s] (as^2b; the mask is added before it, the scale's division keeps nothing),
//     o_proj's input (the contiguous copy of the transposed context, Bh): 4Bh + as^2b;
//   SwiGLU, down(silu(gate(x)) * up(x)): silu's input (gate's output), silu's output and up's
//     output (the product's operands) and the product (down's input), [b, s, f] each: 4Bf;
//   the layer's output (Bh).
//   no parallelism: 2*(10Bh + 4B + 4Bf + as^2b)           b = 2, s = 32: 188,928 B
// Tensor parallel t (Megatron, Korthikanti Sec. 4.2.1): what the column-parallel Linears make
// (q, k, v, the scores, the context: split over the heads; SwiGLU's four: split over f) is / t;
// the norms (their statistics, both products) and the residual stream stay whole:
//   2*(4B + 6Bh + (4Bh + 4Bf + as^2b)/t)                   t = 2: 119,296 B
// + sequence parallel: the norms, the residuals and the Linears' saved (sequence-split) inputs
// hold s/t tokens, so everything is / t:
//   2*(10Bh + 4B + 4Bf + as^2b)/t                          t = 2: 94,464 B
double LlamaLayer(double s, double b, int t, bool sp) {
  const double h = 64, f = 176, a = 4, B = s * b;
  if (sp) return 2 * (10 * B * h + 4 * B + 4 * B * f + a * s * s * b) / t;
  return 2 * (4 * B + 6 * B * h + (4 * B * h + 4 * B * f + a * s * s * b) / t);
}
TEST(Llama, LayerActivationsPerRank) {
  const int64_t b = 2, s = 32;
  for (auto [t, sp] : {std::pair{1, false}, {2, false}, {2, true}}) {
    EstimateFlags f = Bf16(t, sp);
    f.freeze = {"model.rotary_emb.inv_freq"};
    auto e = RunModel(LlamaPath("llama_tiny"), {{"batch", b}, {"seq", s}}, f);
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_EQ(static_cast<int64_t>(LayerActivationBytes(*e, "model.layers.1")),
              std::llround(LlamaLayer(s, b, t, sp)))
        << "tp " << t << (sp ? " sp" : "");
  }
}

// LoRA beside split Linears (Megatron/PEFT: peft/tuners/lora/tp_layer.py), --trainable
// '*.lora_*' so only the adapters train. llama_tiny_lora, r = 4 on q_proj (64 -> 64) and v_proj
// (64 -> 32), both column-parallel bases: lora_A [r, in] replicated (4*64 = 256 each), lora_B
// [out, r] column-split (q: 64*4 / t, v: 32*4 / t). Trained per rank, L = 2 layers:
//   L * (2*256 + (256 + 128)/t)      t = 1: 1792, t = 2: 1408
// held: that plus the frozen base as in Llama.ModelStatesPerRank (its psi_t, inv_freq in it).
TEST(Llama, LoraBesideColumnParallelLinears) {
  for (int t : {1, 2}) {
    const double L = 2;
    const double base =
        L * ((2 * 4096.0 + 2 * 2048 + 3 * 11264) / t + 2 * 64) + 2 * 16384.0 / t + 64 + 8;
    const double lora = L * (2 * 256 + (256 + 128.0) / t);
    EstimateFlags f;
    f.tensor_parallel = t;
    f.trainable = {"*.lora_*"};
    auto e = RunModel(LlamaPath("llama_tiny_lora"), {{"batch", 2}, {"seq", 32}}, f);
    ASSERT_TRUE(e) << e.error().message;
    const States got = StatesAtOptimizerStart(*e);
    EXPECT_EQ(got.params, static_cast<uint64_t>(4 * (base + lora))) << "tp " << t;
    EXPECT_EQ(got.grads, static_cast<uint64_t>(4 * lora)) << "tp " << t;
    EXPECT_NEAR(got.optimizer / (8 * lora), 1.0, 0.01) << "tp " << t;
  }
}

// examples/gpt_lora.onnx: the GPT example (L = 4, h = 256, V = 512, S = 256) with r = 8 LoRA
// on c_attn (column-parallel base: lora_A [8, 256] replicated, lora_B [768, 8] split on 768)
// and on the attention's c_proj (row-parallel base: lora_A [8, 256] split on its 256 inputs,
// its r-wide partial product all-reduced, lora_B [256, 8] replicated). Per layer the adapters
// hold 2048 + 6144/t + 2048/t + 2048; the base as in ModelStates.TensorParallelTimesZero.
TEST(Llama, LoraBesideRowParallelLinear) {
  const double L = 4, h = 256, V = 512, S = 256;
  for (int t : {1, 2, 4}) {
    const double base = L * (12 * h * h / t + 7 * h / t + 6 * h) + 2 * V * h / t + S * h + 2 * h;
    const double lora = L * (2048 + 6144.0 / t + 2048.0 / t + 2048);
    EstimateFlags f;
    f.tensor_parallel = t;
    f.trainable = {"*.lora_*"};
    auto e =
        RunModel(std::string(VRAMSIM_EXAMPLES) + "/gpt_lora.onnx", {{"batch", 2}, {"seq", 128}}, f);
    ASSERT_TRUE(e) << e.error().message;
    const States got = StatesAtOptimizerStart(*e);
    EXPECT_EQ(got.params, static_cast<uint64_t>(4 * (base + lora))) << "tp " << t;
    EXPECT_EQ(got.grads, static_cast<uint64_t>(4 * lora)) << "tp " << t;
  }
  // The row-parallel adapter's partial product is all-reduced: one r-wide all-reduced tensor
  // per layer's c_proj, [b, s, 8] in fp32, which lora_B (replicated) saves for its backward.
  EstimateFlags f;
  f.tensor_parallel = 2;
  f.trainable = {"*.lora_*"};
  auto e =
      RunModel(std::string(VRAMSIM_EXAMPLES) + "/gpt_lora.onnx", {{"batch", 2}, {"seq", 128}}, f);
  ASSERT_TRUE(e) << e.error().message;
  int reduced = 0;
  for (const Buffer& b : e->trace.buffers) {
    if (b.name.rfind("/h.", 0) == 0 && b.name.find("c_proj/lora_A/MatMul") != std::string::npos &&
        b.name.find("all-reduced") != std::string::npos) {
      EXPECT_EQ(b.bytes, 2u * 128 * 8 * 4) << b.name;
      EXPECT_EQ(b.category, Category::kSavedActivations) << b.name;
      ++reduced;
    }
  }
  EXPECT_EQ(reduced, 4);
}

// torchvision's ViT-B/16 (examples/vit_b_16.onnx: L = 12, h = 768, a = 12, MLP 3072, 197
// tokens, 1000 classes). nn.MultiheadAttention packs QKV in one in_proj [3h, h] (column-parallel,
// each rank holding q, k and v of its a/t heads, as Megatron's interleaved QKV) and folds batch
// and heads into one dim, [s, b*a, d]: the split is followed as the heads' factor inside it
// (b*a/t entries per rank) and back out to [s*b, h] for out_proj (row-parallel). Per layer the
// parameters are the GPT formula's, 12h^2/t + 7h/t + 6h (in_proj 3h^2 + 3h, out_proj weight h^2,
// MLP 8h^2 + 4h split; out_proj's and the MLP's second bias and both LayerNorms whole); outside:
// conv_proj 768*3*16*16 + 768, class token h, position embedding 197h, final LayerNorm 2h
// whole, and the classifier making the logits column-parallel over its 1000 classes
// ((1000h + 1000)/t). t = 1: 86,567,656 (ViT-B/16's count).
TEST(VisionTransformer, MultiheadAttentionSplitsItsHeads) {
  const double h = 768, L = 12;
  for (int t : {1, 2, 4}) {
    const double psi = L * (12 * h * h / t + 7 * h / t + 6 * h) + 768 * 3 * 16 * 16 + 768 + h +
                       197 * h + 2 * h + (1000 * h + 1000) / t;
    EstimateFlags f;
    f.tensor_parallel = t;
    auto e = RunModel(std::string(VRAMSIM_EXAMPLES) + "/vit_b_16.onnx", {{"batch", 2}}, f);
    ASSERT_TRUE(e) << e.error().message;
    if (t == 1) {
      EXPECT_EQ(psi, 86567656);
    }
    EXPECT_EQ(StatesAtOptimizerStart(*e).params, static_cast<uint64_t>(4 * psi)) << "tp " << t;
    // Each layer's softmax output, saved for its backward: [b*a/t, s, s] in fp32.
    int found = 0;
    for (const Buffer& b : e->trace.buffers) {
      if (b.category != Category::kSavedActivations ||
          b.name.find("self_attention/Softmax_output_0") == std::string::npos) {
        continue;
      }
      EXPECT_EQ(b.bytes, static_cast<uint64_t>(2 * 12 / t * 197 * 197 * 4)) << b.name;
      ++found;
    }
    EXPECT_EQ(found, 12) << "tp " << t;
  }
  // 12 heads do not divide by 8 (b*a = 24 does): the heads inside the merged dim are named.
  EstimateFlags f;
  f.tensor_parallel = 8;
  auto e = RunModel(std::string(VRAMSIM_EXAMPLES) + "/vit_b_16.onnx", {{"batch", 2}}, f);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("does not divide its 12 heads"), std::string::npos)
      << e.error().message;
}

// Refusals: one line, naming the op or the dimension.
std::string Refusal(const std::string& path, std::map<std::string, int64_t> dims, EstimateFlags f) {
  auto e = RunModel(path, dims, f);
  if (e) return "(accepted)";
  return e.error().message;
}

TEST(Refusals, OneLineNamingWhatDoesNotFit) {
  const std::string ex = VRAMSIM_EXAMPLES;
  const std::map<std::string, int64_t> gpt_dims = {{"batch", 2}, {"seq", 128}};
  EstimateFlags f;
  f.tensor_parallel = 2;
  // A convolutional block is not the attention/MLP pattern: the first Conv is named.
  std::string m = Refusal(ex + "/resnet18.onnx", {{"batch", 2}}, f);
  EXPECT_NE(m.find("/layer1/layer1.0/conv1/Conv (Conv)"), std::string::npos) << m;
  // The tiny LLaMA's 2 key/value heads (GQA) do not divide by 4 (its 4 heads do): named.
  f.tensor_parallel = 4;
  m = Refusal(LlamaPath("llama_tiny"), {{"batch", 2}, {"seq", 32}}, f);
  EXPECT_NE(m.find("2 key/value heads of grouped-query attention"), std::string::npos) << m;
  EXPECT_NE(m.find("Megatron replicates them"), std::string::npos) << m;
  const std::string kv = m;
  // The vocabulary (512) does not divide by 3: Megatron's padding is named.
  f.tensor_parallel = 3;
  m = Refusal(ex + "/gpt.onnx", gpt_dims, f);
  EXPECT_NE(m.find("vocabulary (512"), std::string::npos) << m;
  EXPECT_NE(m.find("pads"), std::string::npos) << m;
  // 64 heads do not divide by 128 (the vocabulary, 512, does): the head split is named.
  f.tensor_parallel = 128;
  m = Refusal(ModelPath(kShapes[0]), {{"batch", 2}, {"seq", 128}}, f);
  EXPECT_NE(m.find("(64) 128 ways"), std::string::npos) << m;
  EXPECT_NE(m.find("heads"), std::string::npos) << m;
  // The sequence must divide by the context-parallel ranks.
  f.tensor_parallel = 1;
  f.context_parallel = 2;
  m = Refusal(ex + "/gpt.onnx", {{"batch", 2}, {"seq", 127}}, f);
  EXPECT_NE(m.find("--cp 2"), std::string::npos) << m;
  EXPECT_NE(m.find("sequence length"), std::string::npos) << m;
  for (const std::string& msg : {m, kv}) EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(Refusals, FlagValidation) {
  EstimateFlags f;
  f.sequence_parallel = true;
  auto o = ParseEstimateFlags(f);
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find("--sequence-parallel"), std::string::npos);
  f = {};
  f.tensor_parallel = 0;
  o = ParseEstimateFlags(f);
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find("--tp must be between 1"), std::string::npos);
  f = {};
  f.context_parallel = -2;
  o = ParseEstimateFlags(f);
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find("--cp must be between 1"), std::string::npos);
}

}  // namespace
}  // namespace vramsim

"""A LLaMA-style decoder in plain PyTorch (torch 1.13), laid out like Hugging Face's
LlamaForCausalLM so parameter names read the same:

    model.embed_tokens.weight
    model.layers.N.input_layernorm.weight            RMSNorm
    model.layers.N.self_attn.{q,k,v,o}_proj.weight   no biases; k/v have n_kv_heads (GQA)
    model.layers.N.post_attention_layernorm.weight
    model.layers.N.mlp.{gate,up,down}_proj.weight    SwiGLU: down(silu(gate(x)) * up(x))
    model.norm.weight
    model.rotary_emb.inv_freq                        buffer [head_dim / 2]
    lm_head.weight

Rotary embeddings (cos/sin built at run time from inv_freq), and a causal mask built at run
time as Hugging Face does: torch.full((T, T), finfo(dtype).min, dtype=x.dtype), triu(1),
added to the attention scores. Eager attention (no fused kernel), no dropout.

Optional LoRA (r > 0) on q_proj and v_proj, in the layout of validation/models.py's
LoRALinear: <proj>.weight (frozen base) plus <proj>.lora_A.weight [r, in] and
<proj>.lora_B.weight [out, r]; every parameter except the adapters gets
requires_grad=False (vramsim: --trainable '*.lora_*').

Factories (module:factory specs for `python3 -m vramsim.export`):
    vramsim.models.llama:llama2_7b    32 layers, d 4096, 32 heads, SwiGLU 11008, vocab 32000
    vramsim.models.llama:llama2_70b   80 layers, d 8192, 64 heads / 8 KV heads, 28672
    vramsim.models.llama:tiny         2 layers, d 64, 4 heads / 2 KV heads, 176, vocab 256
    vramsim.models.llama:llama2_7b_lora, tiny_lora   the same with rank-8 LoRA on q/v
Each takes keyword overrides of LlamaConfig's fields.

Building a 7B model allocates 27 GB of fp32 weights; build it under
vramsim.export.meta_init() (the CLI does) to allocate none.
"""

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    vocab_size: int = 32000
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: Optional[int] = None  # None: = n_heads (no GQA)
    hidden_dim: int = 11008
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    lora_r: int = 0  # > 0: LoRA adapters on q_proj and v_proj, everything else frozen
    lora_alpha: float = 16.0


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


class LoRALinear(nn.Linear):
    """nn.Linear (no bias) plus a rank-r adapter: W x + lora_B(lora_A(x)) * alpha / r."""

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float):
        super().__init__(in_features, out_features, bias=False)
        self.lora_A = nn.Linear(in_features, r, bias=False)
        self.lora_B = nn.Linear(r, out_features, bias=False)
        self.scaling = alpha / r
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return F.linear(x, self.weight) + self.lora_B(self.lora_A(x)) * self.scaling


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, x, seq_len: int):
        t = torch.arange(seq_len, device=x.device, dtype=self.inv_freq.dtype)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(q, k, cos, sin):
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def repeat_kv(x, n_rep: int):
    """[B, kvh, T, hd] -> [B, kvh * n_rep, T, hd], as Hugging Face's repeat_kv."""
    if n_rep == 1:
        return x
    b, kvh, t, hd = x.shape
    return x[:, :, None, :, :].expand(b, kvh, n_rep, t, hd).reshape(b, kvh * n_rep, t, hd)


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.n_heads = c.n_heads
        self.n_kv_heads = c.n_kv_heads or c.n_heads
        assert c.dim % c.n_heads == 0 and c.n_heads % self.n_kv_heads == 0
        self.head_dim = c.dim // c.n_heads
        kv_dim = self.n_kv_heads * self.head_dim

        def proj(i, o, lora):
            if lora and c.lora_r > 0:
                return LoRALinear(i, o, c.lora_r, c.lora_alpha)
            return nn.Linear(i, o, bias=False)

        self.q_proj = proj(c.dim, c.dim, True)
        self.k_proj = proj(c.dim, kv_dim, False)
        self.v_proj = proj(c.dim, kv_dim, True)
        self.o_proj = proj(c.dim, c.dim, False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, k, cos, sin)
        rep = self.n_heads // self.n_kv_heads
        k = repeat_kv(k, rep)
        v = repeat_kv(v, rep)
        att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        att = att + mask
        att = F.softmax(att, dim=-1)
        y = torch.matmul(att, v)
        y = y.transpose(1, 2).contiguous().view(b, t, -1)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.up_proj = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.down_proj = nn.Linear(c.hidden_dim, c.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c.n_layers)])
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.rotary_emb = RotaryEmbedding(c.dim // c.n_heads, c.rope_theta)

    def forward(self, input_ids):
        b, t = input_ids.shape
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(x, t)
        # Hugging Face's causal mask: min-filled, upper triangle above the diagonal kept
        mask = torch.full((t, t), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device)
        mask = torch.triu(mask, diagonal=1)[None, None, :, :]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.config = c
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c.dim, c.vocab_size, bias=False)
        if c.lora_r > 0:
            for name, p in self.named_parameters():
                p.requires_grad_(".lora_" in name)

    def forward(self, input_ids):
        return self.lm_head(self.model(input_ids))  # (B, T, vocab_size)


LLAMA2_7B = LlamaConfig()
LLAMA2_70B = LlamaConfig(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, hidden_dim=28672)
TINY = LlamaConfig(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=176)


def llama(config: LlamaConfig = LLAMA2_7B, **overrides) -> LlamaForCausalLM:
    return LlamaForCausalLM(replace(config, **overrides))


def llama2_7b(**overrides) -> LlamaForCausalLM:
    return llama(LLAMA2_7B, **overrides)


def llama2_70b(**overrides) -> LlamaForCausalLM:
    return llama(LLAMA2_70B, **overrides)


def tiny(**overrides) -> LlamaForCausalLM:
    return llama(TINY, **overrides)


def llama2_7b_lora(r: int = 8, **overrides) -> LlamaForCausalLM:
    return llama(LLAMA2_7B, lora_r=r, **overrides)


def tiny_lora(r: int = 4, **overrides) -> LlamaForCausalLM:
    return llama(TINY, lora_r=r, **overrides)

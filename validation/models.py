"""GPT-style decoder in plain PyTorch (nanoGPT layout) used for ONNX export
and validation of vramsim's training-memory estimates."""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 512
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.1


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.head_dim = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        att = att.masked_fill(~self.bias[:, :, :T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v  # (B, nh, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx):
        B, T = idx.size()
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return self.lm_head(x)  # (B, T, vocab_size)


def make_gpt(n_layer: int = 4, n_head: int = 4, n_embd: int = 256,
             vocab_size: int = 512, block_size: int = 256, dropout: float = 0.1) -> GPT:
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                         n_head=n_head, n_embd=n_embd, dropout=dropout))


# --------------------------------------------------------------------------------------------
# LoRA (Hu et al. 2021) on the attention projections: frozen base weights, small adapters.

class LoRALinear(nn.Linear):
    """nn.Linear plus a rank-r LoRA adapter, laid out as PEFT does it:
    y = W x + b + lora_B(lora_A(lora_dropout(x))) * (alpha / r), with lora_A.weight [r, in]
    and lora_B.weight [out, r] (lora_B zero-initialized, so the adapter starts as a no-op).
    Parameter names: <module>.weight, <module>.bias, <module>.lora_A.weight,
    <module>.lora_B.weight."""

    def __init__(self, in_features: int, out_features: int, r: int = 8, alpha: float = 16,
                 dropout: float = 0.05, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.lora_A = nn.Linear(in_features, r, bias=False)
        self.lora_B = nn.Linear(r, out_features, bias=False)
        self.lora_dropout = nn.Dropout(dropout)
        self.scaling = alpha / r
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        base = F.linear(x, self.weight, self.bias)
        return base + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling


def make_gpt_lora(n_layer: int = 4, n_head: int = 4, n_embd: int = 256, vocab_size: int = 512,
                  block_size: int = 256, dropout: float = 0.1, r: int = 8, alpha: float = 16,
                  lora_dropout: float = 0.05) -> GPT:
    """The GPT above with LoRA adapters (rank r) on every attention's c_attn and c_proj.
    Fine-tuning trains only the adapters: freeze every parameter whose name has no
    ".lora_" (embeddings, LayerNorms, MLPs, the base projections and lm_head included);
    vramsim: --trainable '*.lora_*'."""
    model = make_gpt(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size,
                     block_size=block_size, dropout=dropout)
    for block in model.h:
        attn = block.attn
        attn.c_attn = LoRALinear(n_embd, 3 * n_embd, r=r, alpha=alpha, dropout=lora_dropout)
        attn.c_proj = LoRALinear(n_embd, n_embd, r=r, alpha=alpha, dropout=lora_dropout)
    return model


def freeze_for_lora(model: nn.Module) -> None:
    """requires_grad_(False) on every parameter that is not a LoRA adapter."""
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name)


# --------------------------------------------------------------------------------------------
# Recurrent language models / taggers (issue 11): nn.LSTM, nn.GRU, nn.RNN.

@dataclass
class RNNLMConfig:
    cell: str = "LSTM"  # "LSTM", "GRU" or "RNN" (tanh)
    vocab_size: int = 2000
    n_embd: int = 256
    hidden: int = 512
    n_layer: int = 2
    bidirectional: bool = False


class RNNLM(nn.Module):
    """Embedding -> nn.LSTM / nn.GRU / nn.RNN (batch_first, num_layers, optionally
    bidirectional, no initial state) -> Linear over the vocabulary: one prediction per token
    (input idx int64 [B, T], logits [B, T, vocab_size]). torch.onnx writes one LSTM/GRU/RNN
    node per layer, its weights gate-reordered through Slice/Concat/Unsqueeze."""

    def __init__(self, config: RNNLMConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        cell = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}[config.cell]
        self.rnn = cell(config.n_embd, config.hidden, num_layers=config.n_layer,
                        batch_first=True, bidirectional=config.bidirectional)
        width = config.hidden * (2 if config.bidirectional else 1)
        self.head = nn.Linear(width, config.vocab_size)

    def forward(self, idx):
        y, _ = self.rnn(self.wte(idx))
        return self.head(y)  # (B, T, vocab_size)


def make_rnn_lm(**kwargs) -> RNNLM:
    return RNNLM(RNNLMConfig(**kwargs))


class UNet(nn.Module):
    """A small UNet (Ronneberger et al. 2015): per level two 3x3 conv + BatchNorm + ReLU,
    max-pool down, a stride-2 ConvTranspose up and the skip concatenated; a per-pixel Linear to
    the classes on the channels-last features, so the logits [B, H, W, classes] are contiguous
    and the cross-entropy runs over the last dim (input [B, 3, H, W], labels int64 [B, H, W])."""

    def __init__(self, in_ch: int = 3, classes: int = 8, width: int = 16, depth: int = 3):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                                 nn.ReLU(inplace=True),
                                 nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                                 nn.ReLU(inplace=True))

        chans = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([block(in_ch, chans[0])] +
                                  [block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                 for i in reversed(range(depth))])
        self.dec = nn.ModuleList([block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Linear(chans[0], classes)

    def forward(self, x):
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x.permute(0, 2, 3, 1))  # (B, H, W, classes)

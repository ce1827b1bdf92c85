"""The floating-point byte transformer, used for training (its shape, ModelConfig, and BOS
are in tzip/model/config.py, which the integer side imports without PyTorch).

Every choice here is made so the integer engine (tzip/engine/) can reproduce it with
exact integer arithmetic: pre-norm RMSNorm, multi-query attention with ALiBi slopes that
are multiples of 1/256 (no position embeddings, so a sliding window works at any length),
a squared-ReLU MLP and no biases. Input vocabulary is 256 bytes plus BOS (stream start).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model.config import ModelConfig


def alibi_slopes(n_head: int) -> list[float]:
    """ALiBi slopes 2^(-8(h+1)/H), rounded to a multiple of 1/256 so integers can hold them."""
    return [max(1, round(256 * 2 ** (-8 * (h + 1) / n_head))) / 256 for h in range(n_head)]


def alibi_bias(n_head: int, t_q: int, t_k: int, window: int, device=None) -> torch.Tensor:
    """(H, t_q, t_k) additive bias for queries at the last t_q of t_k positions."""
    qpos = torch.arange(t_k - t_q, t_k, device=device)[:, None]
    kpos = torch.arange(t_k, device=device)[None, :]
    dist = (qpos - kpos).float()
    slopes = torch.tensor(alibi_slopes(n_head), device=device)[:, None, None]
    bias = -slopes * dist
    allowed = (dist >= 0) & (dist < window)
    return bias.masked_fill(~allowed, float("-inf"))


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.n_head * hd, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_kv_head * hd, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_kv_head * hd, bias=False)
        self.wo = nn.Linear(cfg.n_head * hd, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        c = self.cfg
        q = self.wq(x).view(B, T, c.n_head, c.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, c.n_kv_head, c.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, c.n_kv_head, c.head_dim).transpose(1, 2)
        rep = c.n_head // c.n_kv_head
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.mlp_mult * cfg.d_model, bias=False)
        self.w2 = nn.Linear(cfg.mlp_mult * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.relu(self.w1(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class ByteTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(257, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.head = nn.Linear(cfg.d_model, 256, bias=False)
        self.apply(self._init)
        for b in self.blocks:  # scaled init of residual projections (GPT-2)
            nn.init.normal_(b.attn.wo.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
            nn.init.normal_(b.mlp.w2.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) with T <= context -> logits (B, T, 256)."""
        T = idx.shape[1]
        bias = alibi_bias(self.cfg.n_head, T, T, self.cfg.context, idx.device)
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x, bias)
        return self.head(self.norm(x))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

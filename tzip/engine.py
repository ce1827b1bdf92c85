"""Integer-exact inference: the probabilities the coder sees, bit-identical everywhere.

Every value that crosses a layer boundary is an integer. Matrix products take
integer-valued float32 operands whose partial sums stay below 2**24, so float32 holds each
one exactly in any summation order, on any device, any thread count, any batch size
(longer reductions are split into chunks and added in int64). Requantisation is
int64 multiply + shift; RMSNorm uses an exact integer square root; softmax and the output
distribution use integer exp tables. Elementwise float32 steps are single IEEE-754
operations (x*y, x/y, floor), which are correctly rounded on every platform.

Two paths share one attention function: `forward_chunk` runs many positions of many
streams at once (compression), `step` runs one position per stream with a ring-buffer KV
cache (decompression). They give the same tables, position for position.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .quant import ATT_ONE, NORM_SHIFT, IntModel

EXACT_K = 1024  # 1024 * 127 * 127 < 2**24: a float32 dot product of this length is exact


def _mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exact x @ w for int8-valued float32 operands, returned as int64."""
    K = w.shape[0]
    if K <= EXACT_K:
        return (x @ w).long()
    out = None
    for k0 in range(0, K, EXACT_K):
        part = (x[..., k0:k0 + EXACT_K] @ w[k0:k0 + EXACT_K]).long()
        out = part if out is None else out + part
    return out


def _mm_wide(x: torch.Tensor, w: torch.Tensor, bits: int) -> torch.Tensor:
    """Exact x @ w for non-negative x below 2**bits (bits <= 12): split x into 6-bit halves."""
    if bits <= 7:
        return _mm(x, w)
    hi = torch.floor(x / 64)
    lo = x - hi * 64
    return _mm(hi, w) * 64 + _mm(lo, w)


def _rq(x: torch.Tensor, mult: torch.Tensor, shift: int) -> torch.Tensor:
    """round(x * mult / 2**shift) in int64."""
    return (x * mult + (1 << (shift - 1))) >> shift


def _isqrt(n: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(n)) for int64 n >= 0, exact (float guess, then integer correction)."""
    r = torch.sqrt(n.double()).long()
    r = torch.where(r * r > n, r - 1, r)
    r = torch.where((r + 1) * (r + 1) <= n, r + 1, r)
    return r


@dataclass
class Cache:
    """Per-layer keys/values of the last positions, and the absolute position of each slot."""
    k: list[torch.Tensor]
    v: list[torch.Tensor]
    pos: torch.Tensor
    t: int = 0  # next position to be computed


class Engine:
    def __init__(self, model: IntModel, device: str | torch.device = "cpu"):
        self.m = model
        self.cfg = model.cfg
        self.device = torch.device(device)
        self.p = {k: v.to(self.device) for k, v in model.tensors.items()}
        self.shifts = model.shifts
        c = self.cfg
        self.n_rep = c.n_head // c.n_kv_head
        self.slopes = self.p["alibi"].float()  # (H,) in table units per position

    # ---- building blocks -------------------------------------------------------------
    def _lin(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """int8 matmul, then requantise the int64 accumulator with the key's multipliers."""
        return _rq(_mm(x, self.p[key]), self.p[key + ".m"], self.shifts[key])

    def _norm(self, res: torch.Tensor, site: str) -> torch.Tensor:
        """RMSNorm to int8 with per-channel steps; gains live in the next weights."""
        d = res.shape[-1]
        rms = _isqrt((res * res).sum(-1, keepdim=True) // d).clamp_min(1)
        num = res * self.p[site + ".inv"]
        den = rms << NORM_SHIFT
        y = torch.div(2 * num + den, 2 * den, rounding_mode="floor")
        return y.clamp(-127, 127).float()

    def _alibi(self, qpos: torch.Tensor, kpos: torch.Tensor) -> torch.Tensor:
        """(kv, G*C, Kn) integer ALiBi penalties; 2**23 (weight 0) outside the window.
        The same for every layer, so built once per forward."""
        c = self.cfg
        kv, G = c.n_kv_head, self.n_rep
        dist = (qpos[:, None] - kpos[None, :]).float()  # (C, Kn)
        valid = (dist >= 0) & (dist < c.context)
        bias = self.slopes.view(kv, G, 1, 1) * dist  # (kv, G, C, Kn)
        return torch.where(valid, bias, torch.full_like(bias, 2.0 ** 23)).view(kv, G * len(qpos), -1)

    def _attend(self, l: int, q, K, V, bias) -> torch.Tensor:
        """q (S, C, H*hd); K, V (S, kv, Kn, hd); bias from _alibi -> (S, C, H*hd) int8."""
        c = self.cfg
        S, C, _ = q.shape
        G, kv, hd = self.n_rep, c.n_kv_head, c.head_dim
        qh = q.view(S, C, kv, G, hd).permute(0, 2, 3, 1, 4).reshape(S, kv, G * C, hd)
        s = qh @ K.transpose(-1, -2)  # exact: hd * 127 * 127 < 2**24
        z = torch.floor(s * self.p[f"l{l}.qk"]) - bias
        d = (z.amax(-1, keepdim=True) - z).clamp_(0, self.p["att_exp"].numel() - 1)
        e = self.p["att_exp"][d.long()]
        ssum = e.sum(-1, keepdim=True)  # <= Kn * 2**13 < 2**24: exact
        p = torch.floor(e * ATT_ONE / ssum + 0.5)
        o = (p @ V).long()  # sum of p <= ATT_ONE + Kn/2: exact
        o = o.view(S, kv, G, C, hd).permute(0, 3, 1, 2, 4).reshape(S, C, -1)
        return _rq(o, self.p[f"l{l}.o_in"], self.shifts[f"l{l}.o_in"]).clamp(-127, 127).float()

    def _qkv(self, l: int, res: torch.Tensor):
        y = self._norm(res, f"l{l}.n1")
        return tuple(self._lin(f"l{l}.w{n}", y).clamp(-127, 127).float() for n in "qkv")

    def _finish_layer(self, l: int, res: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        P, S, bits = self.p, self.shifts, self.m.mlp_bits
        res = res + self._lin(f"l{l}.wo", o)
        a = self._lin(f"l{l}.w1", self._norm(res, f"l{l}.n2")).clamp(0, 4095)
        h = _rq(a * a, P[f"l{l}.sq"], S[f"l{l}.sq"]).clamp(0, (1 << bits) - 1).float()
        w2 = f"l{l}.w2"
        return res + _rq(_mm_wide(h, P[w2], bits), P[w2 + ".m"], S[w2])

    def _freqs(self, res: torch.Tensor) -> torch.Tensor:
        """Final norm + head -> integer frequencies (.., 256), each in [1, 2**16]."""
        z = self._lin("head", self._norm(res, "nf"))
        tab = self.p["out_exp"]
        d = (z.amax(-1, keepdim=True) - z).clamp_(0, tab.numel() - 1)
        return tab[d]

    # ---- the two paths ---------------------------------------------------------------
    def new_cache(self, S: int, ring: bool) -> Cache:
        c = self.cfg
        n = c.context if ring else 0
        shape = (S, c.n_kv_head, n, c.head_dim)
        z = lambda: torch.zeros(shape, device=self.device)
        pos = torch.full((n,), -(1 << 40), dtype=torch.long, device=self.device)
        return Cache([z() for _ in range(c.n_layer)], [z() for _ in range(c.n_layer)], pos)

    @torch.no_grad()
    def forward_chunk(self, tokens: torch.Tensor, cache: Cache) -> torch.Tensor:
        """tokens (S, C) at positions cache.t .. cache.t+C-1 -> freqs (S, C, 256) int64.
        Keeps the last context-1 positions in cache (grown by concatenation)."""
        c = self.cfg
        S, C = tokens.shape
        qpos = torch.arange(cache.t, cache.t + C, device=self.device)
        kpos = torch.cat([cache.pos, qpos])
        keep = c.context - 1
        bias = self._alibi(qpos, kpos)
        res = self.p["emb"][tokens]
        for l in range(c.n_layer):
            q, k, v = self._qkv(l, res)
            K = torch.cat([cache.k[l], k.view(S, C, c.n_kv_head, c.head_dim).transpose(1, 2)], 2)
            V = torch.cat([cache.v[l], v.view(S, C, c.n_kv_head, c.head_dim).transpose(1, 2)], 2)
            res = self._finish_layer(l, res, self._attend(l, q, K, V, bias))
            cache.k[l], cache.v[l] = K[:, :, -keep:], V[:, :, -keep:]
        cache.pos = kpos[-keep:]
        cache.t += C
        return self._freqs(res)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, cache: Cache) -> torch.Tensor:
        """tokens (S,) at position cache.t -> freqs (S, 256); ring-buffer cache of size context."""
        c = self.cfg
        S = tokens.shape[0]
        slot = cache.t % c.context
        cache.pos[slot] = cache.t
        bias = self._alibi(cache.pos[slot:slot + 1], cache.pos)
        res = self.p["emb"][tokens[:, None]]
        for l in range(c.n_layer):
            q, k, v = self._qkv(l, res)
            cache.k[l][:, :, slot] = k.view(S, c.n_kv_head, c.head_dim)
            cache.v[l][:, :, slot] = v.view(S, c.n_kv_head, c.head_dim)
            res = self._finish_layer(l, res, self._attend(l, q, cache.k[l], cache.v[l], bias))
        cache.t += 1
        return self._freqs(res)[:, 0]

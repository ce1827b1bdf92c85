"""The reference engine in PyTorch: the tables every other backend must equal, bit for bit.

It follows the rules of tzip/engine/exact.py literally, as tensor operations, so it runs
the same on a CPU and a GPU. Two paths share one attention function: `score` runs many
positions of many streams at once (compression), `step` runs one position per stream
with a ring-buffer key/value cache (decompression). They give the same tables, position
for position. TorchScorer and TorchStepper put them behind the engine's two interfaces
(tzip/engine/__init__.py).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..model.intmodel import MLP_BITS
from .exact import exact_pieces
from .plan import TUNING
from .weights import Weights


def _mm(x: torch.Tensor, w: torch.Tensor, xmax: int = 127, out: torch.Tensor | None = None) -> torch.Tensor:
    """Exact x @ w for int8-valued float32 w and integer x in [-xmax, xmax].

    The inner dimension is cut into pieces short enough that every float32 partial sum
    stays below 2**24; the pieces are added in float64 (exact). A single piece is written
    to out (float32) when given."""
    first, *rest = exact_pieces(w.shape[0], xmax)
    if not rest:
        return x @ w if out is None else torch.matmul(x, w, out=out)
    out = (x[..., first] @ w[first]).double()
    for k in rest:
        out += x[..., k] @ w[k]
    return out


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


class Reference:
    """The torch arithmetic of one model on one device (weights moved there once)."""

    def __init__(self, weights: Weights, device: str | torch.device = "cpu"):
        self.cfg = c = weights.cfg
        self.device = torch.device(device)
        to = lambda a: torch.from_numpy(a).to(self.device)
        self.p = {k: to(v) for k, v in weights.arrays.items()}
        self.n_rep = c.n_head // c.n_kv_head
        self.slopes = to(weights.slopes)  # (H,) in table units per position
        self.emb = to(weights.emb)
        self.att_exp = to(weights.att_exp)
        # attention values in float32 and weights in two float32 parts (see _attend): half
        # the cache, and faster products than float64 (docs/performance.md)
        parts = weights.att_parts
        self.att_parts = None if parts is None else (weights.att_split, to(parts[0]), to(parts[1]))
        self.vtype = torch.float32 if self.att_parts else torch.float64
        self.r = {k: to(v) for k, v in weights.r.items()}
        self.inv = {k: to(v) for k, v in weights.inv.items()}
        self._local = threading.local()  # scratch buffers, one set per thread
        self.split = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim, c.n_kv_head * c.head_dim)
        self.half = torch.tensor(0.5, dtype=torch.float64, device=self.device)
        self.width = torch.tensor(float(c.d_model), dtype=torch.float64, device=self.device)  # _rms divides by a tensor

    def _buf(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A reused scratch tensor: the attention tables are tens of MB per chunk, and a
        fresh allocation of that size costs more in page faults than the work itself.
        Views are kept too: a decoding step makes about 90 such requests for the same 19
        (name, shape, dtype) keys every time, and slicing anew was a fifth of a small step."""
        views = self._local.__dict__.setdefault("views", {})
        v = views.get((name, shape, dtype))
        if v is not None:
            return v
        n = 1
        for x in shape:
            n *= x
        ws = self._local.__dict__.setdefault("ws", {})
        b = ws.get(name)
        if b is None or b.numel() < n or b.dtype != dtype:
            b = ws[name] = torch.empty(n, dtype=dtype, device=self.device)
            for key in [k for k in views if k[0] == name]:  # they keep the old storage alive
                del views[key]
        if len(views) > 1024:  # a long-lived engine sees many stream counts
            views.clear()
        v = views[(name, tuple(shape), dtype)] = b[:n].view(shape)
        return v

    # ---- building blocks -------------------------------------------------------------
    def _rq(self, x: torch.Tensor, r: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """round(x * m / 2**shift) for r = m / 2**shift, into float64 out (may be x). x * r
        is exact in float64 while |x| * m < 2**52, so 0.5 + x * r rounds once whether or
        not the platform fuses it: this equals (x*m + 2**(shift-1)) >> shift."""
        return torch.addcmul(self.half, x, r, out=out).floor_()

    def _f32(self, name: str, y: torch.Tensor) -> torch.Tensor:
        """y (integers below 2**24) as float32, in a scratch buffer."""
        return self._buf(name, y.shape, torch.float32).copy_(y)

    def _lin(self, key: str, x: torch.Tensor, xmax: int = 127) -> torch.Tensor:
        """int8 matmul, then requantise the accumulator with the key's multipliers.
        Returns a float64 scratch buffer (one per output width): use it before the next
        _lin of that width."""
        w = self.p[key]
        shape = x.shape[:-1] + w.shape[1:]
        acc = _mm(x, w, xmax, out=self._buf(f"acc{w.shape[1]}", shape, torch.float32))
        out = acc if acc.dtype == torch.float64 else self._buf(f"lin{w.shape[1]}", shape, torch.float64)
        return self._rq(acc, self.r[key], out)

    def _norm(self, res: torch.Tensor, site: str) -> torch.Tensor:
        """RMSNorm to int8 with per-channel steps; gains live in the next weights.
        res * res is exact in float64. Returns a float32 scratch buffer."""
        sq = torch.mul(res, res, out=self._buf("nsq", res.shape, torch.float64))
        y = torch.mul(res, self.inv[site], out=self._buf("ny", res.shape, torch.float64))
        # 0.5 + (res * inv) / rms: addcdiv with value 1 is exactly these two roundings
        y = torch.addcdiv(self.half, y, self._rms(sq), out=y).floor_()
        return self._f32("nx", y.clamp_(-127, 127))

    def _rms(self, sq: torch.Tensor) -> torch.Tensor:
        """max(1, isqrt(sum(sq) // d_model)) over the last dim, as float64.

        On a CPU, when every row sum is below 2**52, float64 does it exactly in fewer
        steps: a sum of non-negative integers whose total is below 2**53 is exact in any
        order, x // d is exact, and floor(sqrt(n)) is isqrt(n) for n < 2**52 (sqrt(m*m - 1)
        is further than half a unit in the last place from m). Otherwise, and on GPUs
        (where the check would wait for the device), the sum is taken in int64."""
        if self.device.type == "cpu":
            ss = sq.sum(-1, keepdim=True)
            if ss.max().item() < 2.0 ** 52:
                q = torch.div(ss, self.width, rounding_mode="floor")
                return q.sqrt_().floor_().clamp_min_(1)
        ss = self._buf("nsqi", sq.shape, torch.long).copy_(sq).sum(-1, keepdim=True)
        return _isqrt(torch.div(ss, self.cfg.d_model, rounding_mode="floor")).clamp_min(1).double()

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
        """q (S, C, H*hd); K (S, kv, hd, Kn) float32 (keys stored transposed: faster for
        the small step products, docs/performance.md); V (S, kv, Kn, hd) float32 when weight_split
        allows, else float64 (see new_cache); bias from _alibi -> (S, C, H*hd) int8 values.

        Weights e come from an integer exp table (<= 2**13); e @ V and sum(e) are exact in
        float64 (for float32 V, in two float32 parts: _weigh_parts). Each output is
        round(e @ V * m / 2**shift / sum(e)), computed as fixed single IEEE-754 operations
        (|e @ V| * m < 2**52, so the multiply is exact): correctly rounded, so the same
        everywhere."""
        c = self.cfg
        S, C, _ = q.shape
        G, kv, hd = self.n_rep, c.n_kv_head, c.head_dim
        qh = q.view(S, C, kv, G, hd).permute(0, 2, 3, 1, 4).reshape(S, kv, G * C, hd)
        shape = (S, kv, G * C, K.shape[3])
        z = torch.matmul(qh, K, out=self._buf("z", shape, torch.float32))
        z.mul_(self.p[f"l{l}.qk"]).floor_().sub_(bias)  # exact: |q.k| <= hd * 127 * 127 < 2**24
        top = z.amax(-1, keepdim=True)
        torch.sub(top, z, out=z).clamp_(max=self.att_exp.numel() - 1)
        idx = self._buf("idx", shape, torch.int32).copy_(z)
        if V.dtype == torch.float32:
            ev, ssum = self._weigh_parts(idx.view(-1), V, shape)
        else:
            e = torch.index_select(self.att_exp, 0, idx.view(-1),
                                   out=self._buf("e", (idx.numel(),), torch.float64)).view(shape)
            ev = torch.matmul(e, V, out=self._buf("ev", shape[:-1] + V.shape[-1:], torch.float64))
            ssum = e.sum(-1, keepdim=True)
        o = self._buf("o64", shape[:-1] + (hd,), torch.float64)
        o = torch.addcdiv(self.half, ev.mul_(self.r[f"l{l}.o_in"]), ssum, out=o).floor_()
        o = o.clamp_(-127, 127).view(S, kv, G, C, hd).permute(0, 3, 1, 2, 4)
        return self._buf("o", (S, C, kv, G, hd), torch.float32).copy_(o).view(S, C, -1)

    def _weigh_parts(self, idx: torch.Tensor, V: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """(e @ V, sum(e)) in float64 for float32 V, from the weights' two float32 parts
        e = hi * 2**b + lo: each part's products sum exactly in float32 (weight_split),
        and hi_sum * 2**b + lo_sum is exact in float64."""
        b, hi, lo = self.att_parts
        out = shape[:-1] + V.shape[-1:]

        def weigh(tab: torch.Tensor, part: str) -> tuple[torch.Tensor, torch.Tensor]:
            e = torch.index_select(tab, 0, idx, out=self._buf(part, (idx.numel(),), torch.float32)).view(shape)
            return torch.matmul(e, V, out=self._buf(part + "v", out, torch.float32)), e.sum(-1, keepdim=True)

        (hv, hs), (lv, ls) = weigh(hi, "ehi"), weigh(lo, "elo")
        ev = self._buf("ev", out, torch.float64).copy_(hv).mul_(2.0 ** b).add_(lv)
        return ev, hs.double().mul_(2.0 ** b).add_(ls)

    def _qkv(self, l: int, res: torch.Tensor):
        y = self._lin(f"l{l}.wqkv", self._norm(res, f"l{l}.n1")).clamp_(-127, 127)
        return self._f32("qkv", y).split(self.split, -1)

    def _finish_layer(self, l: int, res: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """res is updated in place (callers pass a tensor of their own)."""
        res += self._lin(f"l{l}.wo", o)
        a = self._lin(f"l{l}.w1", self._norm(res, f"l{l}.n2")).clamp_(0, 4095)
        h = self._rq(a.mul_(a), self.r[f"l{l}.sq"], a).clamp_(0, (1 << MLP_BITS) - 1)
        return res.add_(self._lin(f"l{l}.w2", self._f32("h", h), (1 << MLP_BITS) - 1))

    def _freqs(self, res: torch.Tensor) -> torch.Tensor:
        """Final norm + head -> integer frequencies (.., 256), each in [1, 2**16], float32."""
        z = self._lin("head", self._norm(res, "nf"))
        tab = self.p["out_exp"]
        top = z.amax(-1, keepdim=True)
        return tab[torch.sub(top, z, out=z).clamp_(max=tab.numel() - 1).int()]

    # ---- the two paths ---------------------------------------------------------------
    def new_cache(self, S: int, ring: bool) -> Cache:
        """Empty caches for S streams: a ring of `context` slots (decoding) or none yet
        (forward_chunk grows it); float32 keys and self.vtype values."""
        c = self.cfg
        n = c.context if ring else 0
        pos = torch.full((n,), -(1 << 40), dtype=torch.long, device=self.device)
        kshape = (S, c.n_kv_head, c.head_dim, n)  # keys transposed, see _attend
        vshape = (S, c.n_kv_head, n, c.head_dim)
        return Cache([torch.zeros(kshape, device=self.device, dtype=torch.float32)
                      for _ in range(c.n_layer)],
                     [torch.zeros(vshape, device=self.device, dtype=self.vtype)
                      for _ in range(c.n_layer)], pos)

    @torch.no_grad()
    def forward_chunk(self, tokens: torch.Tensor, cache: Cache) -> torch.Tensor:
        """tokens (S, C) at positions cache.t .. cache.t+C-1 -> freqs (S, C, 256) float32.
        Keeps the last context-1 positions in cache (grown by concatenation)."""
        c = self.cfg
        S, C = tokens.shape
        qpos = torch.arange(cache.t, cache.t + C, device=self.device)
        kpos = torch.cat([cache.pos, qpos])
        keep = c.context - 1
        bias = self._alibi(qpos, kpos)
        res = self.emb[tokens]
        for l in range(c.n_layer):
            q, k, v = self._qkv(l, res)
            K = torch.cat([cache.k[l], k.reshape(S, C, c.n_kv_head, c.head_dim).permute(0, 2, 3, 1)], 3)
            vn = v.reshape(S, C, c.n_kv_head, c.head_dim).transpose(1, 2).to(self.vtype)
            V = torch.cat([cache.v[l], vn], 2)
            res = self._finish_layer(l, res, self._attend(l, q, K, V, bias))
            cache.k[l], cache.v[l] = K[..., -keep:], V[:, :, -keep:]
        cache.pos = kpos[-keep:]
        cache.t += C
        return self._freqs(res)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, cache: Cache) -> torch.Tensor:
        """tokens (S,) at position cache.t -> freqs (S, 256); ring-buffer cache of size context."""
        slot = cache.t % self.cfg.context
        cache.pos[slot] = cache.t
        cache.t += 1
        return self._step(tokens, cache, cache.pos[slot:slot + 1], slot)

    @torch.no_grad()
    def step_on_device(self, tokens: torch.Tensor, cache: Cache, t: torch.Tensor) -> torch.Tensor:
        """step at the position held in t (a (1,) int64 tensor on the device, incremented
        here), with no host value in the computation: the same operations every time, so
        a CUDA graph can capture it once and replay it (tzip/engine/graph.py)."""
        slot = torch.remainder(t, self.cfg.context)
        cache.pos.index_copy_(0, slot, t)
        out = self._step(tokens, cache, t, slot)
        t.add_(1)
        return out

    def _step(self, tokens: torch.Tensor, cache: Cache, qpos: torch.Tensor,
              slot: int | torch.Tensor) -> torch.Tensor:
        """The step's layers: keys and values written to the cache's slot (an int, or a
        (1,) tensor of it), the query at position qpos attending over the ring."""
        c = self.cfg
        S = tokens.shape[0]
        bias = self._alibi(qpos, cache.pos)
        res = self.emb[tokens[:, None]]
        for l in range(c.n_layer):
            q, k, v = self._qkv(l, res)
            if isinstance(slot, int):
                cache.k[l][..., slot] = k.reshape(S, c.n_kv_head, c.head_dim)
                cache.v[l][:, :, slot] = v.reshape(S, c.n_kv_head, c.head_dim)
            else:
                cache.k[l].index_copy_(3, slot, k.reshape(S, c.n_kv_head, c.head_dim, 1))
                cache.v[l].index_copy_(2, slot, v.reshape(S, c.n_kv_head, 1, c.head_dim).to(self.vtype))
            res = self._finish_layer(l, res, self._attend(l, q, cache.k[l], cache.v[l], bias))
        return self._freqs(res)[:, 0]


@contextmanager
def step_threads(device: torch.device, streams: int):
    """Small CPU steps are dominated by thread hand-offs: run them on one thread (8 streams:
    6.0 -> 3.9 ms per step on 2 cores; TUNING["torch_one_thread_below"]). Results are
    unaffected."""
    before = torch.get_num_threads()
    if device.type == "cpu" and streams < TUNING["torch_one_thread_below"]:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchScorer:
    """Reference.forward_chunk behind the Scorer interface (numpy in, numpy out)."""
    name = "torch"

    def __init__(self, engine: Reference):
        self.engine = engine

    def new_state(self, streams: int) -> Cache:
        return self.engine.new_cache(streams, ring=False)

    def __call__(self, tokens: np.ndarray, state: Cache) -> np.ndarray:
        e = self.engine
        return e.forward_chunk(torch.from_numpy(tokens).to(e.device), state).cpu().numpy()


class TorchStepper:
    """Reference.step behind the Stepper interface (numpy in, numpy out)."""
    name = "torch"

    def __init__(self, engine: Reference):
        self.engine = engine

    def new_state(self, streams: int) -> Cache:
        return self.engine.new_cache(streams, ring=True)

    def threads(self, streams: int):
        return step_threads(self.engine.device, streams)

    def __call__(self, tokens: np.ndarray, state: Cache) -> np.ndarray:
        e = self.engine
        return e.step(torch.from_numpy(tokens).to(e.device), state).cpu().numpy()

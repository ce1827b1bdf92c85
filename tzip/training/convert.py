"""Float model -> integer model: calibration, int8 weights, fixed-point multipliers.

    python -m tzip.training.convert RUN_DIR OUT.npz --name NAME [--data PATH ...]

Calibration and the quantisation cost use the held-out text of every kind the run
trained on (its meta names the files), so activations of code or logs are not clipped.
"""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ..engine.reference import Reference
from ..engine.weights import Weights
from ..model.config import BOS
from ..model.intmodel import (ATT_EXP_ONE, MLP_BITS, MULT_BITS, NORM_SHIFT, OUT_ONE, RES_BITS, UNITS,
                              IntModel, storage_array)
from .net import ByteTransformer, alibi_bias, alibi_slopes


def _fixed(scale, bits: int = MULT_BITS) -> tuple[torch.Tensor, int]:
    """Positive scale(s) -> (int64 multipliers, shift) with the largest multiplier < 2**bits."""
    s = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    shift = bits - 1 - math.ceil(math.log2(s.max()))
    shift = max(1, min(shift, 62 - 26))  # x * mult must stay below 2**62 for |x| < 2**26
    mult = np.maximum(np.round(s * 2.0 ** shift), 1).astype(np.int64)
    return torch.from_numpy(mult), shift


def _quant_rows(w: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """(out, in) float weight -> ((in, out) int8-valued float32 for x @ w, per-row scales)."""
    w = w.double()
    s = (w.abs().amax(1) / 127).clamp_min(1e-12)
    q = torch.round(w / s[:, None]).clamp(-127, 127)
    return q.t().float().contiguous(), s.numpy()


@torch.no_grad()
def calibrate(model: ByteTransformer, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Maxima of every quantised activation, over windows tokens (B, T)."""
    model = model.float().eval()
    c = model.cfg
    T = tokens.shape[1]
    bias = alibi_bias(c.n_head, T, T, c.context)
    st: dict[str, torch.Tensor] = {}

    def upd(key, v):
        st[key] = v if key not in st else torch.maximum(st[key], v)

    def normed(x, key):
        n = x / x.pow(2).mean(-1, keepdim=True).sqrt()
        upd(key, n.abs().flatten(0, -2).amax(0))
        return n

    x = model.emb(tokens)
    upd("res", x.abs().max())
    for l, b in enumerate(model.blocks):
        a = b.attn
        h = normed(x, f"l{l}.n1") * b.norm1.weight
        B = h.shape[0]
        q = a.wq(h).view(B, T, c.n_head, c.head_dim).transpose(1, 2)
        k = a.wk(h).view(B, T, c.n_kv_head, c.head_dim).transpose(1, 2)
        v = a.wv(h).view(B, T, c.n_kv_head, c.head_dim).transpose(1, 2)
        for n, t in (("q", q), ("k", k), ("v", v)):
            upd(f"l{l}.{n}", t.abs().max())
        rep = c.n_head // c.n_kv_head
        att = torch.softmax(q @ k.repeat_interleave(rep, 1).transpose(-1, -2) / math.sqrt(c.head_dim)
                            + bias, -1)
        o = (att @ v.repeat_interleave(rep, 1)).transpose(1, 2).reshape(B, T, -1)
        upd(f"l{l}.o", o.abs().max())
        x = x + a.wo(o)
        upd("res", x.abs().max())
        h = normed(x, f"l{l}.n2") * b.norm2.weight
        r = torch.relu(b.mlp.w1(h))
        upd(f"l{l}.h", r.flatten(0, -2).amax(0))
        x = x + b.mlp.w2(r.square())
        upd("res", x.abs().max())
    normed(x, "nf")
    model.float()
    return st


@torch.no_grad()
def convert(model: ByteTransformer, calib_tokens: torch.Tensor, name: str,
            info: dict | None = None) -> IntModel:
    """Quantise a trained float model using activation maxima measured on calib_tokens."""
    st = calibrate(model, calib_tokens)
    model = model.double()
    c = model.cfg
    P: dict[str, torch.Tensor] = {}
    S: dict[str, int] = {"norm": NORM_SHIFT}
    s_r = float(st["res"]) / 2 ** RES_BITS
    P["emb"] = torch.round(model.emb.weight / s_r).long()

    def norm_site(key: str, gain: torch.Tensor) -> torch.Tensor:
        """Per-channel int8 steps of a norm's output; returns gain * step, to fold forward."""
        step = (st[key].clamp_min(1e-3) / 127).numpy()
        inv = np.round(2.0 ** NORM_SHIFT / step).astype(np.int64)
        P[key + ".inv"] = torch.from_numpy(inv)
        return gain * torch.from_numpy(2.0 ** NORM_SHIFT / inv)

    def linear(key: str, w: torch.Tensor, in_scale, out_scale) -> None:
        """Store int8 weights and the multiplier taking acc to units of out_scale."""
        wq, s = _quant_rows(w * torch.as_tensor(in_scale, dtype=torch.float64))
        P[key] = wq
        P[key + ".m"], S[key] = _fixed(s / np.broadcast_to(np.asarray(out_scale, np.float64), s.shape))

    for l, b in enumerate(model.blocks):
        a = b.attn
        fold = norm_site(f"l{l}.n1", b.norm1.weight)
        sq, sk, sv = (float(st[f"l{l}.{n}"]) / 127 for n in "qkv")
        w = torch.cat([a.wq.weight, a.wk.weight, a.wv.weight])  # one matmul for q, k and v
        steps = np.repeat([sq, sk, sv], [a.wq.out_features, a.wk.out_features, a.wv.out_features])
        linear(f"l{l}.wqkv", w, fold, steps)
        P[f"l{l}.qk"] = torch.tensor(sq * sk * UNITS / math.sqrt(c.head_dim), dtype=torch.float32)
        so = float(st[f"l{l}.o"]) / 127
        P[f"l{l}.o_in"], S[f"l{l}.o_in"] = _fixed(sv / so)
        linear(f"l{l}.wo", a.wo.weight, so, s_r)
        fold = norm_site(f"l{l}.n2", b.norm2.weight)
        s_a = (st[f"l{l}.h"].clamp_min(1e-6) / 4095).numpy()
        linear(f"l{l}.w1", b.mlp.w1.weight, fold, s_a)
        hmax = (1 << MLP_BITS) - 1
        m, sh = _fixed(hmax / 4095 ** 2)
        P[f"l{l}.sq"], S[f"l{l}.sq"] = m, sh
        c2 = torch.from_numpy(s_a ** 2) * 2.0 ** sh / float(m)  # real value of one unit of h
        linear(f"l{l}.w2", b.mlp.w2.weight, c2, s_r)
    fold = norm_site("nf", model.norm.weight)
    linear("head", model.head.weight, fold, 1.0 / UNITS)
    P["alibi"] = torch.tensor([round(s * UNITS) for s in alibi_slopes(c.n_head)], dtype=torch.long)
    i = torch.arange(UNITS * 12, dtype=torch.float64)
    P["att_exp"] = torch.cat([torch.round(ATT_EXP_ONE * torch.exp(-i / UNITS)), torch.zeros(1)])
    n_out = int(UNITS * math.log(OUT_ONE)) + 2
    i = torch.arange(n_out, dtype=torch.float64)
    P["out_exp"] = torch.round(OUT_ONE * torch.exp(-i / UNITS)).clamp_min(1).float()
    model.float()
    P = {k: (v.float() if v.dtype == torch.float64 and k != "att_exp" else v) for k, v in P.items()}
    return IntModel(c, {k: storage_array(k, v.numpy()) for k, v in P.items()}, S, name, info or {})


def calibration_windows(text: np.ndarray, T: int, n: int = 32) -> torch.Tensor:
    """n evenly spaced windows of T bytes from text (the training run's validation slice)."""
    starts = np.linspace(0, len(text) - T - 1, n).astype(np.int64)
    return torch.from_numpy(np.stack([text[s:s + T] for s in starts]).astype(np.int64))


@torch.no_grad()
def quantisation_cost(model: ByteTransformer, im: IntModel, text: np.ndarray, streams: int = 8,
                      length: int = 2048, every: int = 16) -> tuple[float, float]:
    """(float bpb, integer-engine bpb) on the same positions of the same streams of text,
    each stream starting with BOS as a compressed stream does: the cost of quantising.
    Past the first context, every `every`-th position is scored (a float pass per scored
    position is slow on a CPU); the integer engine scores the same ones."""
    c = model.cfg.context
    win = calibration_windows(text, length, streams)
    inp = torch.cat([torch.full((streams, 1), BOS), win[:, :-1]], 1)
    pos = [t for t in range(length) if t < c or t % every == 0]
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fm = copy.deepcopy(model).float().eval().to(dev)  # the caller's model stays as it was
    inp, win = inp.to(dev), win.to(dev)
    bits_f = 0.0
    for t in pos:
        logits = fm(inp[:, max(0, t + 1 - c):t + 1])[:, -1]
        bits_f += torch.nn.functional.cross_entropy(logits, win[:, t], reduction="sum").item()
    del fm
    e = Reference(Weights.from_model(im), dev)
    cache = e.new_cache(streams, ring=False)
    f = torch.cat([e.forward_chunk(inp[:, t:t + 256], cache) for t in range(0, length, 256)], 1)
    f = f[:, pos].double()
    p = f.gather(-1, win[:, pos, None]).squeeze(-1) / f.sum(-1)
    n = streams * len(pos)
    return bits_f / math.log(2) / n, -p.log2().sum().item() / n


def main(argv: list[str] | None = None) -> int:
    """python -m tzip.training.convert RUN_DIR OUT.npz --name NAME: float training output -> int model."""
    import argparse
    from .mix import MixError, load_mix
    from .train import load_float, train_dir
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--data", nargs="+", default=None, metavar="PATH[=WEIGHT]",
                    help="the run's training text, for calibration on its held-out part "
                         "(default: the files the run's meta names, else the shared corpus)")
    a = ap.parse_args(argv)
    model, meta = load_float(a.run)
    specs = a.data or [k["path"] for k in meta.get("data", [])] or [train_dir()]
    try:
        kinds = load_mix(specs, meta.get("train", {}).get("val_bytes_per_file", 262144), model.cfg.context + 1)
    except (MixError, FileNotFoundError) as e:
        print(f"convert: {e}", file=sys.stderr)
        return 2
    val = np.concatenate([k.val for k in kinds])
    calib = calibration_windows(val, model.cfg.context)
    im = convert(model, calib, a.name, info={"training": meta})
    fb, ib = quantisation_cost(model, im, val)
    im.info["quantisation"] = {"float_bpb": round(fb, 4), "integer_bpb": round(ib, 4),
                               "sample": "8 validation streams x 2,048 bytes"}
    im.save(a.out)
    print(f"{a.out}: {im.num_params():,} weights, id {im.digest.hex()[:16]}; validation sample: "
          f"float {fb:.4f} bpb, integer engine {ib:.4f} bpb ({100 * (ib / fb - 1):+.1f}%)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

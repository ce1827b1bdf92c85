"""Integer model -> float model: the inverse of tzip/training/convert.py, up to rounding.

The float checkpoints of the shipped models were not kept (only their integer files are
in models/), so a fine-tune of tzip-small starts from its integer weights made float
again. convert.py folds every norm gain and every activation scale into the int8 weights
and their per-row multipliers; most of those scales are not stored, but each one they
leave undetermined is a symmetry of the network, so any choice gives the same function:

- the residual stream's scale (every read of it goes through an RMSNorm): chosen so the
  embedding's RMS is 1;
- each norm's gain (folded into the next weights): 1;
- the product of the query and key scales is stored (`qk`); they are split evenly;
- the value scale (attention is linear in v, the output projection undoes it): v's
  calibrated maximum is 1; likewise each squared-ReLU channel's maximum is 1 (relu is
  positively homogeneous, w2 undoes it).

So the float model computes what the integer one does, without its rounding and clipping
(tests/test_training_mix.py checks that both score the same text alike).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..model.intmodel import NORM_SHIFT, UNITS, IntModel
from .net import ByteTransformer


def _rows(im: IntModel, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(out, in) int8 values as float64 and each output row's multiplier as a real number."""
    w = im.arrays[key].astype(np.float64).T
    m = im.arrays[key + ".m"].astype(np.float64) / 2.0 ** im.shifts[key]
    return w, np.broadcast_to(m, (w.shape[0],))


def _norm_step(im: IntModel, key: str) -> np.ndarray:
    """The per-channel int8 step of a norm's output (convert's norm_site)."""
    return 2.0 ** NORM_SHIFT / im.arrays[key + ".inv"].astype(np.float64)


@torch.no_grad()
def float_model(im: IntModel) -> ByteTransformer:
    """A float32 ByteTransformer computing what the integer model computes."""
    c = im.cfg
    emb = im.arrays["emb"].astype(np.float64)
    s_r = 1.0 / math.sqrt((emb ** 2).mean())
    params: dict[str, np.ndarray] = {"emb.weight": emb * s_r}
    nq, nk = c.n_head * c.head_dim, c.n_kv_head * c.head_dim
    for l in range(c.n_layer):
        pre = f"blocks.{l}."
        step = _norm_step(im, f"l{l}.n1")
        sq = sk = math.sqrt(float(im.arrays[f"l{l}.qk"].item()) * math.sqrt(c.head_dim) / UNITS)
        sv = 1 / 127
        out = np.repeat([sq, sk, sv], [nq, nk, nk])
        w, m = _rows(im, f"l{l}.wqkv")
        w = w * (m * out)[:, None] / step[None, :]
        params[pre + "attn.wq.weight"], params[pre + "attn.wk.weight"], params[pre + "attn.wv.weight"] = \
            w[:nq], w[nq:nq + nk], w[nq + nk:]
        so = sv / (float(im.arrays[f"l{l}.o_in"].item()) / 2.0 ** im.shifts[f"l{l}.o_in"])
        w, m = _rows(im, f"l{l}.wo")
        params[pre + "attn.wo.weight"] = w * (m * s_r)[:, None] / so
        step = _norm_step(im, f"l{l}.n2")
        s_a = 1 / 4095
        w, m = _rows(im, f"l{l}.w1")
        params[pre + "mlp.w1.weight"] = w * (m * s_a)[:, None] / step[None, :]
        c2 = s_a ** 2 * 2.0 ** im.shifts[f"l{l}.sq"] / float(im.arrays[f"l{l}.sq"].item())
        w, m = _rows(im, f"l{l}.w2")
        params[pre + "mlp.w2.weight"] = w * (m * s_r)[:, None] / c2
        params[pre + "norm1.weight"] = params[pre + "norm2.weight"] = np.ones(c.d_model)
    w, m = _rows(im, "head")
    params["head.weight"] = w * (m / UNITS)[:, None] / _norm_step(im, "nf")[None, :]
    params["norm.weight"] = np.ones(c.d_model)
    model = ByteTransformer(c)
    model.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in params.items()})
    return model

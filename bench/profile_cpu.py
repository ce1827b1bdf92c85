"""Where a CPU compression and decompression spend their time (docs/performance.md).

    python -m bench.profile_cpu FILE [--bytes N] [--model tzip-small] [--what both]

One process: start-up (import, model load, the compiled loops' cache load), then
tzip.compress and tzip.decompress of the file's first N bytes, each under cProfile and
with per-thread CPU timers around the engine's phases (products, attention, norms and
requantisation, head), so every share is of CPU seconds, all threads together. Then
the multiply-adds the model did per CPU second of its products, and of the whole run.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import threading
import time
from collections import defaultdict

T: dict[str, float] = defaultdict(float)
_lock = threading.Lock()


def timed(name: str, fn):
    """fn, its thread CPU time added to T[name] (the compiled loops release the GIL, so a
    thread's CPU time is its own)."""
    def wrapper(*a, **k):
        t = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            dt = time.thread_time() - t
            with _lock:
                T[name] += dt
    wrapper.__wrapped__ = fn
    return wrapper


def instrument_scorer() -> None:
    """Timers around the compiled pass's phases (tzip/engine/compiled/score.py)."""
    from tzip.engine.compiled import score
    score.norm = timed("norms+requant", score.norm)
    score.residual = timed("norms+requant", score.residual)
    score.mlp = timed("norms+requant", score.mlp)
    score._qkv = timed("norms+requant", score._qkv)
    score.head = timed("head (exp table)", score.head)
    # attention: both products and the weighing between them (the vnni scorer fuses them)
    for cls in (score.JitScorer, score.VnniScorer):
        cls._acc = timed("products (weights)", cls._acc)
        cls._attention = timed("attention (products, weighing)", cls._attention)
    # the rest of a part's time: the copies of the cached keys and values, Python
    score.JitScorer._part = timed("model pass (all)", score.JitScorer._part)


def instrument_rest() -> None:
    """Timers around the compiled decoding step (each part's one call) and the context
    mixer with its coder (encode and decode calls)."""
    from tzip import cm
    from tzip.engine.compiled import step
    step._step = timed("model step (compiled)", step._step)
    step._step_vnni = timed("model step (compiled)", step._step_vnni)
    cm.Encoder.encode = timed("context mixer + coder", cm.Encoder.encode)
    cm.Decoder.decode = timed("context mixer + coder", cm.Decoder.decode)


def step_phases(engine, S: int, steps: int = 300, backend: str = "numba") -> dict[str, float]:
    """The compiled step's kernels called one by one for S streams (one part), as _step
    (or _step_vnni) calls them, timed: CPU seconds per step of each phase. The calls add
    the dispatcher's few microseconds each, which the one compiled call does not pay."""
    import numpy as np
    from tzip.engine.compiled import kernels as k, step as st
    stepper = engine.backend(backend, "stepper")
    w = stepper.w
    state = stepper.new_state(S)
    rng = np.random.default_rng(0)
    for t in range(300):  # a full window of keys
        stepper(rng.integers(0, 256, S), state)
    K, V = state.k, state.v
    d = engine.cfg.d_model
    tok = rng.integers(0, 256, S)
    res = engine.weights.emb[tok].copy()
    x = np.empty((S, d), np.float32)
    acc_qkv = np.empty((S, w.wqkv.shape[1]), np.float64)
    o = np.empty((S, w.wo.shape[2]), np.float32)
    acc_d = np.empty((S, d), np.float64)
    acc_h = np.empty((S, w.w1.shape[1]), np.float64)
    h = np.empty((S, w.w1.shape[1]), np.float32)
    acc_out = np.empty((S, 256), np.float64)
    out = np.empty((S, 256), np.float32)
    slot, t = state.t % engine.cfg.context, state.t
    P: dict[str, float] = defaultdict(float)
    steps += 1  # the first, untimed: a kernel's first call loads its cached code
    timing = [False]

    def run(name, fn, *a):
        c = time.thread_time()
        fn(*a)
        if timing[0]:
            P[name] += time.thread_time() - c

    if backend == "vnni":
        m = stepper._mats
        xb = np.zeros((S, m[0].shape[1] * 4), np.uint8)
        ob = np.zeros((S, m[2].shape[1] * 4), np.uint8)
        hb = np.zeros((S, m[6].shape[1] * 2), np.int16)
        ctx = state.pos.shape[0]
        for _ in range(steps):
            bias = st._bias_padded(t, state.pos, w.slopes, K[0].shape[3])
            for l in range(engine.cfg.n_layer):
                run("norms+requant", k.norm, res, w.n1[l], x)
                run("products (weights)", st._product, x, xb, m[0][l], m[1][l], acc_qkv)
                run("attention", st._attend_vnni, acc_qkv, w.r_qkv[l], slot, ctx, bias, K[l], V[l],
                    w.qk[l], w.att_exp, w.r_o[l], o)
                run("products (weights)", st._product, o, ob, m[2][l], m[3][l], acc_d)
                run("norms+requant", k.residual, res, acc_d, w.r_wo[l])
                run("norms+requant", k.norm, res, w.n2[l], x)
                run("products (weights)", st._product, x, xb, m[4][l], m[5][l], acc_h)
                run("norms+requant", k.mlp, acc_h, w.r1[l], w.r_sq[l], 4095.0, h)
                run("products (weights)", st._product16, h, hb, m[6][l], m[7][l], acc_d)
                run("norms+requant", k.residual, res, acc_d, w.r2[l])
                np.clip(res, -1e6, 1e6, out=res)
            run("norms+requant", k.norm, res, w.nf, x)
            run("products (weights)", st._product, x, xb, m[8], m[9], acc_out)
            run("head (exp table)", k.head, acc_out, w.r_head, w.out_exp, out)
            timing[0] = True
        return {k_: v / (steps - 1) for k_, v in P.items()}
    for _ in range(steps):
        bias = st._bias(t, state.pos, w.slopes, K[0].shape[3])
        for l in range(engine.cfg.n_layer):
            run("norms+requant", k.norm, res, w.n1[l], x)
            run("products (weights)", st.matmul, x, w.wqkv[l], w.pieces[0], acc_qkv)
            run("attention", st._attend, acc_qkv, w.r_qkv[l], slot, bias, K[l], V[l], w.qk[l],
                w.att_exp, w.keys_per_sum, w.r_o[l], o)
            run("products (weights)", st.matmul, o, w.wo[l], w.pieces[1], acc_d)
            run("norms+requant", k.residual, res, acc_d, w.r_wo[l])
            run("norms+requant", k.norm, res, w.n2[l], x)
            run("products (weights)", st.matmul, x, w.w1[l], w.pieces[2], acc_h)
            run("norms+requant", k.mlp, acc_h, w.r1[l], w.r_sq[l], 4095.0, h)
            run("products (weights)", st.matmul, h, w.w2[l], w.pieces[3], acc_d)
            run("norms+requant", k.residual, res, acc_d, w.r2[l])
            np.clip(res, -1e6, 1e6, out=res)
        run("norms+requant", k.norm, res, w.nf, x)
        run("products (weights)", st.matmul, x, w.head, w.pieces[4], acc_out)
        run("head (exp table)", k.head, acc_out, w.r_head, w.out_exp, out)
        timing[0] = True
    return {k_: v / (steps - 1) for k_, v in P.items()}


def macs(cfg) -> tuple[int, int]:
    """Multiply-adds per byte: (weights, attention over a full window)."""
    d, L, H, kv, f = cfg.d_model, cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.mlp_mult * cfg.d_model
    hd = d // H
    weights = L * (d * (H + 2 * kv) * hd + H * hd * d + d * f + f * d) + d * 256
    attention = L * 2 * H * hd * cfg.context
    return weights, attention


def top(prof: cProfile.Profile, n: int = 18) -> str:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(n)
    return s.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--bytes", type=int, default=200_000)
    ap.add_argument("--model", default="tzip-small")
    ap.add_argument("--what", choices=("compress", "decompress", "both"), default="both")
    ap.add_argument("--cprofile", action="store_true", help="print cProfile's top functions")
    args = ap.parse_args()
    c0, w0 = time.process_time(), time.perf_counter()
    import numpy as np  # noqa: F401
    import tzip
    c1 = time.process_time()
    comp, dec = tzip.Compressor(args.model, device="cpu"), tzip.Decompressor(args.model, device="cpu")
    c2 = time.process_time()
    from tzip.engine import compiled  # noqa: F401  (numba import)
    from tzip.engine.compiled import score, step  # noqa: F401  (cache load of the kernels)
    from tzip.cm import jit  # noqa: F401
    c3 = time.process_time()
    print(f"start-up CPU s: import tzip {c1 - c0:.2f}, model {c2 - c1:.2f}, "
          f"numba modules {c3 - c2:.2f}")
    data = open(args.file, "rb").read()[:args.bytes]
    wmac, amac = macs(comp.engine.cfg)
    instrument_scorer()
    instrument_rest()
    blob = None
    for what in ("compress", "decompress"):
        if args.what not in (what, "both"):
            continue
        T.clear()
        prof = cProfile.Profile()
        t, w = time.process_time(), time.perf_counter()
        if what == "compress":
            prof.enable()
            blob = comp.compress(data)
            prof.disable()
        else:
            blob = blob or comp.compress(data)
            t, w = time.process_time(), time.perf_counter()
            prof.enable()
            assert dec.decompress(blob) == data
            prof.disable()
        cpu, wall = time.process_time() - t, time.perf_counter() - w
        st = pstats.Stats(prof)
        own = {f"{k[0].split('/')[-1]}:{k[2]}": v[3] for k, v in st.stats.items()}  # cumulative
        tot = {f"{k[0].split('/')[-1]}:{k[2]}": v[2] for k, v in st.stats.items()}  # own time
        print(f"\n{what}: {len(data)} B, {cpu:.2f} CPU s, {wall:.2f} wall s, "
              f"{len(data) / cpu / 1e3:.1f} KB per CPU s")
        if "model pass (all)" in T:
            T["copies, Python in the pass"] = T.pop("model pass (all)") - sum(
                v for k, v in T.items() if k not in ("context mixer + coder", "model pass (all)"))
        for k, v in sorted(T.items(), key=lambda kv: -kv[1]):
            print(f"  {k:28s} {v:7.2f} s  {100 * v / cpu:5.1f}%")
        for key in ("step.py:__call__", "__init__.py:decode", "__init__.py:encode", "score.py:__call__"):
            if key in own:
                print(f"  cProfile cumulative {key:24s} {own[key]:7.2f} s (main thread)")
        print(f"  model multiply-adds: {(wmac + amac) * len(data) / 1e9:.2f} G "
              f"({wmac} weights + {amac} attention per byte at a full window) = "
              f"{(wmac + amac) * len(data) / cpu / 1e9:.1f} G per CPU s")
        if what == "decompress":
            for S in (8, 16):
                e = comp.engine
                P = step_phases(e, S, backend=e.plan.stepper)
                allp = sum(P.values())
                print(f"  one {e.plan.stepper} step of {S} streams, kernels called one by one: "
                      f"{allp * 1e3:.3f} ms")
                for k_, v in sorted(P.items(), key=lambda kv: -kv[1]):
                    print(f"    {k_:26s} {v * 1e3:7.3f} ms {100 * v / allp:5.1f}%")
                wm = wmac * S / P["products (weights)"] / 1e9
                am = amac * S / P["attention"] / 1e9
                print(f"    weights {wm:.1f} G multiply-adds per CPU s, attention {am:.1f} G")
        if args.cprofile:
            print(top(prof))


if __name__ == "__main__":
    main()

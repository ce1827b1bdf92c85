"""The adaptive models: repeats cost little the second time, in any stream; a block's own
statistics are learned; every byte always keeps code space."""
from __future__ import annotations

import itertools

import constriction
import numpy as np
import pytest

from tzip import codec as coder
from tzip.engine import Engine
from tzip.legacy import linear
from tzip.legacy.mixing import Mixer
from tzip.legacy.mixing.counts import INC
from tzip.legacy.mixing.fixedpoint import MAX_W, bit_length


def test_repeat_is_nearly_free(tiny, text):
    """A random-ish tiny model codes fresh text poorly; a second copy rides the match model."""
    e = Engine(tiny)
    x = text[:3000]
    once = linear.encode(e, x, coder.split_streams(len(x), 32, 1))
    twice = linear.encode(e, x + x, coder.split_streams(2 * len(x), 32, 1))
    assert len(twice) < 1.25 * len(once)
    assert linear.decode(e, twice, [2 * len(x)]) == x + x


def test_matches_reach_across_streams(tiny, text):
    """Stream 1's second half repeats what stream 0 coded steps before: found through the
    shared table, and decoded exactly."""
    e = Engine(tiny)
    x, other = text[30000:32000], text[60000:61000]
    lengths = coder.split_streams(4000, 32, 2)
    data = x + other + x[:1000]
    fresh = len(linear.encode(e, x + other + text[90000:91000], lengths))
    payload = linear.encode(e, data, lengths)
    assert len(payload) < 0.85 * fresh
    assert linear.decode(e, payload, lengths) == data


def test_block_statistics_are_learned(tiny):
    """Bytes from a skewed 4-letter source that never repeats long stretches: the tiny
    model knows nothing of it, the count models learn it (2 bits per byte at most would
    be a uniform guess over the 4 letters; the source's entropy is about 1.75)."""
    rng = np.random.default_rng(7)
    data = rng.choice(np.frombuffer(b"acgt", np.uint8), 8000, p=[0.5, 0.25, 0.125, 0.125]).tobytes()
    e = Engine(tiny)
    lengths = coder.split_streams(len(data), 32, 4)
    payload = linear.encode(e, data, lengths)
    assert 8 * len(payload) / len(data) < 2.0
    assert linear.decode(e, payload, lengths) == data


def test_mixture_keeps_every_byte_possible():
    hist = np.zeros((2, 50), dtype=np.int64)
    hist[:, :20] = np.frombuffer(b"abcdabcdabcdabcdabcd" * 2, np.uint8).reshape(2, 20)
    m = Mixer(hist)
    freqs = np.ones((2, 256), dtype=np.float32)
    for t in range(20):
        p = m.mix(t, freqs)
        assert p.shape == (2, 256) and (p > 0).all()
        m.update(t, hist[:, t], np.array([True, True]))
    p = m.mix(20, freqs)
    assert (p.argmax(1) == ord("a")).all()  # the repeat predicts the next byte


def test_confident_mixture_still_codes_every_byte():
    """With every weight at its maximum and a model total near 2**24, the raw mixtures
    reach 2**56: the coder must still get exact integers >= 1 summing below 2**24, so
    that a rare byte (here 255) keeps code space and round-trips."""
    hist = np.zeros((3, 40), dtype=np.int64)
    hist[:, :30] = np.frombuffer(b"xyzxyzxyzx" * 9, np.uint8).reshape(3, 30)
    m = Mixer(hist)
    freqs = np.full((3, 256), 65536, dtype=np.float32)
    freqs[:, 255] = 1
    for t in range(30):
        for part in m.components:
            part.w[:] = MAX_W
        m.mix(t, freqs)
        m.update(t, hist[:, t], np.ones(3, bool))
    p = m.mix(30, freqs)
    assert (p >= 1).all() and np.array_equal(p, np.floor(p)) and (p.sum(1) < 2 ** 24).all()
    family = constriction.stream.model.Categorical(perfect=False)
    enc = constriction.stream.queue.RangeEncoder()
    sym = np.array([255, 255, 255], dtype=np.int32)
    enc.encode(sym, family, p)
    dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
    assert (dec.decode(family, p) == sym).all()


def test_bit_length_is_exact_near_powers_of_two():
    xs = [0, 1, 2, 3] + [v for k in range(2, 62) for v in ((1 << k) - 1, 1 << k, (1 << k) + 1)]
    got = bit_length(np.array(xs, dtype=np.int64))
    assert got.tolist() == [x.bit_length() for x in xs]


def test_compiled_components_compute_the_same_numbers(text):
    """tzip/legacy/mixing/compiled.py against the numpy components on one block: repeats across streams
    (match model), a row that fills up and is halved (counts), streams that end early."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(3)
    data = np.frombuffer(text[:6000] + b"ab" * 1500 + text[:3000], np.uint8)
    lengths = [3000, 3000, 2500, 2000, 1200]
    hist, mask = coder._layout(data[:sum(lengths)].tobytes(), lengths)
    freqs = rng.integers(1, 1 << 16, (hist.shape[1], hist.shape[0], 256)).astype(np.float32)
    plain, fast = Mixer(hist.copy()), Mixer(hist.copy(), compiled=True)
    passes = Mixer(hist.copy(), compiled=True)  # the encoder's: passes of known bytes
    wants = []
    for t in range(hist.shape[1]):
        wants.append(plain.mix(t, freqs[t]))
        assert np.array_equal(fast.mix(t, freqs[t]), wants[-1]), t
        plain.update(t, hist[:, t], mask[:, t])
        fast.update(t, hist[:, t], mask[:, t])
    t0 = 0
    for c in itertools.cycle([1, 5, 64, 700]):  # passes of 1 to 700 steps, the last short
        if t0 == hist.shape[1]:
            break
        got = passes.mix_coded(t0, np.ascontiguousarray(freqs[t0:t0 + c].transpose(1, 0, 2)), mask)
        assert np.array_equal(got, np.stack(wants[t0:t0 + c])), t0
        t0 += got.shape[0]
    for a, b, c in zip(plain.components, fast.components, passes.components):
        assert np.array_equal(a.w, b.w) and np.array_equal(a.w, c.w)
    ab = ord("a") << 8 | ord("b")  # seen about 1,250 times in stream 2: halved on the way
    assert 0 < plain.components[0].tot[ab] < 1200 * INC


def test_compiled_counts_with_thousands_of_streams_on_one_row():
    """--streams allows 4096: 2,100 streams of one repeated byte add 67,200 to one row per
    step, so a row passes twice the limit (halved once all the same) and a count wraps
    in uint16 as numpy's does."""
    pytest.importorskip("numba")
    hist = np.full((2100, 12), 32, dtype=np.int64)
    hist[::7, 5] = 33
    mask = np.ones_like(hist, dtype=bool)
    freqs = np.full((2100, 256), 7, dtype=np.float32)
    plain, fast = Mixer(hist.copy()), Mixer(hist.copy(), compiled=True)
    for t in range(hist.shape[1]):
        assert np.array_equal(fast.mix(t, freqs), plain.mix(t, freqs)), t
        plain.update(t, hist[:, t], mask[:, t])
        fast.update(t, hist[:, t], mask[:, t])
        for a, b in zip(plain.components[:2], fast.components[:2]):
            assert np.array_equal(a.cnt, b.cnt) and np.array_equal(a.tot, b.tot), t

"""The CM stage (tzip/cm): reference == compiled payloads, round trips, hostile payloads."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tzip.cm import CorruptPayload, Decoder, Encoder, numba_available

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")

TEXT = (b"The quick brown fox jumps over the lazy dog.\n"
        b"id,name,value\n1,alpha,0.5\n2,beta,0.25\n3,gamma,0.125\n"
        b'{"key": "value", "list": [1, 2, 3], "key2": "value"}\n') * 8


def layout(data: bytes, lengths: list[int]) -> np.ndarray:
    hist = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    off = 0
    for i, n in enumerate(lengths):
        hist[i, :n] = np.frombuffer(data[off:off + n], dtype=np.uint8)
        off += n
    return hist


def cut(n: int, S: int) -> list[int]:
    seg = -(-n // S)
    out = [seg] * (n // seg)
    return out + [n % seg] if n % seg else out


def random_freqs(rng, hist: np.ndarray, skew: bool = True) -> np.ndarray:
    """(S, L, 256) random integer frequencies 1..65536; with skew, the true byte often
    gets a large count (a model that is right much of the time)."""
    S, L = hist.shape
    f = rng.integers(1, 65537, size=(S, L, 256)).astype(np.float32)
    if skew:
        hit = rng.random((S, L)) < 0.6
        s, t = np.nonzero(hit)
        f[s, t, :] = rng.integers(1, 200, size=(len(s), 256))
        f[s, t, hist[s, t]] = 65536
    return f


def encode(data_hist, lengths, freqs, passes=64, compiled=True, revision=2) -> bytes:
    enc = Encoder(lengths, data_hist, revision, compiled=compiled)
    L = data_hist.shape[1]
    t0 = 0
    sizes = passes if isinstance(passes, list) else [passes]
    k = 0
    while t0 < L:
        c = min(sizes[k % len(sizes)], L - t0)
        enc.encode(t0, freqs[:, t0:t0 + c])
        t0 += c
        k += 1
    return enc.finish()


def decode(payload, lengths, freqs, compiled=True, revision=2) -> np.ndarray:
    L = max(lengths)
    out = np.zeros((len(lengths), L), dtype=np.int64)
    dec = Decoder(payload, lengths, out, revision, compiled=compiled)
    for t in range(L):
        got = dec.decode(t, freqs[:, t])
        assert np.array_equal(got, out[:, t])
    dec.finish()
    return out


# the reference runs a few hundred bytes per second: small cases
CASES = [  # (name, data, lengths)
    ("one byte", b"A", [1]),
    ("S=1 text", TEXT[:300], [300]),
    ("S=2 unequal", TEXT[:240], [150, 90]),
    ("S=5 text", TEXT[:300], cut(300, 5)),
    ("S=37 text", TEXT[:400], cut(400, 37)),
    ("S=4 ragged", TEXT[:200], [120, 1, 60, 19]),
    ("random bytes", bytes(np.random.default_rng(7).integers(0, 256, 200, dtype=np.uint8)), [80, 120]),
    ("zeros", bytes(200), [100, 100]),
    # field contexts: every separator, ragged cells, a line of more than FIELDS fields
    ("fields", (b"a,bb;c\td|e\n1,22;3\t4|5\n" * 4 + b",".join([b"x"] * 40) + b"\n" + b"y," * 40
                + b"\n,,\n") * 2, [150, 150, 130]),
]


@needs_numba
@pytest.mark.parametrize("revision", [1, 2])
@pytest.mark.parametrize("name,data,lengths", CASES, ids=[c[0] for c in CASES])
def test_reference_equals_compiled_and_round_trips(name, data, lengths, revision):
    rng = np.random.default_rng(len(data))
    hist = layout(data, lengths)
    freqs = random_freqs(rng, hist)
    fast = encode(hist, lengths, freqs, passes=[64, 5, 1, 33], compiled=True, revision=revision)
    ref = encode(hist, lengths, freqs, passes=[7], compiled=False, revision=revision)
    assert fast == ref
    assert np.array_equal(decode(fast, lengths, freqs, compiled=True, revision=revision), hist)
    assert np.array_equal(decode(ref, lengths, freqs, compiled=False, revision=revision), hist)


@needs_numba
def test_revisions_differ_and_do_not_decode_each_other():
    """A block coded with one revision is not silently decoded by the other."""
    hist = layout(TEXT, [len(TEXT)])
    freqs = random_freqs(np.random.default_rng(5), hist)
    r1, r2 = (encode(hist, [len(TEXT)], freqs, revision=r) for r in (1, 2))
    assert r1 != r2
    with pytest.raises((CorruptPayload, AssertionError)):
        assert np.array_equal(decode(r1, [len(TEXT)], freqs, revision=2), hist)


def test_unknown_revision_is_refused():
    with pytest.raises(ValueError, match="revision"):
        Encoder([3], np.zeros((1, 3), dtype=np.int64), 9)


def test_reference_round_trip_flat():
    """Without numba too: flat frequencies, the adaptive models alone."""
    data = TEXT[:100] * 3
    lengths = [120, 120, 60]
    hist = layout(data, lengths)
    freqs = np.ones((3, 120, 256), dtype=np.float32)
    payload = encode(hist, lengths, freqs, compiled=False)
    assert len(payload) < len(data) * 0.7  # it learns the repeated text
    assert np.array_equal(decode(payload, lengths, freqs, compiled=False), hist)


@needs_numba
def test_pass_sizes_do_not_change_the_payload():
    data = TEXT * 4
    lengths = cut(len(data), 6)
    hist = layout(data, lengths)
    freqs = random_freqs(np.random.default_rng(3), hist)
    payloads = {encode(hist, lengths, freqs, passes=c) for c in (1, 7, 64, [3, 100, 1])}
    assert len(payloads) == 1


@needs_numba
def test_uint8_hist_and_compression():
    data = TEXT * 10
    lengths = cut(len(data), 8)
    hist = layout(data, lengths)
    freqs = random_freqs(np.random.default_rng(5), hist, skew=False)
    p64 = encode(hist, lengths, freqs)
    assert encode(hist.astype(np.uint8), lengths, freqs) == p64
    assert len(p64) * 8 / len(data) < 1.0  # repeated text: the match and context models learn it
    assert np.array_equal(decode(p64, lengths, freqs), hist)


@needs_numba
def test_real_looking_skew():
    """Frequencies peaked like a language model's: the transformer right most of the
    time, sometimes badly wrong; the stage must use it (well below flat) and round trip."""
    rng = np.random.default_rng(11)
    data = bytes(rng.choice(np.frombuffer(b"etaoin shrdlu\n", np.uint8), 3000))
    lengths = cut(len(data), 4)
    hist = layout(data, lengths)
    S, L = hist.shape
    freqs = np.ones((S, L, 256), dtype=np.float32)
    freqs[:, :, np.frombuffer(b"etaoin shrdlu\n", np.uint8)] = 2000
    right = rng.random((S, L)) < 0.7
    s, t = np.nonzero(right)
    freqs[s, t, hist[s, t]] = 60000
    payload = encode(hist, lengths, freqs)
    flat = encode(hist, lengths, np.ones_like(freqs))
    assert len(payload) < 0.8 * len(flat)
    assert np.array_equal(decode(payload, lengths, freqs), hist)
    part = [n // 10 for n in lengths]  # the reference on a tenth of it
    ph = np.ascontiguousarray(hist[:, :part[0]])
    pf = freqs[:, :part[0]]
    assert encode(ph, part, pf, compiled=False) == encode(ph, part, pf)


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_numba), False])
def test_truncated_and_trailing_bytes(compiled):
    lengths = [300, 300] if compiled else [90, 60]
    hist = layout(TEXT[:sum(lengths)], lengths)
    freqs = random_freqs(np.random.default_rng(1), hist)
    payload = encode(hist, lengths, freqs, compiled=compiled)
    with pytest.raises(CorruptPayload):
        decode(payload + b"\0", lengths, freqs, compiled=compiled)
    with pytest.raises(CorruptPayload):
        decode(payload + b"garbage", lengths, freqs, compiled=compiled)
    for cut_at in (len(payload) - 1, len(payload) // 2, 0):
        with pytest.raises(CorruptPayload):
            out = decode(payload[:cut_at], lengths, freqs, compiled=compiled)
            # a truncation that still decodes must at least not give the same bytes silently
            assert not np.array_equal(out, hist)
            raise CorruptPayload("decoded other bytes")


@needs_numba
@pytest.mark.parametrize("peaked", [False, True])
def test_garbage_payload_stops_quickly(peaked):
    """A claimed 1 MB block with a 10-byte payload: the decoder must give up once the
    payload (plus the coder's slack) is exhausted, not run on for the claimed length."""
    S, L = 1, 1 << 20
    out = np.zeros((S, L), dtype=np.int64)
    f = np.ones((S, 256), dtype=np.float32)
    if peaked:  # a confident model: each byte costs few bits, so more bytes per payload byte
        f[0, 32] = 65536
    dec = Decoder(bytes(range(7, 17)), [L], out)
    with pytest.raises(CorruptPayload):
        for t in range(L):
            dec.decode(t, f)
        dec.finish()
    assert dec.t < 200_000  # bounded by the payload's bits, not by the claimed length


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_numba), False])
def test_empty_block(compiled):
    enc = Encoder([], np.zeros((0, 0), dtype=np.int64), compiled=compiled)
    payload = enc.finish()
    assert len(payload) == 1  # the coder's flush byte
    dec = Decoder(payload, [], np.zeros((0, 0), dtype=np.int64), compiled=compiled)
    dec.finish()
    with pytest.raises(CorruptPayload):
        Decoder(payload + b"x", [], np.zeros((0, 0), dtype=np.int64), compiled=compiled).finish()


@pytest.mark.skipif(not os.environ.get("TZIP_SLOW_TESTS"), reason="slow: set TZIP_SLOW_TESTS=1")
@needs_numba
def test_larger_round_trip():
    """200 KB of mixed text over 16 streams, compiled (about 20 s on the shared machine)."""
    data = (TEXT + bytes(range(256))) * 220
    lengths = cut(len(data), 16)
    hist = layout(data, lengths)
    freqs = random_freqs(np.random.default_rng(2), hist)
    payload = encode(hist, lengths, freqs)
    assert np.array_equal(decode(payload, lengths, freqs), hist)

"""Evaluate the context-mixing stage (tzip/cm) on real files.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/cm_eval.py freqs      # cache tzip-small's tables
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/cm_eval.py table      # bpb table vs format 3, xz, bzip2, PPMd
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/cm_eval.py layout     # S = 1, 8, default
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/cm_eval.py speed      # the CM stage alone

The transformer's frequency tables are cached in $CM_CACHE (default /tmp/tzip-cm-freqs) as
uint16 .npy holding f - 1 (exact: f is in 1..65536), one file per (input slice, layout), so
experiments on the adaptive stage do not rerun the model. Files are benchmark inputs: we
measure on them, never fit constants to one of them.
"""
from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import sys
import time
from pathlib import Path

import numpy as np

CORPORA = Path(os.environ.get("TZIP_CORPORA", "/work/shared/corpora")) / "bench"
CACHE = Path(os.environ.get("CM_CACHE", "/tmp/tzip-cm-freqs"))
MODEL = "tzip-small"
KB = 1024


def _utf16_sample() -> bytes:
    text = (CORPORA / "calgary/paper1").read_bytes()[:32 * KB]
    return text.decode("latin-1").encode("utf-16-le")


# (name, kind, path or callable, slice length or None for the whole file)
FILES = [
    ("paper1", "prose", CORPORA / "calgary/paper1", None),
    ("book1", "prose", CORPORA / "calgary/book1", 128 * KB),
    ("alice29.txt", "prose", CORPORA / "canterbury/alice29.txt", 128 * KB),
    ("enwik-sample", "prose", CORPORA / "enwik/enwiki-2016-sample.xml", 128 * KB),
    ("world192.txt", "prose", CORPORA / "large/world192.txt", 64 * KB),
    ("cp.html", "html", CORPORA / "canterbury/cp.html", None),
    ("fields.c", "source", CORPORA / "canterbury/fields.c", None),
    ("grammar.lsp", "source", CORPORA / "canterbury/grammar.lsp", None),
    ("xargs.1", "prose", CORPORA / "canterbury/xargs.1", None),
    ("iso_3166-2.xml", "xml", Path("/usr/share/xml/iso-codes/iso_3166-2.xml"), 64 * KB),
    ("iso_639-3.json", "json", Path("/usr/share/iso-codes/json/iso_639-3.json"), 64 * KB),
    ("dpkg.log", "log", Path("/var/log/dpkg.log"), 64 * KB),
    ("umath-cos.csv", "csv", Path("/work/venv/lib/python3.11/site-packages/numpy/_core/tests/data/umath-validation-set-cos.csv"), None),
    ("node-fs.md", "markdown", Path("/usr/share/doc/nodejs/api/fs.md"), 64 * KB),
    ("node-http.html", "html", Path("/usr/share/doc/nodejs/api/http.html"), 64 * KB),
    ("numpy-ma-core.py", "source", Path("/work/venv/lib/python3.11/site-packages/numpy/ma/core.py"), 64 * KB),
    ("paper1-utf16", "utf16", _utf16_sample, None),
]
# The project's structured corpus (corpora/structured of the corpus checkout, copied to
# $CM_STRUCTURED): measured only, never tuned on; first 64 KiB of each
STRUCT_DIR = Path(os.environ.get("CM_STRUCTURED", "/tmp/structured"))
STRUCT_KINDS = {"airports.csv": "csv", "bashref.html": "html", "debian-reference-zh-cn.utf16le.txt": "utf16",
                "fail2ban-server-logs.log": "log", "fortunes-ru-knowledge.txt": "utf8-ru",
                "gdb-check.log": "log", "lodash.js": "source", "lz4.c": "source", "mime-db.json": "json",
                "nodejs-fs.md": "markdown", "regex-syntax-parse.rs": "source",
                "typing_extensions.py": "source", "xkb-base.xml": "xml"}
# CM_SLICE: bytes of each corpus file (default 64 KiB; 0: whole files)
SLICE = int(os.environ.get("CM_SLICE", 64 * KB)) or None
CORPUS_FILES = [(f"s/{n}", k, STRUCT_DIR / n, SLICE) for n, k in STRUCT_KINDS.items()]
if os.environ.get("CM_ONLY") == "corpus":  # the corpus files alone
    FILES = []
STRUCTURED = {"utf8-ru", "html", "source", "xml", "json", "log", "csv", "markdown", "utf16"}


def load(entry) -> bytes:
    """The coded block of a bench entry: the slice, with the codec's transforms (UTF-16 to
    UTF-8, CRLF to LF) applied as they would be."""
    from tzip import transform
    _, _, src, n = entry
    raw = src() if callable(src) else Path(src).read_bytes()
    if n:
        raw = raw[:n]
    return transform.to_text_block(raw)[2]


_ENGINE = None


def engine():
    """The CPU engine of MODEL, built once."""
    global _ENGINE
    if _ENGINE is None:
        from tzip import threads
        threads.before_loading()
        from tzip.engine import Engine
        from tzip.model import registry
        _ENGINE = Engine(registry.load(MODEL, "cpu"), "cpu")
    return _ENGINE


def default_lengths(n: int) -> list[int]:
    from tzip import codec
    return codec.split_streams(n, engine().cfg.context)


def model_freqs(data: bytes, lengths: list[int]) -> np.ndarray:
    """tzip-small's integer frequency tables (S, L, 256) float32 for the lockstep layout,
    pass by pass as codec.encode_cm gets them."""
    from tzip import streams
    mat, _ = streams.layout(data, lengths)
    S, L = mat.shape
    out = np.empty((S, L, 256), dtype=np.float32)

    def keep(t0: int, freqs: np.ndarray) -> None:
        out[:, t0:t0 + freqs.shape[1]] = freqs
    streams.passes(engine(), mat, keep)
    return out


def cached_freqs(data: bytes, lengths: list[int]) -> np.ndarray:
    key = hashlib.sha256(data + repr(lengths).encode() + MODEL.encode()).hexdigest()[:20]
    path = CACHE / f"{key}.npy"
    if path.exists():
        return np.load(path).astype(np.float32) + 1
    CACHE.mkdir(parents=True, exist_ok=True)
    f = model_freqs(data, lengths)
    assert f.min() >= 1 and f.max() <= 65536 and np.all(f == np.round(f))
    np.save(path, (f - 1).astype(np.uint16))
    return f


def _layouts(data: bytes) -> dict[str, list[int]]:
    from tzip import codec
    return {"default": default_lengths(len(data)), "S=1": [len(data)],
            "S=8": codec.split_streams(len(data), 1, 8)}


LAYOUT_FILES = ("dpkg.log", "node-http.html", "book1", "iso_639-3.json")


def cmd_freqs() -> None:
    for e in FILES + CORPUS_FILES:
        data = load(e)
        lays = _layouts(data) if e[0] in LAYOUT_FILES else {"default": default_lengths(len(data))}
        for name, lengths in lays.items():
            t = time.time()
            cached_freqs(data, lengths)
            print(f"{e[0]:18s} {name:8s} {len(data):7d} B S={len(lengths):3d} {time.time() - t:6.1f} s", flush=True)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "freqs":
    cmd_freqs()


# ---------------------------------------------------------------- baselines
def xz_size(data: bytes) -> int:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def bzip2_size(data: bytes) -> int:
    return len(bz2.compress(data, 9))


def ppmd_sizes(data: bytes) -> tuple[int, int]:
    """PPMd var. H (pyppmd's Ppmd7, 256 MiB) at order 6, and the best of orders 4..12
    (var. H only: pyppmd's var. I decoder fails on some inputs, per bench/structured.py of
    the corpus checkout)."""
    import pyppmd

    def size(order: int) -> int:
        enc = pyppmd.Ppmd7Encoder(order, 256 << 20)
        return len(enc.encode(data) + enc.flush(endmark=False))
    o6 = size(6)
    return o6, min([o6] + [size(o) for o in range(4, 13) if o != 6])


def format3_model_size(data: bytes, lengths: list[int], freqs: np.ndarray) -> int:
    """Format 3's model payload (tzip/legacy/linear.py's: tzip/legacy/mixing's chain and
    constriction's range coder) from the cached tables: the same bytes linear.encode writes."""
    import constriction
    from tzip import streams
    from tzip.legacy.mixing import Mixer
    mat, mask = streams.layout(data, lengths)
    S, L = mat.shape
    enc = constriction.stream.queue.RangeEncoder()
    mixer = Mixer(mat, compiled=True)
    fam = constriction.stream.model.Categorical(perfect=False)
    for t0 in range(0, L, 64):
        probs = mixer.mix_coded(t0, freqs[:, t0:t0 + 64], mask)
        m = mask[:, t0:t0 + 64].T
        enc.encode(mat[:, t0:t0 + 64].T[m].astype(np.int32), fam, probs[m])
    return 4 * len(enc.get_compressed())


def format3_archive_size(data: bytes) -> int:
    """Format 3's whole archive (tzip.compress, container, LZMA fallback and all)."""
    import tzip
    return len(tzip.compress(data, MODEL, device="cpu", format=3))


def cm_size(data: bytes, lengths: list[int], freqs: np.ndarray | None, c: int = 256,
            compiled: bool = True, revision: int | None = None) -> tuple[int, float]:
    """(CM payload bytes, seconds of the CM stage) with the given tables (None: flat)."""
    from tzip import streams
    from tzip.cm import Encoder
    mat, _ = streams.layout(data, lengths)
    S, L = mat.shape
    t = time.thread_time()  # CPU seconds of this thread: the machine is shared
    from tzip.cm import LATEST
    revision = revision or LATEST
    enc = Encoder(lengths, mat, revision, implementation="compiled" if compiled else "reference")
    for t0 in range(0, L, c):
        n = min(c, L - t0)
        enc.encode(t0, freqs[:, t0:t0 + n] if freqs is not None else np.ones((S, n, 256), np.float32))
    out = enc.finish()
    elapsed = time.thread_time() - t
    if os.environ.get("CM_VERIFY", "1") == "1":  # round trip every result (DESIGN.md 7)
        from tzip.cm import Decoder
        got = np.zeros((S, L), dtype=np.int64)
        dec = Decoder(out, lengths, got, revision,
                      implementation="compiled" if compiled else "reference")
        for i in range(L):
            dec.decode(i, freqs[:, i] if freqs is not None else np.ones((S, 256), np.float32))
        dec.finish()
        if not np.array_equal(got, mat):
            raise SystemExit("CM round trip failed")
    return len(out), elapsed


def cmd_speed(names=("book1", "dpkg.log", "node-http.html")) -> list[dict]:
    """The CM stage alone (cached tables): encode in passes of 64 steps, decode one
    step per call as the codec does; after a warm-up that compiles everything. Speeds are
    per core: bytes over the CPU time of the calling thread (time.thread_time), as the
    shared machine's wall clock varies with other jobs."""
    from tzip import streams
    from tzip.cm import Decoder
    warm = b"warm up " * 512
    cm_size(warm, [len(warm)], None)
    rows = []
    for e in FILES:
        if e[0] not in names:
            continue
        data = load(e)
        for lay, lengths in _layouts(data).items():
            try:
                f = cached_freqs(data, lengths) if e[0] in LAYOUT_FILES or lay == "default" else None
            except Exception:
                continue
            size, t_enc = cm_size(data, lengths, f, c=64)
            mat, _ = streams.layout(data, lengths)
            S, L = mat.shape
            from tzip.cm import Encoder
            enc = Encoder(lengths, mat)
            for t0 in range(0, L, 64):
                enc.encode(t0, f[:, t0:t0 + 64])
            payload = enc.finish()
            out = np.zeros((S, L), dtype=np.int64)
            steps = np.ascontiguousarray(f.transpose(1, 0, 2))  # (L, S, 256): each step's
            t = time.thread_time()  # tables contiguous, as a model step returns them
            dec = Decoder(payload, lengths, out)
            for i in range(L):
                dec.decode(i, steps[i])
            dec.finish()
            t_dec = time.thread_time() - t
            assert np.array_equal(out, mat)
            r = dict(file=e[0], layout=lay, S=S, n=len(data), bpb=8 * size / len(data),
                     enc_kbs=len(data) / t_enc / KB, dec_kbs=len(data) / t_dec / KB)
            rows.append(r)
            print(f"{e[0]:16s} {lay:8s} S={S:3d} {r['bpb']:.4f} bpb  encode {r['enc_kbs']:6.0f} KB/s"
                  f"  decode {r['dec_kbs']:6.0f} KB/s", flush=True)
    return rows


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "speed":
    cmd_speed()


def cmd_table(archives: bool = False) -> None:
    """One row per file: CM (tzip-small tables; flat tables), format 3's model payload from
    the same tables, optionally format 3's whole archive (tzip.compress), xz, bzip2, PPMd."""
    import json
    rows = []
    for e in FILES + CORPUS_FILES:
        data = load(e)
        lengths = default_lengths(len(data))
        f = cached_freqs(data, lengths)
        n = len(data)
        r = dict(file=e[0], kind=e[1], n=n, S=len(lengths))
        r["cm"], r["cm_s"] = cm_size(data, lengths, f)
        r["cm_flat"], _ = cm_size(data, lengths, None)
        r["f3_model"] = format3_model_size(data, lengths, f)
        if archives:
            r["f3_archive"] = format3_archive_size(data)
        r["xz"], r["bzip2"] = xz_size(data), bzip2_size(data)
        r["ppmd6"], r["ppmd_best"] = ppmd_sizes(data)
        rows.append(r)
        print(json.dumps(r), flush=True)
    out = Path(os.environ.get("CM_TABLE", "/tmp/cm_table.json"))
    out.write_text(json.dumps(rows, indent=1))
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    cols = ["cm", "cm_flat", "f3_model"] + (["f3_archive"] if "f3_archive" in rows[0] else []) + \
        ["xz", "bzip2", "ppmd6", "ppmd_best"]
    lines = ["| file | kind | bytes | S | " + " | ".join(cols) + " | CM / best other |",
             "|---|---|---|---|" + "---|" * (len(cols) + 1)]
    groups: dict[str, dict[str, int]] = {}
    for r in rows:
        bpb = {c: 8 * r[c] / r["n"] for c in cols}
        other = min(r[c] for c in ("xz", "bzip2", "ppmd6", "ppmd_best"))
        lines.append(f"| {r['file']} | {r['kind']} | {r['n']} | {r['S']} | " +
                     " | ".join(f"**{bpb[c]:.3f}**" if c == "cm" else f"{bpb[c]:.3f}" for c in cols) +
                     f" | {r['cm'] / other:.3f} |")
        g = "structured" if r["kind"] in STRUCTURED else "prose"
        acc = groups.setdefault(g, {c: 0 for c in cols + ["n"]})
        for c in cols + ["n"]:
            acc[c] += r[c]
    for g, acc in groups.items():
        lines.append(f"| **all {g}** | | {acc['n']} | | " +
                     " | ".join(f"{8 * acc[c] / acc['n']:.3f}" for c in cols) +
                     f" | CM / PPMd best {acc['cm'] / acc['ppmd_best']:.3f} |")
    return "\n".join(lines)


def cmd_layout() -> None:
    """The same files with S = 1, 8 and the default split: CM and format 3's model payload."""
    import json
    rows = []
    for e in FILES:
        if e[0] not in LAYOUT_FILES:
            continue
        data = load(e)
        for lay, lengths in _layouts(data).items():
            f = cached_freqs(data, lengths)
            r = dict(file=e[0], layout=lay, S=len(lengths), n=len(data))
            r["cm"], _ = cm_size(data, lengths, f)
            r["cm_flat"], _ = cm_size(data, lengths, None)
            r["f3_model"] = format3_model_size(data, lengths, f)
            rows.append(r)
            print(json.dumps(r), flush=True)
    Path(os.environ.get("CM_LAYOUT", "/tmp/cm_layout.json")).write_text(json.dumps(rows, indent=1))
    print("| file | layout | S | CM | CM flat | format 3 model |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['file']} | {r['layout']} | {r['S']} | " +
              " | ".join(f"{8 * r[c] / r['n']:.3f}" for c in ("cm", "cm_flat", "f3_model")) + " |")


if __name__ == "__main__" and len(sys.argv) > 1:
    {"table": lambda: cmd_table("--archives" in sys.argv), "layout": cmd_layout}.get(sys.argv[1], lambda: None)()


WHOLE = [("alice29.txt", "prose", CORPORA / "canterbury/alice29.txt", None),
         ("book1", "prose", CORPORA / "calgary/book1", None)]


def cmd_whole() -> None:
    """The prose targets on whole files (default streams): CM and format 3's model payload
    and archive."""
    import json
    for e in WHOLE:
        data = load(e)
        raw = Path(e[2]).read_bytes()
        lengths = default_lengths(len(data))
        f = cached_freqs(data, lengths)
        r = dict(file=e[0], n_raw=len(raw), n=len(data), S=len(lengths))
        r["cm"], r["cm_s"] = cm_size(data, lengths, f)
        r["f3_model"] = format3_model_size(data, lengths, f)
        del f
        if not os.environ.get("CM_NO_ARCHIVE"):  # the transformer again: minutes for book1
            r["f3_archive"] = format3_archive_size(raw)
        print(json.dumps(r), f"CM {8 * r['cm'] / len(raw):.3f} bpb of the original", flush=True)


def cmd_archives() -> None:
    """Format 3's whole archive (tzip.compress, LZMA fallback and all) for the table's files."""
    import json
    for e in FILES + CORPUS_FILES:
        data = load(e)
        raw = src_bytes(e)
        print(json.dumps(dict(file=e[0], n=len(raw), f3_archive=format3_archive_size(raw))), flush=True)


def src_bytes(entry) -> bytes:
    _, _, src, n = entry
    raw = src() if callable(src) else Path(src).read_bytes()
    return raw[:n] if n else raw


if __name__ == "__main__" and len(sys.argv) > 1:
    {"whole": cmd_whole, "archives": cmd_archives}.get(sys.argv[1], lambda: None)()

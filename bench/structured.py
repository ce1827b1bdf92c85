"""The `structured` group: bits per byte of the usual compressors (and tzip) on corpora/structured.

    python -m bench.structured [--tzip] [--limit BYTES] [--files NAME ...] [--out FILE.md]

Each file's sha256 is checked against corpora/structured/MANIFEST.json first. --limit
measures only the first BYTES of each file (an even count, so UTF-16 stays whole code
units), the same bytes for every compressor. Every compressor's output is decoded and
compared with its input.

Compressors: xz -9e (lzma preset 9|EXTREME), bzip2 -9, brotli (quality 11, lgwin 24),
zstd -19, PPMd var. I (pyppmd, 256 MiB) at order 6 and at the best of orders 4..12, and
with --tzip the current tzip (model tzip-small on the CPU), whose block methods are read
back with tzip.info. For a UTF-16 file the same is done on its UTF-8 conversion
(tzip.transform.utf16_to_utf8), counted in bits per byte of the UTF-16 input, to show what
converting first would gain.

These files are for measurement only: never train or tune on them.
"""
from __future__ import annotations

import argparse
import bz2
import datetime
import hashlib
import json
import lzma
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpora" / "structured"
PPMD_MEM = 256 << 20
PPMD_ORDERS = range(4, 13)


# --- compressors: name -> (compress, decompress) ----------------------------------------

def _xz(d: bytes) -> bytes:
    return lzma.compress(d, lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)


def _brotli():
    import brotli
    return (lambda d: brotli.compress(d, quality=11, lgwin=24)), brotli.decompress


def _zstd():
    import zstandard
    c, dc = zstandard.ZstdCompressor(level=19), zstandard.ZstdDecompressor()
    return c.compress, (lambda b: dc.decompress(b, max_output_size=1 << 31))


PPMD_CHUNK = 1 << 16


def _ppmd(order: int):
    """PPMd var. I (Ppmd8, restart when memory is full, with the end mark), as bench/tools.py.

    The input goes to the encoder in 64 KiB pieces: pyppmd 1.3.1's encoder, given a few
    hundred KB in one call, can write a stream that does not decode (var. I: lodash.js at
    order 6, gdb-check.log at order 4; var. H: airports.csv at order 11, ...); fed in pieces
    the same inputs round-trip."""
    import pyppmd

    def comp(d: bytes) -> bytes:
        enc = pyppmd.Ppmd8Encoder(order, PPMD_MEM)
        out = [enc.encode(d[i:i + PPMD_CHUNK]) for i in range(0, len(d), PPMD_CHUNK)]
        return b"".join(out) + enc.flush()

    def decomp(b: bytes) -> bytes:
        return pyppmd.Ppmd8Decoder(order, PPMD_MEM).decode(b)

    return comp, decomp


def checked(name: str, comp, decomp, data: bytes) -> int:
    blob = comp(data)
    if decomp(blob) != data:
        raise SystemExit(f"{name}: round trip failed")
    return len(blob)


PPMD_FAILED: list[str] = []   # "order N on NAME": the decoder did not give the input back


def ppmd_sizes(data: bytes, name: str) -> dict[int, int]:
    """Sizes of the orders whose round trip holds (any that fails is reported, left out)."""
    out = {}
    for o in PPMD_ORDERS:
        comp, decomp = _ppmd(o)
        blob = comp(data)
        try:
            ok = decomp(blob) == data
        except (ValueError, EOFError):
            ok = False
        if ok:
            out[o] = len(blob)
        else:
            PPMD_FAILED.append(f"order {o} on {name}")
    return out


def classic(data: bytes, name: str) -> dict:
    """Compressed sizes in bytes; 'ppmd_best' is (order, size)."""
    res = {
        "xz": checked("xz", _xz, lzma.decompress, data),
        "bzip2": checked("bzip2", lambda d: bz2.compress(d, 9), bz2.decompress, data),
        "brotli": checked("brotli", *_brotli(), data),
        "zstd": checked("zstd", *_zstd(), data),
    }
    pp = ppmd_sizes(data, name)
    if 6 not in pp:
        raise SystemExit(f"{name}: PPMd order 6 round trip failed")
    res["ppmd6"] = pp[6]
    best = min(pp, key=lambda o: (pp[o], o))
    res["ppmd_best"] = (best, pp[best])
    return res


_WARM: set[str] = set()


def run_tzip(data: bytes, model: str) -> dict:
    import tzip
    if model not in _WARM:      # load the model and the compiled loops before timing
        warm = (ROOT / "README.md").read_bytes()[:65536]
        tzip.decompress(tzip.compress(warm, model, device="cpu"), model, device="cpu")
        _WARM.add(model)
    t = time.perf_counter()
    blob = tzip.compress(data, model, device="cpu")
    tc = time.perf_counter() - t
    t = time.perf_counter()
    if tzip.decompress(blob, model, device="cpu") != data:
        raise SystemExit("tzip: round trip failed")
    td = time.perf_counter() - t
    blocks = tzip.info(blob).blocks
    methods = ",".join(b.method + ("+utf16" if b.utf16 else "") + ("+crlf" if b.crlf else "") for b in blocks)
    return {"size": len(blob), "methods": methods, "enc_s": tc, "dec_s": td}


# --- corpus -------------------------------------------------------------------------------

def load_manifest() -> list[dict]:
    m = json.loads((CORPUS / "MANIFEST.json").read_text(encoding="utf-8"))
    return m["files"]


def read_verified(entry: dict) -> bytes:
    data = (CORPUS / entry["name"]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != entry["size"] or digest != entry["sha256"]:
        raise SystemExit(f"{entry['name']}: size or sha256 differs from MANIFEST.json")
    return data


def utf16_kind(entry: dict, data: bytes) -> str | None:
    if entry["kind"] != "text-utf16":
        return None
    from tzip.transform import utf16_applies
    kind = utf16_applies(data)
    if kind is None:
        raise SystemExit(f"{entry['name']}: tzip.transform.utf16_applies rejects it")
    return kind


# --- report -------------------------------------------------------------------------------

COLS = ["xz", "bzip2", "brotli", "zstd", "ppmd6", "ppmd_best"]
HEAD = ["xz -9e", "bzip2 -9", "brotli 11", "zstd -19", "PPMd o6", "PPMd best (order)"]


def bpb(size: int, n: int) -> str:
    return f"{8 * size / n:.3f}" if n else "-"


def size_of(r: dict, col: str) -> int:
    v = r[col]
    return v[1] if isinstance(v, tuple) else v


def cell(r: dict, col: str, n: int) -> str:
    v = r[col]
    if isinstance(v, tuple):
        return f"{bpb(v[1], n)} ({v[0]})"
    return bpb(v, n)


def table(rows: list[dict], with_tzip: bool) -> list[str]:
    head = ["file", "kind", "bytes"] + HEAD + (["tzip-small", "tzip blocks"] if with_tzip else [])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = r["n"]
        line = [r["name"], r["kind"], str(n)] + [cell(r["res"], c, n) for c in COLS]
        if with_tzip:
            t = r.get("tzip")
            line += [bpb(t["size"], n), t["methods"]] if t else ["-", "-"]
        out.append("| " + " | ".join(line) + " |")
    total = sum(r["n"] for r in rows)
    line = ["**all**", "", str(total)]
    for c in COLS:
        line.append(f"**{bpb(sum(size_of(r['res'], c) for r in rows), total)}**")
    if with_tzip:
        tz = [r for r in rows if r.get("tzip")]
        if tz and len(tz) == len(rows):
            line += [f"**{bpb(sum(r['tzip']['size'] for r in tz), total)}**", ""]
        else:
            line += ["-", ""]
    out.append("| " + " | ".join(line) + " |")
    return out


def utf16_table(rows: list[dict], with_tzip: bool) -> list[str]:
    head = ["file", "as", "bytes", "xz -9e", "PPMd o6", "PPMd best (order)"] + (["tzip-small", "tzip blocks"] if with_tzip else [])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        u = r.get("utf8")
        if not u:
            continue
        n = r["n"]
        for label, res, tz, size in (("UTF-16" + r["utf16"].upper(), r["res"], r.get("tzip"), n),
                                    ("UTF-8 (converted)", u["res"], u.get("tzip"), u["n"])):
            line = [r["name"], label, str(size)] + [cell(res, c, n) for c in ("xz", "ppmd6", "ppmd_best")]
            if with_tzip:
                line += [bpb(tz["size"], n), tz["methods"]] if tz else ["-", "-"]
            out.append("| " + " | ".join(line) + " |")
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.structured", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tzip", action="store_true", help="also run tzip (slow on a CPU: ~20 KB/s)")
    ap.add_argument("--model", default="tzip-small")
    ap.add_argument("--limit", type=int, default=0, help="measure only the first BYTES of each file")
    ap.add_argument("--files", nargs="*", help="names (or kinds) to measure; default: all")
    ap.add_argument("--tzip-files", nargs="*", help="with --tzip, run tzip only on these names (or kinds)")
    ap.add_argument("--out", type=Path, help="write the markdown report here")
    args = ap.parse_args(argv)
    limit = args.limit & ~1 if args.limit > 0 else 0

    def pick(entries, names):
        return [e for e in entries if not names or e["name"] in names or e["kind"] in names]

    entries = pick(load_manifest(), args.files)
    if not entries:
        raise SystemExit("no file matches --files")
    tz_names = {e["name"] for e in pick(entries, args.tzip_files)} if args.tzip else set()
    rows = []
    t0 = time.time()
    for e in entries:
        full = read_verified(e)
        data = full[:limit] if limit else full
        row = {"name": e["name"], "kind": e["kind"], "n": len(data)}
        print(f"{e['name']}: {len(data)} bytes", file=sys.stderr, flush=True)
        row["res"] = classic(data, e["name"])
        if e["name"] in tz_names:
            row["tzip"] = run_tzip(data, args.model)
        kind = utf16_kind(e, full)
        if kind:
            from tzip.transform import utf16_applies, utf16_to_utf8
            if utf16_applies(data) != kind:
                raise SystemExit(f"{e['name']}: the measured slice is not accepted as UTF-16{kind.upper()}")
            u8 = utf16_to_utf8(data, kind)
            row["utf16"] = kind
            row["utf8"] = {"n": len(u8), "res": classic(u8, e["name"] + " as UTF-8")}
            if e["name"] in tz_names:
                row["utf8"]["tzip"] = run_tzip(u8, args.model)
        rows.append(row)
    elapsed = time.time() - t0

    with_tzip = bool(tz_names)
    lines = [f"Bits per byte (8 x compressed bytes / input bytes; lower is better) on "
             f"corpora/structured ({len(rows)} files"
             + (f", first {limit} bytes of each" if limit else ", whole files") + ").",
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}; "
             f"{elapsed:.0f} s.", ""]
    lines += table(rows, with_tzip)
    lines += ["", "PPMd: pyppmd variant I (Ppmd8), 256 MiB, input fed in 64 KiB pieces; 'best' is the lowest of orders 4..12, its order in brackets.",
              *([f"PPMd's decoder did not return the input for {', '.join(PPMD_FAILED)}: "
                "left out of 'best'."] if PPMD_FAILED else []),
              "The **all** row is total compressed bits / total input bytes"
              + (" (tzip: only when every file was measured with it)." if with_tzip else ".")]
    if with_tzip:
        spd = [(r["n"], r["tzip"]["enc_s"], r["tzip"]["dec_s"]) for r in rows if r.get("tzip")]
        n, te, td = (sum(x[i] for x in spd) for i in range(3))
        lines.append(f"tzip ({args.model}, CPU): {n / te / 1000:.1f} KB/s compressing, "
                     f"{n / td / 1000:.1f} KB/s decompressing, round trips checked; "
                     "'tzip blocks' is the method of each block as tzip.info reads it.")
    u = utf16_table(rows, with_tzip)
    if len(u) > 2:
        lines += ["", "UTF-16 input against its UTF-8 conversion (tzip.transform.utf16_to_utf8), "
                  "both in bits per byte of the UTF-16 input; 'bytes' is what the compressor was given.", ""]
        lines += u
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

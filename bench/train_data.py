"""Widen the training text with the kinds tzip must also model well: source code in many
languages, JSON, CSV, XML/HTML, Markdown, logs, man pages, text in other languages and
scripts, and a slice with CRLF line ends.

    python -m bench.train_data --out .data/train-wide [--cap-mb 8] [--add KIND=DIR:GLOB ...]

Files are gathered from what a machine has installed (the Python standard library and
site-packages, /usr/include, /usr/share/doc, man pages in other languages, the JDK's
src.zip, Perl modules, logs under /var/log; --add names more, such as packages fetched
from a registry with `npm pack`), by kind, up to --cap-mb megabytes per kind
(smallest files last, so many sources count). Every file is checked against the
benchmark files (../shared/corpora/bench, corpora/structured, and the files
bench/cm_eval.py measures): a file is dropped if it is one of them, or if more than 2% of
its lines of 24 bytes or more appear in them; exact duplicates among the candidates are
dropped too. Each kind is written as OUT/KIND.txt.xz (files separated by a blank line),
with OUT/MANIFEST.json listing every file taken (source path, sha256, bytes) and what
was dropped and why. The output is training data: keep it out of the repository (.data/
is git-ignored) and carry it to a GPU session (docs/training.md).
"""
from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import lzma
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
MB = 1 << 20
MIN_LINE = 24  # lines shorter than this are too common to mark a copy
SHARED_MAX = 0.02  # a file sharing more of its long lines with the benchmarks is dropped
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"

# kind -> [(root, glob)]; roots that do not exist are skipped
SOURCES: dict[str, list[tuple[str, str]]] = {
    "code-c": [("/usr/include", "**/*.h")],
    "code-python": [(f"/usr/lib/{PY}", "**/*.py"), (sys.prefix + f"/lib/{PY}/site-packages", "**/*.py")],
    "code-java": [("/usr/lib/jvm", "**/src.zip")],
    "code-perl": [("/usr/share/perl", "**/*.pm"), ("/usr/share/perl5", "**/*.pm")],
    "code-js": [(sys.prefix + f"/lib/{PY}/site-packages", "**/*.js"), ("/usr/share/nodejs", "**/*.js")],
    "code-shell": [("/etc", "**/*.sh"), ("/usr/share", "**/*.sh")],
    "json": [(sys.prefix + f"/lib/{PY}/site-packages", "**/*.json"), ("/usr/share", "**/*.json")],
    "csv": [(sys.prefix + f"/lib/{PY}/site-packages", "**/*.csv"), ("/usr/share", "**/*.csv")],
    "markup": [("/usr/share/doc", "**/*.html"), ("/usr/share", "**/*.xml"),
               (sys.prefix + f"/lib/{PY}/site-packages", "**/*.xml")],
    "markdown": [(sys.prefix + f"/lib/{PY}/site-packages", "**/*.md"),
                 (sys.prefix + f"/lib/{PY}/site-packages", "**/*.rst"), ("/usr/share/doc", "**/*.md")],
    "logs": [("/var/log", "**/*.log"), ("/var/log", "**/*.log.1")],
    "man": [("/usr/share/man", "man[1-8]/*.gz")],
    "multilingual": [("/usr/share/man", "[a-z][a-z]/man*/*.gz"), ("/usr/share/man", "[a-z][a-z]_*/man*/*.gz"),
                     ("/usr/share/i18n/locales", "*")],
    "changelogs": [("/usr/share/doc", "*/changelog*.gz"), ("/usr/share/doc", "*/NEWS*.gz")],
}


def bench_files() -> list[Path]:
    """Every file tzip is measured on: never trained on."""
    out = []
    for root in (REPO.parent / "shared" / "corpora" / "bench", REPO / "corpora" / "structured"):
        if root.exists():
            out += [p for p in root.rglob("*") if p.is_file()]
    from bench import cm_eval
    out += [Path(src) for _, _, src, _ in cm_eval.FILES if not callable(src) and Path(src).exists()]
    return out


def read(p: Path) -> bytes:
    """A file's bytes (.gz and .xz unpacked)."""
    b = p.read_bytes()
    if p.suffix == ".gz":
        return gzip.decompress(b)
    if p.suffix == ".xz":
        return lzma.decompress(b)
    return b


def long_lines(b: bytes) -> set[bytes]:
    return {hashlib.blake2b(ln.strip(), digest_size=8).digest()
            for ln in b.splitlines() if len(ln.strip()) >= MIN_LINE}


def candidates(sources: list[tuple[str, str]]) -> list[tuple[str, int, Callable[[], bytes]]]:
    """(source name, size, reader) of the files of these (root, glob) sources, read only
    when taken; a zip's members count as files."""
    out = []
    for root, pattern in sources:
        r = Path(root)
        if not r.exists():
            continue
        for p in r.glob(pattern):
            try:
                if not p.is_file() or p.is_symlink():
                    continue
                if p.suffix == ".zip":
                    with zipfile.ZipFile(p) as z:
                        out += [(f"{p}!{i.filename}", i.file_size, functools.partial(_member, p, i.filename))
                                for i in z.infolist() if i.filename.endswith(".java")]
                    continue
                size = p.stat().st_size
            except (OSError, zipfile.BadZipFile):
                continue
            if size <= 4 * MB:
                out.append((str(p), size, functools.partial(read, p)))
    return out


def output(kind: str, blob: bytes, packed: bytes) -> dict:
    """What identifies one kind's output file, so a copy carried elsewhere can be checked
    against the committed manifest (sha256sum -c style: the file and its text)."""
    return {"file": f"{kind}.txt.xz", "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
            "xz_bytes": len(packed), "xz_sha256": hashlib.sha256(packed).hexdigest()}


def _member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(name)


def xz_file(p: Path) -> dict:
    """A training file as stored and as text: sizes and sha256 of both."""
    stored = p.read_bytes()
    raw = lzma.decompress(stored) if p.suffix == ".xz" else stored
    return {"file": p.name, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
            "xz_bytes": len(stored), "xz_sha256": hashlib.sha256(stored).hexdigest()}


def model_manifest(model: str, prose: Path, wide: Path, mix: list[str]) -> dict:
    """What a model is (to be) trained on: the --data mix, the prose files (their sources
    are in the shared corpus' own MANIFEST.json, named here by its sha256) and the wide
    data's manifest as bench.train_data wrote it (every file taken, its source and sha256)."""
    roots = [prose] + ([Path(os.environ["TZIP_CORPORA"]) / "train"] if os.environ.get("TZIP_CORPORA") else [])
    roots.append(REPO.parent / "shared" / "corpora" / "train")  # a copy of the files alone: the corpus has it
    prose_manifest = next((r / "MANIFEST.json" for r in roots if (r / "MANIFEST.json").exists()), prose / "MANIFEST.json")
    return {"model": model, "mix": mix,
            "prose": {"folder": str(prose), "copy_of": "../shared/corpora/train",
                      "sources_manifest_sha256": hashlib.sha256(prose_manifest.read_bytes()).hexdigest()
                      if prose_manifest.exists() else None,
                      "files": [xz_file(p) for p in sorted(prose.glob("*.txt.xz"))]},
            "wide": dict({"folder": str(wide)}, **json.loads((wide / "MANIFEST.json").read_text()))}


def dump_manifest(obj: dict) -> str:
    """JSON with one line per file record, so a manifest of thousands of files stays
    readable and diffs line by line."""
    def emit(o, ind: int) -> str:
        pad = " " * ind
        if isinstance(o, dict) and o and not all(isinstance(v, (str, int, float, type(None))) for v in o.values()):
            items = [f'{pad} {json.dumps(k)}: {emit(v, ind + 1).lstrip()}' for k, v in o.items()]
            return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list) and o and all(isinstance(v, dict) for v in o):
            return pad + "[\n" + ",\n".join(pad + " " + json.dumps(v) for v in o) + "\n" + pad + "]"
        return pad + json.dumps(o)
    return emit(obj, 0) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.train_data", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model-manifest", type=Path, metavar="PATH",
                    help="instead of gathering: write the manifest of a model's training data to PATH "
                         "(the mix, the --prose files and the manifest already in --out)")
    ap.add_argument("--model", help="the model's name, for --model-manifest")
    ap.add_argument("--prose", type=Path, default=Path(".data/train"), help="for --model-manifest")
    ap.add_argument("--mix", nargs="+", default=[], help="the --data entries of the run, for --model-manifest")
    ap.add_argument("--cap-mb", type=float, default=8, help="megabytes per kind at most")
    ap.add_argument("--kinds", help="comma-separated kinds (default: all)")
    ap.add_argument("--add", action="append", default=[], metavar="KIND=DIR:GLOB",
                    help="more sources of a kind, e.g. code-js=/tmp/npm:**/*.js (unpacked packages)")
    ap.add_argument("--crlf-mb", type=float, default=2, help="megabytes of the taken text written again with CRLF")
    a = ap.parse_args(argv)
    if a.model_manifest:
        m = model_manifest(a.model or a.model_manifest.name.split(".")[0], a.prose, a.out, a.mix)
        a.model_manifest.write_text(dump_manifest(m))
        print(f"{a.model_manifest}: {len(m['prose']['files'])} prose files, "
              f"{sum(len(k.get('files', [])) for k in m['wide']['kinds'].values())} wide files")
        return 0
    sources = {kind: list(roots) for kind, roots in SOURCES.items()}
    for spec in a.add:
        kind, where = spec.split("=", 1)
        root, pattern = where.split(":", 1)
        sources.setdefault(kind, []).append((root, pattern))
    benches = bench_files()
    bench_sha = {hashlib.sha256(read(p)).hexdigest() for p in benches}
    bench_lines: set[bytes] = set()
    for p in benches:
        bench_lines |= long_lines(read(p))
    print(f"{len(benches)} benchmark files, {len(bench_lines)} long lines", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    manifest: dict = {"command": " ".join(["python -m bench.train_data", *(argv if argv is not None else sys.argv[1:])]),
                      "made": time.strftime("%Y-%m-%d", time.gmtime()),
                      "benchmark_files": len(benches), "kinds": {}, "dropped": {}}
    crlf_src: list[bytes] = []
    for kind in (a.kinds.split(",") if a.kinds else sources):
        taken, parts, dropped = [], [], {"benchmark": 0, "shares lines": 0, "duplicate": 0, "not text": 0}
        size = 0
        cands = sorted(candidates(sources[kind]), key=lambda c: (c[1] > 256 << 10, c[0]))
        for name, _, reader in cands:
            if size >= a.cap_mb * MB:
                break
            try:
                b = reader()
            except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, gzip.BadGzipFile):
                continue
            sha = hashlib.sha256(b).hexdigest()
            if sha in bench_sha:
                dropped["benchmark"] += 1
                continue
            if sha in seen:
                dropped["duplicate"] += 1
                continue
            if b"\0" in b[:4096]:
                dropped["not text"] += 1
                continue
            lines = long_lines(b)
            if lines and len(lines & bench_lines) > SHARED_MAX * len(lines):
                dropped["shares lines"] += 1
                continue
            seen.add(sha)
            taken.append({"source": name, "sha256": sha, "bytes": len(b)})
            parts.append(b)
            size += len(b)
        blob = b"\n\n".join(parts)
        packed = lzma.compress(blob, preset=6)
        (a.out / f"{kind}.txt.xz").write_bytes(packed)
        if kind in ("markdown", "code-python", "csv"):
            crlf_src.append(blob[:int(a.crlf_mb * MB / 3)])
        manifest["kinds"][kind] = dict(output(kind, blob, packed), files=taken)
        manifest["dropped"][kind] = dropped
        print(f"{kind:14s} {len(taken):6d} files {len(blob) / MB:7.2f} MB  dropped {dropped}", flush=True)
    crlf = b"\n\n".join(crlf_src).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    packed = lzma.compress(crlf, preset=6)
    (a.out / "crlf.txt.xz").write_bytes(packed)
    manifest["kinds"]["crlf"] = dict(output("crlf", crlf, packed),
                                     **{"from": "the first part of markdown, code-python and csv, with CRLF line ends"})
    (a.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    print(f"crlf           {len(crlf) / MB:7.2f} MB; manifest in {a.out / 'MANIFEST.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

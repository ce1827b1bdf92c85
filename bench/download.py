"""Fetch a registered corpus into the cache folder, checking every file.

    python -m bench download NAME [NAME ...] [--dest DIR] [--force]
    python -m bench download --list

The archive is streamed to a temporary file; only the files the registry (bench/corpora.py)
knows are extracted, matched by base name, and each is written to DEST/PATH only after
its size and SHA-256 matched. DEST defaults to ~/.cache/tzip/corpora, a corpora root.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import IO, Callable, Iterator

from . import corpora
from .corpora import Corpus, CorpusError, CorpusFile, CorpusMismatch

CHUNK = 1 << 20
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _have(f: CorpusFile, dest: Path) -> bool:
    p = dest / f.path
    if not p.is_file() or p.stat().st_size != f.bytes:
        return False
    try:
        f.check(p.read_bytes(), p)
    except CorpusMismatch:
        return False
    return True


def _download(url: str, to: Path, log: Log) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(to, "wb") as out:
            total = int(r.headers.get("Content-Length") or 0)
            done, shown = 0, 0
            while chunk := r.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if total and done * 10 // total > shown:
                    shown = done * 10 // total
                    log(f"  {done:,} of {total:,} bytes")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CorpusError(f"could not download {url}: {reason} (no internet here? fetch it by "
                          "hand and put the files under a corpora root, see corpora/README.md)"
                          ) from None


def _members(archive: Path, kind: str) -> Iterator[tuple[str, IO[bytes]]]:
    """(base name, readable stream) of each regular file in the archive."""
    if kind == "zip":
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    with z.open(info) as fh:
                        yield Path(info.filename).name, fh
    else:
        with tarfile.open(archive, "r:gz") as t:
            for m in t:
                if m.isfile():
                    fh = t.extractfile(m)
                    if fh is not None:
                        yield Path(m.name).name, fh


def _copy_checked(f: CorpusFile, src: IO[bytes], tmp_dir: Path) -> Path:
    h, n = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=tmp_dir)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
            out.write(chunk)
    if n != f.bytes or (f.sha256 and h.hexdigest() != f.sha256):
        raise CorpusMismatch(f"{f.group}/{f.name} from the archive is {n:,} bytes with SHA-256 "
                             f"{h.hexdigest()[:16]}..., expected {f.bytes:,} bytes"
                             + (f" and {f.sha256[:16]}..." if f.sha256 else "")
                             + "; nothing was installed for it (has the archive changed?)")
    return Path(tmp)


def fetch(corpus: Corpus, dest: Path | None = None, force: bool = False,
          log: Log = _stderr) -> list[Path]:
    """Download and install a corpus under dest; returns the paths of its files."""
    dest = Path(dest or corpora.cache_root())
    if corpus.source is None:
        parts = [corpora.registry().get(g) for g in corpus.groups if g != corpus.name]
        if not any(p is not None and p.source for p in parts):
            raise CorpusError(f"corpus {corpus.name!r} cannot be downloaded: {corpus.how_to_get}")
        return _fetch_parts(corpus, [p for p in parts if p is not None], dest, force, log)
    todo = [f for f in corpus.files if force or not _have(f, dest)]
    if not todo:
        log(f"{corpus.name}: all {len(corpus.files)} files already in {dest}")
        return [dest / f.path for f in corpus.files]
    dest.mkdir(parents=True, exist_ok=True)
    src = corpus.source
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest) as tmp:
        archive = Path(tmp) / "archive"
        log(f"{corpus.name}: downloading {src.url}")
        _download(src.url, archive, log)
        if src.archive_bytes and archive.stat().st_size != src.archive_bytes:
            raise CorpusMismatch(f"{src.url}: {archive.stat().st_size:,} bytes, expected "
                                 f"{src.archive_bytes:,}")
        wanted = {Path(f.path).name: f for f in todo}
        staged: dict[str, Path] = {}
        try:
            for name, fh in _members(archive, src.archive):
                if name in wanted and name not in staged:
                    staged[name] = _copy_checked(wanted[name], fh, Path(tmp))
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
            raise CorpusError(f"{src.url}: not a readable {src.archive} archive ({e})") from None
        missing = sorted(set(wanted) - set(staged))
        if missing:
            raise CorpusError(f"{src.url} lacks {', '.join(missing)}; nothing was installed")
        for name, tmp_file in staged.items():
            target = dest / wanted[name].path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_file, target)
    log(f"{corpus.name}: {len(todo)} file(s) verified and installed in {dest}")
    return [dest / f.path for f in corpus.files]


def _fetch_parts(corpus: Corpus, parts: list[Corpus], dest: Path, force: bool,
                 log: Log) -> list[Path]:
    """A corpus made of groups that are corpora themselves (bench): fetch each one that
    can be fetched, then report the ones that cannot."""
    paths, cannot = [], []
    for part in parts:
        if part.source is None:
            cannot.append(f"{part.name} ({part.how_to_get})")
        else:
            paths += fetch(part, dest, force, log)
    if cannot:
        raise CorpusError(f"{corpus.name}: fetched what can be downloaded; not downloadable: "
                          + "; ".join(cannot))
    return paths


def list_corpora(log: Log = print) -> None:
    for c in corpora.registry().values():
        have = sum(1 for f in c.files if f.locate() is not None)
        reg = corpora.registry()
        parts = [g for g in c.groups if g != c.name and g in reg and reg[g].source is not None]
        how = (f"download: {c.source.url}" if c.source else
               f"download: its groups {', '.join(parts)}" if parts else "not downloadable")
        log(f"{c.name:11} {have:>3}/{len(c.files)} files found  {c.description}  ({how})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench download",
                                description="Fetch corpora into the cache folder, verified.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="corpus names: " + ", ".join(n for n, c in corpora.registry().items()
                                                     if c.source))
    p.add_argument("--dest", type=Path, help=f"corpora root (default: {corpora.cache_root()})")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--list", action="store_true", help="list known corpora and what is found")
    args = p.parse_args(argv)
    if args.list or not args.names:
        list_corpora()
        return 0 if args.list else 2
    try:
        chosen = [corpora.get(n) for n in args.names]
    except corpora.UnknownCorpus as e:
        print(f"bench download: error: {e}", file=sys.stderr)
        return 2
    status = 0
    for c in chosen:
        try:
            fetch(c, args.dest, args.force)
        except CorpusError as e:
            print(f"bench download: {c.name}: error: {e}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

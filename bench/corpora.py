"""Where corpora live and which ones tzip knows.

A corpora root is $TZIP_CORPORA, ../shared/corpora beside the repo, or a cache folder
(~/.cache/tzip/corpora, where `python -m bench download` puts what it fetches). A file
of a known corpus is looked for as ROOT/bench/PATH, then ROOT/PATH, in that root order.
The registry holds each known file's size and SHA-256, so a benchmark never runs on
bytes that differ from the published corpus.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "corpora" / "bench.json"


def search_roots() -> list[Path]:
    roots = []
    if os.environ.get("TZIP_CORPORA"):
        roots.append(Path(os.environ["TZIP_CORPORA"]))
    roots.append(REPO.parent / "shared" / "corpora")
    roots.append(cache_root())
    roots.append(REPO / "corpora")  # the corpora that travel with the repository (structured/)
    return roots


def cache_root() -> Path:
    """Where downloaded corpora go (the last search root)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tzip" / "corpora"


def train_dir() -> Path:
    for r in search_roots():
        if (r / "train").is_dir():
            return r / "train"
    raise FileNotFoundError("no training corpus found; looked for train/ under "
                            + ", ".join(map(str, search_roots())) + " (set TZIP_CORPORA)")


class CorpusError(Exception):
    """A corpus that is unknown, missing or not byte-identical to the published one."""


class UnknownCorpus(CorpusError):
    pass


class CorpusNotFound(CorpusError):
    pass


class CorpusMismatch(CorpusError):
    pass


@dataclass(frozen=True)
class CorpusFile:
    name: str
    path: str            # relative to a corpora root (also tried under ROOT/bench/)
    bytes: int
    sha256: str | None   # None: not known to this registry, only the size is checked
    kind: str            # "text" or "binary"
    group: str           # the corpus it belongs to: canterbury, calgary, silesia, ...

    def candidates(self, roots: list[Path] | None = None) -> list[Path]:
        roots = search_roots() if roots is None else roots
        return [p for r in roots for p in (r / "bench" / self.path, r / self.path)]

    def locate(self, roots: list[Path] | None = None) -> Path | None:
        return next((p for p in self.candidates(roots) if p.is_file()), None)

    def check(self, data: bytes, where: Path | str) -> None:
        if len(data) != self.bytes:
            raise CorpusMismatch(f"{where}: {len(data):,} bytes, but {self.group}/{self.name} "
                                 f"has {self.bytes:,}")
        if self.sha256 and hashlib.sha256(data).hexdigest() != self.sha256:
            raise CorpusMismatch(f"{where}: SHA-256 differs from the published "
                                 f"{self.group}/{self.name} ({self.sha256[:16]}...); "
                                 "delete it and download it again")


@dataclass(frozen=True)
class Source:
    """An archive to download a corpus from; members are matched by base name."""
    url: str
    archive: str                       # "zip" or "tar.gz"
    archive_bytes: int | None = None   # checked when known


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    files: tuple[CorpusFile, ...]
    source: Source | None = None
    how_to_get: str = ""               # for corpora that cannot be downloaded

    @property
    def groups(self) -> list[str]:
        return sorted({f.group for f in self.files})


# Sizes and SHA-256 of the 12 Silesia files, as published with the corpus and listed
# identically by several independent projects (not re-hashed here: no network).
_SILESIA = [
    ("dickens", 10192446, "b24c37886142e11d0ee687db6ab06f936207aa7f2ea1fd1d9a36763c7a507e6a", "text"),
    ("mozilla", 51220480, "657fc3764b0c75ac9de9623125705831ebbfbe08fed248df73bc2dc66e2a963b", "binary"),
    ("mr", 9970564, "68637ed52e3e4860174ed2dc0840ac77d5f1a60abbcb13770d5754e3774d53e6", "binary"),
    ("nci", 33553445, "fc63a31770947b8c2062d3b19ca94c00485a232bb91b502021948fee983e1635", "text"),
    ("ooffice", 6152192, "e7ee013880d34dd5208283d0d3d91b07f442e067454276095ded14f322a656eb", "binary"),
    ("osdb", 10085684, "60f027179302ca3ad87c58ac90b6be72ec23588aaa7a3b7fe8ecc0f11def3fa3", "binary"),
    ("reymont", 6627202, "0eac0114a3dfe6e2ee1f345a0f79d653cb26c3bc9f0ed79238af4933422b7578", "text"),
    ("samba", 21606400, "93ba07bc44d8267789c1d911992f40b089ffa2140b4a160fac11ccae9a40e7b2", "binary"),
    ("sao", 7251944, "c2d0ea2cc59d4c21b7fe43a71499342a00cbe530a1d5548770e91ecd6214adcc", "binary"),
    ("webster", 41458703, "6a68f69b26daf09f9dd84f7470368553194a0b294fcfa80f1604efb11143a383", "text"),
    ("xml", 5345280, "0e82e54e695c1938e4193448022543845b33020c8be6bf3bf3ead2224903e08c", "text"),
    ("x-ray", 8474240, "7de9fce1405dc44ae5e6813ed21cd5751e761bd4265655a005d39b9685d1c9ad", "binary"),
]
_ENWIK8_SHA256 = "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"
_ENWIK9_SHA256 = "159b85351e5f76e60cbe32e04c677847a9ecba3adc79addab6f4c6c7aa3744bc"
_CANTERBURY = "https://corpus.canterbury.ac.nz/resources/"


STRUCTURED = REPO / "corpora" / "structured" / "MANIFEST.json"


def _structured_files() -> tuple[CorpusFile, ...]:
    """The structured group (corpora/structured: JSON, CSV, logs, HTML, XML, Markdown, code,
    non-English UTF-8 and UTF-16 text), with licence and source in its MANIFEST.json."""
    if not STRUCTURED.is_file():
        return ()
    entries = json.loads(STRUCTURED.read_text())["files"]
    return tuple(CorpusFile(e["name"], f"structured/{e['name']}", e["size"], e["sha256"], "text",
                            "structured") for e in entries)


def _bench_files() -> tuple[CorpusFile, ...]:
    if not MANIFEST.is_file():
        return ()
    entries = json.loads(MANIFEST.read_text())["bench"]
    return tuple(CorpusFile(e["name"], e["path"], e["bytes"], e["sha256"], e["kind"], e["corpus"])
                 for e in entries)


@lru_cache(maxsize=1)
def registry() -> dict[str, Corpus]:
    """Every corpus tzip knows, by name."""
    bench = _bench_files()

    def group(name: str) -> tuple[CorpusFile, ...]:
        return tuple(f for f in bench if f.group == name)

    corpora = [
        Corpus("bench", "the held-out benchmark files of corpora/bench.json "
               "(Canterbury, Calgary, Large Canterbury, a Wikipedia XML sample)", bench,
               how_to_get="`python -m bench download bench` fetches its canterbury, calgary "
                          "and large groups; for all of it point TZIP_CORPORA at a copy of "
                          "the project's shared corpora"),
        Corpus("canterbury", "Canterbury Corpus (1997), 11 files", group("canterbury"),
               Source(_CANTERBURY + "cantrbry.tar.gz", "tar.gz")),
        Corpus("calgary", "Calgary Corpus, the standard 14 files", group("calgary"),
               Source(_CANTERBURY + "calgary.tar.gz", "tar.gz")),
        Corpus("large", "Large Canterbury Corpus: bible.txt and world192.txt (E.coli is "
               "not part of the bench set)", group("large"),
               Source(_CANTERBURY + "large.tar.gz", "tar.gz")),
        Corpus("enwik", "enwiki-2016-sample.xml, a 6 MB Wikipedia XML excerpt", group("enwik"),
               how_to_get="it comes only with the project's shared corpora "
                          "(../shared/corpora/bench/enwik/, see its README)"),
        Corpus("structured", "real public text of other kinds than prose, from package "
               "registries (corpora/structured/MANIFEST.json: licence, source, sha256); "
               "measurement only, never training", _structured_files(),
               how_to_get="it travels with the repository (corpora/structured/)"),
        Corpus("enwik8", "first 10^8 bytes of the English Wikipedia dump of 2006-03-03",
               (CorpusFile("enwik8", "enwik8", 100_000_000, _ENWIK8_SHA256, "text", "enwik8"),),
               Source("http://mattmahoney.net/dc/enwik8.zip", "zip")),
        Corpus("enwik9", "first 10^9 bytes of the English Wikipedia dump of 2006-03-03",
               (CorpusFile("enwik9", "enwik9", 1_000_000_000, _ENWIK9_SHA256, "text", "enwik9"),),
               Source("http://mattmahoney.net/dc/enwik9.zip", "zip")),
        Corpus("silesia", "Silesia corpus, 12 files, 211,938,580 bytes",
               tuple(CorpusFile(n, f"silesia/{n}", b, h, k, "silesia") for n, b, h, k in _SILESIA),
               Source("https://sun.aei.polsl.pl/~sdeor/corpus/silesia.zip", "zip")),
    ]
    return {c.name: c for c in corpora}


def get(name: str) -> Corpus:
    try:
        return registry()[name]
    except KeyError:
        raise UnknownCorpus(f"unknown corpus {name!r} (known: {', '.join(registry())})") from None


def download_hint(f: CorpusFile) -> str:
    """The command that fetches this file, or how else to get it."""
    c = registry().get(f.group)
    if c is not None and c.source is not None:
        return f"python -m bench download {c.name}"
    return (c.how_to_get if c is not None and c.how_to_get
            else "put it under a corpora root (set TZIP_CORPORA)")


def resolve(files: list[CorpusFile] | tuple[CorpusFile, ...],
            roots: list[Path] | None = None) -> list[tuple[CorpusFile, Path]]:
    """Each file with where it is; CorpusNotFound names what is missing, where it was
    looked for, and the command that downloads it."""
    roots = search_roots() if roots is None else roots
    found, missing = [], []
    for f in files:
        p = f.locate(roots)
        if p is not None and p.stat().st_size != f.bytes:
            raise CorpusMismatch(f"{p}: {p.stat().st_size:,} bytes, but {f.group}/{f.name} has "
                                 f"{f.bytes:,}; delete it and download it again")
        (found if p else missing).append((f, p))
    if missing:
        names = ", ".join(f"{f.path} ({f.bytes:,} bytes)" for f, _ in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        hints = sorted({download_hint(f) for f, _ in missing})
        raise CorpusNotFound(
            f"{len(missing)} corpus file(s) not found: {names}{more}\n"
            f"  looked for ROOT/bench/PATH and ROOT/PATH under: "
            + ", ".join(map(str, roots))
            + " (roots: $TZIP_CORPORA, ../shared/corpora, the cache folder)\n"
            + "".join(f"  get them with: {h}\n" for h in hints).rstrip("\n"))
    return found

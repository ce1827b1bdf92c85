"""Which files a run measures: a registered corpus (bench/corpora.py), the user's own files,
or the quick set (three small Canterbury files, else the sample texts shipped here)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import corpora

from .tools import UsageError

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
QUICK_FILES = ("grammar.lsp", "xargs.1", "fields.c")


@dataclass
class Input:
    name: str
    group: str
    kind: str
    path: Path
    entry: corpora.CorpusFile | None = None

    @property
    def label(self) -> str:
        return f"{self.group}/{self.name}"

    def read(self, limit: int | None = None) -> bytes:
        """The file's bytes (checked against the registry), cut to limit when given."""
        data = self.path.read_bytes()
        if self.entry is not None:
            self.entry.check(data, self.path)
        return data[:limit] if limit else data


def user_files(paths: list[str]) -> list[Input]:
    """The user's files, named by base name (by path where two base names are equal)."""
    files = [Path(p) for p in paths]
    for p in files:
        if not p.is_file():
            raise UsageError(f"--files: {p} is not a readable file")
    names = [p.name for p in files]
    return [Input(p.name if names.count(p.name) == 1 else str(p), "files", "file", p)
            for p in files]


def sample_files() -> list[Input]:
    return [Input(p.name, "sample", "text", p) for p in sorted(SAMPLE_DIR.iterdir()) if p.is_file()]


def quick_files() -> tuple[list[Input], str | None]:
    """The quick set, and a note when the shipped samples stand in for Canterbury."""
    bench = corpora.get("bench")
    wanted = [f for name in QUICK_FILES for f in bench.files if f.name == name]
    try:
        found = corpora.resolve(wanted)
    except corpora.CorpusError:
        found = []
    if found and len(found) == len(QUICK_FILES):
        return [Input(f.name, f.group, f.kind, p, f) for f, p in found], None
    return sample_files(), ("quick: Canterbury files not found, using the sample texts in "
                            f"{SAMPLE_DIR}")


def corpus_files(name: str, groups: list[str] | None, all_kinds: bool) -> list[Input]:
    """The files of a registered corpus, or of several ("bench,structured": one run, so
    one machine state, for groups of different corpora); raises CorpusNotFound when some
    are missing."""
    files, known = [], []
    for one in [n.strip() for n in name.split(",") if n.strip()]:
        try:
            corpus = corpora.get(one)
        except corpora.UnknownCorpus as e:
            raise UsageError(str(e)) from None
        files += list(corpus.files)
        known += [g for g in corpus.groups if g not in known]
    if groups:
        unknown = sorted(set(groups) - set(known))
        if unknown:
            raise UsageError(f"--group {','.join(unknown)}: not in corpus {name!r} "
                             f"(its groups: {', '.join(known)})")
        files = [f for f in files if f.group in groups]
    if not all_kinds:
        files = [f for f in files if f.kind == "text"]
    if not files:
        raise UsageError(f"no files selected from corpus {name!r}"
                         + ("" if all_kinds else " (only text files are used; add --all-kinds)"))
    return [Input(f.name, f.group, f.kind, p, f) for f, p in corpora.resolve(files)]

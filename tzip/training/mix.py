"""The training data mix: which text the model sees, in what proportion, and how it is
held out for validation, kind by kind.

`--data` takes entries `PATH` or `PATH=WEIGHT`. PATH is a folder (every *.txt.xz and
*.txt in it) or one such file. Without weights the windows are drawn in proportion to the
text's size, as if every file were one concatenation. With weights, each entry gets that
share of the training windows (weights are relative: `a=3 b=1` and `a=0.75 b=0.25` are the
same mix), split among a folder's files by their size. A file may also be named on its
own beside its folder: it then takes its own weight and leaves the folder's share to
the folder's other files (`.data/train-wide=0.3 .data/train-wide/logs.txt.xz=0.05`).
Either every entry has a weight or none does; a weight must be a positive finite number.

Every file is one *kind*, named by its file name without `.txt[.xz]` (the folder's name
is put in front when two folders hold files of the same name). Its last `val_bytes`
(at most half of it) are held out, and at the end of a run the model's bits per byte are
measured on each kind's held-out text separately, so a model card can say how it does
on prose, code, logs or JSON, not only on the whole.
"""
from __future__ import annotations

import hashlib
import lzma
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..model.config import BOS


class MixError(ValueError):
    """A --data entry that cannot be used; its message is one line for the user."""


@dataclass
class Kind:
    """One training file: its training and held-out bytes and its share of the windows."""
    name: str
    path: Path
    train: np.ndarray
    val: np.ndarray
    weight: float = 0.0  # share of the training windows; the shares of a mix sum to 1
    entry: str = ""  # the --data entry it came from
    sha256: str = field(default="", repr=False)  # of the file as stored (.xz or not)

    def describe(self) -> dict:
        return {"kind": self.name, "path": str(self.path), "entry": self.entry, "sha256": self.sha256,
                "weight": round(self.weight, 6), "train_bytes": int(len(self.train)),
                "val_bytes": int(len(self.val))}


def parse_entry(spec: "str | Path") -> tuple[Path, float | None]:
    """`PATH` or `PATH=WEIGHT` -> (path, weight or None). A path that exists as written is
    taken whole, even if it holds '='."""
    s = str(spec)
    if "=" not in s or Path(s).exists():
        return Path(s), None
    path, _, w = s.rpartition("=")
    try:
        weight = float(w)
    except ValueError:
        raise MixError(f"--data {s}: the weight after '=' must be a number, not {w!r}") from None
    if not math.isfinite(weight) or weight <= 0:
        raise MixError(f"--data {s}: the weight must be a positive finite number")
    if not path:
        raise MixError(f"--data {s}: no path before '='")
    return Path(path), weight


def entry_files(path: Path) -> list[Path]:
    """The training files an entry names: a folder's *.txt.xz and *.txt, or one file."""
    if path.is_dir():
        files = sorted(path.glob("*.txt.xz")) + sorted(path.glob("*.txt"))
        if not files:
            raise MixError(f"--data {path}: no *.txt or *.txt.xz training files in this folder")
        return files
    if path.is_file():
        if not (path.name.endswith(".txt") or path.name.endswith(".txt.xz")):
            raise MixError(f"--data {path}: a training file must be *.txt or *.txt.xz")
        return [path]
    raise MixError(f"--data {path}: no such folder or file")


def split(raw: bytes, val_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The last val_bytes (at most half) are held out for validation."""
    arr = np.frombuffer(raw, dtype=np.uint8)
    cut = max(len(arr) - val_bytes, len(arr) // 2)
    return arr[:cut], arr[cut:]


def _kind_name(p: Path) -> str:
    n = p.name
    return n[:-len(".txt.xz")] if n.endswith(".txt.xz") else n[:-len(".txt")]


def load_mix(specs: "list[str | Path]", val_bytes: int, window: int) -> list[Kind]:
    """The kinds of these --data entries with their shares of the training windows.
    window is the length of one training window (context + 1): every kind must hold one."""
    entries = [parse_entry(s) for s in specs]
    if not entries:
        raise MixError("--data: no entries")
    weighted = [w is not None for _, w in entries]
    if any(weighted) and not all(weighted):
        raise MixError("--data: give every entry a weight (PATH=WEIGHT) or none "
                       "(then the mix follows the sizes)")
    kinds: list[Kind] = []
    seen: dict[Path, str] = {}
    named = {path.resolve() for path, _ in entries if path.is_file()}  # these leave their folder
    for (path, _), spec in zip(entries, specs):
        for f in entry_files(path):
            key = f.resolve()
            if path.is_dir() and key in named:
                continue
            if key in seen:
                raise MixError(f"--data {spec}: {f} is already in the mix (from {seen[key]})")
            seen[key] = str(spec)
            stored = f.read_bytes()
            raw = lzma.decompress(stored) if f.suffix == ".xz" else stored
            tr, va = split(raw, val_bytes)
            if len(tr) < window + 1:
                raise MixError(f"--data {spec}: {f.name} holds {len(raw)} bytes, too few for "
                               f"training windows of {window} bytes")
            kinds.append(Kind(_kind_name(f), f, tr, va, entry=str(spec),
                              sha256=hashlib.sha256(stored).hexdigest()))
    names = [k.name for k in kinds]
    for k in kinds:
        if names.count(k.name) > 1:
            k.name = f"{k.path.parent.name}/{k.name}"
    if len({k.name for k in kinds}) < len(kinds):
        raise MixError("--data: two files have the same folder and file name; rename one")
    if all(weighted):
        total_w = sum(w for _, w in entries)
        for (path, w), spec in zip(entries, specs):
            mine = [k for k in kinds if k.entry == str(spec)]
            if not mine:
                raise MixError(f"--data {spec}: every file of this folder is named on its own")
            size = sum(len(k.train) for k in mine)
            for k in mine:
                k.weight = w / total_w * len(k.train) / size
    else:
        size = sum(len(k.train) for k in kinds)
        for k in kinds:
            k.weight = len(k.train) / size
    return kinds


class Sampler:
    """Random training windows: a kind drawn by its share, then a start drawn uniformly
    within that kind's training text (a window never runs from one file into the next)."""

    def __init__(self, kinds: list[Kind], window: int, device: torch.device):
        self.kinds, self.window = kinds, window
        self.data = torch.from_numpy(np.concatenate([k.train for k in kinds])).to(device)
        sizes = torch.tensor([len(k.train) for k in kinds], dtype=torch.long)
        self.start = (torch.cumsum(sizes, 0) - sizes).to(device)
        self.span = (sizes - window + 1).to(device=device, dtype=torch.float64)
        cdf = torch.cumsum(torch.tensor([k.weight for k in kinds], dtype=torch.float64), 0)
        self.cdf = (cdf / cdf[-1]).to(device)
        self.drawn = torch.zeros(len(kinds), dtype=torch.long, device=device)  # windows per kind

    def draw(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(kind index, start offset into self.data) of batch windows. Nothing here waits
        for the device (no multinomial or bincount), so a GPU run keeps its queue full."""
        dev = self.data.device
        u = torch.rand(batch, generator=gen, dtype=torch.float64, device=dev)
        k = torch.searchsorted(self.cdf, u, right=True).clamp_(max=len(self.kinds) - 1)
        off = (torch.rand(batch, generator=gen, dtype=torch.float64, device=dev) * self.span[k]).long()
        self.drawn.index_add_(0, k, torch.ones_like(k))
        return k, self.start[k] + off

    def batch(self, batch: int, bos_prob: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of batch windows; some inputs start with BOS, as a stream's
        first bytes do."""
        _, ix = self.draw(batch, gen)
        win = self.data[ix[:, None] + torch.arange(self.window, device=self.data.device)].long()
        x, y = win[:, :-1].clone(), win[:, 1:]
        bos = torch.rand(batch, generator=gen, device=self.data.device) < bos_prob
        x[bos, 0] = BOS
        return x, y

    def bytes_seen(self) -> dict[str, int]:
        """Training bytes drawn so far, by kind."""
        return {k.name: int(n) * (self.window - 1) for k, n in zip(self.kinds, self.drawn.tolist())}


@torch.no_grad()
def evaluate_kinds(model, kinds: list[Kind], T: int, batch: int, amp, max_windows: int = 1024) -> dict[str, float]:
    """Bits per byte on each kind's held-out text: windows of T bytes spread evenly over
    it (as many as cover it once, at most max_windows), every position scored."""
    model.eval()
    dev = next(model.parameters()).device
    out = {}
    for k in kinds:
        val = torch.from_numpy(k.val.copy()).to(dev)
        if len(val) < T + 1:
            continue
        n = max(1, min(max_windows, len(val) // T))
        starts = torch.linspace(0, len(val) - T - 1, n, device=dev).long()
        total = 0.0
        for i in range(0, n, batch):
            ix = starts[i:i + batch]
            win = val[ix[:, None] + torch.arange(T + 1, device=dev)].long()
            with amp():
                logits = model(win[:, :-1])
            total += F.cross_entropy(logits.float().reshape(-1, 256), win[:, 1:].reshape(-1),
                                     reduction="sum").item()
        out[k.name] = round(total / (n * T) / math.log(2), 4)
    model.train()
    return out


def mixed_bpb(kinds: list[Kind], per_kind: dict[str, float]) -> float | None:
    """The held-out bits per byte averaged with the mix's shares (what the training loss
    aims at), over the kinds that were measured."""
    got = [(k.weight, per_kind[k.name]) for k in kinds if k.name in per_kind]
    w = sum(x for x, _ in got)
    return round(sum(x * b for x, b in got) / w, 4) if w else None

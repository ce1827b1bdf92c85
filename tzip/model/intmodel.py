"""The integer model file: what the integer engine needs and nothing else.

An IntModel holds int8 weight matrices (per-output-row scales folded into int64
multipliers), integer embeddings, per-channel norm steps, exp tables and shifts. It is
saved as an .npz of plain arrays (no pickle); its identity is a sha256 over those arrays,
so an archive can name the exact model that made it. It holds those arrays as numpy
arrays, exactly as the file stores them (weights as int8), and needs no PyTorch. How a
float model becomes one is tzip/training/convert.py; how the engine computes with one is
tzip/engine/exact.py.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .config import ModelConfig

FORMAT = 2  # engine semantics version: a model file of another format is refused
NORM_SHIFT = 16  # fixed-point bits of the per-channel norm multipliers
ATT_EXP_ONE = 1 << 13  # exp table top for attention weights (float64 sums stay exact)
OUT_ONE = 1 << 16  # top frequency of the output distribution; every byte gets >= 1
MLP_BITS = 8  # squared-ReLU activations are integers in [0, 255]
UNITS = 256  # logits are integers in units of 1/256 nat
RES_BITS = 22  # calibrated residual maximum maps to 2**22
MULT_BITS = 24


class ModelFileError(ValueError):
    """A model file that cannot be read or is not a tzip integer model."""


@dataclass
class IntModel:
    """cfg: the shape; arrays: the file's arrays by name (weight matrices "l{l}.wqkv",
    "l{l}.wo", "l{l}.w1", "l{l}.w2" and "head" as int8 (K, N)); shifts: the multipliers'
    fixed-point shifts."""
    cfg: ModelConfig
    arrays: dict[str, np.ndarray]
    shifts: dict[str, int]
    name: str = "unnamed"
    info: dict = field(default_factory=dict)

    def numeric_meta(self) -> dict:
        return {"config": self.cfg.to_dict(), "shifts": self.shifts, "format": FORMAT}

    @cached_property
    def digest(self) -> bytes:
        """sha256 over the numbers that define the engine (not the name or the card)."""
        h = hashlib.sha256(json.dumps(self.numeric_meta(), sort_keys=True).encode())
        for k in sorted(self.arrays):
            a = storage_array(k, self.arrays[k])
            h.update(f"{k}|{a.dtype.str}|{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.digest()

    def num_params(self) -> int:
        return sum(v.size for k, v in self.arrays.items() if _is_weight(k))

    def save(self, path: Path) -> None:
        meta = dict(self.numeric_meta(), name=self.name, info=self.info)
        arrays = {k: storage_array(k, v) for k, v in self.arrays.items()}
        with open(path, "wb") as f:
            np.savez(f, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)

    @classmethod
    def load(cls, path: Path) -> "IntModel":
        """The model saved at path; any file that is not one (unreadable, not an .npz,
        pickled, malformed metadata, arrays that are not numbers) raises ModelFileError with a
        one-line message, never another exception."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if not hasattr(z, "files"):
                    raise ValueError("not an .npz archive")
                meta = json.loads(z["__meta__"].tobytes())
                if not isinstance(meta, dict):
                    raise ValueError("metadata is not a JSON object")
                if meta.get("format") != FORMAT:
                    raise ModelFileError(f"{path}: model format {_short(repr(meta.get('format')))}, "
                                         f"this tzip reads format {FORMAT}; convert the float "
                                         f"checkpoint again")
                cfg, shifts = meta["config"], meta["shifts"]
                if not isinstance(cfg, dict) or not isinstance(shifts, dict):
                    raise ValueError("config and shifts must be JSON objects")
                arrays = {}
                for k in z.files:
                    if k == "__meta__":
                        continue
                    a = z[k]
                    if a.dtype.kind not in "biuf":
                        raise ValueError(f"array {_short(k)} holds {a.dtype}, not numbers")
                    arrays[k] = a
            config = ModelConfig.from_dict(cfg)
            if not all(type(v) is int and v > 0 for v in config.to_dict().values()):
                raise ValueError(f"bad config {config}")
            info = meta.get("info", {})
            return cls(config, arrays, shifts,
                       str(meta.get("name", Path(path).stem)), info if isinstance(info, dict) else {})
        except ModelFileError:
            raise
        except Exception as e:  # a malformed file may fail anywhere in numpy, zipfile or json
            raise ModelFileError(f"{path}: not a readable tzip model ({type(e).__name__}: "
                                 f"{_short(e)})") from None


def _short(x: object) -> str:
    """x on one line of at most 200 characters."""
    text = " ".join(str(x).split())
    return text if len(text) <= 200 else text[:200] + "..."


def _is_weight(key: str) -> bool:
    return key == "head" or key.split(".")[-1] in ("wqkv", "wo", "w1", "w2")


def storage_array(key: str, a: np.ndarray) -> np.ndarray:
    """The array as a model file stores it: weight matrices as int8 (their values are
    whole numbers in [-127, 127] in whatever dtype they are held), the rest as they are."""
    a = np.asarray(a)
    return a.astype(np.int8) if _is_weight(key) else a



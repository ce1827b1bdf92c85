"""Where models are found, without importing torch (so `tzip models`, `tzip --help` and
`import tzip` stay fast).

Search path, first match wins:

1. $TZIP_MODELS (one folder, or several separated by os.pathsep)
2. the per-user folder: platformdirs' user data folder for tzip when platformdirs is
   installed, else $XDG_DATA_HOME/tzip/models (~/.local/share/tzip/models)
3. the models shipped with the package: package data `tzip._models` in an installed
   wheel (the repository's top-level models/ folder, mapped in pyproject.toml), or that
   folder itself in a source checkout or an editable install
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent  # the source checkout, when tzip runs from one


def user_dir() -> Path:
    """The per-user models folder (it need not exist)."""
    try:
        import platformdirs
        return Path(platformdirs.user_data_dir("tzip", appauthor=False)) / "models"
    except ImportError:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        return Path(base) / "tzip" / "models"


def shipped_dir() -> Path | None:
    """The folder of the models that came with this tzip."""
    installed = PACKAGE / "_models"  # pip install ., a wheel, pipx
    if installed.is_dir():
        return installed
    source = REPO / "models"  # a source checkout (PYTHONPATH) or an editable install
    if (REPO / "pyproject.toml").is_file() and source.is_dir():
        return source
    try:  # any other installer's layout that still has the package data on disk
        from importlib.resources import files
        for entry in files("tzip._models").iterdir():
            if entry.name.endswith(".npz"):
                return Path(str(entry)).parent
    except (ImportError, OSError, TypeError):
        pass
    return None


def env_dirs() -> list[Path]:
    value = os.environ.get("TZIP_MODELS", "")
    return [Path(p) for p in value.split(os.pathsep) if p]


def search_path() -> list[Path]:
    """Every folder models are looked for in, first match first (existing or not)."""
    dirs = env_dirs() + [user_dir()]
    shipped = shipped_dir()
    if shipped is not None:
        dirs.append(shipped)
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def primary_dir() -> Path:
    """The one folder of the older single-folder lookup: $TZIP_MODELS (its first folder)
    when set, else the shipped models' folder."""
    env = env_dirs()
    if env:
        return env[0]
    return shipped_dir() or REPO / "models"


def all_model_files() -> list[Path]:
    """Every .npz on the search path in search order, a name found twice included (a
    lookup by id must be able to go on past a same-named file that is another model)."""
    out: list[Path] = []
    for d in search_path():
        try:
            out += sorted(d.glob("*.npz")) if d.is_dir() else []
        except OSError:
            continue
    return out


def model_files() -> dict[str, Path]:
    """Every model on the search path by name (a name found twice: the first one)."""
    found: dict[str, Path] = {}
    for p in all_model_files():
        found.setdefault(p.stem, p)
    return found


def model_file(name: str) -> Path | None:
    """The file of the model called name on the search path, or None. Only plain names
    are looked up (no folders, no hidden files)."""
    if not name or name.startswith(".") or "/" in name or os.sep in name or "\0" in name:
        return None
    return model_files().get(name)


_WEIGHTS = ("wqkv", "wo", "w1", "w2")

# A model file is an .npz that any folder on the search path may hold, and every lookup by
# id reads each one: what it may cost is checked from the zip directory and the .npy
# headers before any array is inflated.
MAX_RATIO = 64  # inflated bytes per stored byte of one member (tzip writes ratio 1;
#                 np.savez_compressed of the shipped models: at most 11.4)
RATIO_SLACK = 1 << 16  # small members compress better: this much is always allowed
META_MAX = 1 << 20  # bytes of the JSON metadata
BYTE_VOCAB, OUT_VOCAB = 257, 256  # embedding rows (bytes and BOS), output columns
# ModelConfig's defaults (tzip/model/config.py; importing the tzip.model package would
# load numpy, and the CLI imports this module for --help): a key a file leaves out
CONFIG_DEFAULTS = {"d_model": 128, "n_layer": 4, "n_head": 4, "n_kv_head": 1, "mlp_mult": 4,
                   "context": 256}


class ModelFileRejected(ValueError):
    """A file on the search path that is not a model tzip will read, with why (one line)."""


def _weight_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """The shape of every weight matrix a model of this config has, by array name."""
    d, n_head, kv, mlp = cfg["d_model"], cfg["n_head"], cfg["n_kv_head"], cfg["mlp_mult"]
    qkv = d + 2 * kv * (d // n_head)
    shapes = {"emb": (BYTE_VOCAB, d), "head": (d, OUT_VOCAB)}
    for i in range(cfg["n_layer"]):
        shapes.update({f"l{i}.wqkv": (d, qkv), f"l{i}.wo": (d, d),
                       f"l{i}.w1": (d, mlp * d), f"l{i}.w2": (mlp * d, d)})
    return shapes


def _size_bound(cfg: dict, weights: dict[str, tuple[int, ...]]) -> int:
    """Bytes a model of this config may declare in all: its weights (int8; the embedding
    is int64) many times over for the per-channel vectors and tables, plus slack."""
    n = sum(math.prod(s) for s in weights.values())
    return 16 * n + 8 * BYTE_VOCAB * cfg["d_model"] + 64 * cfg["context"] + (1 << 20)


def check_npz(path: Path) -> dict:
    """The metadata of a model file, after checking from the zip directory and each
    member's .npy header (a few bytes inflated per member) that reading it costs what a
    model of its config costs: no member inflates more than MAX_RATIO times its stored
    size, every array's declared bytes are what its header says, the weights have the
    config's shapes and the whole is within _size_bound(config). Raises
    ModelFileRejected (one line) otherwise; nothing large is ever inflated here."""
    import numpy as np
    from numpy.lib import format as npformat
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelFileRejected(f"not an .npz archive ({_short(e)})") from None
    with zf:
        infos = zf.infolist()
        for i in infos:
            if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ModelFileRejected(f"member {_short(i.filename)} uses zip method "
                                        f"{i.compress_type} (numpy writes stored or deflate)")
            if i.file_size > MAX_RATIO * i.compress_size + RATIO_SLACK:
                raise ModelFileRejected(f"member {_short(i.filename)} declares {i.file_size:,} "
                                        f"bytes from {i.compress_size:,} (a decompression bomb?)")
        by_name = {i.filename: i for i in infos}
        meta_info = by_name.get("__meta__.npy")
        if meta_info is None:
            raise ModelFileRejected("no __meta__ array")
        if meta_info.file_size > META_MAX:
            raise ModelFileRejected(f"metadata of {meta_info.file_size:,} bytes")
        try:
            with zf.open(meta_info) as f:
                meta = json.loads(npformat.read_array(f, allow_pickle=False).tobytes())
            cfg = {**CONFIG_DEFAULTS, **meta["config"]}
            if not all(type(cfg[k]) is int and cfg[k] > 0 for k in CONFIG_DEFAULTS):
                raise ValueError(f"bad config {_short(meta['config'])}")
            if cfg["n_layer"] > 1024 or cfg["d_model"] > 1 << 16:
                raise ValueError(f"config out of range {_short(cfg)}")
        except ModelFileRejected:
            raise
        except Exception as e:  # malformed metadata may fail in numpy, zipfile or json
            raise ModelFileRejected(f"unreadable metadata ({type(e).__name__}: {_short(e)})") from None
        weights = _weight_shapes(cfg)
        total = 0
        for i in infos:
            if i.filename == "__meta__.npy":
                continue
            key = i.filename[:-4] if i.filename.endswith(".npy") else i.filename
            try:
                with zf.open(i) as f:
                    version = npformat.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = npformat.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = npformat.read_array_header_2_0(f)
                    else:
                        raise ValueError(f".npy version {version}")
                    offset = f.tell()
            except Exception as e:
                raise ModelFileRejected(f"array {_short(key)}: unreadable header "
                                        f"({type(e).__name__}: {_short(e)})") from None
            if dtype.hasobject:
                raise ModelFileRejected(f"array {_short(key)} holds Python objects")
            nbytes = math.prod(shape) * dtype.itemsize
            if offset + nbytes != i.file_size:
                raise ModelFileRejected(f"array {_short(key)} of shape {_short(shape)} declares "
                                        f"{i.file_size:,} bytes in the zip directory")
            if _is_weight(key) and key in weights and tuple(shape) != weights[key]:
                raise ModelFileRejected(f"array {_short(key)} has shape {_short(shape)}, the "
                                        f"config says {weights[key]}")
            if _is_weight(key) and key not in weights:
                raise ModelFileRejected(f"weight {_short(key)} is not in a model of this config")
            total += i.file_size
        bound = _size_bound(cfg, weights)
        if total > bound:
            raise ModelFileRejected(f"arrays of {total:,} bytes, a model of this config has "
                                    f"at most {bound:,}")
    return meta


def _short(x: object) -> str:
    text = " ".join(str(x).split())
    return text if len(text) <= 120 else text[:120] + "..."


def _is_weight(key: str) -> bool:
    return key == "head" or key.split(".")[-1] in _WEIGHTS


def _scan(path: Path) -> tuple[dict, bytes, int]:
    """(metadata, IntModel.digest, weight count) of a model file, read one array at a time
    with numpy alone: the digest is the sha256 over the numeric metadata and the arrays in
    the form IntModel stores them (int8 weights; any other int8 array as IntModel.load
    holds it, float32)."""
    import numpy as np
    check_npz(path)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["__meta__"].tobytes())
        numeric = {"config": meta["config"], "shifts": meta["shifts"], "format": meta["format"]}
        h = hashlib.sha256(json.dumps(numeric, sort_keys=True).encode())
        params = 0
        for k in sorted(f for f in z.files if f != "__meta__"):
            a = z[k]
            if a.dtype == np.int8 and not _is_weight(k):
                a = a.astype(np.float32)
            h.update(f"{k}|{a.dtype.str}|{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
            if _is_weight(k):
                params += a.size
    return meta, h.digest(), params


def file_digest(path: Path) -> bytes:
    """IntModel.digest of a model file, without building the model (or importing torch)."""
    return _scan(path)[1]


def summary(path: Path) -> dict:
    """Name, parameters, context, id and format of a model file, read with numpy alone."""
    meta, digest, params = _scan(path)
    return {"name": meta.get("name", path.stem), "params": params,
            "context": meta["config"].get("context"), "id": digest.hex(), "path": path,
            "format": meta["format"]}

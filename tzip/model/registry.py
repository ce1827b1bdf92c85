"""Finding and loading models: installed ones by name (tzip/modelpath.py has the search
path: $TZIP_MODELS, the per-user folder, the models shipped with the package), or any .npz
by path."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from .. import device as devices
from .. import modelpath
from ..errors import ModelError
from .intmodel import IntModel, ModelFileError

REPO = modelpath.REPO
CPU_DEFAULT, GPU_DEFAULT = "tzip-small", "tzip-large"


def models_dir() -> Path:
    """$TZIP_MODELS (its first folder) when set, else the shipped models' folder."""
    return modelpath.primary_dir()


def available() -> list[str]:
    """Names of the models on the whole search path (modelpath.search_path())."""
    return sorted(modelpath.model_files())


def resolve_device(device: object = "auto") -> devices.Device:
    """The device a name ("auto", "cpu", "cuda", "cuda:N") or a torch.device stands for
    (tzip/device.py: PyTorch is loaded only where a GPU may be)."""
    return devices.resolve(device)


def default_name(device: object) -> str:
    """The GPU model when a GPU runs it and it is installed, else the CPU model (device: a
    Device, a torch.device or a name)."""
    names = available()
    if devices.Device(str(device)).type == "cuda" and GPU_DEFAULT in names:
        return GPU_DEFAULT
    return CPU_DEFAULT


@lru_cache(maxsize=8)
def _load_path(path: str, mtime: float) -> IntModel:
    return IntModel.load(Path(path))


def load(spec: "str | Path | IntModel | None", device: object = None) -> IntModel:
    """A model from an IntModel, a path to an .npz, or the name of an installed model."""
    if isinstance(spec, IntModel):
        return spec
    if spec is None:
        spec = default_name(device or "cpu")
    try:
        p = Path(spec)
        if not p.is_file():
            p = modelpath.model_file(str(spec))
            if p is None:
                have = ", ".join(available()) or "none"
                raise ModelError(f"model {_shown(str(spec))} not found (installed: {have}; "
                                 f"looked in {', '.join(map(str, modelpath.search_path()))})")
        try:  # what reading the file may cost, before numpy inflates anything
            modelpath.check_npz(p)
        except modelpath.ModelFileRejected as e:
            raise ModelError(f"{p}: not a readable tzip model ({e})") from None
        return _load_path(str(p.resolve()), p.stat().st_mtime)
    except ModelFileError as e:
        raise ModelError(str(e)) from None
    except (OSError, ValueError) as e:  # a name too long for a path, a NUL in it...
        raise ModelError(f"model {_shown(str(spec))} cannot be opened ({_one_line(e)})") from None


def find(name: str, digest: bytes) -> IntModel:
    """The installed model with this digest. The name (from an archive's header) is only
    a hint: never a path. Files of that name (when it is a plain name) are tried first,
    in search-path order, then every other model file on the path; a file is loaded in
    full only when its id (cached by file) matches, so a same-named file that is another
    model or unreadable never hides the right one further down. When none matches, the
    error says what was found under that name and why it was passed over."""
    files = modelpath.all_model_files()
    named = [p for p in files if _plain(name) and p.stem == name]
    passed_over: list[str] = []
    for path in named + [p for p in files if p not in named]:
        got, why = _file_id(path)
        if got and got[:len(digest)] == digest:
            try:
                m = load(path)
            except ModelError as e:
                why = _one_line(e)
            else:
                if m.digest.startswith(digest):
                    return m
                why = f"its id changed to {m.digest.hex()[:16]} while loading"
        elif got:
            why = f"another model, id {got.hex()[:16]}"
        if path in named:
            passed_over.append(f"{path} ({why})")
    head = f"this archive was made with model {_shown(name)} (id {digest.hex()[:16]}), which is not installed"
    if passed_over:
        more = f" and {len(passed_over) - 2} more" if len(passed_over) > 2 else ""
        raise ModelError(f"{head}: passed over {'; '.join(passed_over[:2])}{more}; "
                         f"pass --model PATH")
    where = ", ".join(map(str, modelpath.search_path()))
    raise ModelError(f"{head} (looked in {where}); pass --model PATH")


NAME_MAX = 128  # longest model name find() looks up


def _plain(name: str) -> bool:
    """A model name that cannot be read as a path: no separators, no leading dot."""
    return (0 < len(name) <= NAME_MAX and name.isprintable() and not name.startswith(".")
            and not any(c in name for c in "/\\:"))


def _shown(name: str) -> str:
    """A name for a one-line message, however long or odd."""
    return repr(name if len(name) <= 40 else name[:40] + "...")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:200] + "..."


def _installed_path(name: str) -> Path | None:
    """The file of an installed model (a name from available(), anywhere on the search
    path), or None."""
    return modelpath.model_files().get(name)


_digests: dict[tuple[str, int, int], tuple[bytes, str]] = {}


def _file_id(path: Path) -> tuple[bytes, str]:
    """(IntModel.digest, "") of a model file, computed from its arrays one at a time
    without building the model (after modelpath.check_npz has bounded what that costs),
    and cached by (path, mtime, size); (b"", why) for a file that is not a readable model."""
    try:
        st = path.stat()
    except OSError as e:
        return b"", f"cannot be read: {_one_line(e)}"
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _digests:
        try:
            _digests[key] = (modelpath.file_digest(path), "")
        except modelpath.ModelFileRejected as e:
            _digests[key] = (b"", f"not read: {_one_line(e)}")
        except Exception as e:  # any malformed file: not a match, never a traceback
            _digests[key] = (b"", f"not a readable model: {type(e).__name__}: {_one_line(e)}")
    return _digests[key]


def _file_digest(path: Path) -> bytes:
    """IntModel.digest of a model file, or b"" for a file that is not a readable model
    (_file_id says why)."""
    return _file_id(path)[0]

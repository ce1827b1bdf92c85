"""Where numba keeps tzip's compiled loops, chosen before they are first compiled.

numba caches a compiled function beside its source (a __pycache__ folder), else in a
per-user folder under HOME. A system-wide or container install is read-only and HOME may be
unwritable too: then numba cannot cache at all, its `cache=True` functions fail to be
defined, the compiled modules fail to import, and tzip ran the slow reference path without a
word (13x slower, measured on a 210 KB file). So every module with compiled loops gets numba
through `numba()` here, which first picks the first of these that is writable and tells
numba (NUMBA_CACHE_DIR, and numba's config when it is already imported):

    1. NUMBA_CACHE_DIR, when the user set it (and it is writable);
    2. beside the sources (numba's own default), when tzip's package folders are writable;
    3. the per-user cache folder: $XDG_CACHE_HOME/tzip/numba or ~/.cache/tzip/numba;
    4. a private folder in the temporary directory: <tmp>/tzip-numba-<uid>.

When none is, the loops are compiled without a cache (`caching()` is False: every process
compiles again, still far faster than the reference path) and one line on stderr says so.
Whenever the compiled loops cannot load at all, `unusable()` says why, once, on stderr:
tzip never falls back silently.

cold() says whether the loops a job runs must be compiled first (a first run) or load from
that cache, so the progress bar's notice is true in both directions.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
# the folders whose modules numba caches beside them (in-tree), whatever the archive format
_IN_TREE = (PACKAGE / "cm", PACKAGE / "engine" / "compiled", PACKAGE / "legacy" / "mixing")
# the compiled modules each job runs: every job codes through the context mixer (cm/jit.py);
# a model's blocks take the compiled scorer (compression) or step (decompression), whose
# kernels and (on a CPU with VNNI) int8 products are modules of their own
_CM = (PACKAGE / "cm" / "jit.py",)
_ENGINE = PACKAGE / "engine" / "compiled"
JOBS = {
    "compress": _CM + (_ENGINE / "kernels.py", _ENGINE / "score.py"),
    "decompress": _CM + (_ENGINE / "kernels.py", _ENGINE / "step.py"),
}
# formats 8 to 12 (level -8) code with the loop of revisions 3 to 7 as well
JOBS["compress level 8"] = JOBS["compress"] + (PACKAGE / "cm" / "jit3.py",)
JOBS["decompress level 8"] = JOBS["decompress"] + (PACKAGE / "cm" / "jit3.py",)

_chosen: str | None = None
_prepared = False
_why_not: str | None = None  # why the compiled loops cannot load, once said
_said: set[str] = set()


def _writable(folder: Path) -> bool:
    """Whether files can be created in folder (made if missing): tried, as numba does,
    since permission bits say nothing of read-only mounts and root."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _private_tmp() -> Path | None:
    """<tmp>/tzip-numba-<uid>, made 0700 and owned by us (another user's folder of that
    name, or a link planted there, could hold code we would load)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"tzip-numba-{uid if uid is not None else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):  # a link or a file: not ours
        return None
    if uid is not None and (st.st_uid != uid or st.st_mode & 0o022):
        return None
    return folder if _writable(folder) else None


def user_cache() -> Path | None:
    """$XDG_CACHE_HOME/tzip/numba or ~/.cache/tzip/numba; None when there is no home (an
    unexpanded "~" would be a folder named ~ in the working directory)."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "tzip" / "numba"


def _say(msg: str) -> None:
    """One line on stderr, once per process."""
    if msg not in _said:
        _said.add(msg)
        print(f"tzip: {msg}", file=sys.stderr, flush=True)


def _tell_numba(folder: str) -> None:
    os.environ["NUMBA_CACHE_DIR"] = folder
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba read the environment when it loaded: tell it directly
        config.CACHE_DIR = folder


def prepare() -> str | None:
    """Choose numba's cache folder for this process (once) and return it: None means
    beside the sources; "" means nowhere is writable (the loops compile uncached)."""
    global _chosen, _prepared
    if _prepared:
        return _chosen
    _prepared = True
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and _writable(Path(given)):
        _chosen = given
        _tell_numba(given)
        return _chosen
    if not given and all(_writable(p / "__pycache__") for p in _IN_TREE):
        _chosen = None
        return None
    for folder in (user_cache(), "tmp"):
        folder = _private_tmp() if folder == "tmp" else folder
        if folder is not None and _writable(folder):
            _chosen = str(folder)
            _tell_numba(_chosen)
            return _chosen
    _chosen = ""
    why = f"NUMBA_CACHE_DIR={given} is not writable" if given else \
        "no writable folder for numba's cache (package, home and temporary folders are read-only)"
    _say(f"{why}: the compiled CPU loops are compiled again on every run")
    return _chosen


def caching() -> bool:
    """Whether compiled functions can be cached (the `cache=` option of every jit here)."""
    return prepare() != ""


def numba() -> ModuleType:
    """The numba module, imported only after its cache folder is chosen (prepare()): every
    tzip module with compiled loops gets numba here."""
    prepare()
    import numba as nb
    return nb


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImportError) and getattr(exc, "name", None) in ("numba", "llvmlite"):
        return "numba is not installed"
    return (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0]


def unusable(exc: BaseException) -> None:
    """The compiled loops could not load: say why, once, on stderr (never silently slow)."""
    global _why_not
    if _why_not is None:
        _why_not = _reason(exc)
    _say(f"compiled CPU loops unavailable ({_why_not}): the slower reference path runs")


def describe() -> str:
    """Which CPU path runs, and where its compiled loops are cached (tzip -V). numba is
    imported (not compiled) to find out: an installed numba can still refuse to load (a
    numpy it does not support)."""
    global _why_not
    if _why_not is None:
        try:
            numba()
        except Exception as exc:
            _why_not = _reason(exc)
    if _why_not is not None:
        return f"compiled CPU loops: off ({_why_not}); the slower reference path runs"
    version = importlib.metadata.version("numba")
    chosen = prepare()
    where = ("beside the package" if chosen is None else chosen) if chosen != "" else \
        "nowhere writable: compiled on every run"
    return f"compiled CPU loops: numba {version} (cache: {where})"


def _cache_folder(source: Path, chosen: str | None) -> Path:
    """The folder numba keeps the cache of functions in source in (numba's own layout:
    numba.core.caching, _CacheLocator.get_suitable_cache_subpath)."""
    if not chosen:
        return source.parent / "__pycache__"
    parent = os.path.dirname(os.path.abspath(source))
    return Path(chosen) / f"{os.path.basename(parent)}_{hashlib.sha1(parent.encode()).hexdigest()}"


def cold(job: str = "compress") -> bool:
    """Whether the loops `job` (a key of JOBS) runs will be compiled rather
    than loaded: numba installed, and one of its compiled modules has no cache index, or
    only one older than its source, where prepare() points numba."""
    if importlib.util.find_spec("numba") is None:
        return False
    chosen = prepare()
    if chosen == "":
        return True
    sources = list(JOBS[job])
    if _host_has_vnni():  # the step's and the pass's int8 products (engine TUNING)
        sources.append(_ENGINE / "vnni.py")
    for src in sources:
        try:
            text = src.read_text(errors="replace")
            mtime = src.stat().st_mtime
        except OSError:
            continue
        if not re.search(r"^@\w*jit", text, re.M):
            continue  # no compiled functions of its own
        indexes = list(_cache_folder(src, chosen).glob(f"{src.stem}.*.nbi"))
        if not any(p.stat().st_mtime >= mtime for p in indexes):
            return True
    return False


def _host_has_vnni() -> bool:
    """Whether this CPU has AVX-512 VNNI or AVX-VNNI (then its int8 loops are compiled
    too), read from /proc/cpuinfo where there is one (llvmlite would cost a numba import)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            info = f.read(1 << 16)
    except OSError:
        return False
    return any(flag in info for flag in ("avx512_vnni", "avx512vnni", "avx_vnni"))

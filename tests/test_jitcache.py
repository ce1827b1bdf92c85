"""numba's cache folder (tzip/jitcache.py): the compiled loops run from a read-only install
with an unwritable HOME, the first-run notice is true both ways, and tzip never falls back
to the slow path without saying so."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tzip import jitcache

needs_numba = pytest.mark.skipif(__import__("importlib").util.find_spec("numba") is None,
                                 reason="numba not installed")


@pytest.fixture
def fresh(monkeypatch):
    """jitcache as a new process finds it (its choice is made once per process)."""
    monkeypatch.setattr(jitcache, "_prepared", False)
    monkeypatch.setattr(jitcache, "_chosen", None)
    monkeypatch.setattr(jitcache, "_why_not", None)
    monkeypatch.setattr(jitcache, "_said", set())
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    config = sys.modules.get("numba.core.config")
    if config is not None:
        monkeypatch.setattr(config, "CACHE_DIR", config.CACHE_DIR)
    return jitcache


def _only(writable):
    """A _writable that says yes only under the given folders."""
    def check(folder: Path) -> bool:
        return any(str(folder).startswith(str(w)) for w in writable)
    return check


def test_prepare_takes_the_first_writable_folder(fresh, monkeypatch, tmp_path, capsys):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    tmp.mkdir()
    monkeypatch.setattr(fresh, "_writable", _only([fresh.PACKAGE, home, tmp]))
    assert fresh.prepare() is None and fresh.caching()  # beside the sources
    monkeypatch.setattr(fresh, "_prepared", False)
    monkeypatch.setattr(fresh, "_writable", _only([home, tmp]))
    assert fresh.prepare() == str(home / ".cache" / "tzip" / "numba")
    assert os.environ["NUMBA_CACHE_DIR"] == fresh.prepare()
    monkeypatch.setattr(fresh, "_prepared", False)
    monkeypatch.setattr(fresh, "_writable", _only([tmp]))
    assert fresh.prepare() == str(tmp / f"tzip-numba-{os.getuid()}")
    assert capsys.readouterr().err == ""  # a cache found: nothing to say


def test_a_home_that_is_not_absolute_is_no_cache(fresh, monkeypatch):
    """An unexpanded ~ would be a folder named ~ in the working directory."""
    monkeypatch.setattr(os.path, "expanduser", lambda p: p)
    assert fresh.user_cache() is None


def test_nowhere_writable_says_so_in_one_line_and_compiles_uncached(fresh, monkeypatch, capsys):
    monkeypatch.setattr(fresh, "_writable", lambda folder: False)
    monkeypatch.setattr(fresh, "_private_tmp", lambda: None)
    assert fresh.prepare() == "" and not fresh.caching()
    fresh.prepare()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compiled again on every run" in err, err
    assert fresh.cold() == (__import__("importlib").util.find_spec("numba") is not None)


def test_an_unwritable_numba_cache_dir_is_passed_over(fresh, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "theirs"))
    monkeypatch.setattr(fresh, "_writable", _only([tmp_path / "mine"]))
    monkeypatch.setattr(fresh, "_private_tmp", lambda: tmp_path / "mine")
    assert fresh.prepare() == str(tmp_path / "mine")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "theirs"))
    monkeypatch.setattr(fresh, "_prepared", False)
    monkeypatch.setattr(fresh, "_writable", _only([tmp_path / "theirs"]))
    assert fresh.prepare() == str(tmp_path / "theirs")


def test_the_private_temporary_folder_must_be_ours(fresh, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / f"tzip-numba-{os.getuid()}").symlink_to(target)
    assert fresh._private_tmp() is None  # a planted link
    (tmp_path / f"tzip-numba-{os.getuid()}").unlink()
    assert fresh._private_tmp() == tmp_path / f"tzip-numba-{os.getuid()}"
    (tmp_path / f"tzip-numba-{os.getuid()}").chmod(0o777)
    assert fresh._private_tmp() is None  # others could write code we would load


def test_unusable_compiled_loops_are_said_once(fresh, capsys):
    err = ImportError("No module named 'numba'", name="numba")
    fresh.unusable(err)
    fresh.unusable(err)
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "numba is not installed" in out and "slower" in out
    assert "off (numba is not installed)" in fresh.describe()


@needs_numba
@pytest.mark.parametrize("job", ["compress", "decompress"])
def test_cold_is_true_both_ways(fresh, monkeypatch, tmp_path, job):
    """Cold until every module the job runs has a cache index newer than its source; a
    stale index (older than the source) is cold again."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fresh, "_host_has_vnni", lambda: False)
    assert fresh.cold(job)
    for src in fresh.JOBS[job]:
        folder = fresh._cache_folder(src, str(tmp_path))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{src.stem}.f-1.py311.nbi").write_bytes(b"")
    assert not fresh.cold(job)
    assert fresh.cold("decompress" if job == "compress" else "compress")  # its own loops: not yet
    index = next(fresh._cache_folder(fresh.JOBS[job][0], str(tmp_path)).glob("*.nbi"))
    os.utime(index, (0, 0))
    assert fresh.cold(job)


@needs_numba
def test_level_8_is_cold_until_revision_3s_loop_is_compiled(fresh, monkeypatch, tmp_path):
    """-8 (format 12) runs the mixer loop of revisions 3 to 7 (cm/jit3.py) besides the compression
    loops: warm compression loops do not make it warm."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fresh, "_host_has_vnni", lambda: False)
    for src in fresh.JOBS["compress"]:
        folder = fresh._cache_folder(src, str(tmp_path))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{src.stem}.f-1.py311.nbi").write_bytes(b"")
    assert not fresh.cold("compress")
    assert fresh.cold("compress level 8")


@needs_numba
def test_cache_folder_is_numbas_own(fresh, tmp_path):
    from numba.core.caching import _CacheLocator
    src = fresh.PACKAGE / "cm" / "jit.py"
    assert fresh._cache_folder(src, str(tmp_path)) == tmp_path / _CacheLocator.get_suitable_cache_subpath(str(src))


# ---- a read-only install, with HOME read-only: as a user who cannot write there, or, for
# root (who writes anywhere), behind read-only mounts in a mount namespace of its own


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _run(root: Path, tmp_writable: bool) -> subprocess.CompletedProcess:
    """tzip -1 -v -c on a copy of the package in root/site; HOME (root/home) read-only, and
    the temporary folder (root/tmp) too unless tmp_writable."""
    site, home, tmp = root / "site", root / "home", root / "tmp"
    shutil.copytree(Path(jitcache.__file__).parent, site / "tzip",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    home.mkdir()
    tmp.mkdir()
    data = root / "in.txt"
    data.write_bytes(b"a read-only install still runs the compiled loops\n" * 20)
    readonly = [site, home] + ([] if tmp_writable else [tmp])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_", "TZIP_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    # tempfile passes over an unwritable TMPDIR for /tmp: the temporary folder is pinned
    pin = "import sys, tempfile, runpy; tempfile.tempdir = sys.argv.pop(1); runpy.run_module('tzip', run_name='__main__')"
    cmd = [sys.executable, "-c", pin, str(tmp), "-1", "-v", "-c", str(data)]
    if os.getuid() == 0:
        if not _can_unshare():
            pytest.skip("root writes anywhere, and no mount namespace to make folders read-only")
        mounts = " && ".join(f"mount --bind {p} {p} && mount -o remount,bind,ro {p}" for p in readonly)
        cmd = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
    else:
        for p in readonly:
            subprocess.run(["chmod", "-R", "a-w", str(p)], check=True)
    try:
        return subprocess.run(cmd, env=env, cwd=str(root), capture_output=True, timeout=1200)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)])


@needs_numba
@pytest.mark.slow
def test_read_only_install_with_unwritable_home_runs_the_compiled_loops(tmp_path):
    r = _run(tmp_path, tmp_writable=True)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "compiled mixer" in err and "reference" not in err, err  # -v names the path
    assert err.count("\n") == 1, err  # the -v line alone: no warning
    assert any((tmp_path / "tmp").rglob("*.nbi"))  # cached in the private temporary folder


@needs_numba
@pytest.mark.slow
def test_nothing_writable_says_so_in_one_line(tmp_path):
    r = _run(tmp_path, tmp_writable=False)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    lines = err.splitlines()
    assert len(lines) == 2 and "compiled again on every run" in lines[0], err
    assert "compiled mixer" in lines[1], err  # still the compiled path, uncached


# ---- the progress bar's first-run notice


class _Tty:
    """A stderr that says it is a terminal, keeping what tqdm writes."""

    def __init__(self):
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("job", ["compress", "decompress"])
@pytest.mark.parametrize("cold", [True, False])
def test_the_first_run_notice_is_true_both_ways(monkeypatch, job, cold):
    """Decompression too: its first run compiled under the label "loading model"."""
    from tzip import cli
    asked = []
    monkeypatch.setattr(jitcache, "cold", lambda j="compress": asked.append(j) or cold)
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    with cli._progress(100, False, "working", job):
        pass
    assert asked == [job]
    assert ("preparing compiled CPU loops (first run only)" in err.text) == cold, err.text
    assert ("loading model" in err.text) == (not cold), err.text


@needs_numba
def test_version_says_which_path_runs():
    r = subprocess.run([sys.executable, "-m", "tzip", "-V"], capture_output=True, timeout=300)
    out = r.stdout.decode()
    assert r.returncode == 0 and "compiled CPU loops: numba" in out and "cache:" in out, out

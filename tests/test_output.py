"""tzip/output.py: checked writes, temporary files published whole and never over a file
that appeared meanwhile, stale temporary files of killed runs cleaned. No model needed."""
from __future__ import annotations

import errno
import io
import os
import subprocess
import sys

import pytest

from tzip import api, output


class ShortRaw(io.RawIOBase):
    """A raw file on a disk that fills after `room` bytes: a short count, then ENOSPC."""

    def __init__(self, room: int):
        self.room, self.data = room, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        k = min(len(b), self.room)
        self.data += bytes(b[:k])
        self.room -= k
        return k


class SlowRaw(io.RawIOBase):
    """A raw non-blocking pipe: takes at most `step` bytes a call and says "would block"
    (None) every other call."""

    def __init__(self, step: int):
        self.step, self.data, self.calls = step, bytearray(), 0

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1

    def write(self, b):
        self.calls += 1
        if self.calls % 2:
            return None
        k = min(len(b), self.step)
        self.data += bytes(b[:k])
        return k


@pytest.mark.parametrize("buffered", [False, True])
def test_a_full_disk_is_an_error_naming_the_file(buffered):
    raw = ShortRaw(1000)
    f = io.BufferedWriter(raw) if buffered else raw
    w = output.CheckedWriter(f, "stdout")
    with pytest.raises(OSError) as e:
        w.write(b"x" * 50_000)
        w.flush()
    assert e.value.errno == errno.ENOSPC and e.value.filename == "stdout"


def test_short_counts_and_would_block_are_written_in_full(monkeypatch):
    waits = []
    monkeypatch.setattr(output, "_wait_writable", lambda f: waits.append(1))
    raw = SlowRaw(700)
    data = bytes(range(256)) * 40
    w = output.CheckedWriter(raw, "stdout")
    assert w.write(data) == len(data) and w.n == len(data)
    assert bytes(raw.data) == data and len(waits) == raw.calls // 2 > 1


def test_a_buffered_writer_that_would_block_is_waited_for(monkeypatch):
    class Blocking:
        def __init__(self):
            self.data, self.n = bytearray(), 0

        def fileno(self):
            return 1

        def write(self, b):
            self.n += 1
            if self.n == 1:  # took 10 bytes into its buffer, then would block
                self.data += bytes(b[:10])
                raise BlockingIOError(errno.EAGAIN, "would block", 10)
            self.data += bytes(b)
            return len(b)

        def flush(self):
            if self.n < 3:
                self.n += 1
                raise BlockingIOError(errno.EAGAIN, "would block", 0)

    waits = []
    monkeypatch.setattr(output, "_wait_writable", lambda f: waits.append(1))
    f = Blocking()
    w = output.CheckedWriter(f, "stdout")
    w.write(b"0123456789abcdef")
    w.flush()
    assert bytes(f.data) == b"0123456789abcdef" and len(waits) == 2


def test_a_broken_pipe_stays_a_broken_pipe():
    class Closed(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    with pytest.raises(BrokenPipeError) as e:
        output.CheckedWriter(Closed(), "stdout").write(b"x")
    assert e.value.filename == "stdout"


def test_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    dst = tmp_path / "out"
    real_fdopen = os.fdopen
    monkeypatch.setattr(output.os, "fdopen",
                        lambda fd, mode: io.BufferedWriter(_FdShort(real_fdopen(fd, "wb", 0), 100)))
    with pytest.raises(OSError) as e:
        api.atomic_write(dst, lambda f: f.write(b"y" * 20_000))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(dst)
    assert list(tmp_path.iterdir()) == []


class _FdShort(io.RawIOBase):
    """A real file that takes `room` bytes, then says the disk is full."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def writable(self):
        return True

    def fileno(self):
        return self.f.fileno()

    def write(self, b):
        if not self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        k = self.f.write(bytes(b[:self.room]))
        self.room -= k
        return k

    def close(self):
        self.f.close()
        super().close()


# ---------------------------------------------------------------- publishing


@pytest.fixture(params=["renameat2", "link", "no-links"])
def way(request, monkeypatch):
    """Each way publish can work: renameat2 (Linux), link + unlink, a check and rename."""
    if request.param != "renameat2":
        monkeypatch.setattr(output, "_renameat2", False)
    elif sys.platform != "linux":
        pytest.skip("renameat2 is Linux's")
    if request.param == "no-links":
        def no_link(a, b):
            raise OSError(errno.EPERM, "no hard links here")
        monkeypatch.setattr(output.os, "link", no_link)
    return request.param


def test_publish_never_replaces_a_file_that_appeared(tmp_path, way):
    tmp, dst = tmp_path / ".t.tmp", tmp_path / "out"
    tmp.write_bytes(b"mine")
    dst.write_bytes(b"theirs")
    with pytest.raises(FileExistsError) as e:
        output.publish(tmp, dst, replace=False)
    assert e.value.filename == str(dst) and dst.read_bytes() == b"theirs"
    output.publish(tmp, tmp_path / "new", replace=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]
    assert (tmp_path / "new").read_bytes() == b"mine"


def test_a_destination_made_during_the_write_is_kept(tmp_path, way):
    """The check-then-rename race of two writers, made deterministic: the other writer's
    file appears while this one is being written."""
    dst = tmp_path / "same.tz"

    def fill(f):
        f.write(b"mine")
        dst.write_bytes(b"theirs")  # the other writer finished first
        return 4

    with pytest.raises(FileExistsError) as e:
        output.atomic_write(dst, fill, replace=False)
    assert e.value.filename == str(dst)
    assert dst.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["same.tz"]
    assert output.atomic_write(dst, fill, replace=True) == 4 and dst.read_bytes() == b"mine"


def test_options_mode_times_and_sync(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(output.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    dst = tmp_path / "o"
    output.atomic_write(dst, lambda f: f.write(b"abc"), 0o640, times=(10**18, 2 * 10**18),
                        sync=True)
    st = os.stat(dst)
    assert st.st_mode & 0o777 == 0o640 and st.st_mtime_ns == 2 * 10**18
    assert len(synced) == 2  # the file, then its folder


def test_an_interrupt_just_after_the_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    """A signal can arrive between the moment the temporary file exists and the moment its
    cleanup is armed (the SIGINT test saw this under load); it must still be removed."""
    real_open = os.open

    def open_then_interrupt(path, flags, mode=0o777, **kw):
        fd = real_open(path, flags, mode, **kw)
        if str(path).endswith(".tmp"):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        api.atomic_write(tmp_path / "out", lambda f: 0)
    assert list(tmp_path.iterdir()) == []


def test_long_names_still_get_a_temporary_file(tmp_path):
    dst = tmp_path / ("n" * 250)
    assert output.atomic_write(dst, lambda f: f.write(b"z")) == 1 and dst.read_bytes() == b"z"


# ---------------------------------------------------------------- stale temporary files


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporary_files_of_killed_runs_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "_cleaned", set())
    host, dead = output._this_host(), _dead_pid()
    stale = tmp_path / f".a.txt.tz.tzip_{host}_{dead}_0badf00d.tmp"
    live = tmp_path / f".b.txt.tz.tzip_{host}_{os.getppid()}_0badf00d.tmp"
    mine = tmp_path / f".c.txt.tz.tzip_{host}_{os.getpid()}_0badf00d.tmp"
    other_host = tmp_path / f".d.txt.tz.tzip_{'0' * 8 if host != '0' * 8 else '1' * 8}_{dead}_00.tmp"
    foreign = [tmp_path / ".e.txt.tz.ab12cd34.tmp", tmp_path / "f.tmp", tmp_path / "g.txt"]
    for p in [stale, live, mine, other_host, *foreign]:
        p.write_bytes(b"x")
    link = tmp_path / f".h.tz.tzip_{host}_{dead}_0badf00e.tmp"
    link.symlink_to(tmp_path / "g.txt")
    output.atomic_write(tmp_path / "out", lambda f: 0)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert stale.name not in left
    assert left == sorted([p.name for p in [live, mine, other_host, *foreign, link]] + ["out"])
    assert output.clean_stale(tmp_path) == []  # once per folder per process


def test_temporary_names_are_recognised_as_ours(tmp_path):
    name = output.temp_name(tmp_path / "x.txt.tz").name
    m = output._TEMP.fullmatch(name)
    assert m and m.group(1) == output._this_host() and int(m.group(2)) == os.getpid()


def test_a_temporary_file_still_locked_by_its_writer_is_kept(tmp_path, monkeypatch):
    """A writer in another PID namespace: its pid looks dead here, but its lock is held."""
    monkeypatch.setattr(output, "_cleaned", set())
    live = tmp_path / f".a.tz.tzip_{output._this_host()}_{_dead_pid()}_0badf00d.tmp"
    live.write_bytes(b"x")
    child = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; "
                              f"f = open({str(live)!r}, 'rb'); fcntl.flock(f, fcntl.LOCK_EX); "
                              "print('locked', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"locked\n"
        assert output.clean_stale(tmp_path) == [] and live.exists()
    finally:
        child.stdin.close()
        child.wait()
    monkeypatch.setattr(output, "_cleaned", set())
    assert output.clean_stale(tmp_path) == [live] and not live.exists()


def test_the_writer_holds_its_lock_until_published(tmp_path):
    import fcntl
    seen = []

    def fill(f):
        tmp = next(tmp_path.glob("*.tmp"))
        with open(tmp, "rb") as other:  # another open file description: flock conflicts
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except BlockingIOError:
                seen.append("locked")
        return 0

    output.atomic_write(tmp_path / "o", fill)
    assert seen == ["locked"]

"""Writing output so that no data is lost: every write checked, files published whole.

- CheckedWriter: a write that stores fewer bytes than it was given is never ignored. Buffered
  files in CPython return a short count when the disk fills (the error only comes on the
  next write); a raw stdout (PYTHONUNBUFFERED=1) returns short counts, and None when it is a
  non-blocking pipe that is full. CheckedWriter writes the rest until all is written (then
  a full disk reports ENOSPC), waits for a full non-blocking pipe to drain, and names the
  file it was writing ("stdout") in any error.
- TempOutput / atomic_write: output goes to a hidden temporary file beside the destination
  and is renamed into place only when complete; without replace=True the final step fails
  if the destination appeared meanwhile (renameat2 RENAME_NOREPLACE, else link + unlink),
  so two writers of one name cannot silently replace each other's file.
- Temporary files are named .NAME.tzip_HOST_PID_RANDOM.tmp, and their writer holds a lock
  (flock) on them until they are published. One left by a process that was killed
  (SIGKILL, power loss) is removed by the next tzip that writes into that folder, when it
  is provably stale: a regular file of this user, named so, made on this host by a process
  that no longer runs, and locked by nobody (a lock dies with its process, so a writer in
  another PID namespace that shares the folder and the host name keeps its file).
  Temporary files of other names are never touched.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

STDOUT = "stdout"

# ---------------------------------------------------------------- checked writes


def _wait_writable(f) -> None:
    """Block until the non-blocking file f can take more bytes."""
    fd = f.fileno()
    import select
    if hasattr(select, "poll"):
        p = select.poll()
        p.register(fd, select.POLLOUT)
        p.poll()
    else:  # pragma: no cover - Windows
        select.select([], [fd], [])


def _named(e: OSError, name: str) -> OSError:
    """e, naming the file being written (OSError(EPIPE) is a BrokenPipeError again)."""
    if e.errno is None:
        return e
    err = OSError(e.errno, e.strerror or os.strerror(e.errno), name)
    err.__cause__ = None
    return err


class CheckedWriter:
    """A binary writer over f whose write stores all of its bytes or raises OSError naming
    the file (name). Counts the bytes written (n)."""

    def __init__(self, f: BinaryIO, name: str):
        self.f, self.name, self.n = f, name, 0

    def _can_wait(self) -> bool:
        try:
            self.f.fileno()
            return True
        except (OSError, ValueError, AttributeError):
            return False

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        done, size = 0, len(view)
        while done < size:
            try:
                k = self.f.write(view[done:])
            except BlockingIOError as e:  # a buffered writer over a full non-blocking pipe
                done += e.characters_written
                if not self._can_wait():
                    raise _named(e, self.name) from None
                _wait_writable(self.f)
                continue
            except OSError as e:
                raise _named(e, self.name) from None
            if k is None:
                if not self._can_wait():  # an old-style file object: None meant "all"
                    break
                _wait_writable(self.f)  # a raw non-blocking file that would block
                continue
            if k <= 0:
                raise OSError(errno.EIO, "write stored nothing", self.name)
            done += k
        self.n += size
        return size

    def flush(self) -> None:
        while True:
            try:
                self.f.flush()
                return
            except BlockingIOError as e:
                if not self._can_wait():
                    raise _named(e, self.name) from None
                _wait_writable(self.f)
            except OSError as e:
                raise _named(e, self.name) from None


def checked(f: BinaryIO, name: str | None = None) -> CheckedWriter:
    """f as a CheckedWriter (f itself when it is one already): the library's stream writers
    (tzip.compress_stream and the rest, TzipFile) write through this, so that a raw file or
    one that returns short counts gets every byte or an error. name defaults to f's name."""
    if isinstance(f, CheckedWriter):
        return f
    if name is None:
        n = getattr(f, "name", None)
        if isinstance(n, bytes):
            n = os.fsdecode(n)
        name = n if isinstance(n, str) and n else "output"
    return CheckedWriter(f, name)


def write_all(f: BinaryIO, data: bytes, name: str) -> None:
    """Write all of data to f (short writes and full non-blocking pipes handled), or raise
    OSError naming name."""
    CheckedWriter(f, name).write(data)


# ---------------------------------------------------------------- temporary files

_host: str | None = None
_TEMP = re.compile(r"\.(?:.+)\.tzip_([0-9a-f]{8})_([0-9]+)_[0-9a-f]+\.tmp")
_cleaned: set[str] = set()
NAME_MAX = 255


def _this_host() -> str:
    """This host's tag in temporary names (a CRC of its name), so that a run on another
    host sharing the folder never takes a live file of this one for stale."""
    global _host
    if _host is None:
        import socket
        _host = f"{zlib.crc32(socket.gethostname().encode()):08x}"
    return _host


def temp_name(dst: Path) -> Path:
    """A fresh temporary name beside dst: .NAME.tzip_HOST_PID_RANDOM.tmp (NAME shortened
    when the whole would be longer than a file name may be)."""
    tag = f".tzip_{_this_host()}_{os.getpid()}_{secrets.token_hex(4)}.tmp"
    name = dst.name
    room = NAME_MAX - 1 - len(tag.encode())
    while len(name.encode()) > room:
        name = name[:-1]
    return (dst.parent or Path(".")) / f".{name}{tag}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists (EPERM: another user's), or we cannot tell
        return True
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Remove temporary files of tzip's naming in folder that a killed tzip left behind
    (see the module's docstring for what proves one stale); once per folder per process.
    Returns the files removed."""
    key = os.path.abspath(folder)
    if key in _cleaned or os.name != "posix":  # (Windows' os.kill(pid, 0) would end pid)
        return []
    _cleaned.add(key)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    me = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        m = _TEMP.fullmatch(entry.name)
        if not m or m.group(1) != _this_host():
            continue
        pid = int(m.group(2))
        if pid == os.getpid() or _running(pid):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or (me is not None and st.st_uid != me):
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if not _lock(fd):
                continue  # its writer is alive after all
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _lock(fd: int) -> bool:
    """Take an exclusive lock on fd without waiting: False if another process holds one.
    True where there are no locks (the other checks then decide)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks
        return True
    return True


# ---------------------------------------------------------------- publishing

_renameat2 = None  # the libc function, False where there is none


def _noreplace_rename(src: str, dst: str) -> bool:
    """rename(src, dst) failing with FileExistsError if dst exists, by Linux's renameat2
    RENAME_NOREPLACE; False where it is not available (then nothing was done)."""
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            pass
    if not _renameat2:
        return False
    import ctypes
    AT_FDCWD, RENAME_NOREPLACE = -100, 1
    if _renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # an old kernel, or a file system without the flag
    raise OSError(err, os.strerror(err), dst)


def publish(tmp: str | Path, dst: str | Path, replace: bool) -> None:
    """Give the complete file tmp the name dst. With replace, as os.replace; without, fail
    with FileExistsError (tmp kept) when dst exists, with no moment at which a file that
    appeared at dst could be replaced."""
    tmp, dst = os.fspath(tmp), os.fspath(dst)
    if replace:
        os.replace(tmp, dst)
        return
    if _noreplace_rename(tmp, dst):
        return
    try:
        os.link(tmp, dst)  # fails if dst exists
    except FileExistsError:
        raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                           errno.EMLINK, errno.ENOSYS):
            raise
        # no hard links on this file system: the best left is a check before renaming
        if os.path.lexists(dst):
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
        os.rename(tmp, dst)
        return
    try:
        os.unlink(tmp)
    except OSError:
        pass  # the output is in place; a left link is removed as stale by a later run


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible on this system (Windows): the file itself was synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class TempOutput:
    """An output file written through a temporary file beside dst: `f` (a CheckedWriter
    naming dst), then commit() to publish it whole, or discard(). Stale temporary files of
    killed runs in dst's folder are removed first (clean_stale)."""

    def __init__(self, dst: str | Path, mode: int | None = None, *, replace: bool = True,
                 times: tuple[int, int] | None = None, sync: bool = False):
        """mode: permission bits (default: a new file's); times: (atime_ns, mtime_ns) to
        give it; replace: whether an existing dst may be replaced; sync: fsync the file
        and its folder, so that the output is on disk when commit returns."""
        self.dst = Path(dst)
        self.mode, self.replace, self.times, self.sync = mode, replace, times, sync
        self.folder = self.dst.parent if str(self.dst.parent) else Path(".")
        self.tmp: str | None = None
        self._file = None
        try:
            clean_stale(self.folder)
            while True:
                self.tmp = str(temp_name(self.dst))  # named before it exists: an interrupt
                try:                                  # right after it is made still finds it
                    fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | getattr(os, "O_BINARY", 0), 0o600)
                except FileExistsError:
                    self.tmp = None
                    continue
                break
            self._file = os.fdopen(fd, "wb")
            _lock(fd)  # held until published (closed): see clean_stale
        except OSError as e:
            self.discard()
            raise OSError(e.errno, e.strerror, str(self.dst)) from None
        except BaseException:
            self.discard()
            raise
        self.f = CheckedWriter(self._file, str(self.dst))

    def commit(self) -> None:
        """Flush, close and publish the temporary file as dst (FileExistsError, naming dst,
        when dst appeared and replace is off; the temporary file is then removed)."""
        tmp = self.tmp
        try:
            self.f.flush()
            if self.sync:
                os.fsync(self._file.fileno())
            if os.name != "posix":  # (an open file cannot be renamed there)
                self._file.close()
            os.chmod(self.tmp, _new_file_mode() if self.mode is None else self.mode)
            if self.times is not None:
                os.utime(self.tmp, ns=self.times)
            publish(self.tmp, self.dst, self.replace)
            self.tmp = None
            self._file.close()  # the lock goes only now
            if self.sync:
                _sync_folder(self.folder)
        except OSError as e:
            self.discard()
            if e.filename in (tmp, None) and e.errno is not None:
                raise OSError(e.errno, e.strerror, str(self.dst)) from None
            raise
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Close and remove the temporary file (nothing is published)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def atomic_write(dst: str | Path, fill: Callable[[BinaryIO], int], mode: int | None = None, *,
                 replace: bool = True, times: tuple[int, int] | None = None,
                 sync: bool = False) -> int:
    """Write dst through a temporary file that fill(f) writes, published only when fill
    returns (TempOutput's options); returns what fill returned."""
    out = None
    try:
        out = TempOutput(dst, mode, replace=replace, times=times, sync=sync)
        result = fill(out.f)
    except OSError as e:
        if out is None:
            raise
        out.discard()
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(out.dst)) from None
        raise
    except BaseException:
        if out is not None:
            out.discard()
        raise
    out.commit()
    return result

"""The tzip command line, shaped after gzip, xz and zstd.

    tzip [OPTIONS] [FILE]...        compress FILE to FILE.tz (keeping FILE, as zstd does);
                                    -d decompress, -t test, -l list, -c to stdout
    tzip COMMAND [OPTIONS] [FILE]   compress, decompress, test, info, models, train
    tzcat [FILE]...                 the same as tzip -dc

Exit status: 0 success, 1 an error with some file (reported on one line, the other files
still processed), 2 bad usage, or a file skipped with a warning and no error (as gzip and
xz: FILE.tz already has the suffix, a symbolic link, a hard-linked file with --rm); 129/130/143 after SIGHUP/SIGINT/SIGTERM (temporary files
removed; a signal that was ignored when tzip started, as nohup and background jobs of a
script do, stays ignored); 141 when the reader of standard output went away (tzip -dc |
head), quietly. TZIP_DEBUG=1 shows the traceback of an internal error.

Outputs are written through a hidden temporary file beside them and published whole
(tzip/output.py); every write is checked (a full disk is an error, never a short file).
A temporary file left by a killed tzip is removed by the next tzip writing to that folder.

Nothing here imports PyTorch: --help, --version, info, models and usage errors stay fast;
the engine loads when a command first needs a model.
"""
from __future__ import annotations

import difflib
import os
import re
import signal
import sys
import time
from contextlib import contextmanager
from typing import BinaryIO

import click

from . import __version__, api, jitcache, modelpath, output, threads
from .errors import TzipError

CONTEXT = {"help_option_names": ["-h", "--help"]}
COMMANDS = ("compress", "decompress", "test", "info", "models", "train")
LARGE = "tzip-large"  # what -9 / --best picks
# what each level runs, as (model, window, format) (docs/levels.md has their speed and
# ratio): -1 the context mixer alone; -2/-3 and -4/-5 the default model with each position
# attending to its last 64 or 128 positions (format 7), cheaper than its whole context;
# -6/-7 (the default) the default model over its whole context; -8 the same with the
# context mixer's revision 7 (format 12, whose blocks are cut into fewer streams: smaller,
# slower); -9 the larger model. None: the default model, its whole context, the format these give
# (api.format_for).
LEVELS: dict[int, tuple[str | None, int | None, int | None]] = {
    1: (api.NO_MODEL, None, None), 2: (None, 64, None), 3: (None, 64, None), 4: (None, 128, None),
    5: (None, 128, None), 6: (None, None, None), 7: (None, None, None), 8: (None, None, api.CM7_VERSION),
    9: (LARGE, None, None)}
LEVEL_MODELS = {n: m for n, (m, _, _) in LEVELS.items() if m is not None}  # the levels that name a model


class Failed(Exception):
    """A per-file failure already worth one line of output."""


class Skipped(Failed):
    """A file left alone with a warning (gzip's and xz's exit status 2 when nothing failed)."""


class _Reported(Exception):
    """A per-file failure whose line is already said."""


class _PipeClosed(BaseException):
    """The reader of standard output went away: end quietly with 141 (128 + SIGPIPE), as a
    program killed by SIGPIPE would (click would turn the BrokenPipeError into exit 1)."""


class _Signalled(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (removing temporary files), then exit 128 + n."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _say(msg: str) -> None:
    click.echo(f"tzip: {msg}", err=True)


def _clean(msg: str) -> str:
    """One line for the user: no numpy advice about pickles, no hidden temporary names."""
    at = msg.find("pickle")
    if at >= 0 and msg.rfind(" (", 0, at) >= 0:  # numpy's advice on loading pickles
        msg = msg[:msg.rfind(" (", 0, at)]
    msg = re.sub(r"\S*/\.[^/\s]+\.[A-Za-z0-9_]+\.tmp\b", "(temporary file)", msg)
    return " ".join(msg.split())


# ---------------------------------------------------------------- progress


@contextmanager
def _progress(total: int | None, quiet: bool, desc: str, job: str = "compress"):
    """A tqdm bar on stderr, only when stderr is a terminal and -q was not given. Until the
    first bytes are done it says what the wait is for (loading the model; compiling the
    CPU loops on a first run)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm
    first = "preparing compiled CPU loops (first run only)" if jitcache.cold(job) else "loading model"
    with tqdm(total=total, unit="B", unit_scale=True, desc=first, file=sys.stderr, leave=False) as bar:
        started = False

        def tick(n: int) -> None:
            nonlocal started
            if not started:
                started = True
                bar.set_description(desc, refresh=False)
            bar.update(n)
        yield tick


# ---------------------------------------------------------------- one file


class _Sink:
    """Where tzip -t writes: nowhere, counting."""

    def __init__(self):
        self.n = 0

    def write(self, b: bytes) -> int:
        self.n += len(b)
        return len(b)


def _archive_facts(fin: BinaryIO) -> tuple[int | None, int | None]:
    """An archive's original size from its block headers and its format version, when it
    can be read twice; (None, None) otherwise."""
    try:
        if not fin.seekable():
            return None, None
        pos = fin.tell()
    except (OSError, ValueError, AttributeError):
        return None, None
    try:
        found = api.info(fin)
        return found.original_size, found.version
    except TzipError:
        return None, None
    finally:
        fin.seek(pos)


def _input_stat(fin: BinaryIO) -> os.stat_result | None:
    """The input's stat when it is a regular file (its size is then known)."""
    try:
        st = os.fstat(fin.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    import stat
    return st if stat.S_ISREG(st.st_mode) else None


def _shown(name: str, width: int = 32) -> str:
    """A file's name for the progress bar: its base name, its end when long."""
    base = os.path.basename(name) or name
    return base if len(base) <= width else "..." + base[-(width - 3):]


class _Prefixed:
    """A reader that gives back the bytes already read from its start, then the rest."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(n)
        if n is None or n < 0:
            b, self.head = self.head + self.rest.read(), b""
            return b
        b, self.head = self.head[:n], self.head[n:]
        return b if len(b) == n else b + self.rest.read(n - len(b))


def _changed(fin: BinaryIO, before: os.stat_result | None, n_read: int) -> str | None:
    """How a regular input file changed while it was read (size or modification time), or
    None when it did not."""
    if before is None:
        return None
    after = _input_stat(fin)
    if after is None:
        return None
    if n_read != before.st_size or after.st_size != before.st_size:
        return f"{before.st_size:,} bytes at the start, {after.st_size:,} now, {n_read:,} read"
    if after.st_mtime_ns != before.st_mtime_ns:
        return "modified"
    return None


class Job:
    """What one run of tzip does to each file: mode compress, decompress, test or list."""

    def __init__(self, mode: str, *, stdout=False, output=None, force=False, quiet=False,
                 verbose=False, rm=False, model=None, device="auto", streams=None,
                 workers=None, ray=None, window=None, format=None):
        self.mode, self.stdout, self.output, self.force = mode, stdout, output, force
        self.quiet, self.verbose, self.rm = quiet, verbose, rm
        self.model, self.device, self.streams = model, device, streams
        # compressing: the level's window and format (None: the whole context, the format
        # they give; the mixer alone has no window and its own format, --model none wins)
        self.window = None if api.is_alone(model) else window
        self.format = None if api.is_alone(model) else format
        self.workers, self.ray = workers, ray
        self._coder = None
        self.listed: list = []  # the archives -l listed, for its totals row

    def coder(self):
        """The Compressor or Decompressor, made on first use (loads PyTorch); worker
        processes with -T N (N != 1) or --ray."""
        if self._coder is None:
            if self.ray or self.workers not in (None, 1):
                from . import parallel
                if self.ray or parallel.resolve_workers(self.workers) > 1:
                    self._coder = _Workers(self, self.workers, self.ray)
                    return self._coder
            if self.mode == "compress":
                self._coder = api.Compressor(self.model, device=self.device, streams=self.streams,
                                             window=self.window, format=self.format)
            else:
                self._coder = api.Decompressor(self.model, device=self.device)
        return self._coder

    def out_name(self, src: str) -> str:
        if self.mode == "compress":
            return src + ".tz"
        if not src.endswith(".tz") or len(os.path.basename(src)) <= 3:
            raise Failed(f"{src}: unknown suffix (expected .tz); use -o or -c")
        return src[:-3]

    def _check_input(self, src: str) -> None:
        """Leave alone, with a warning as gzip does, what writing FILE.tz (or FILE) beside
        the input should not touch without -f: an input that already has the .tz suffix, a
        symbolic link, and (with --rm, which would remove one of its names only) a file
        with several hard links. tzip keeps its inputs by default, as zstd and xz -k do,
        and those compress hard-linked files, so tzip refuses them only with --rm."""
        if self.force or src == "-":
            return
        if self.mode == "compress" and not self.output and src.endswith(".tz"):
            raise Skipped(f"{src} already has .tz suffix -- unchanged (-f compresses it)")
        if os.path.islink(src):
            raise Skipped(f"{src}: is a symbolic link -- unchanged (-f follows it)")
        if self.rm:
            links = os.stat(src).st_nlink - 1
            if links > 0:
                raise Skipped(f"{src} has {links} other link{'s' if links > 1 else ''} -- "
                              "unchanged (-f compresses it)")

    def _pass_through(self, fin: BinaryIO) -> BinaryIO | None:
        """tzip -dcf, as zcat -f: an input that is not an archive is copied to standard
        output unchanged. Returns None after copying it, else fin as it was."""
        try:
            pos = fin.tell() if fin.seekable() else None
        except (OSError, ValueError, AttributeError):
            pos = None
        head = b""
        while len(head) < len(api.MAGIC):
            b = fin.read(len(api.MAGIC) - len(head))
            if not b:
                break
            head += b
        if head == api.MAGIC and pos is not None:
            fin.seek(pos)
            return fin
        rest = _Prefixed(head, fin)
        if head == api.MAGIC:
            return rest
        out = output.CheckedWriter(sys.stdout.buffer, output.STDOUT)
        while True:
            b = rest.read(1 << 16)
            if not b:
                break
            out.write(b)
        out.flush()
        return None

    def run(self, src: str) -> None:
        if src == "-" and self.mode != "compress" and sys.stdin.isatty():
            raise Failed("stdin: compressed data not read from a terminal (give a FILE)")
        if self.mode == "list":
            return self.list(src)
        name = "stdin" if src == "-" else src
        if src != "-" and os.path.isdir(src):
            raise Failed(f"{src}: is a directory (use -r)")
        if src != "-" and os.path.exists(src) and not os.path.isfile(src):
            raise Failed(f"{src}: not a regular file")
        to_stdout = self.stdout or (src == "-" and not self.output)
        if not to_stdout and self.mode in ("compress", "decompress") and os.path.lexists(src):
            self._check_input(src)
        opened = None if src == "-" else open(src, "rb")
        fin = sys.stdin.buffer if opened is None else opened
        try:
            if self.mode == "decompress" and to_stdout and self.force:
                fin = self._pass_through(fin)
                if fin is None:
                    return
            dst = None if to_stdout or self.mode == "test" else (self.output or self.out_name(src))
            if dst is not None:
                if not self.force and os.path.lexists(dst):
                    raise Failed(f"{dst}: already exists; use -f to overwrite")
                if src != "-" and os.path.exists(dst) and os.path.samefile(src, dst):
                    raise Failed(f"{src}: input and output are the same file")
            elif self.mode == "compress" and sys.stdout.isatty() and not self.force:
                raise Failed("compressed data not written to a terminal; use -o, or -f to force")
            self.coder()
            t0 = time.time()
            counted_in = api._Counting(fin)
            st_in = _input_stat(fin) if src != "-" else None
            version = self.format
            if self.mode == "compress":
                total = st_in.st_size if st_in is not None else None
            else:
                total, version = _archive_facts(fin)
            changed = None

            def work(fout, tick) -> int:
                nonlocal changed
                if self.mode == "compress":
                    self._coder.compress_stream(counted_in, fout, tick)
                    changed = _changed(fin, st_in, counted_in.n)
                else:
                    self._coder.decompress_stream(counted_in, fout, tick)
                return fout.n

            verb = {"compress": "compressing", "decompress": "decompressing", "test": "testing"}[self.mode]
            job = ("compress" if self.mode == "compress" else "decompress") + (
                " level 8" if version in (api.CM3_VERSION, api.CM4_VERSION, api.CM5_VERSION, api.CM6_VERSION, api.CM7_VERSION) else "")
            with _progress(total, self.quiet, f"{verb} {_shown(name)}", job) as tick:
                if self.mode == "test":
                    n_out = work(_Sink(), tick)
                elif dst is None:
                    out = output.CheckedWriter(sys.stdout.buffer, output.STDOUT)
                    n_out = work(out, tick)
                    out.flush()
                else:
                    mode = times = None
                    if src != "-":  # the output keeps the input's mode and times, as gzip does
                        st = os.stat(src)
                        mode, times = api.source_mode(src), (st.st_atime_ns, st.st_mtime_ns)
                    try:
                        # with --rm the output is synced to disk before the input goes
                        n_out = output.atomic_write(dst, lambda f: work(f, tick), mode,
                                                    replace=self.force, times=times,
                                                    sync=self.rm and src != "-")
                    except FileExistsError as e:
                        if e.filename != str(dst):
                            raise
                        raise Failed(f"{dst}: already exists (made while tzip was writing it);"
                                     " use -f to overwrite") from None
        finally:
            if opened is not None:
                opened.close()
        secs = time.time() - t0
        n_in = counted_in.n
        if self.mode == "test":
            if self.verbose:  # silent otherwise, as gzip -t and xz -t
                click.echo(f"{name}: OK ({n_out:,} bytes)", err=True)
        elif self.verbose:
            orig, packed = (n_in, n_out) if self.mode == "compress" else (n_out, n_in)
            pct = f"{100 * packed / orig:.2f}%" if orig else "-"
            bpb = f"{8 * packed / orig:.3f} bits per byte" if orig else "empty"
            where = "" if dst is None else f" -> {dst}"
            verb = "compressed" if self.mode == "compress" else "decompressed"
            predictor = getattr(self.coder(), "predictor", "")  # the model and its window
            _say(f"{name}: {verb} {n_in:,} -> {n_out:,} bytes ({pct}, {bpb}) in {secs:.1f} s{where}"
                 f" [{predictor + ': ' if predictor else ''}{self.coder().backend}]")
        if changed is not None:
            kept = " (not removed)" if self.rm and dst is not None and src != "-" else ""
            _say(f"{name}: changed while being compressed ({changed}); the archive holds what "
                 f"was read{kept}")
            if kept:
                raise _Reported()
        if self.rm and dst is not None and src != "-":
            os.unlink(src)  # only now: the output is complete, on disk and in place

    def list(self, src: str) -> None:
        """-l: one row per archive (gzip -l's and xz -l's habit; totals after several);
        -lv: a block per archive with its blocks, streams and format."""
        name = "stdin" if src == "-" else src
        if src == "-":
            i = api.info(sys.stdin.buffer)
        else:
            with open(src, "rb") as fin:
                i = api.info(fin)
        if not self.verbose:
            if not self.listed:
                click.echo(_row("compressed", "original", "ratio", "bpb", "model", "format", "name"))
            self.listed.append(i)
            click.echo(_row(i.compressed_size, i.original_size, *_ratio(i.compressed_size,
                            i.original_size), _model_of(i), i.version, name))
            return
        methods = ", ".join(sorted({b.method for b in i.blocks})) or "none"
        streams = sum(b.streams for b in i.blocks)
        members = f"\n  archives   {i.members} (one after another)" if i.members > 1 else ""
        model = (f"{i.model_name}  (id {i.model_id[:16]})" if i.model_name or i.model_id.strip("0")
                 else "none (the context mixer alone)")
        click.echo(f"{name}\n  original   {i.original_size:,} bytes\n"
                   f"  compressed {i.compressed_size:,} bytes  ({i.bpb:.3f} bits per byte)\n"
                   f"  model      {model}{'' if i.window is None else f', window {i.window}'}\n"
                   f"  blocks     {len(i.blocks)}  ({methods}; {streams} model streams"
                   f"{'; UTF-16->UTF-8' if any(b.utf16 for b in i.blocks) else ''}"
                   f"{'; CRLF->LF' if any(b.crlf for b in i.blocks) else ''}){members}\n"
                   f"  format     {i.version}")


def _row(packed, orig, ratio, bpb, model, fmt, name) -> str:
    """One line of tzip -l's table (numbers with thousands separators)."""
    num = (lambda v: f"{v:,}" if isinstance(v, int) else v)
    return f"{num(packed):>13} {num(orig):>13} {ratio:>7} {bpb:>6}  {model:<14} {fmt!s:>6}  {name}"


def _ratio(packed: int, orig: int) -> tuple[str, str]:
    """Compressed size over original (as xz -l) and bits per byte."""
    if not orig:
        return "-", "-"
    return f"{100 * packed / orig:.1f}%", f"{8 * packed / orig:.3f}"


def _model_of(i) -> str:
    if i.model_name:
        return i.model_name
    return i.model_id[:12] if i.model_id.strip("0") else "none"


def _totals(listed: list) -> str:
    packed = sum(i.compressed_size for i in listed)
    orig = sum(i.original_size for i in listed)
    return _row(packed, orig, *_ratio(packed, orig), "", "", "(totals)")


def _expand(files: tuple[str, ...], recursive: bool, mode: str) -> list[str]:
    """Directories become the files under them (-r): to compress, all but *.tz; else *.tz."""
    out: list[str] = []
    for f in files:
        if recursive and f != "-" and os.path.isdir(f):
            for root, dirs, names in os.walk(f):
                dirs.sort()
                for n in sorted(names):
                    p = os.path.join(root, n)
                    if os.path.islink(p) or not os.path.isfile(p):
                        continue
                    if (mode == "compress") != n.endswith(".tz"):
                        out.append(p)
        else:
            out.append(f)
    return out


def _run(job: Job, files: tuple[str, ...], recursive: bool = False) -> None:
    files = files or ("-",)
    if job.output and len(files) > 1:
        raise click.UsageError("-o/--output takes a single input file")
    failed = warned = False
    for src in _expand(files, recursive, job.mode):
        try:
            job.run(src)
        except BrokenPipeError:
            raise _PipeClosed() from None
        except _Reported:
            failed = True
        except Skipped as e:
            if not job.quiet:
                _say(str(e))
            warned = True
        except (Failed, TzipError) as e:
            msg = _clean(str(e))
            _say(msg if isinstance(e, Failed) or msg.startswith(src) else f"{src}: {msg}")
            failed = True
            if job.mode != "list" and isinstance(e, TzipError) and job._coder is None:
                break  # the model itself could not be loaded: every file would say the same
        except OSError as e:
            name = e.filename if isinstance(e.filename, str) else src
            _say(f"{_clean(name)}: {e.strerror or e}")
            failed = True
    if len(job.listed) > 1:
        try:
            click.echo(_totals(job.listed))
        except BrokenPipeError:
            raise _PipeClosed() from None
    if failed or warned:
        sys.exit(1 if failed else 2)


# ---------------------------------------------------------------- options


def _model_options(f):
    f = click.option("--device", default="auto", show_default=True,
                     help="auto, cpu or cuda; archives are identical whichever runs.")(f)
    f = click.option("--model", "model", default=None, metavar="NAME|PATH",
                     help="Model name (see tzip models) or path to a .npz (default: tzip-small "
                          "on CPU, tzip-large on a GPU when installed).")(f)
    f = click.option("-T", "--threads", type=click.IntRange(0, 4096), default=None, metavar="N",
                     help="Worker processes coding blocks at once (0: one per core; archives "
                          "are identical to -T 1). Without -T: one process, its threads "
                          "on the cores not busy (OMP_NUM_THREADS is respected).")(f)
    f = click.option("--ray", "ray", default=None, metavar="ADDRESS",
                     help="Code blocks on a Ray cluster ('local' starts one; pip install "
                          "'tzip[ray]'); same archives.")(f)
    return f


def _io_options(f):
    f = click.option("-r", "--recursive", is_flag=True, help="Operate on the files in directories.")(f)
    f = click.option("--rm", is_flag=True, help="Remove each input after success (gzip's default).")(f)
    f = click.option("-k", "--keep", is_flag=True, help="Keep inputs (the default; cancels --rm).")(f)
    f = click.option("-v", "--verbose", is_flag=True,
                     help="Report sizes, ratio, bits per byte and time per file (on stderr).")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="No progress bar or warnings.")(f)
    f = click.option("-f", "--force", is_flag=True, help="Overwrite existing output files; write "
                     "compressed data to a terminal.")(f)
    f = click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
                     help="Write to this file (one input only).")(f)
    f = click.option("-c", "--stdout", is_flag=True, help="Write to standard output, keep inputs.")(f)
    return f


LEVEL_HELP = {
    1: "-1/--fast: no model, the context mixer alone: about 9x faster than the default on a "
       "CPU, archives about 15% larger",
    2: "-2/-3: the default model (tzip-small on a CPU), each position attending to its last "
       "64 bytes: about 1.35x faster than -6 both ways, archives about 2% larger",
    4: "-4/-5: the default model over its last 128 bytes: about 1.2x faster than -6, "
       "archives under 1% larger",
    6: "-6/-7 (default): the default model over its whole context (256 bytes for tzip-small)",
    8: "-8: as -6 with the context mixer's revision 7 (format 12) and at most 2 streams: "
       "about 9% smaller on structured text (logs, JSON, CSV, XML, code), 3.7% on prose, "
       "decodes about 4x slower; tzip before 0.8 cannot read it",
    9: f"-9/--best: {LARGE}: smaller archives, far slower without a GPU (docs/levels.md)"}


def _level_options(f):
    for n in range(9, 0, -1):
        f = click.option(f"-{n}", "level", flag_value=n, hidden=n not in LEVEL_HELP,
                         help=LEVEL_HELP.get(n))(f)
    f = click.option("--fast", "level", flag_value=1, hidden=True)(f)
    f = click.option("--best", "level", flag_value=9, hidden=True)(f)
    return f


def _streams_option(f):
    return click.option("--streams", type=click.IntRange(1, api.MAX_STREAMS), default=None,
                        help="Streams per block (default: from the input size): more streams "
                             "decode faster, fewer compress a little better.")(f)


def _model_for(model: str | None, level: int | None) -> str | None:
    """The model a level runs; --model wins."""
    return model if model is not None else LEVELS.get(level, (None, None, None))[0]


def _window_for(level: int | None) -> int | None:
    """The window a level's model attends over (None: its whole context), whatever the
    model (--model keeps the level's window; a model of a shorter context uses all of it)."""
    return LEVELS.get(level, (None, None, None))[1]


def _format_for(level: int | None) -> int | None:
    """The archive format a level writes (None: the one its model and window give), whatever
    the model (--model keeps the level's format)."""
    return LEVELS.get(level, (None, None, None))[2]


def _start(threads_n: int | None) -> None:
    """-T 1 is one process on one thread; other counts are worker processes
    (_Workers), each with its share of the cores."""
    if threads_n == 1:
        threads.set_threads(1)


class _Workers:
    """Compressor/Decompressor's stream methods over blocks coded by worker processes or a
    Ray cluster (tzip/parallel.py): the same archives, in order."""

    def __init__(self, job: "Job", workers: int | None, ray: str | None):
        from . import parallel
        self.parallel, self.job = parallel, job
        self.workers = 0 if workers is None else workers
        self.ray = ray
        self.backend = (f"Ray at {ray}" if ray else
                        f"{parallel.resolve_workers(self.workers)} worker processes")

    def compress_stream(self, fin, fout, tick) -> int:
        j = self.job
        return self.parallel.compress_stream(fin, fout, j.model, workers=self.workers,
                                             device=j.device, streams=j.streams, progress=tick,
                                             ray=self.ray, window=j.window, format=j.format)

    def decompress_stream(self, fin, fout, tick) -> int:
        j = self.job
        return self.parallel.decompress_stream(fin, fout, j.model, workers=self.workers,
                                               device=j.device, progress=tick, ray=self.ray)


def _compiled_loops() -> str:
    """What --version says of the compiled CPU loops: which path runs, and where numba
    caches them (tzip/jitcache.py)."""
    return jitcache.describe()


# ---------------------------------------------------------------- the group


HELP = """Lossless text compression with a small transformer and a range coder.

\b
  tzip FILE...           compress each FILE to FILE.tz (FILE is kept, as zstd does)
  tzip -d FILE.tz...     decompress (also: tzip decompress, tzcat, tzip -dc)
  tzip -t FILE.tz        test: decode and verify, write nothing (silent; -v: OK lines)
  tzip -l FILE.tz...     list: a row per archive and totals (-lv: each one's blocks)
  tzip -dcf FILE...      as zcat -f: what is not an archive is copied unchanged
  cat a | tzip | tzip -d   no FILE, or '-': standard input to standard output
  tzip -- test           a FILE named like a command (compress, decompress, test, info,
                         models, train): after '--', or as ./test, every name is a FILE

\b
gzip-style options (for tzip FILE... and the commands):
  -d, --decompress  -z, --compress  -t, --test  -l, --list
  -c, --stdout  -o FILE  -f, --force  -k, --keep  --rm  -r, --recursive
  -q, --quiet  -v, --verbose  -T, --threads N
  -1 fastest: no model, the context mixer alone
  -2/-3, -4/-5: the default model (tzip-small on a CPU) over its last 64, 128 bytes
  -6/-7 (default): the default model over its whole context   -9 best: tzip-large
  -8: as -6 with the context mixer's revision 7 (format 12): smaller, decodes 4x slower
  --model NAME|PATH  --device auto|cpu|cuda  --streams N  -V, --version

Archives written one after another (cat a.tz b.tz) decompress to both contents.
Outputs get their input's modification time and permissions. Without -f, tzip leaves
alone (with a warning, exit status 2) a FILE that already ends in .tz, a symbolic link,
and with --rm a file with several hard links, as gzip does.
Exit status: 0 done, 1 an error with some file, 2 bad usage or a file skipped."""


class TzipGroup(click.Group):
    """Subcommands, plus gzip-style use (`tzip FILE`, `tzip -d FILE.tz`) through a hidden
    default command; one-line errors with hints; clean exits on signals."""

    def format_usage(self, ctx, formatter):
        formatter.write_usage(ctx.command_path, "[OPTIONS] [FILE]...   (gzip-style)")
        formatter.write_usage(ctx.command_path, "COMMAND [OPTIONS] [ARGS]...", prefix="   or: ")

    def parse_args(self, ctx, args):
        if args and args[0] in ("-h", "--help", "-V", "--version"):
            return super().parse_args(ctx, args)
        if not args or args[0] not in self.commands:
            if args and not args[0].startswith("-") and not os.path.exists(args[0]):
                close = difflib.get_close_matches(args[0], COMMANDS, n=1, cutoff=0.75)
                if close:
                    raise click.UsageError(f"no such file or command {args[0]!r}; "
                                           f"did you mean 'tzip {close[0]}'?", ctx)
            args = ["gzip-style"] + list(args)
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        old = {}
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is None:
                continue
            try:
                if signal.getsignal(sig) == signal.SIG_IGN:
                    continue  # ignored by who started us (nohup): stays ignored, as gzip does
                old[sig] = signal.signal(sig, _raise_signal)
            except (ValueError, OSError):  # not the main thread
                pass
        code = 0
        try:
            rv = super().main(args, prog_name or "tzip", standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.Exit as e:
            code = e.exit_code
        except click.exceptions.NoSuchOption as e:
            code = _usage(e, _option_hint(e.option_name))
        except click.ClickException as e:
            code = _usage(e)
        except (click.Abort, KeyboardInterrupt):
            _say("interrupted")
            code = 130
        except _Signalled as e:
            _say("terminated" if e.signum == signal.SIGTERM else "hung up")
            code = 128 + e.signum
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except (BrokenPipeError, _PipeClosed):
            try:  # the reader went away (tzip -dc x.tz | head): no message, as gzip
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            code = 141
        except Exception as e:  # a bug: one line, the traceback with TZIP_DEBUG=1
            if os.environ.get("TZIP_DEBUG"):
                import traceback
                traceback.print_exc()
            _say(f"internal error: {type(e).__name__}: {_clean(str(e))} "
                 "(TZIP_DEBUG=1 shows where)")
            code = 1
        finally:
            for sig, handler in old.items():
                try:
                    signal.signal(sig, handler)
                except (ValueError, OSError):
                    pass
        sys.exit(code)


def _raise_signal(signum, frame):
    raise _Signalled(signum)


def _usage(e: click.ClickException, hint: str = "") -> int:
    msg = e.format_message()
    _say(msg + (f" ({hint})" if hint else ""))
    ctx = getattr(e, "ctx", None)
    path = ctx.command_path.replace(" gzip-style", "") if ctx is not None else "tzip"
    click.echo(f"Try '{path} --help' for help.", err=True)
    return e.exit_code


def _option_hint(opt: str) -> str:
    hints = {"-x": "tzip -d decompresses", "-u": "tzip -d decompresses", "-D": "did you mean -d?",
             "--uncompress": "did you mean -d?", "--decompres": "did you mean -d?",
             "-n": "tzip stores no name; nothing to skip", "-N": "tzip stores no name",
             "-S": "tzip writes .tz only", "-p": "use -T N for threads", "-e": "try -9"}
    if opt in hints:
        return hints[opt]
    if re.fullmatch(r"-[0-9]{2,}", opt or ""):
        return "levels are -1..-9"
    return "gzip-style: -d -z -t -l -c -k -f -q -v -r -T N -1..-9; commands: " + ", ".join(COMMANDS)


def _show_version(ctx, param, value) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"tzip {__version__}\n{_compiled_loops()}")
        ctx.exit()


@click.group(cls=TzipGroup, context_settings=CONTEXT, help=HELP)
@click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version and exit.")
def main() -> None:
    pass


class _GzipStyle(click.Command):
    """The default command: its help speaks of `tzip [OPTIONS] [FILE]...`."""

    def format_usage(self, ctx, formatter):
        formatter.write_usage(ctx.parent.command_path if ctx.parent else "tzip", "[OPTIONS] [FILE]...")


@main.command("gzip-style", cls=_GzipStyle, hidden=True, context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path())
@click.option("-z", "--compress", "mode", flag_value="compress", default=True,
              help="Compress (the default).")
@click.option("-d", "--decompress", "--uncompress", "mode", flag_value="decompress",
              help="Decompress.")
@click.option("-t", "--test", "mode", flag_value="test", help="Test archives' integrity.")
@click.option("-l", "--list", "mode", flag_value="list", help="List archives' sizes and model.")
@_io_options
@_level_options
@_streams_option
@_model_options
@click.pass_context
def gzip_style(ctx, files, mode, stdout, output, force, quiet, verbose, keep, rm, recursive,
               level, streams, model, device, threads, ray):
    """tzip as gzip: compress FILES, or -d/-t/-l them."""
    _start(threads)
    job = Job(mode, stdout=stdout, output=output, force=force, quiet=quiet, verbose=verbose,
              rm=rm and not keep, model=_model_for(model, level) if mode == "compress" else model,
              device=device, streams=streams, workers=threads, ray=ray,
              window=_window_for(level) if mode == "compress" else None,
              format=_format_for(level) if mode == "compress" else None)
    _run(job, files, recursive)


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path())
@_io_options
@_level_options
@_streams_option
@_model_options
def compress(files, stdout, output, force, quiet, verbose, keep, rm, recursive, level, streams,
             model, device, threads, ray):
    """Compress FILES to FILE.tz (FILE is kept; --rm removes it)."""
    _start(threads)
    _run(Job("compress", stdout=stdout, output=output, force=force, quiet=quiet, verbose=verbose,
             rm=rm and not keep, model=_model_for(model, level), device=device, streams=streams,
             workers=threads, ray=ray, window=_window_for(level), format=_format_for(level)),
         files, recursive)


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path())
@_io_options
@_model_options
def decompress(files, stdout, output, force, quiet, verbose, keep, rm, recursive, model, device,
               threads, ray):
    """Decompress FILE.tz to FILE, verifying every block's checksum. The output gets the
    archive's modification time and permissions."""
    _start(threads)
    _run(Job("decompress", stdout=stdout, output=output, force=force, quiet=quiet,
             verbose=verbose, rm=rm and not keep, model=model, device=device, workers=threads,
             ray=ray), files, recursive)


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path())
@click.option("-r", "--recursive", is_flag=True, help="Test the .tz files in directories.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", is_flag=True, help="Say FILE: OK for each good archive (on stderr).")
@_model_options
def test(files, recursive, quiet, verbose, model, device, threads, ray):
    """Decode FILES fully and check them, writing nothing ('-' or none: stdin). Silent
    when all is well (exit status 0), as gzip -t; -v names each good archive."""
    _start(threads)
    _run(Job("test", quiet=quiet, verbose=verbose, model=model, device=device, workers=threads,
             ray=ray), files, recursive)


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path())
@click.option("-r", "--recursive", is_flag=True, help="List the .tz files in directories.")
@click.option("-v", "--verbose", is_flag=True, help="A block per archive: blocks, streams, format.")
def info(files, recursive, verbose):
    """List archives without decoding them ('-': stdin): a row per archive (compressed and
    original size, ratio, bits per byte, model, format) and totals, as tzip -l; -v shows
    each archive's blocks."""
    _run(Job("list", verbose=verbose), files, recursive)


@main.command("models", context_settings=CONTEXT)
@click.option("-v", "--verbose", is_flag=True, help="Also show the folders searched.")
def list_models(verbose):
    """List installed models: $TZIP_MODELS, the per-user folder, the shipped ones."""
    files = modelpath.model_files()
    failed = False
    for name, path in sorted(files.items()):
        try:
            s = modelpath.summary(path)
        except Exception:  # noqa: BLE001 - any unreadable file: one line, go on
            _say(f"{path}: not a readable tzip model")
            failed = True
            continue
        click.echo(f"{name:14s} {s['params'] / 1e6:5.2f}M params  context {s['context']:5d}  "
                   f"id {s['id'][:16]}  {path}")
    if verbose or not files:
        searched = os.pathsep.join(str(d) for d in modelpath.search_path())
        (_say if not files else click.echo)(
            ("no models found; " if not files else "") + f"searched: {searched}")
    sys.exit(1 if failed or not files else 0)


@main.command(context_settings={**CONTEXT, "ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args):
    """Train a model from a config: tzip train --config models/NAME.json --out DIR [--resume DIR]."""
    try:
        from .training.train import main as train_main
    except ImportError as e:  # PyTorch is an extra
        if e.name != "torch":
            raise
        _say("tzip train needs PyTorch, which is not installed: pip install 'tzip[torch]'")
        sys.exit(1)
    sys.exit(train_main(list(args)))


def tzcat() -> None:
    """The tzcat command: tzip -dc FILE... (stdin when none)."""
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        click.echo("Usage: tzcat [OPTIONS] [FILE]...\n\n  Decompress FILEs (or standard input) to "
                   "standard output: the same as tzip -dc.\n  Options as tzip's: --model, --device, "
                   "-T N, -q, -v.")
        sys.exit(0)
    main(["-dc", *args], prog_name="tzcat")

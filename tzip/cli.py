"""The tzip command line, shaped after gzip, xz and zstd.

Exit status: 0 success, 1 an error with some file (reported on one line), 2 bad usage.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable

import click

from . import api
from .model import registry
from .container import MAX_STREAMS
from .errors import TzipError

CONTEXT = {"help_option_names": ["-h", "--help"]}


class Failed(Exception):
    """A per-file failure already worth one line of output."""


def _say(msg: str) -> None:
    click.echo(f"tzip: {msg}", err=True)


@contextmanager
def _progress(total: int | None, quiet: bool, desc: str):
    """A tqdm bar on stderr, only when stderr is a terminal and -q was not given."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False) as bar:
        yield bar.update


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path) if path != "-" else None
    except OSError:
        return None


def _run_one(src: str, dst: str | None, to_stdout: bool, force: bool, quiet: bool, verbose: bool,
             work: Callable[[BinaryIO, BinaryIO, Callable | None], int], verb: str,
             out_of: Callable[[str], str]) -> None:
    """Open src (or stdin), pick the output (stdout, -o, or derived name), run work."""
    if src != "-" and not os.path.isfile(src):
        raise Failed(f"{src}: {'no such file' if not os.path.exists(src) else 'not a regular file'}")
    if not to_stdout and dst is None:
        dst = out_of(src)
    if dst is not None and not force and os.path.exists(dst):
        raise Failed(f"{dst}: already exists; use -f to overwrite")
    if dst is not None and src != "-" and os.path.exists(dst) and os.path.samefile(src, dst):
        raise Failed(f"{src}: input and output are the same file")
    t0 = time.time()
    fin = sys.stdin.buffer if src == "-" else open(src, "rb")
    try:
        with _progress(_size(src), quiet, verb) as tick:
            if dst is None:
                n_in = work(fin, sys.stdout.buffer, tick)
                sys.stdout.buffer.flush()
            else:
                mode = None if src == "-" else api.source_mode(src)
                n_in = api.atomic_write(Path(dst), lambda f: work(fin, f, tick), mode)
    finally:
        if fin is not sys.stdin.buffer:
            fin.close()
    if verbose and dst is not None:
        out_size = os.path.getsize(dst)
        name = "stdin" if src == "-" else src
        _say(f"{name}: {verb} {n_in:,} -> {out_size:,} bytes in {time.time() - t0:.1f} s")


def _run_all(files: tuple[str, ...], output: str | None, stdout: bool, **kw) -> None:
    files = files or ("-",)
    if output and len(files) > 1:
        raise click.UsageError("-o/--output takes a single input file")
    to_stdout = stdout or (files == ("-",) and not output)
    failed = False
    for src in files:
        try:
            _run_one(src, output, to_stdout, **kw)
        except (Failed, TzipError) as e:
            msg = str(e)
            _say(msg if msg.startswith(src) or isinstance(e, Failed) else f"{src}: {msg}")
            failed = True
        except OSError as e:
            _say(f"{e.filename or src}: {e.strerror or e}")
            failed = True
    if failed:
        sys.exit(1)


def _model_options(f):
    f = click.option("--device", default="auto", show_default=True,
                     help="auto, cpu or cuda; archives are identical whichever runs.")(f)
    f = click.option("--model", "model", default=None, metavar="NAME|PATH",
                     help="Model name in models/ or path to a .npz (default: tzip-small on CPU, "
                          "tzip-large on a GPU when installed).")(f)
    return f


def _io_options(f):
    f = click.option("-v", "--verbose", is_flag=True, help="Report sizes and time per file.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(f)
    f = click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")(f)
    f = click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
                     help="Write to this file (one input only).")(f)
    f = click.option("-c", "--stdout", is_flag=True, help="Write to standard output.")(f)
    return f


def _compiled_loops() -> str:
    """What --version says of the optional compiled CPU loops (tzip/engine/compiled/)."""
    try:
        return f"compiled CPU loops: numba {importlib.metadata.version('numba')}"
    except importlib.metadata.PackageNotFoundError:
        return "compiled CPU loops: off (pip install 'tzip[fast]' for faster CPU coding)"


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="tzip", prog_name="tzip",
                      message=f"%(prog)s %(version)s\n{_compiled_loops()}")
def main() -> None:
    """Lossless text compression with a small transformer and a range coder.

    FILE.tz is written next to FILE and FILE is kept. With no FILE, or '-', read
    standard input and write standard output."""


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path())
@_io_options
@_model_options
@click.option("--streams", type=click.IntRange(1, MAX_STREAMS), default=None,
              help="Streams per block (default: from the input size).")
def compress(files, stdout, output, force, quiet, verbose, model, device, streams):
    """Compress FILES to FILE.tz."""
    if (stdout or (not files or files == ("-",)) and not output) and sys.stdout.isatty() and not force:
        raise click.UsageError("refusing to write compressed data to a terminal (use -o or -f)")
    try:
        compressor = api.Compressor(model, device=device, streams=streams)
    except TzipError as e:
        _say(str(e))
        sys.exit(1)

    def work(fin, fout, tick):
        return compressor.compress_stream(fin, fout, tick)
    _run_all(files, output, stdout, force=force, quiet=quiet, verbose=verbose, work=work,
             verb="compressed", out_of=lambda s: s + ".tz")


def _strip_tz(src: str) -> str:
    if not src.endswith(".tz") or len(os.path.basename(src)) <= 3:
        raise Failed(f"{src}: unknown suffix (expected .tz); use -o or -c")
    return src[:-3]


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path())
@_io_options
@_model_options
def decompress(files, stdout, output, force, quiet, verbose, model, device):
    """Decompress FILE.tz to FILE, verifying every block's checksum."""
    decompressor = api.Decompressor(model, device=device)

    def work(fin, fout, tick):
        decompressor.decompress_stream(fin, fout, tick)
        return fin.tell() if fin.seekable() else 0
    _run_all(files, output, stdout, force=force, quiet=quiet, verbose=verbose, work=work,
             verb="decompressed", out_of=_strip_tz)


class _Sink:
    def write(self, b: bytes) -> int:
        return len(b)


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path())
@_model_options
@click.option("-q", "--quiet", is_flag=True, help="Only report failures.")
def test(files, model, device, quiet):
    """Decode FILES fully and check them, writing nothing."""
    failed = False
    decompressor = api.Decompressor(model, device=device)
    for src in files:
        try:
            with open(src, "rb") as fin, _progress(_size(src), quiet, "testing") as tick:
                n = decompressor.decompress_stream(fin, _Sink(), tick)
            if not quiet:
                click.echo(f"{src}: OK ({n:,} bytes)")
        except (TzipError, OSError) as e:
            _say(f"{src}: {getattr(e, 'strerror', None) or e}")
            failed = True
    sys.exit(1 if failed else 0)


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path())
def info(files):
    """Show sizes, ratio, model and blocks of archives (without decoding)."""
    failed = False
    for src in files:
        try:
            with open(src, "rb") as fin:
                i = api.info(fin)
        except (TzipError, OSError) as e:
            _say(f"{src}: {getattr(e, 'strerror', None) or e}")
            failed = True
            continue
        methods = ", ".join(sorted({b.method for b in i.blocks})) or "none"
        streams = sum(b.streams for b in i.blocks)
        click.echo(f"{src}\n  original   {i.original_size:,} bytes\n"
                   f"  compressed {i.compressed_size:,} bytes  ({i.bpb:.3f} bits per byte)\n"
                   f"  model      {i.model_name}  (id {i.model_id[:16]})\n"
                   f"  blocks     {len(i.blocks)}  ({methods}; {streams} model streams"
                   f"{'; UTF-16->UTF-8' if any(b.utf16 for b in i.blocks) else ''}"
                   f"{'; CRLF->LF' if any(b.crlf for b in i.blocks) else ''})\n"
                   f"  format     {i.version}")
    sys.exit(1 if failed else 0)


@main.command("models", context_settings=CONTEXT)
def list_models():
    """List installed models."""
    for name in registry.available():
        m = registry.load(name)
        click.echo(f"{name:14s} {m.num_params() / 1e6:5.2f}M params  context {m.cfg.context:5d}  "
                   f"id {m.digest.hex()[:16]}")


@main.command(context_settings={**CONTEXT, "ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args):
    """Train a model from a config: tzip train --config models/NAME.json --out DIR [--resume DIR]."""
    from .train import main as train_main
    sys.exit(train_main(list(args)))

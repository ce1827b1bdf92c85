"""The library API beyond one-shot calls: tzip.open file objects, the incremental
TzipCompressor/TzipDecompressor (as lzma's), concatenated archives, the model search path
and the thread policy."""
from __future__ import annotations

import io
import os

import pytest

import tzip
from tzip import modelpath, threads


def test_open_binary_round_trip_in_many_blocks(tmp_path, tiny_path, text):
    data = text[:5000] + bytes(range(256))
    p = tmp_path / "a.tz"
    with tzip.open(p, "wb", model=tiny_path, block_size=1500) as f:
        assert f.writable() and not f.readable()
        for i in range(0, len(data), 700):
            f.write(data[i:i + 700])
        assert f.tell() == len(data)
    assert len(tzip.info(p.read_bytes()).blocks) == 4
    with tzip.open(p, "rb", model=tiny_path) as f:
        assert f.read(10) == data[:10]
        assert f.readline() == data[10:].split(b"\n", 1)[0] + b"\n"
        rest = f.read()
    assert data[:10] + data[10:].split(b"\n", 1)[0] + b"\n" + rest == data
    assert tzip.decompress(p.read_bytes(), tiny_path) == data


def test_open_text_mode(tmp_path, tiny_path):
    s = "Grüße, naïve café\nline two\n" * 40
    p = tmp_path / "t.tz"
    with tzip.open(p, "wt", model=tiny_path, encoding="utf-8", block_size=400) as f:
        f.write(s)
    with tzip.open(p, "rt", model=tiny_path, encoding="utf-8") as f:
        assert f.readline() == "Grüße, naïve café\n"
        assert f.readline() + f.read() == s[len("Grüße, naïve café\n"):]
    with pytest.raises(ValueError):
        tzip.open(p, "rb", encoding="utf-8")


def test_open_file_objects_append_and_empty(tmp_path, tiny_path, text):
    buf = io.BytesIO()
    with tzip.open(buf, "wb", model=tiny_path) as f:
        f.write(text[:900])
    assert not buf.closed  # a caller's file object stays open
    p = tmp_path / "ab.tz"
    p.write_bytes(buf.getvalue())
    with tzip.open(p, "ab", model=tiny_path) as f:  # a second archive after the first
        f.write(text[900:1500])
    with tzip.open(p, model=tiny_path) as f:
        assert f.read() == text[:1500]
    assert tzip.info(p.read_bytes()).members == 2
    (tmp_path / "empty.tz").write_bytes(b"")
    with tzip.open(tmp_path / "empty.tz") as f:
        assert f.read() == b""
    (tmp_path / "cut.tz").write_bytes(p.read_bytes()[:-3])
    with tzip.open(tmp_path / "cut.tz", model=tiny_path) as f, pytest.raises(tzip.CorruptArchive):
        f.read()
    (tmp_path / "junk.tz").write_bytes(p.read_bytes() + b"junk")
    with tzip.open(tmp_path / "junk.tz", model=tiny_path) as f, pytest.raises(tzip.CorruptArchive,
                                                                            match="trailing"):
        f.read()


def test_incremental_objects_round_trip(tiny_path, text):
    data = text[:6000]
    c = tzip.TzipCompressor(tiny_path, block_size=2000)
    parts = [c.compress(data[i:i + 999]) for i in range(0, len(data), 999)]
    assert parts[0].startswith(b"\x89TZP")  # the header and the first block come early
    blob = b"".join(parts) + c.flush()
    with pytest.raises(ValueError):
        c.flush()
    assert tzip.decompress(blob, tiny_path) == data
    d = tzip.TzipDecompressor(tiny_path)
    out = []
    for i in range(0, len(blob), 37):  # input in small pieces
        assert not d.eof
        out.append(d.decompress(blob[i:i + 37]))
    assert d.eof and b"".join(out) == data and d.unused_data == b""
    d = tzip.TzipDecompressor(tiny_path)
    got = d.decompress(blob + b"next", max_length=100)
    assert got == data[:100] and not d.needs_input
    while not d.eof:
        got += d.decompress(b"", max_length=1000)
    assert got == data and d.unused_data == b"next"
    with pytest.raises(EOFError):
        d.decompress(b"more")
    with pytest.raises(tzip.CorruptArchive):
        tzip.TzipDecompressor(tiny_path).decompress(b"not an archive")


def test_one_shot_objects_keep_their_meaning(tiny_path, text):
    c = tzip.Compressor(tiny_path)
    blob = c.compress(text[:700])  # a whole archive, as before
    assert tzip.Decompressor(tiny_path).decompress(blob) == text[:700]
    assert tzip.decompress(blob + blob, tiny_path) == text[:700] * 2
    i = tzip.info(blob + blob)
    assert i.members == 2 and i.original_size == 1400 and i.compressed_size == 2 * len(blob)
    assert isinstance(i.blocks[0], tzip.BlockInfo)


def test_shipped_model_ids_without_torch(small):
    s = modelpath.summary(modelpath.model_file("tzip-small"))
    assert s["id"] == small.digest.hex() and s["params"] == small.num_params()
    assert s["context"] == small.cfg.context


def test_search_path(tmp_path, monkeypatch, tiny, tiny_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    tiny.save(b / "extra.npz")
    monkeypatch.setenv("TZIP_MODELS", os.pathsep.join([str(a), str(b)]))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    files = modelpath.model_files()
    assert files["extra"] == b / "extra.npz" and "tzip-small" in files  # shipped ones too
    assert modelpath.search_path()[:2] == [a, b]
    assert modelpath.model_file("../b/extra") is None and modelpath.model_file(".x") is None
    assert tzip.decompress(tzip.compress(b"hello hello", "extra"), "extra") == b"hello hello"
    monkeypatch.delenv("TZIP_MODELS")
    user = modelpath.user_dir()
    if "platformdirs" not in str(type(user)):  # the XDG fallback
        user.mkdir(parents=True, exist_ok=True)
        tiny.save(user / "mine.npz")
        assert modelpath.model_file("mine") == user / "mine.npz"


def test_thread_policy(monkeypatch):
    assert 1 <= threads.available_cores() <= (os.cpu_count() or 1)
    assert 1 <= threads.auto_threads() <= threads.available_cores()
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("TZIP_THREADS", raising=False)
    assert threads.wanted() is None  # the user's choice stands
    monkeypatch.setenv("TZIP_THREADS", "2")
    assert threads.wanted() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("TZIP_THREADS")
    assert threads.wanted() == threads.auto_threads()


def test_import_is_lazy():
    import subprocess
    import sys
    heavy = ("torch", "numpy", "numba", "constriction")  # what made `import tzip` slow
    code = ("import sys; import tzip\n"
            f"assert not [m for m in {heavy!r} if m in sys.modules], sys.modules.keys()\n"
            "tzip.open, tzip.TzipFile, tzip.info, tzip.ArchiveInfo\n"
            "assert 'torch' not in sys.modules\n"
            "print('ok')")
    root = os.path.dirname(os.path.dirname(os.path.abspath(tzip.__file__)))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=root))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"


def test_archives_of_a_per_user_model_decode_by_id(tmp_path, monkeypatch, tiny, text):
    """A model in the per-user folder (or a second $TZIP_MODELS folder) is found by the
    archive's id, as the shipped ones are."""
    from test_errors import _force_model_block
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    tiny.save(second / "renamed.npz")
    monkeypatch.setenv("TZIP_MODELS", os.pathsep.join([str(first), str(second)]))
    data = text[:1500]
    assert tzip.decompress(_force_model_block(tiny, data)) == data
    d = tzip.TzipDecompressor()
    assert d.decompress(_force_model_block(tiny, data)) == data and d.eof


def test_open_and_incremental_objects_read_format3_archives():
    """Archives made before format 4 read through tzip.open and TzipDecompressor too."""
    from pathlib import Path
    here = Path(__file__).resolve().parent
    blob = (here / "data" / "gettysburg.tzip-small.format3.tz").read_bytes()
    want = (here.parent / "bench" / "sample" / "gettysburg.txt").read_bytes()
    with tzip.open(io.BytesIO(blob), "rb") as f:
        assert f.read() == want
    d = tzip.TzipDecompressor()
    assert d.decompress(blob) == want and d.eof


def test_cli_loads_no_numpy_for_help():
    """`tzip --help`, `-V`, `-l` and usage errors import the CLI and no numerics."""
    import subprocess
    import sys
    code = ("import sys; import tzip.cli\n"
            "print([m for m in ('torch', 'numpy', 'numba', 'constriction') if m in sys.modules])")
    root = os.path.dirname(os.path.dirname(os.path.abspath(tzip.__file__)))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=root))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_tzipfile_seeks_anywhere_in_read_mode(tmp_path, tiny_path, text):
    """As gzip's and lzma's files: forward by decoding, backward by decoding again from the
    start, from the end by decoding to it; past the end stays at the end; .mode says how
    the file is open; writing does not seek."""
    data = text[:5000]
    p = tmp_path / "a.tz"
    with tzip.open(p, "wb", model=tiny_path, block_size=1500) as f:
        assert f.mode == "wb" and not f.seekable()
        f.write(data)
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0)
    with tzip.open(p, "rb", model=tiny_path) as f:
        assert f.mode == "rb" and f.seekable()
        assert f.seek(3100) == 3100 and f.tell() == 3100 and f.read(20) == data[3100:3120]
        assert f.seek(10) == 10 and f.read(30) == data[10:40]  # backward
        assert f.seek(-5, io.SEEK_CUR) == 35 and f.read(5) == data[35:40]
        assert f.seek(-7, io.SEEK_END) == len(data) - 7 and f.read() == data[-7:]
        assert f.seek(len(data) + 100) == len(data) and f.read() == b""
        assert f.seek(0) == 0 and f.read() == data
        with pytest.raises(ValueError):
            f.seek(0, 3)


def test_tzipfile_over_a_pipe_seeks_forward_only(tmp_path, tiny_path, text):
    blob = tzip.compress(text[:2000], tiny_path)

    class Pipe(io.RawIOBase):  # readable, not seekable
        def __init__(self, b):
            self.b = io.BytesIO(b)

        def readable(self):
            return True

        def readinto(self, buf):
            return self.b.readinto(buf)

    with tzip.TzipFile(Pipe(blob), model=tiny_path) as f:
        assert not f.seekable()
        assert f.seek(500) == 500 and f.read(10) == text[500:510]
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0)


def test_file_functions_refuse_to_overwrite_and_keep_times_and_mode(tmp_path, tiny_path, text):
    """As the command line: an existing output is FileExistsError unless force=True (and is
    left as it was); outputs keep their input's permission bits and modification time."""
    src = tmp_path / "a.txt"
    src.write_bytes(text[:1000])
    src.chmod(0o640)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_500_000_000_123_456_789))
    tz = tzip.compress_file(src, model=tiny_path)
    assert tz.stat().st_mtime_ns == 1_500_000_000_123_456_789
    assert tz.stat().st_mode & 0o777 == 0o640
    tz.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        tzip.compress_file(src, model=tiny_path)
    assert tz.read_bytes() == b"keep me"
    tzip.compress_file(src, model=tiny_path, force=True)
    with pytest.raises(FileExistsError):
        tzip.decompress_file(tz, model=tiny_path)
    assert src.read_bytes() == text[:1000]
    os.utime(tz, ns=(1_600_000_000_000_000_000, 1_400_000_000_000_000_000))
    assert tzip.decompress_file(tz, model=tiny_path, force=True) == src
    assert src.read_bytes() == text[:1000] and src.stat().st_mtime_ns == 1_400_000_000_000_000_000
    assert src.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("version,method", [(8, "model+cm3"), (9, "model+cm4"), (10, "model+cm5"),
                                            (11, "model+cm6"), (12, "model+cm7")])
def test_level_8_formats_are_asked_for_by_their_number(small, text, version, method):
    """Compressor(format=12) codes with the context mixer's revision 7 (level -8's format;
    11, revision 6, 0.7's; 10, revision 5, 0.6's; 9, revision 4, 0.5's; 8, revision 3,
    0.4's) and tzip.decompress needs no option; the
    default stays format 5; none has a window nor the mixer alone."""
    data = text[:4000]
    blob = tzip.compress(data, small, format=version)
    info = tzip.info(blob)
    assert info.version == version and [b.method for b in info.blocks] == [method]
    assert tzip.decompress(blob, small) == data
    assert tzip.info(tzip.compress(data, small)).version == 5
    with pytest.raises(ValueError, match="format 7"):
        tzip.Compressor(small, window=64, format=version)
    with pytest.raises(ValueError, match="format 6"):
        tzip.Compressor("none", format=version)

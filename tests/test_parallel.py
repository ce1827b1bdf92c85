"""Scale-out (tzip/parallel.py, tzip/cluster.py): archives of N workers are byte-identical
to the single-process path's, blocks are written in order whatever order they finish in,
and failures stop the job cleanly."""
from __future__ import annotations

import io
import multiprocessing
import os
import random
import signal
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import tzip
from tzip import api, parallel, threads
from tzip.errors import CorruptArchive, TzipError

BS = 1024  # small blocks: several model blocks from a few KB of text


@pytest.fixture(scope="module")
def data(text) -> bytes:
    """Model blocks, then stored/LZMA blocks (random), then a short model block."""
    return text[:2048] + random.Random(0).randbytes(2048) + text[5000:5700]


@pytest.fixture(scope="module")
def reference(tiny, data) -> bytes:
    return tzip.compress(data, tiny, device="cpu", block_size=BS)


def test_workers_2_byte_identical_and_round_trip(tiny, data, reference):
    out, seen = io.BytesIO(), []
    n = parallel.compress_stream(io.BytesIO(data), out, tiny, workers=2, device="cpu",
                                 block_size=BS, progress=seen.append)
    assert n == len(data) and sum(seen) == len(data) and len(seen) == 5
    assert out.getvalue() == reference
    assert [b.method for b in tzip.info(reference).blocks] == \
        ["model+cm2", "model+cm2", "stored", "stored", "model+cm2"]
    back = io.BytesIO()
    assert parallel.decompress_stream(io.BytesIO(reference), back, tiny, workers=2,
                                      device="cpu") == len(data)
    assert back.getvalue() == data
    assert not multiprocessing.active_children()  # the pool is gone


def test_workers_1_is_the_single_process_path(tiny):
    data = random.Random(1).randbytes(3000)
    out = io.BytesIO()
    parallel.compress_stream(io.BytesIO(data), out, tiny, workers=1, device="cpu", block_size=BS)
    assert out.getvalue() == tzip.compress(data, tiny, device="cpu", block_size=BS)
    back = io.BytesIO()
    parallel.decompress_stream(io.BytesIO(out.getvalue()), back, tiny, workers=1, device="cpu")
    assert back.getvalue() == data


def test_parallel_decompression_keeps_the_checks(tiny):
    data = random.Random(2).randbytes(3 * BS)  # stored blocks: no model time
    blob = tzip.compress(data, tiny, device="cpu", block_size=BS)
    bad = bytearray(blob)
    bad[len(blob) // 2] ^= 1  # inside the second block's payload
    for broken, match in [(bytes(bad), "checksum"), (blob + b"x", "trailing"),
                          (blob[:-3], "truncated")]:
        with pytest.raises(CorruptArchive, match=match):
            parallel.decompress_stream(io.BytesIO(broken), io.BytesIO(), tiny, workers=2,
                                       device="cpu", in_flight=2)
    assert not multiprocessing.active_children()


class _Slow:
    """A backend of threads whose jobs finish in the opposite order to their submission."""

    def __init__(self, delays: dict[int, float], fail: int | None = None,
                 gates: dict[int, threading.Event] | None = None):
        self.pool, self.delays, self.fail = ThreadPoolExecutor(8), delays, fail
        self.gates, self.finished = gates or {}, set()

    def job(self, i: int) -> int:
        time.sleep(self.delays.get(i, 0))
        if i in self.gates:  # held until the test opens the gate (or a minute passes)
            self.gates[i].wait(60)
        self.finished.add(i)
        if i == self.fail:
            raise CorruptArchive(f"block {i} is bad")
        return i * 10

    def backend(self) -> parallel.Backend:
        from concurrent.futures import FIRST_COMPLETED, wait

        def wait_any(fs):
            done, _ = wait(fs, return_when=FIRST_COMPLETED)
            for f in done:
                if f.exception():
                    raise f.exception()
        return parallel.Backend(lambda name, i: self.pool.submit(self.job, i), wait_any,
                                lambda f: f.done(), lambda f: f.result(),
                                lambda err: self.pool.shutdown(wait=not err, cancel_futures=True))


def test_blocks_are_written_in_order_when_they_finish_out_of_order():
    slow = _Slow({i: 0.05 * (6 - i) for i in range(6)})
    jobs = [(("m", i), ("job", i)) for i in range(3)] + [(("marker", 3), None)] + \
        [(("m", i), ("job", i)) for i in range(4, 6)]
    got = list(parallel.ordered(jobs, slow.backend(), limit=6))
    assert got == [(("m", 0), 0), (("m", 1), 10), (("m", 2), 20), (("marker", 3), None),
                   (("m", 4), 40), (("m", 5), 50)]


def test_ordered_reads_ahead_at_most_the_limit():
    read = []

    def jobs():
        for i in range(10):
            read.append(i)
            yield i, ("job", i)
    slow = _Slow({})
    for i, _ in parallel.ordered(jobs(), slow.backend(), limit=3):
        assert len(read) <= i + 3


def test_a_failing_block_is_raised_at_once_not_when_its_turn_comes():
    """Block 0 is held until the error has been raised: raised in its turn, it would come
    only after the gate's one-minute fallback, with block 0 finished."""
    gate = threading.Event()
    slow = _Slow({}, fail=2, gates={0: gate})
    try:
        with pytest.raises(CorruptArchive, match="block 2"):
            list(parallel.ordered([(i, ("job", i)) for i in range(4)], slow.backend(), limit=4))
        assert 0 not in slow.finished and 2 in slow.finished
    finally:
        gate.set()
        slow.pool.shutdown(wait=False, cancel_futures=True)


def test_a_killed_worker_gives_a_clean_error_and_no_output(tiny, text, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(text[:8 * BS])
    dst = tmp_path / "in.txt.tz"
    killed = []

    def kill_one(n):
        if not killed:
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    with open(src, "rb") as fin, pytest.raises(parallel.WorkerDied, match="a worker process died"):
        api.atomic_write(dst, lambda f: parallel.compress_stream(
            fin, f, tiny, workers=2, device="cpu", block_size=BS, progress=kill_one))
    assert killed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]  # no partial archive
    assert not multiprocessing.active_children()
    assert issubclass(parallel.WorkerDied, TzipError)


def test_workers_0_means_all_cores():
    assert parallel.resolve_workers(0) == threads.available_cores() >= 1
    assert parallel.resolve_workers(None) == threads.available_cores()
    assert parallel.resolve_workers(3) == 3
    with pytest.raises(ValueError):
        parallel.resolve_workers(-1)


def test_cores_are_counted_once_cgroup_quota_included(monkeypatch):
    """-T 0 and each worker's thread share count cores as the thread policy does
    (threads.available_cores: the affinity mask capped by a cgroup quota); parallel had
    its own count, which ignored the quota."""
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    assert parallel.resolve_workers(0) == 3
    assert parallel._threads_each(1) == 3 and parallel._threads_each(2) == 1


def test_compress_files_writes_one_archive_per_file(tiny, text, tmp_path):
    files = {"a.txt": text[:1500], "empty": b"", "sub/c.bin": random.Random(3).randbytes(2500)}
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(body)
    os.chmod(tmp_path / "a.txt", 0o600)
    skipped = []
    srcs = list(parallel.iter_files([tmp_path], skipped=lambda p, why: skipped.append(p)))
    assert [p.relative_to(tmp_path).as_posix() for p in srcs] == ["a.txt", "empty", "sub/c.bin"]
    out = parallel.compress_files(srcs, tiny, workers=2, device="cpu", block_size=BS)
    assert out == [p.with_name(p.name + ".tz") for p in srcs]
    for p, tz in zip(srcs, out):
        assert tz.read_bytes() == tzip.compress(p.read_bytes(), tiny, device="cpu", block_size=BS)
    assert stat.S_IMODE(os.stat(out[0]).st_mode) == 0o600
    assert not [p for p in tmp_path.rglob("*.tmp")]
    with pytest.raises(TzipError, match="already exists"):
        parallel.compress_files(srcs[:1], tiny, workers=2, device="cpu", block_size=BS)
    # a second run skips the archives, and decompression gives the files back
    again = list(parallel.iter_files([tmp_path], skipped=lambda p, why: skipped.append(p)))
    assert again == srcs and sorted(skipped) == sorted(out)
    for p in srcs:
        p.unlink()
    back = parallel.decompress_files(out, tiny, workers=2, device="cpu")
    assert back == srcs and [b.read_bytes() for b in back] == list(files.values())
    # one pool over all archives; a corrupt one is named, and leaves no partial output
    for p in srcs:
        p.unlink()
    bad = bytearray(out[2].read_bytes())
    bad[-20] ^= 1
    out[2].write_bytes(bytes(bad))
    with pytest.raises(CorruptArchive, match="c.bin.tz: corrupt archive"):
        parallel.decompress_files(out, tiny, workers=2, device="cpu")
    assert srcs[0].read_bytes() == files["a.txt"] and not srcs[2].exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_iter_files_reports_what_it_skips(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("x")
    (tmp_path / "y.tz").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "d")
    os.mkfifo(tmp_path / "fifo")
    skipped = {}
    got = list(parallel.iter_files([tmp_path / "d", tmp_path / "y.tz", tmp_path / "fifo",
                                    tmp_path / "missing"], recursive=False,
                                   skipped=lambda p, why: skipped.__setitem__(p.name, why)))
    assert got == []
    assert set(skipped) == {"d", "y.tz", "fifo", "missing"}
    assert "directory" in skipped["d"] and ".tz" in skipped["y.tz"]
    skipped.clear()
    got = list(parallel.iter_files([tmp_path], skipped=lambda p, why: skipped.__setitem__(p.name, why)))
    assert got == [tmp_path / "d" / "x.txt"]
    assert set(skipped) == {"fifo", "link", "y.tz"}
    got = list(parallel.iter_files([tmp_path], compressing=False, skipped=lambda p, why: None))
    assert got == [tmp_path / "y.tz"]


def test_ray_missing_is_a_one_line_tzip_error(monkeypatch):
    from tzip import cluster
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(cluster.RayMissing, match=r"pip install 'tzip\[ray\]'") as e:
        parallel.compress_stream(io.BytesIO(b"abc"), io.BytesIO(), "tzip-small", ray="local")
    assert isinstance(e.value, TzipError) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_same_bytes_as_local_and_round_trip(ray_local, tiny, data, reference, tmp_path):
    out = io.BytesIO()
    parallel.compress_stream(io.BytesIO(data), out, tiny, ray="local", device="cpu", block_size=BS)
    assert out.getvalue() == reference
    back = io.BytesIO()
    parallel.decompress_stream(io.BytesIO(reference), back, tiny, ray="local", device="cpu")
    assert back.getvalue() == data
    bad = bytearray(reference)
    bad[-40] ^= 1
    with pytest.raises(CorruptArchive):
        parallel.decompress_stream(io.BytesIO(bytes(bad)), io.BytesIO(), tiny, ray="local",
                                   device="cpu")
    (tmp_path / "a.txt").write_bytes(data)
    (tmp_path / "b.txt").write_bytes(data[:700])
    tz = parallel.compress_files([tmp_path / "a.txt", tmp_path / "b.txt"], tiny, ray="local",
                                 device="cpu", block_size=BS)
    assert tz[0].read_bytes() == reference
    assert tz[1].read_bytes() == tzip.compress(data[:700], tiny, device="cpu", block_size=BS)


def test_every_writer_makes_the_same_archive(tiny, tiny_path, data, tmp_path):
    """The one archive writer (tzip/archive.py) behind Compressor, TzipCompressor,
    tzip.open and worker processes: the same bytes for the same input, in a format that
    is not the default too."""
    for fmt in (3, 5):
        want = tzip.Compressor(tiny, device="cpu", block_size=BS, format=fmt).compress(data)
        assert tzip.info(want).version == fmt
        tc = tzip.TzipCompressor(tiny_path, device="cpu", block_size=BS, format=fmt)
        assert b"".join(tc.compress(data[i:i + 700]) for i in range(0, len(data), 700)) \
            + tc.flush() == want
        out = io.BytesIO()
        parallel.compress_stream(io.BytesIO(data), out, tiny, workers=2, device="cpu",
                                 block_size=BS, format=fmt)
        assert out.getvalue() == want
        if fmt == 5:
            buf = io.BytesIO()
            with tzip.open(buf, "wb", model=tiny_path, device="cpu", block_size=BS) as f:
                f.write(data)
            assert buf.getvalue() == want
    (tmp_path / "a.txt").write_bytes(data)
    tz, = parallel.compress_files([tmp_path / "a.txt"], tiny, workers=2, device="cpu",
                                  block_size=BS, format=3)
    assert tz.read_bytes() == tzip.compress(data, tiny, device="cpu", block_size=BS, format=3)


@pytest.fixture
def two_models(tmp_path, monkeypatch, tiny, tiny_b):
    """tiny and tiny_b installed (worker processes inherit the environment)."""
    d = tmp_path / "models"
    d.mkdir()
    tiny.save(d / "tiny-a.npz")
    tiny_b.save(d / "tiny-b.npz")
    monkeypatch.setenv("TZIP_MODELS", str(d))


def test_workers_decode_archives_one_after_another(two_models, tiny, tiny_b, data, tmp_path):
    """cat a.tz b.tz (two models here) decodes with -T 2 as with -T 1: -T N printed the
    first archive, then failed with "trailing data after the end"."""
    a = tzip.compress(data, tiny, device="cpu", block_size=BS)
    b = tzip.compress(data[:1500], tiny_b, device="cpu", block_size=BS)
    assert tzip.decompress(a + b) == data + data[:1500]
    out = io.BytesIO()
    assert parallel.decompress_stream(io.BytesIO(a + b), out, workers=2, device="cpu",
                                      in_flight=2) == len(data) + 1500
    assert out.getvalue() == data + data[:1500]
    (tmp_path / "ab.tz").write_bytes(a + b)
    (tmp_path / "a.tz").write_bytes(a)
    back = parallel.decompress_files([tmp_path / "ab.tz", tmp_path / "a.tz"], workers=2,
                                     device="cpu")
    assert [p.read_bytes() for p in back] == [data + data[:1500], data]
    (tmp_path / "junk.tz").write_bytes(a + b + b"junk")
    with pytest.raises(CorruptArchive, match="junk.tz: corrupt archive \\(trailing data"):
        parallel.decompress_files([tmp_path / "junk.tz"], workers=2, device="cpu")
    assert not (tmp_path / "junk").exists()


def test_cli_T2_decodes_archives_one_after_another(tiny, tiny_path, data, tmp_path):
    from click.testing import CliRunner

    from tzip.cli import main
    a = tzip.compress(data, tiny, device="cpu", block_size=BS)
    b = tzip.compress(data[::-1], tiny, device="cpu", block_size=BS)
    ab = tmp_path / "ab.tz"
    ab.write_bytes(a + b)
    r = CliRunner().invoke(main, ["-dc", "-T", "2", "--model", str(tiny_path), str(ab)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == data + data[::-1]
    r = CliRunner().invoke(main, ["-d", "-q", "-T", "2", "--model", str(tiny_path), str(ab)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "ab").read_bytes() == data + data[::-1]


def test_a_worker_sets_its_threads_before_torch_loads():
    """A spawned worker imports tzip.parallel to unpickle its initializer; that import
    must not load PyTorch or numpy, whose thread pools read OMP_NUM_THREADS /
    OPENBLAS_NUM_THREADS when they load, before the worker sets them (_limit_threads)."""
    import subprocess
    code = ("import sys, tzip.parallel, tzip.pipeline\n"
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(tzip.__file__)))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=root))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


# ---- files are written as tzip.compress_file and the CLI write them (tzip/output.py) ----
def _dead_pid() -> int:
    import subprocess
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("workers", [1, 2])
def test_files_appearing_during_the_run_are_kept_without_force(tiny, text, tmp_path, workers):
    """compress_files / decompress_files never replace a file that another process made
    while they wrote it (issue 29): the run fails, that file stays, no temporary is left."""
    src = tmp_path / "a.txt"
    body = text[:3 * BS]
    src.write_bytes(body)
    tz = tmp_path / "a.txt.tz"

    def theirs(n: int) -> None:  # another writer, while the blocks are coded
        if not tz.exists():
            tz.write_bytes(b"theirs")

    with pytest.raises(TzipError, match="a.txt.tz already exists"):
        parallel.compress_files([src], tiny, workers=workers, device="cpu", block_size=BS,
                                progress=theirs)
    assert tz.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "a.txt.tz"]
    # with force it is replaced
    tz.unlink()
    parallel.compress_files([src], tiny, workers=workers, device="cpu", block_size=BS,
                            progress=theirs, force=True)
    archive = tz.read_bytes()
    assert archive == tzip.compress(body, tiny, device="cpu", block_size=BS)

    src.unlink()

    def theirs_too(n: int) -> None:
        if not src.exists():
            src.write_bytes(b"theirs")

    with pytest.raises(TzipError, match="a.txt already exists"):
        parallel.decompress_files([tz], tiny, workers=workers, device="cpu", progress=theirs_too)
    assert src.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "a.txt.tz"]


def test_files_keep_times_and_mode_and_stale_temporaries_go(tiny, text, tmp_path, monkeypatch):
    """The outputs get the input's permission bits and times (as the CLI gives them); a
    temporary file that a killed run left in the folder is removed; the run leaves none."""
    from tzip import output
    monkeypatch.setattr(output, "_cleaned", set())
    src = tmp_path / "a.txt"
    src.write_bytes(text[:1500])
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_000_000_000_123, 1_500_000_000_456))
    stale = tmp_path / f".a.txt.tz.tzip_{output._this_host()}_{_dead_pid()}_0badf00d.tmp"
    stale.write_bytes(b"x")
    [tz] = parallel.compress_files([src], tiny, workers=1, device="cpu", block_size=BS)
    st = os.stat(tz)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 1_500_000_000_456
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "a.txt.tz"]
    os.utime(tz, ns=(2_000_000_000_000, 2_500_000_000_000))
    src.unlink()
    parallel.decompress_files([tz], tiny, workers=1, device="cpu")
    st = os.stat(src)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 2_500_000_000_000
    assert src.read_bytes() == text[:1500]

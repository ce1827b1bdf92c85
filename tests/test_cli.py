"""The command line as a user meets it: files, pipes, flags, exit codes, one-line errors."""
from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

import tzip
from tzip import api, cli
from tzip.cli import main

# the folder that holds the tzip under test (the source tree, or site-packages when
# installed): subprocesses import the same one
TZIP_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tzip.__file__)))


def env_for_subprocess() -> dict:
    return dict(os.environ, PYTHONPATH=TZIP_ROOT)


def run(*args, input=None):
    r = CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    return r.exit_code, r.stdout_bytes, r.stderr


@pytest.fixture
def txt(tmp_path, text):
    p = tmp_path / "notes.txt"
    p.write_bytes(text[:4000])
    return p


def test_compress_keeps_input_and_decompress_restores(txt, tiny_path, text):
    code, _, err = run("compress", "-q", "--model", tiny_path, txt)
    assert code == 0, err
    tz = txt.with_name("notes.txt.tz")
    assert tz.exists() and txt.exists()
    txt.unlink()
    code, _, err = run("decompress", "-q", "--model", tiny_path, tz)
    assert code == 0, err
    assert txt.read_bytes() == text[:4000]


def test_outputs_keep_the_input_permissions(txt, tiny_path):
    """As gzip: a 0640 file compresses to a 0640 archive and decompresses to 0640 again
    (not the 0600 of a temporary file)."""
    txt.chmod(0o640)
    assert run("compress", "-q", "--model", tiny_path, txt)[0] == 0
    tz = txt.with_name("notes.txt.tz")
    assert stat.S_IMODE(tz.stat().st_mode) == 0o640
    tz.chmod(0o604)
    assert run("decompress", "-q", "-f", "--model", tiny_path, tz)[0] == 0
    assert stat.S_IMODE(txt.stat().st_mode) == 0o604


def test_refuses_to_overwrite_without_force(txt, tiny_path):
    assert run("compress", "--model", tiny_path, txt)[0] == 0
    tz = txt.with_name("notes.txt.tz")
    before = tz.read_bytes()
    code, _, err = run("compress", "--model", tiny_path, txt)
    assert code == 1 and "already exists" in err and "-f" in err
    assert tz.read_bytes() == before
    assert run("compress", "-f", "--model", tiny_path, txt)[0] == 0


def test_stdout_and_output_flags(txt, tiny_path, tmp_path, text):
    code, out, _ = run("compress", "-c", "--model", tiny_path, txt)
    assert code == 0 and out[:4] == b"\x89TZP"
    dst = tmp_path / "x.bin"
    tz = tmp_path / "x.tz"
    tz.write_bytes(out)
    assert run("decompress", "-o", dst, "--model", tiny_path, tz)[0] == 0
    assert dst.read_bytes() == text[:4000]
    code, out2, _ = run("decompress", "-c", "--model", tiny_path, tz)
    assert code == 0 and out2 == text[:4000]


def test_pipes_through_a_real_process(tiny_path, text):
    env = env_for_subprocess()
    data = text[:3000] + b"\xff\x00 binary tail"
    c = subprocess.run([sys.executable, "-m", "tzip", "compress", "--model", str(tiny_path)],
                       input=data, capture_output=True, env=env, check=True)
    d = subprocess.run([sys.executable, "-m", "tzip", "decompress", "--model", str(tiny_path), "-"],
                       input=c.stdout, capture_output=True, env=env, check=True)
    assert d.stdout == data


def test_bad_archive_gives_one_line_and_no_output(tmp_path, tiny_path):
    bad = tmp_path / "bad.tz"
    bad.write_bytes(b"this is not an archive at all")
    code, _, err = run("decompress", "--model", tiny_path, bad)
    assert code == 1
    assert err.strip().count("\n") == 0 and "not a tzip archive" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tz"]  # no temporary left behind


def test_truncated_archive_leaves_no_partial_file(txt, tiny_path):
    run("compress", "--model", tiny_path, txt)
    tz = txt.with_name("notes.txt.tz")
    tz.write_bytes(tz.read_bytes()[:-10])
    txt.unlink()
    code, _, err = run("decompress", "--model", tiny_path, tz)
    assert code == 1 and "truncated" in err
    assert not txt.exists()


def test_wrong_model_message(txt, tiny_path, tiny_b_path, tiny, tiny_b):
    from test_errors import _force_model_block
    tz = txt.with_name("forced.tz")
    tz.write_bytes(_force_model_block(tiny, txt.read_bytes()[:1500]))
    code, _, err = run("decompress", "-c", "--model", tiny_b_path, tz)
    assert code == 1 and "wrong model" in err and "tiny-a" in err


def test_missing_file_and_suffix(tmp_path, tiny_path):
    code, _, err = run("compress", "--model", tiny_path, tmp_path / "nope.txt")
    assert code == 1 and "no such file" in err.lower()
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    code, _, err = run("decompress", plain)
    assert code == 1 and "unknown suffix" in err


def test_test_and_info(txt, tiny_path):
    run("compress", "--model", tiny_path, txt)
    tz = txt.with_name("notes.txt.tz")
    code, out, err = run("test", "--model", tiny_path, tz)
    assert code == 0 and out == b"" and err == ""
    code, out, _ = run("info", "-v", tz)
    assert code == 0 and b"bits per byte" in out and b"tiny-a" in out
    tz.write_bytes(tz.read_bytes()[:-3])
    code, _, err = run("test", "--model", tiny_path, tz)
    assert code == 1 and "truncated" in err


def test_unknown_model_and_device(txt):
    code, _, err = run("compress", "--model", "no-such-model", txt)
    assert code == 1 and "not found" in err
    code, _, err = run("compress", "--device", "tpu", txt)
    assert code == 1 and "unknown device" in err


def test_usage_error_exit_code(txt, tiny_path):
    code, _, err = run("compress", "-o", "x", "--model", tiny_path, txt, txt)
    assert code == 2 and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="training needs PyTorch")
def test_train_help_shows_the_training_options():
    """`tzip train --help` reaches the training command's own options (resume, lr...)."""
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    assert "--config" in r.output and "--resume" in r.output and "--lr" in r.output


def test_train_without_torch_says_which_extra_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError(name="torch")
    for m in [m for m in sys.modules if m.startswith("tzip.training")]:
        monkeypatch.delitem(sys.modules, m)
    r = CliRunner().invoke(main, ["train", "--config", "x.json"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip().count("\n") == 0 and "pip install 'tzip[torch]'" in r.output, r.output


def test_stream_count_outside_the_format_is_a_usage_error(txt, tiny_path):
    code, _, err = run("compress", "--model", tiny_path, "--streams", "4097", txt)
    assert code == 2 and "4097" in err and "1<=x<=4096" in err


def test_version_says_whether_the_compiled_loops_are_on():
    code, out, _ = run("--version")
    assert code == 0 and out.startswith(b"tzip ") and b"compiled CPU loops: " in out


# ------------------------------------------------------------------ gzip/xz/zstd habits


def test_bare_file_compresses_and_dash_d_decompresses(txt, tiny_path, text):
    assert run("-q", "--model", tiny_path, txt)[0] == 0  # tzip FILE
    tz = txt.with_name("notes.txt.tz")
    assert tz.exists() and txt.exists()  # kept, as zstd does
    txt.unlink()
    code, _, err = run("-d", "-k", "--model", tiny_path, tz)
    assert code == 0, err
    assert txt.read_bytes() == text[:4000] and tz.exists()
    code, out, _ = run("-dc", "--model", tiny_path, tz)
    assert code == 0 and out == text[:4000]
    code, out, _ = run("-z", "-c", "--model", tiny_path, txt)
    assert code == 0 and out[:4] == b"\x89TZP"


def test_rm_removes_the_input_only_after_success(txt, tiny_path, text):
    assert run("--rm", "-q", "--model", tiny_path, txt)[0] == 0
    tz = txt.with_name("notes.txt.tz")
    assert tz.exists() and not txt.exists()
    assert run("-d", "--rm", "-q", "--model", tiny_path, tz)[0] == 0
    assert txt.read_bytes() == text[:4000] and not tz.exists()
    assert run("--rm", "-k", "-q", "--model", tiny_path, txt)[0] == 0  # -k cancels --rm
    assert txt.exists()


def test_test_and_list_flags(txt, tiny_path):
    run("-q", "--model", tiny_path, txt)
    tz = txt.with_name("notes.txt.tz")
    code, out, err = run("-tv", "--model", tiny_path, tz)
    assert code == 0 and out == b"" and "OK (4,000 bytes)" in err
    code, out, _ = run("-lv", tz)
    assert code == 0 and b"4,000 bytes" in out and b"bits per byte" in out


def test_version_flags():
    for flag in ("-V", "--version"):
        code, out, _ = run(flag)
        assert code == 0 and out.startswith(b"tzip " + tzip.__version__.encode())


def test_levels_are_accepted_and_nine_picks_the_large_model(txt, tiny_path):
    for level in ("-1", "-5", "-9", "--fast", "--best"):
        code, out, err = run(level, "-c", "--model", tiny_path, txt)
        assert code == 0 and out[:4] == b"\x89TZP", err  # --model wins over -9
    assert cli._model_for(None, 9) == "tzip-large"
    assert cli._model_for(None, 1) == "none" and cli._model_for(None, None) is None
    assert run("-10", txt)[0] == 2


LEVEL_ARCHIVES = {1: (6, None), 2: (7, 64), 3: (7, 64), 4: (7, 128), 5: (7, 128),
                  6: (5, None), 7: (5, None), 8: (12, None)}  # level -> (format, window) of tzip-small


def test_levels_name_a_model_a_window_and_a_format():
    assert [cli._window_for(n) for n in range(1, 10)] == [None, 64, 64, 128, 128, None, None, None, None]
    assert cli._window_for(None) is None and cli._model_for(None, 3) is None
    assert cli._model_for("m", 2) == "m" and cli._window_for(2) == 64  # --model keeps the window
    assert [cli._format_for(n) for n in range(1, 10)] == [None] * 7 + [12, None]  # only -8 names one
    assert cli._format_for(None) is None


@pytest.mark.parametrize("level", sorted(LEVEL_ARCHIVES))
def test_each_level_round_trips_with_its_model_and_window(tmp_path, text, level):
    """Each level's archive (tzip-small, the default on a CPU): its format and window, and
    tzip -d needs no level. -v names the model and the window."""
    src = tmp_path / "notes.txt"
    src.write_bytes(text[:3000])
    code, out, err = run(f"-{level}", "-c", "-v", src)
    assert code == 0, err
    info = tzip.info(out)
    assert (info.version, info.window) == LEVEL_ARCHIVES[level]
    if level > 1:
        assert info.model_name == "tzip-small"
        window = LEVEL_ARCHIVES[level][1]
        assert (f"tzip-small, window {window} of 256:" if window else "tzip-small, window 256:") in err
    code, back, err = run("-dc", "-", input=out)
    assert code == 0 and back == src.read_bytes(), err
    if LEVEL_ARCHIVES[level][1]:
        src.with_name("n.tz").write_bytes(out)
        code, listing, _ = run("-lv", src.with_name("n.tz"))
        assert code == 0 and f"window {LEVEL_ARCHIVES[level][1]}" in listing.decode()
    if level == 8:
        src.with_name("n.tz").write_bytes(out)
        code, listing, _ = run("-lv", src.with_name("n.tz"))
        assert code == 0 and "format     12" in listing.decode() and "model+cm7" in listing.decode()


def test_help_says_what_each_level_runs():
    code, out, _ = run("--help")
    text = out.decode()
    assert code == 0 and "last 64, 128 bytes" in text and "whole context" in text
    code, out, _ = run("compress", "--help")
    text = " ".join(out.decode().split())
    for words in ("-2/-3", "last 64 bytes", "-4/-5", "last 128 bytes", "-6/-7 (default)", "-8:",
                  "revision 7 (format 12)", "-9/--best"):
        assert words in text, words


def test_a_window_level_with_a_shorter_model_uses_its_whole_context(txt, tiny_path):
    """-2 (window 64) with a model of context 32: format 7, window 32, and it decodes."""
    code, out, err = run("-2", "-c", "--model", tiny_path, txt)
    assert code == 0, err
    assert (tzip.info(out).version, tzip.info(out).window) == (7, 32)
    assert run("-dc", "--model", tiny_path, "-", input=out)[1] == txt.read_bytes()


def test_a_window_level_with_the_mixer_alone_is_level_1(txt):
    """-2 --model none: the mixer alone has no window, so -1's archive, not an error."""
    code, out, err = run("-2", "-c", "--model", "none", txt)
    assert code == 0, err
    assert out == run("-1", "-c", txt)[1] and tzip.info(out).version == 6


def test_level_8_writes_format_12_and_the_mixer_alone_keeps_its_own(txt, tiny_path):
    """-8 with any model writes format 12 (in worker processes too, the same bytes);
    -8 --model none is the mixer alone, format 6, as -1."""
    one = run("-8", "-c", "-T", "1", "--model", tiny_path, txt)
    two = run("-8", "-c", "-T", "2", "--model", tiny_path, txt)
    assert one[0] == two[0] == 0 and one[1] == two[1], one[2] + two[2]
    assert tzip.info(one[1]).version == 12 and [b.method for b in tzip.info(one[1]).blocks] == ["model+cm7"]
    assert run("-dc", "--model", tiny_path, "-", input=one[1])[1] == txt.read_bytes()
    code, out, err = run("-8", "-c", "--model", "none", txt)
    assert code == 0 and out == run("-1", "-c", txt)[1], err


def test_window_levels_in_worker_processes(txt, tiny_path):
    """-4 -T 2: the archive of -4 -T 1."""
    one = run("-4", "-c", "-T", "1", "--model", tiny_path, txt)
    two = run("-4", "-c", "-T", "2", "--model", tiny_path, txt)
    assert one[0] == two[0] == 0 and one[1] == two[1] and tzip.info(one[1]).version == 7


def test_level_1_runs_the_mixer_alone(txt):
    """-1 needs no model: the context mixer alone writes format 6, and it decodes."""
    code, out, err = run("-1", "-c", txt)
    assert code == 0, err
    info = tzip.info(out)
    assert info.version == 6 and {b.method for b in info.blocks} <= {"cm2", "lzma", "stored"}
    code, back, err = run("-dc", "-", input=out)
    assert code == 0 and back == txt.read_bytes(), err


def test_recursive(tmp_path, tiny_path, text):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(text[:1000])
    (d / "sub" / "b.txt").write_bytes(text[1000:2000])
    code, _, err = run("-q", "--model", tiny_path, d)
    assert code == 1 and "is a directory" in err
    assert run("-r", "-q", "--model", tiny_path, d)[0] == 0
    assert (d / "a.txt.tz").exists() and (d / "sub" / "b.txt.tz").exists()
    assert not (d / "a.txt.tz.tz").exists()
    assert run("-r", "-q", "--model", tiny_path, d)[0] == 1  # outputs exist: refused, no .tz.tz
    assert not (d / "a.txt.tz.tz").exists()
    (d / "a.txt").unlink()
    (d / "sub" / "b.txt").unlink()
    assert run("-dr", "-q", "--model", tiny_path, d)[0] == 0
    assert (d / "a.txt").read_bytes() == text[:1000]
    assert (d / "sub" / "b.txt").read_bytes() == text[1000:2000]


def test_threads_option(txt, tiny_path):
    from tzip import threads
    before = threads._chosen
    try:
        code, out, _ = run("-T", "1", "-c", "--model", tiny_path, txt)
        assert code == 0 and out[:4] == b"\x89TZP"
        code, out, _ = run("compress", "--threads", "0", "-c", "--model", tiny_path, txt)
        assert code == 0
    finally:
        threads._chosen = before


def test_concatenated_archives_decode_to_both(tmp_path, tiny_path, text):
    a, b = text[:1500], text[2000:2600] + b"\x00\xff"
    code, za, _ = run("-c", "--model", tiny_path, "-", input=a)
    code, zb, _ = run("-c", "--model", tiny_path, "-", input=b)
    code, out, err = run("-d", "--model", tiny_path, input=za + zb)
    assert code == 0 and out == a + b, err
    cat = tmp_path / "ab.tz"
    cat.write_bytes(za + zb)
    code, out, _ = run("-dc", "--model", tiny_path, cat)
    assert code == 0 and out == a + b
    code, out, _ = run("-lv", cat)
    assert code == 0 and b"archives   2" in out and f"{len(a) + len(b):,} bytes".encode() in out
    code, _, err = run("-d", "--model", tiny_path, input=za + b"junk")
    assert code == 1 and "trailing data" in err
    code, _, err = run("-d", "--model", tiny_path, input=za + zb[:2])
    assert code == 1 and "truncated" in err


def test_info_and_test_read_stdin(txt, tiny_path):
    code, blob, _ = run("-c", "--model", tiny_path, txt)
    code, out, _ = run("info", "-", input=blob)
    assert code == 0 and b"stdin" in out and b"4,000" in out
    code, _, err = run("test", "-v", "--model", tiny_path, "-", input=blob)
    assert code == 0 and "stdin: OK" in err
    code, _, err = run("-tv", "--model", tiny_path, input=blob)
    assert code == 0 and "OK" in err


def test_outputs_keep_the_input_modification_time(txt, tiny_path):
    """As zstd: FILE.tz gets FILE's mtime, and a decompressed file the archive's."""
    os.utime(txt, (1_500_000_000, 1_600_000_000))
    assert run("-q", "--model", tiny_path, txt)[0] == 0
    tz = txt.with_name("notes.txt.tz")
    assert tz.stat().st_mtime == 1_600_000_000
    os.utime(tz, (1_500_000_000, 1_650_000_000))
    assert run("-d", "-f", "-q", "--model", tiny_path, tz)[0] == 0
    assert txt.stat().st_mtime == 1_650_000_000


def test_verbose_reports_ratio_also_to_stdout(txt, tiny_path):
    code, out, err = run("-v", "-c", "--model", tiny_path, txt)
    assert code == 0 and out[:4] == b"\x89TZP"
    assert "notes.txt: compressed 4,000 ->" in err and "%" in err and "bits per byte" in err
    tz = txt.with_name("x.tz")
    tz.write_bytes(out)
    code, _, err = run("-dcv", "--model", tiny_path, tz)
    assert code == 0 and f"decompressed {len(out):,} -> 4,000 bytes" in err


def test_unknown_option_gives_a_hint_and_exit_2(txt):
    code, _, err = run("-x", txt)
    assert code == 2 and "No such option" in err and "tzip -d" in err and "--help" in err
    code, _, err = run("--frobnicate", txt)
    assert code == 2 and "-d" in err and "Traceback" not in err
    code, _, err = run("decomress", "a.tz")
    assert code == 2 and "did you mean 'tzip decompress'" in err


def test_unreadable_input_is_reported_and_the_others_done(tmp_path, tiny_path, text, monkeypatch):
    """gzip: 'gzip: FILE: Permission denied', exit 1, and the other files are done."""
    a, locked, b = (tmp_path / n for n in ("a.txt", "locked.txt", "b.txt"))
    for p in (a, locked, b):
        p.write_bytes(text[:800])
    real_open = open

    def fake_open(path, *args, **kw):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)
    monkeypatch.setattr(cli, "open", fake_open, raising=False)
    code, _, err = run("-q", "--model", tiny_path, a, locked, b)
    assert code == 1
    assert err.strip() == f"tzip: {locked}: Permission denied"
    assert (tmp_path / "a.txt.tz").exists() and (tmp_path / "b.txt.tz").exists()
    assert not (tmp_path / "locked.txt.tz").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_unreadable_input_for_real(tmp_path, tiny_path, text):
    p = tmp_path / "locked.txt"
    p.write_bytes(text[:100])
    p.chmod(0)
    code, _, err = run("-q", "--model", tiny_path, p)
    assert code == 1 and "Permission denied" in err and err.count("\n") == 1


def test_wrong_model_file_is_one_line(txt, tmp_path):
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a model at all")
    code, _, err = run("--model", bogus, txt)
    assert code == 1 and err.count("\n") == 1
    assert "pickle" not in err and "not a readable tzip model" in err


def test_messages_never_name_temporary_files():
    msg = cli._clean("/tmp/x/.notes.txt.tz.ab12_cd.tmp: No space left on device")
    assert ".tmp" not in msg
    from pathlib import Path

    from tzip import output
    tmp = output.temp_name(Path("/tmp/x/notes.txt.tz"))
    assert ".tmp" not in cli._clean(f"{tmp}: No space left on device")


def test_internal_error_is_one_line(txt, monkeypatch):
    def boom(self, src):
        raise RuntimeError("kaput")
    monkeypatch.setattr(cli.Job, "run", boom)
    monkeypatch.delenv("TZIP_DEBUG", raising=False)
    code, _, err = run(txt)
    assert code == 1 and err.startswith("tzip: internal error: RuntimeError: kaput")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_progress_totals_are_the_original_size(txt, tiny_path, monkeypatch):
    """decompress and test count decoded bytes against the archive's original size."""
    seen = []

    from contextlib import contextmanager

    @contextmanager
    def fake_progress(total, quiet, desc, job="compress"):
        ticks = []
        seen.append((desc, total, ticks))
        yield ticks.append
    monkeypatch.setattr(cli, "_progress", fake_progress)
    assert run("--model", tiny_path, txt)[0] == 0
    tz = txt.with_name("notes.txt.tz")
    assert run("-t", "--model", tiny_path, tz)[0] == 0
    assert run("-dc", "--model", tiny_path, tz)[0] == 0
    assert [s[0] for s in seen] == ["compressing notes.txt", "testing notes.txt.tz",
                                    "decompressing notes.txt.tz"]
    for desc, total, ticks in seen:
        assert total == 4000 and sum(ticks) == 4000, desc


def test_progress_is_told_the_loops_a_file_needs(txt, tiny_path, monkeypatch):
    """The first-run notice ("preparing compiled CPU loops") asks jitcache about the loops
    the job runs: -8 and the decoding of its archives (formats 8 to 12) run the loop of the
    mixer's revisions 3 to 7 as well, so a first -d of such an archive says so."""
    from contextlib import contextmanager
    from tzip import jitcache
    jobs = []

    @contextmanager
    def fake_progress(total, quiet, desc, job="compress"):
        jobs.append(job)
        yield lambda n: None
    monkeypatch.setattr(cli, "_progress", fake_progress)
    tz = txt.with_name("notes.txt.tz")
    assert run("--model", tiny_path, txt)[0] == 0
    assert run("-dc", "--model", tiny_path, tz)[0] == 0
    assert run("-8", "-f", "--model", tiny_path, txt)[0] == 0
    assert run("-dc", "--model", tiny_path, tz)[0] == 0
    assert jobs == ["compress", "decompress", "compress level 8", "decompress level 8"]
    assert set(jobs) <= set(jitcache.JOBS)


def test_tzcat(txt, tiny_path, monkeypatch, capfdbinary):
    run("-q", "--model", tiny_path, txt)
    tz = txt.with_name("notes.txt.tz")
    r = CliRunner().invoke(main, ["-dc", "--model", str(tiny_path), str(tz)], prog_name="tzcat")
    assert r.exit_code == 0 and r.stdout_bytes == txt.read_bytes()
    env = env_for_subprocess()
    p = subprocess.run([sys.executable, "-c", "from tzip.entry import tzcat; tzcat()",
                        "--model", str(tiny_path), str(tz)], capture_output=True, env=env)
    assert p.returncode == 0 and p.stdout == txt.read_bytes(), p.stderr


def test_fast_paths_import_no_torch(tmp_path, txt, tiny_path):
    """import tzip, --help, --version, info, models and usage errors never load PyTorch."""
    run("-q", "--model", tiny_path, txt)
    tz = txt.with_name("notes.txt.tz")
    script = (
        "import sys\n"
        "import tzip\n"
        "assert 'torch' not in sys.modules, 'import tzip'\n"
        "from tzip.cli import main\n"
        f"for args in (['--help'], ['-V'], ['info', {str(tz)!r}], ['-l', {str(tz)!r}], ['models'],"
        " ['-x'], ['decomress', 'a']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    assert 'torch' not in sys.modules, args\n"
        "print('clean')\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env_for_subprocess(),
                       cwd=tmp_path)
    assert p.returncode == 0 and b"clean" in p.stdout, p.stderr.decode()


@contextmanager
def _signals_of_children(ignored: tuple = ()):
    """Children started inside get SIGINT, SIGTERM and SIGHUP at their defaults (those in
    ignored: ignored), whatever this process inherited: a handler is reset to the default
    on exec, an ignored signal stays ignored (a test run in the background of a script has
    SIGINT ignored). No preexec_fn: it is not safe in a process with threads."""
    import signal
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {sig: signal.getsignal(sig) for sig in sigs}
    try:
        for sig in sigs:
            signal.signal(sig, signal.SIG_IGN if sig in ignored else
                          signal.default_int_handler if sig == signal.SIGINT else _no_op)
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _no_op(signum, frame) -> None:
    pass


@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), pytest.param("SIGINT", 130, marks=pytest.mark.slow),
                                      pytest.param("SIGHUP", 129, marks=pytest.mark.slow)])
def test_signals_remove_temporary_files(tmp_path, tiny_path, sig, code):
    """Interrupted while writing: no temporary file left, no traceback, 128 + signal."""
    import signal
    out = tmp_path / "out.tz"
    # the signals at their defaults in tzip, whatever this process inherited: a test run in
    # the background of a script ignores SIGINT, and tzip keeps an ignored signal ignored,
    # so that it finished its work and exited 0
    with _signals_of_children():
        p = subprocess.Popen([sys.executable, "-m", "tzip", "-o", str(out), "--model", str(tiny_path),
                              "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env_for_subprocess(), cwd=tmp_path)
    try:
        p.stdin.write(b"some text " * 100)
        p.stdin.flush()
        _wait_for_temporary_file(p, tmp_path)
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, err
    assert b"Traceback" not in err and err.strip().count(b"\n") == 0
    assert list(tmp_path.iterdir()) == []


def test_models_lists_the_search_path_and_says_when_empty(tmp_path, monkeypatch, tiny):
    from tzip import modelpath
    monkeypatch.setenv("TZIP_MODELS", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    tiny.save(tmp_path / "mine.npz")
    (tmp_path / "broken.npz").write_bytes(b"junk")
    code, out, err = run("models")
    assert code == 1 and b"mine " in out and b"tzip-small" in out  # the shipped ones too
    assert f"{tmp_path / 'broken.npz'}: not a readable tzip model" in err
    monkeypatch.setattr(modelpath, "shipped_dir", lambda: None)
    monkeypatch.setenv("TZIP_MODELS", str(tmp_path / "none"))
    code, out, err = run("models")
    assert code == 1 and out == b"" and "no models found; searched:" in err


@pytest.mark.slow
def test_worker_processes_make_the_same_archive(txt, tiny_path, tmp_path):
    """-T 2 codes blocks in worker processes (tzip/parallel.py): the same archive as -T 1,
    and it decodes with -T 2 too."""
    one = tmp_path / "one.tz"
    code, _, err = run("-q", "-T", "1", "--model", tiny_path, "-o", one, txt)
    assert code == 0, err
    code, _, err = run("-q", "-T", "2", "--model", tiny_path, "-f", txt)
    assert code == 0, err
    two = txt.with_name(txt.name + ".tz")
    assert two.read_bytes() == one.read_bytes()
    code, out, err = run("-dc", "-T", "2", "--model", tiny_path, two)
    assert code == 0 and out == txt.read_bytes(), err


# ---------------------------------------------------------------- never lose data (issue 29)


def _wait_for_temporary_file(p, folder) -> None:
    import time
    deadline = time.time() + 600  # only a guard against hanging: the outcome is not timed
    while not any(f.name.endswith(".tmp") for f in folder.iterdir()):
        assert time.time() < deadline and p.poll() is None, "never started writing"
        time.sleep(0.05)


def test_an_ignored_hangup_stays_ignored(tmp_path, tiny_path, text):
    """nohup tzip ...: a SIGHUP ignored by whoever started tzip does not stop it."""
    import signal

    out = tmp_path / "out.tz"
    with _signals_of_children(ignored=(signal.SIGHUP,)):
        p = subprocess.Popen([sys.executable, "-m", "tzip", "-o", str(out), "--model", str(tiny_path),
                              "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env_for_subprocess(), cwd=tmp_path)
    try:
        p.stdin.write(text[:1000])
        p.stdin.flush()
        _wait_for_temporary_file(p, tmp_path)
        p.send_signal(signal.SIGHUP)
        _, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert run("-dc", "--model", tiny_path, out)[1] == text[:1000]


class _FakeStdout:
    """sys.stdout whose binary layer is `buffer` (a raw file, as with PYTHONUNBUFFERED=1)."""

    def __init__(self, buffer):
        self.buffer = buffer

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


class _FullDisk:
    """A raw file that stores `room` bytes: a short count, then ENOSPC."""

    def __init__(self, room: int):
        self.room, self.data = room, bytearray()

    def write(self, b) -> int:
        import errno
        if not self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        k = min(len(b), self.room)
        self.data += bytes(b[:k])
        self.room -= k
        return k

    def flush(self) -> None:
        pass


def test_a_full_stdout_is_an_error_that_names_stdout(tmp_path, tiny, tiny_path, monkeypatch, capsys):
    """tzip -dc x.tz > full/out: exit 1 and one line naming stdout, never a silent short
    output (the short count of the first write was ignored)."""
    import random
    tz = tmp_path / "r.tz"
    tz.write_bytes(tzip.compress(random.Random(1).randbytes(40_000), tiny))
    full = _FullDisk(10_000)
    monkeypatch.setattr(sys, "stdout", _FakeStdout(full))
    with pytest.raises(SystemExit) as e:
        main(["-dc", "--model", str(tiny_path), str(tz)])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err == "tzip: stdout: No space left on device\n"
    assert len(full.data) == 10_000


def _tzip_dc(tz, tiny_path, **kw):
    return subprocess.Popen([sys.executable, "-m", "tzip", "-dc", "--model", str(tiny_path), str(tz)],
                            stderr=subprocess.PIPE, env=kw.pop("env", env_for_subprocess()), **kw)


def test_a_non_blocking_stdout_gets_every_byte(tmp_path, tiny, tiny_path):
    """PYTHONUNBUFFERED=1 and a non-blocking pipe: stdout's raw writes return short counts
    and "would block"; tzip waits and writes the rest. The reader starts only when the pipe
    is full (or tzip ended), so tzip always meets a full pipe."""
    import fcntl
    import random
    import struct
    import termios
    import time
    data = random.Random(2).randbytes(300_000)
    tz = tmp_path / "r.tz"
    tz.write_bytes(tzip.compress(data, tiny))
    r, w = os.pipe()
    os.set_blocking(w, False)
    capacity = fcntl.fcntl(r, 1032)  # F_GETPIPE_SZ
    assert capacity < len(data)
    p = _tzip_dc(tz, tiny_path, stdout=w, env=dict(env_for_subprocess(), PYTHONUNBUFFERED="1"))
    os.close(w)

    def unread() -> int:
        return struct.unpack("i", fcntl.ioctl(r, termios.FIONREAD, b"\0" * 4))[0]

    deadline = time.time() + 600  # a guard against hanging only
    while p.poll() is None and unread() < capacity:
        assert time.time() < deadline
        time.sleep(0.01)
    got = bytearray()
    with os.fdopen(r, "rb") as f:
        while chunk := f.read(1 << 16):
            got += chunk
    err = p.stderr.read()
    p.wait()
    assert p.returncode == 0, err
    assert bytes(got) == data


@pytest.mark.parametrize("blocks", [1, 3])
def test_a_reader_that_goes_away_ends_tzip_with_141_quietly(tmp_path, tiny, tiny_path, blocks):
    """tzip -dc x.tz | head -c 100: 141 and nothing on stderr, whatever the number of blocks
    (the output is far larger than a pipe holds, so a write meets the closed pipe)."""
    import random
    data = random.Random(blocks).randbytes(1 << 20)
    tz = tmp_path / "r.tz"
    tz.write_bytes(tzip.compress(data, tiny, block_size=len(data) // blocks + 1))
    assert len(tzip.info(tz.read_bytes()).blocks) == blocks
    p = _tzip_dc(tz, tiny_path, stdout=subprocess.PIPE)
    assert p.stdout.read(100) == data[:100]
    p.stdout.close()
    err = p.stderr.read()
    p.wait()
    assert (p.returncode, err) == (141, b"")


def test_two_writers_of_one_archive_never_both_succeed(txt, tiny_path, monkeypatch):
    """Without -f, an archive that another tzip wrote while this one was compressing is
    kept: this run fails with one line, leaves no temporary file and keeps its input."""
    tz = txt.with_name("notes.txt.tz")
    real = api.Compressor.compress_stream

    def another_run_finishes_first(self, fin, fout, progress=None):
        n = real(self, fin, fout, progress)
        tz.write_bytes(b"the other run's archive")
        return n

    monkeypatch.setattr(api.Compressor, "compress_stream", another_run_finishes_first)
    code, _, err = run("--rm", "-q", "--model", tiny_path, txt)
    assert code == 1 and "already exists" in err and err.count("\n") == 1, err
    assert tz.read_bytes() == b"the other run's archive"
    assert sorted(p.name for p in txt.parent.iterdir()) == ["notes.txt", "notes.txt.tz"]
    monkeypatch.setattr(api.Compressor, "compress_stream", real)
    assert run("-f", "-q", "--model", tiny_path, txt)[0] == 0
    assert tz.read_bytes() != b"the other run's archive"


def test_rm_only_after_the_archive_is_synced_and_in_place(txt, tiny_path, monkeypatch):
    from tzip import output
    events = []
    real_fsync, real_unlink, real_publish = os.fsync, os.unlink, output.publish

    def unlink(path, *a, **k):
        if os.fspath(path) == str(txt):
            events.append("remove input")
        return real_unlink(path, *a, **k)

    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(output, "publish", lambda *a: (events.append("publish"), real_publish(*a))[1])
    monkeypatch.setattr(os, "unlink", unlink)
    assert run("--rm", "-q", "--model", tiny_path, txt)[0] == 0
    assert events == ["fsync", "publish", "fsync", "remove input"]  # file, rename, folder


def test_an_input_that_changes_while_compressed_is_warned_of_and_kept(txt, tiny_path, monkeypatch):
    real = api.Compressor.compress_stream
    tz = txt.with_name("notes.txt.tz")

    def grows(self, fin, fout, progress=None):
        with open(txt, "ab") as f:
            f.write(b"appended meanwhile\n")
        return real(self, fin, fout, progress)

    monkeypatch.setattr(api.Compressor, "compress_stream", grows)
    code, _, err = run("--rm", "-q", "--model", tiny_path, txt)
    assert code == 1 and err.count("\n") == 1 and "changed while being compressed" in err, err
    assert "not removed" in err and txt.exists() and tz.exists()
    code, _, err = run("-f", "-q", "--model", tiny_path, txt)
    assert code == 0 and "changed while being compressed" in err and err.count("\n") == 1
    monkeypatch.setattr(api.Compressor, "compress_stream", real)
    code, _, err = run("-f", "-q", "--model", tiny_path, txt)
    assert code == 0 and err == ""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounts a tmpfs: root only")
def test_a_really_full_disk(tmp_path, tiny, tiny_path):
    """The issue's reproduction on a 200 KB tmpfs: stdout and -o both fail with one line."""
    import random
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(full)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        tz = tmp_path / "r.tz"
        tz.write_bytes(tzip.compress(random.Random(3).randbytes(400_000), tiny))
        with open(full / "o", "wb") as out:
            p = _tzip_dc(tz, tiny_path, stdout=out)
            err = p.communicate(timeout=600)[1]
        assert p.returncode == 1 and err == b"tzip: stdout: No space left on device\n"
        (full / "o").unlink()
        p = subprocess.run([sys.executable, "-m", "tzip", "-d", "--model", str(tiny_path), str(tz),
                            "-o", str(full / "o")], capture_output=True, env=env_for_subprocess())
        assert p.returncode == 1 and p.stderr.decode().count("\n") == 1
        assert "No space left on device" in p.stderr.decode()
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)])


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(tmp_path, tiny_path, text):
    import signal
    out = tmp_path / "out.tz"
    p = subprocess.Popen([sys.executable, "-m", "tzip", "-o", str(out), "--model", str(tiny_path), "-"],
                         stdin=subprocess.PIPE, env=env_for_subprocess(), cwd=tmp_path)
    try:
        p.stdin.write(text[:1000])
        p.stdin.flush()
        _wait_for_temporary_file(p, tmp_path)
    finally:
        p.kill()  # SIGKILL: nothing of tzip's runs
        p.wait()
        p.stdin.close()
    assert p.returncode == -signal.SIGKILL
    left = [f.name for f in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.tz.tzip_") and left[0].endswith(".tmp")
    src = tmp_path / "notes.txt"
    src.write_bytes(text[:500])
    assert run("-q", "--model", tiny_path, src)[0] == 0
    assert sorted(f.name for f in tmp_path.iterdir()) == ["notes.txt", "notes.txt.tz"]


# ---------------------------------------------------------------- habits of gzip and xz


def test_a_file_that_already_has_the_suffix_is_left_alone(txt, tiny_path):
    """As gzip and xz: tzip x.tz warns and writes no x.tz.tz (exit 2, xz's warning);
    -f compresses it all the same; -q keeps the warning's exit status, not its line."""
    assert run("-q", "--model", tiny_path, txt)[0] == 0
    tz = txt.with_name("notes.txt.tz")
    code, out, err = run("--model", tiny_path, tz)
    assert code == 2 and err == f"tzip: {tz} already has .tz suffix -- unchanged (-f compresses it)\n"
    assert not tz.with_name("notes.txt.tz.tz").exists()
    code, _, err = run("-q", "--model", tiny_path, tz, txt.with_name("missing"))
    assert code == 1 and "already has" not in err and "missing" in err  # an error outranks it
    assert run("-q", "-f", "--model", tiny_path, tz)[0] == 0
    assert tz.with_name("notes.txt.tz.tz").exists()
    assert run("-q", "-o", tz.with_name("again.tz"), "--model", tiny_path, tz)[0] == 0


def test_symbolic_links_and_hard_links_need_force(txt, tiny_path, tmp_path, text):
    """As gzip: a symbolic link is not followed to write FILE.tz beside it without -f; with
    --rm (which would remove one name of several) a hard-linked file is left alone too.
    Without --rm tzip keeps the input, and compresses a hard-linked file as zstd and xz -k do."""
    link = tmp_path / "link.txt"
    link.symlink_to(txt)
    code, _, err = run("--model", tiny_path, link)
    assert code == 2 and err == f"tzip: {link}: is a symbolic link -- unchanged (-f follows it)\n"
    assert not (tmp_path / "link.txt.tz").exists()
    code, out, _ = run("-c", "--model", tiny_path, link)  # to stdout it is read, as gzip -c
    assert code == 0 and out[:4] == b"\x89TZP"
    assert run("-f", "--model", tiny_path, link)[0] == 0 and (tmp_path / "link.txt.tz").exists()
    hard = tmp_path / "hard.txt"
    os.link(txt, hard)
    code, _, err = run("--rm", "--model", tiny_path, hard)
    assert code == 2 and err == f"tzip: {hard} has 1 other link -- unchanged (-f compresses it)\n"
    assert hard.exists() and not (tmp_path / "hard.txt.tz").exists()
    assert run("--model", tiny_path, hard)[0] == 0 and hard.exists()
    assert run("-f", "--rm", "--model", tiny_path, txt)[0] == 0 and not txt.exists()
    tz_link = tmp_path / "l.tz"
    tz_link.symlink_to(tmp_path / "hard.txt.tz")
    code, _, err = run("-d", "--model", tiny_path, tz_link)
    assert code == 2 and "symbolic link" in err and not (tmp_path / "l").exists()


def test_files_named_like_commands_are_reachable(tmp_path, tiny_path, monkeypatch, text):
    """`tzip test` is the command; `tzip -- test` and `tzip ./test` the file, and --help says so."""
    monkeypatch.chdir(tmp_path)
    for name in ("test", "info", "compress"):
        (tmp_path / name).write_bytes(text[:500])
        code, _, err = run("-q", "--model", tiny_path, "--", name)
        assert code == 0 and (tmp_path / f"{name}.tz").exists(), err
        code, out, _ = run("-dc", "--model", tiny_path, "--", f"{name}.tz")
        assert code == 0 and out == text[:500]
    assert run("-q", "-f", "--model", tiny_path, "./test")[0] == 0
    code, out, _ = run("--help")
    assert code == 0 and b"tzip -- test" in out and b"./test" in out


def test_test_is_silent_unless_verbose(txt, tiny_path):
    """As gzip -t and xz -t: nothing on stdout or stderr for a good archive; -v says OK."""
    assert run("-q", "--model", tiny_path, txt)[0] == 0
    tz = txt.with_name("notes.txt.tz")
    assert run("-t", "--model", tiny_path, tz) == (0, b"", "")
    assert run("test", "--model", tiny_path, tz) == (0, b"", "")
    code, out, err = run("-t", "-v", "--model", tiny_path, tz)
    assert code == 0 and out == b"" and err == f"{tz}: OK (4,000 bytes)\n"


def test_list_is_a_table_with_totals(tmp_path, tiny_path, text):
    """As gzip -l and xz -l: a header, a row per archive, a totals row after several;
    -lv keeps the block per archive."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(text[:3000])
    b.write_bytes(text[3000:4000])
    assert run("-q", "--model", tiny_path, a, b)[0] == 0
    za, zb = tmp_path / "a.txt.tz", tmp_path / "b.txt.tz"
    code, out, _ = run("-l", za, zb)
    lines = out.decode().splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[0].split() == ["compressed", "original", "ratio", "bpb", "model", "format", "name"]
    sa, sb = za.stat().st_size, zb.stat().st_size
    row = lines[1].split()
    assert row[:2] == [f"{sa:,}", "3,000"] and row[2] == f"{100 * sa / 3000:.1f}%"
    assert row[3] == f"{8 * sa / 3000:.3f}" and row[4] == "tiny-a" and row[-1] == str(za)
    assert lines[2].split()[-1] == str(zb)
    assert lines[3].split() == [f"{sa + sb:,}", "4,000", f"{100 * (sa + sb) / 4000:.1f}%",
                                f"{8 * (sa + sb) / 4000:.3f}", "(totals)"]
    code, out, _ = run("-l", za)
    assert code == 0 and len(out.splitlines()) == 2  # no totals for one
    code, out, _ = run("-lv", za)
    assert code == 0 and b"bits per byte" in out and b"blocks" in out


def test_dcf_copies_what_is_not_an_archive(tmp_path, tiny_path, text, monkeypatch):
    """As zcat -f: tzip -dcf passes a file that is not an archive through unchanged (also
    from stdin, also empty), and decompresses the archives among them; without -f it is
    an error."""
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"not an archive\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    code, blob, _ = run("-c", "--model", tiny_path, "-", input=text[:700])
    tz = tmp_path / "x.tz"
    tz.write_bytes(blob)
    code, out, err = run("-dcf", "--model", tiny_path, plain, tz, empty)
    assert code == 0 and out == b"not an archive\n" + text[:700], err
    code, out, _ = run("-dcf", "--model", tiny_path, input=b"ab")
    assert code == 0 and out == b"ab"
    code, out, _ = run("-dcf", "--model", tiny_path, input=blob)
    assert code == 0 and out == text[:700]
    code, _, err = run("-dc", "--model", tiny_path, plain)
    assert code == 1 and "plain.txt" in err


def test_the_progress_bar_names_the_file(tmp_path):
    long = "a-rather-long-file-name-for-a-progress-bar.txt"
    assert cli._shown(str(tmp_path / "notes.txt")) == "notes.txt"
    shown = cli._shown(str(tmp_path / long))
    assert len(shown) == 32 and shown.startswith("...") and long.endswith(shown[3:])

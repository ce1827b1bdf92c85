"""The command line as a user meets it: files, pipes, flags, exit codes, one-line errors."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tzip.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    env = dict(os.environ, PYTHONPATH=REPO)
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
    code, out, _ = run("test", "--model", tiny_path, tz)
    assert code == 0 and b"OK" in out
    code, out, _ = run("info", tz)
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
    code, _, _ = run("compress", "-o", "x", "--model", tiny_path, txt, txt)
    assert code == 2


def test_train_help_shows_the_training_options():
    """`tzip train --help` reaches the training command's own options (resume, lr...)."""
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    assert "--config" in r.output and "--resume" in r.output and "--lr" in r.output


def test_stream_count_outside_the_format_is_a_usage_error(txt, tiny_path):
    code, _, err = run("compress", "--model", tiny_path, "--streams", "4097", txt)
    assert code == 2 and "4097" in err and "1<=x<=4096" in err


def test_version_says_whether_the_compiled_loops_are_on():
    code, out, _ = run("--version")
    assert code == 0 and out.startswith(b"tzip ") and b"compiled CPU loops: " in out

"""The benchmark suite (bench/) on tiny inputs: no corpora, no network, and the optional
packages (zstandard, brotli, pyppmd, matplotlib) are not required."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.bench
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import download, run  # noqa: E402
from helpers import needs_torch  # noqa: E402
from bench.inputs import sample_files  # noqa: E402
from bench import corpora  # noqa: E402

GZIP_PAIR = "gzip -9 -c {in} > {out};gzip -d -c {in} > {out}"


@pytest.fixture
def no_corpora(monkeypatch, tmp_path) -> Path:
    """An empty corpora root in place of $TZIP_CORPORA, ../shared/corpora and the cache."""
    root = tmp_path / "corpora"
    root.mkdir()
    monkeypatch.setattr(corpora, "search_roots", lambda: [root])
    return root


def bench(out: Path, *args: str) -> tuple[int, dict | None, str]:
    rc = run.main([*args, "--out", str(out), "-q"])
    js = out / "results.json"
    return rc, (json.loads(js.read_text()) if js.exists() else None), \
        ((out / "results.md").read_text() if (out / "results.md").exists() else "")


@pytest.mark.slow
def test_quick_run_writes_table_and_json(tmp_path, no_corpora, tiny_path, monkeypatch):
    monkeypatch.setenv("TZIP_MODELS", str(tiny_path.parent))
    rc, doc, md = bench(tmp_path / "out", "--quick", "--models", "tiny-a", "--tools", "gzip,xz",
                        "--inline", "--limit-bytes", "300")
    assert rc == 0
    names = [f.label for f in sample_files()]
    assert [f["file"] for f in doc["files"]] == names
    assert len(doc["results"]) == len(names) * 3
    for r in doc["results"]:
        assert r["status"] == "ok" and r["original_bytes"] == 300
        assert r["bpb"] == pytest.approx(8 * r["compressed_bytes"] / 300)
        assert r["compress_kbps"] > 0 and r["decompress_kbps"] > 0
    (m,) = doc["models"]
    assert m["name"] == "tiny-a" and len(m["id"]) == 16
    assert m["params"] > 0 and m["file_bytes"] == tiny_path.stat().st_size
    e = doc["environment"]
    assert {"cpu", "date", "command", "versions", "gpu"} <= set(e)
    assert e["versions"]["python"] and "--quick" in e["command"]
    totals = {(a["group"], a["tool"]): a for a in doc["aggregates"]}
    assert totals[("sample", "tiny-a")]["complete"]
    assert totals[("sample", "gzip")]["original_bytes"] == 300 * len(names)
    assert not doc["failures"]
    header = next(line for line in md.splitlines() if line.startswith("| file |"))
    assert "tiny-a" in header and "gzip" in header and "xz" in header
    for n in names:
        assert sum(line.startswith(f"| {n} |") for line in md.splitlines()) == 1
    assert "**sample total**" in md and "## tzip models" in md


def test_roundtrip_failure_is_flagged_and_others_finish(tmp_path, no_corpora, capsys):
    rc, doc, md = bench(tmp_path / "out", "--quick", "--models", "none", "--tools", "gzip",
                        "--inline",
                        "--tool", "broken=cp {in} {out};head -c 1 {in} > {out}",
                        "--tool", "crashes=false {in} {out};cp {in} {out}")
    assert rc == 1
    status = {(r["file"], r["tool"]): r["status"] for r in doc["results"]}
    assert set(status.values()) == {"ok", "mismatch", "error"}
    assert all(s == "ok" for (f, t), s in status.items() if t == "gzip")
    assert all(s == "mismatch" for (f, t), s in status.items() if t == "broken")
    assert {x["tool"] for x in doc["failures"]} == {"broken", "crashes"}
    assert "FAILED (mismatch)" in md and "FAILED (error)" in md
    assert "ROUND-TRIP FAILURE: broken" in capsys.readouterr().err


def test_missing_corpus_names_download_command(tmp_path, no_corpora, capsys):
    rc, doc, _ = bench(tmp_path / "out", "--group", "canterbury", "--models", "none",
                       "--tools", "gzip")
    assert rc == 2 and doc is None
    err = capsys.readouterr().err
    assert "python -m bench download canterbury" in err
    assert "canterbury/alice29.txt" in err and str(no_corpora) in err


def test_shell_tool_pairs_from_flag_and_config(tmp_path, no_corpora):
    cfg = tmp_path / "tools.json"
    cfg.write_text(json.dumps({"gz-cfg": {"compress": "gzip -9 -c {in} > {out}",
                                          "decompress": "gzip -d -c {in} > {out}"}}))
    rc, doc, _ = bench(tmp_path / "out", "--quick", "--models", "none", "--tools", "none",
                       "--tool", f"gz={GZIP_PAIR}", "--tools-config", str(cfg))
    assert rc == 0
    assert {r["tool"] for r in doc["results"]} == {"gz", "gz-cfg"}
    for r in doc["results"]:
        assert r["status"] == "ok" and 0 < r["bpb"] < 8
    sample = sample_files()[0].path.read_bytes()[:1000]
    gz = next(r for r in doc["results"] if r["tool"] == "gz" and r["file"].endswith(
        sample_files()[0].name))
    assert abs(gz["compressed_bytes"] - len(gzip.compress(sample, 9))) < 64


@pytest.mark.slow
def test_command_line_exit_status(tmp_path):
    """python -m bench itself: a broken codec makes it exit 1 after writing the report."""
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "bench", "--files", str(sample_files()[0].path),
                        "--models", "none", "--tools", "gzip", "--inline", "--out", str(out),
                        "--tool", "broken=cp {in} {out};head -c 1 {in} > {out}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "ROUND-TRIP FAILURE: broken" in p.stderr
    doc = json.loads((out / "results.json").read_text())
    assert [x["tool"] for x in doc["failures"]] == ["broken"]
    assert "| files/gettysburg.txt |" in p.stdout


def test_missing_optional_package_is_skipped(tmp_path, no_corpora, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "zstandard", None)
    rc, doc, md = bench(tmp_path / "out", "--quick", "--models", "none", "--tools",
                        "zstd,gzip", "--inline", "--limit-bytes", "200")
    assert rc == 0
    assert [s["tool"] for s in doc["skipped"]] == ["zstd"]
    assert "not installed" in doc["skipped"][0]["note"]
    assert {r["tool"] for r in doc["results"]} == {"gzip"}
    assert "skipped zstd" in md and "skipped zstd" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_worker_process_reports_memory(tmp_path, no_corpora):
    rc, doc, md = bench(tmp_path / "out", "--quick", "--models", "none", "--tools", "gzip",
                        "--limit-bytes", "200")
    assert rc == 0
    for r in doc["results"]:
        assert r["compress_peak_rss"] >= r["compress_rss_before"] > 1 << 20
        assert r["decompress_peak_rss"] > 1 << 20


@pytest.mark.parametrize("args", [["--tool", "no-separator"], ["--tools", "nosuch"],
                                  ["--models", "nosuch"], ["--corpus", "nosuch"],
                                  ["--tool", "x=gzip {in};gunzip {in} {out}"]])
def test_usage_errors_exit_2(tmp_path, no_corpora, args, capsys):
    rc, _, _ = bench(tmp_path / "out", "--quick", *args)
    assert rc == 2
    assert "bench: error:" in capsys.readouterr().err


def test_corpus_lookup_in_both_layouts(tmp_path, monkeypatch):
    data = b"corpus file contents\n"
    f = corpora.CorpusFile("a.txt", "toy/a.txt", len(data), hashlib.sha256(data).hexdigest(),
                           "text", "toy")
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    (r2 / "toy").mkdir(parents=True)
    (r2 / "toy" / "a.txt").write_bytes(data)
    assert corpora.resolve([f], [r1, r2]) == [(f, r2 / "toy" / "a.txt")]
    (r1 / "bench" / "toy").mkdir(parents=True)
    (r1 / "bench" / "toy" / "a.txt").write_bytes(data)
    assert corpora.resolve([f], [r1, r2]) == [(f, r1 / "bench" / "toy" / "a.txt")]
    monkeypatch.setenv("TZIP_CORPORA", str(r1))
    assert corpora.search_roots()[0] == r1
    with pytest.raises(corpora.CorpusMismatch):
        f.check(data[:-1] + b"!", "x")
    bench_set = corpora.get("bench")
    assert len(bench_set.files) == 28 and "canterbury" in bench_set.groups


def _toy(tmp_path: Path, kind: str, payload: bytes, sha_of: bytes) -> corpora.Corpus:
    archive = tmp_path / f"toy.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("toy/a.txt", payload)
    else:
        with tarfile.open(archive, "w:gz") as t:
            info = tarfile.TarInfo("toy/a.txt")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    f = corpora.CorpusFile("a.txt", "toy/a.txt", len(sha_of), hashlib.sha256(sha_of).hexdigest(),
                           "text", "toy")
    return corpora.Corpus("toy", "test corpus", (f,), corpora.Source(archive.as_uri(), kind))


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_download_installs_only_verified_files(tmp_path, kind):
    good = b"the published bytes\n"
    dest = tmp_path / "cache"
    (path,) = download.fetch(_toy(tmp_path, kind, good, good), dest, log=lambda m: None)
    assert path == dest / "toy" / "a.txt" and path.read_bytes() == good
    shutil.rmtree(dest)
    with pytest.raises(corpora.CorpusMismatch, match="nothing was installed"):
        download.fetch(_toy(tmp_path, kind, b"the published bytez\n", good), dest,
                       log=lambda m: None)
    assert not (dest / "toy" / "a.txt").exists()


@pytest.mark.slow
def test_card_gets_the_models_numbers(tmp_path, no_corpora, tiny_path, monkeypatch):
    """--card writes the model's per-file bpb next to the classic tools into models/NAME.md,
    and a second run replaces that section instead of adding another."""
    from bench import card
    monkeypatch.setenv("TZIP_MODELS", str(tiny_path.parent))
    cards = tiny_path.parent  # the card lives beside the model, in $TZIP_MODELS
    (cards / "tiny-a.md").write_text("# tiny-a\n\nHand-written part.\n")
    for _ in range(2):
        rc, doc, _ = bench(tmp_path / "out", "--quick", "--models", "tiny-a", "--tools", "xz,bzip2",
                           "--inline", "--limit-bytes", "300", "--card")
        assert rc == 0
    text = (cards / "tiny-a.md").read_text()
    assert text.startswith("# tiny-a\n\nHand-written part.") and text.count(card.BEGIN) == 1
    for f in doc["files"]:
        r = next(r for r in doc["results"] if r["file"] == f["file"] and r["tool"] == "tiny-a")
        assert f"| {f['file']} | 300 | {r['bpb']:.3f} |" in text
    assert "| file | bytes | tiny-a | xz | bzip2 | gap to PPMd |" in text


def test_interrupted_run_keeps_the_files_it_finished(tmp_path, no_corpora, monkeypatch):
    """Ctrl-C in the middle of a long run: exit 130, and results.json/results.md hold the
    files measured completely, marked partial. They are on disk before the third file
    starts (a run that is killed keeps them too)."""
    real, calls, seen = run.measure_one, [], []

    def measure(tool, inp, *a, **kw):
        calls.append(inp.label)
        if len({*calls}) == 3:
            saved = json.loads((tmp_path / "out" / "results.json").read_text())
            seen.append([f["file"] for f in saved["files"]])
            raise KeyboardInterrupt
        return real(tool, inp, *a, **kw)

    monkeypatch.setattr(run, "measure_one", measure)
    rc, doc, md = bench(tmp_path / "out", "--quick", "--models", "none", "--tools", "gzip,xz",
                        "--inline", "--limit-bytes", "300")
    assert rc == 130
    first_two = [f.label for f in sample_files()][:2]
    assert seen == [first_two]
    assert [f["file"] for f in doc["files"]] == first_two
    assert [r["file"] for r in doc["results"]] == [f for f in first_two for _ in range(2)]
    assert doc["notes"][0] == "partial: 2 of 3 file(s) measured"
    assert "partial: 2 of 3" in md


def test_interrupted_run_counts_the_failures_it_saw(tmp_path, no_corpora, monkeypatch, capsys):
    """A failure before Ctrl-C is not lost in the scrollback: the interrupt line counts it."""
    real, calls = run.measure_one, []

    def measure(tool, inp, *a, **kw):
        calls.append(inp.label)
        if len({*calls}) == 2:
            raise KeyboardInterrupt
        return {**real(tool, inp, *a, **kw), "status": "error", "error": "boom"}

    monkeypatch.setattr(run, "measure_one", measure)
    rc, doc, _ = bench(tmp_path / "out", "--quick", "--models", "none", "--tools", "gzip",
                       "--inline", "--limit-bytes", "300")
    assert rc == 130 and len(doc["failures"]) == 1
    err = capsys.readouterr().err
    assert "interrupted; the 1 complete file(s)" in err and "; 1 of their results FAILED" in err


@pytest.mark.slow
@needs_torch  # bench/ab.py's measuring process imports torch (older checkouts need it)
def test_ab_compares_two_checkouts_and_their_archives(tmp_path):
    """bench.ab times each side in fresh processes and says whether the archives match."""
    from bench import ab
    out = tmp_path / "ab.md"
    assert ab.main([str(REPO), str(REPO), "--what", "decompress", "--rounds", "1",
                    "--files", str(REPO / "bench/sample/notes.txt"), "--out", str(out)]) == 0
    text = out.read_text()
    row = next(l for l in text.splitlines() if l.startswith("| decompress | notes.txt | KB/s |"))
    a, b = (float(c) for c in row.split("|")[4:6])  # KB/s of one run each: any speed will do
    assert a >= 0 and b >= 0
    assert "Archives identical in A and B: notes.txt yes" in text


def test_arch_speed_times_an_untrained_shape(tmp_path, monkeypatch):
    """bench.arch_speed round-trips a file through the engine of a config with no weights
    trained, and reports its stream count and speeds: KB/s from the clock it reads, one
    compress/decompress pair per round. Its clock is replaced by one that advances 0.5 s
    per reading, so the speeds are known (1459 bytes in 0.5 s: 2.9 KB/s) whatever the
    machine's speed or load."""
    from bench import arch_speed
    from tzip import codec as coder
    ticks = iter(range(10 ** 6))
    monkeypatch.setattr(arch_speed, "time", SimpleNamespace(perf_counter=lambda: next(ticks) / 2))
    out = tmp_path / "arch.md"
    conf = '{"model": {"d_model": 32, "n_layer": 1, "n_head": 2, "context": 32}}'
    assert arch_speed.main([conf, "--files", str(REPO / "bench/sample/notes.txt"),
                            "--rounds", "2", "--out", str(out)]) == 0
    row = next(l for l in out.read_text().splitlines() if l.startswith("| d32 L1 H2/1 mlp4 ctx32 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == str(len(coder.split_streams(1459, 32)))  # the coder's default
    assert cells[3] == "2.9/2.9, 2.9/2.9"


@pytest.mark.parametrize("fmt", [None, 8])
def test_streams_table_reports_sizes_at_each_count(tmp_path, fmt):
    from bench import streams
    out = tmp_path / "s.md"
    sample = REPO / "bench/sample/gettysburg.txt"
    args = ["--files", str(sample), "--counts", "1,3", "--out", str(out)]
    assert streams.main(args + (["--format", str(fmt)] if fmt else [])) == 0
    row = next(l for l in out.read_text().splitlines() if l.startswith("| gettysburg.txt |"))
    one, three = row.split("|")[3:5]
    assert one.strip().endswith("(1)") and three.strip().endswith("(3)")
    blob = __import__("tzip").compress(sample.read_bytes(), "tzip-small", device="cpu", streams=3, format=fmt)
    assert three.strip() == f"{8 * len(blob) / sample.stat().st_size:.4f} (3)"
    assert __import__("tzip").info(blob).version == (fmt or 5)


def test_gpu_throughput_script_runs_on_a_cpu(tmp_path):
    """bench/gpu_throughput.py, the script of a GPU session, on a tiny input on the CPU:
    its records, round trips and identity checks."""
    import json
    import shutil

    from bench import gpu_throughput
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(REPO / "bench/sample/notes.txt", data / "notes.txt")
    out = tmp_path / "out"
    assert gpu_throughput.main(["--data", str(data), "--mb", "0.003", "--models", "tzip-small",
                                "--backends", "auto,graph", "--device", "cpu", "--budget", "5",
                                "--out", str(out)]) == 0
    recs = json.loads((out / "throughput.json").read_text())
    assert "graph stepper" in recs[1]["backend"]  # the Decompressor's plan
    for r in recs:
        assert r["roundtrip"] and r["cpu_identical"] and r["input_bytes"] > 1000
        assert {"model", "input_bytes", "device", "encode_MBps", "decode_MBps"} <= r.keys()
        assert r["steps"] > 0 and r["decode_parts_s"]["model_step_and_transfers"] > 0
    assert "format 5 archive: yes" in (out / "results.md").read_text()


def test_train_data_drops_benchmark_files_and_copies(tmp_path):
    """bench/train_data.py never takes a benchmark file, a file that shares its lines with
    one, or a second copy of a file."""
    import json
    import lzma

    from bench import train_data
    src = tmp_path / "src"
    src.mkdir()
    bench_file = (REPO / "corpora/structured/airports.csv").read_bytes()
    (src / "a_bench.csv").write_bytes(bench_file)
    (src / "b_shares.csv").write_bytes(b"\n".join(bench_file.splitlines()[100:200]) + b"\n")
    fresh = b"".join(b"id-%05d,value number %d,some longer text field here\n" % (i, i * 7) for i in range(300))
    (src / "c_fresh.csv").write_bytes(fresh)
    (src / "d_copy.csv").write_bytes(fresh)
    out = tmp_path / "out"
    assert train_data.main(["--out", str(out), "--kinds", "csv", "--add", f"csv={src}:*.csv",
                            "--crlf-mb", "0.001"]) == 0
    man = json.loads((out / "MANIFEST.json").read_text())
    taken = [f["source"] for f in man["kinds"]["csv"]["files"]]
    assert str(src / "c_fresh.csv") in taken
    assert not {str(src / n) for n in ("a_bench.csv", "b_shares.csv", "d_copy.csv")} & set(taken)
    assert fresh in lzma.decompress((out / "csv.txt.xz").read_bytes())
    assert b"\r\n" in lzma.decompress((out / "crlf.txt.xz").read_bytes())


def test_level_one_runs_as_a_tool_without_a_model_file(tmp_path, no_corpora):
    """tzip -1 (the context mixer alone) is benched as tool tzip-1: no model to report."""
    rc, doc, md = bench(tmp_path / "out", "--quick", "--models", "tzip-1", "--tools", "gzip",
                        "--inline", "--limit-bytes", "300")
    assert rc == 0
    (t,) = [t for t in doc["tools"] if t["kind"] == "tzip"]
    assert t["name"] == "tzip-1" and t["spec"]["tzip"] == "none"
    assert {r["tool"] for r in doc["results"] if r["status"] == "ok"} == {"tzip-1", "gzip"}
    assert doc["models"] == [] and "context mixer alone" in md


def test_window_levels_run_as_tools(tmp_path, no_corpora):
    """tzip -2 and -4 are benched as tools tzip-2 and tzip-4: tzip-small over a window of
    64 and 128, whose archives (format 7) say so."""
    from bench import tools
    rc, doc, md = bench(tmp_path / "out", "--quick", "--models", "tzip-2,tzip-4", "--tools", "gzip",
                        "--inline", "--limit-bytes", "300")
    assert rc == 0
    specs = {t["name"]: t["spec"] for t in doc["tools"] if t["kind"] == "tzip"}
    assert specs["tzip-2"]["window"] == 64 and specs["tzip-4"]["window"] == 128
    assert {r["tool"] for r in doc["results"] if r["status"] == "ok"} == {"tzip-2", "tzip-4", "gzip"}
    import tzip
    blob = tools.make_codec(specs["tzip-2"]).compress(b"a window of sixty-four bytes\n" * 20)
    assert (tzip.info(blob).version, tzip.info(blob).window) == (7, 64)


def test_subset_runs_a_tool_on_part_of_the_files(tmp_path, no_corpora):
    """--subset: the tool measures only the files named; its totals say over how many, and
    are never marked best against tools that ran on every file."""
    rc, doc, md = bench(tmp_path / "out", "--quick", "--models", "none", "--tools", "gzip,bzip2",
                        "--inline", "--limit-bytes", "300", "--subset", "bzip2=notes.txt")
    assert rc == 0
    assert [r["file"] for r in doc["results"] if r["tool"] == "bzip2"] == ["sample/notes.txt"]
    assert len([r for r in doc["results"] if r["tool"] == "gzip"]) == 3
    totals = {(a["group"], a["tool"]): a for a in doc["aggregates"]}
    assert totals[("sample", "bzip2")]["subset"] and not totals[("sample", "gzip")]["subset"]
    total_row = next(line for line in md.splitlines() if line.startswith("| **sample total**"))
    assert "(1 of 3 files)" in total_row and "**" not in total_row.split("|")[-2]
    assert any("bzip2 ran on a subset: 1 of 3 files" in n for n in doc["notes"])
    rc, _, _ = bench(tmp_path / "bad", "--quick", "--models", "none", "--tools", "gzip",
                     "--inline", "--subset", "gzip=nosuch.txt")
    assert rc == 2


def test_phases_record_cpu_seconds(tmp_path, no_corpora):
    """CPU seconds beside wall seconds, for library codecs and, with GNU time, commands."""
    from bench import measure
    rc, doc, _ = bench(tmp_path / "out", "--quick", "--models", "none", "--tools", "gzip",
                       "--inline", "--limit-bytes", "300", "--tool", f"gz={GZIP_PAIR}")
    assert rc == 0
    for r in doc["results"]:
        if r["tool"] == "gzip" or measure.gnu_time():
            assert r["compress_cpu_s"] >= 0 and r["decompress_cpu_s"] >= 0
    assert measure._gnu_time_report("2048 0.50 0.25\n") == (2 << 20, 0.75)
    assert measure._gnu_time_report("Command terminated by signal 9\n10 0.1 0.0") == (10240, 0.1)
    assert measure._gnu_time_report("") == (None, None)


def test_several_corpora_in_one_run(monkeypatch):
    """--corpus bench,structured: groups of two corpora in one run (one machine state)."""
    from bench import inputs
    monkeypatch.setattr(corpora, "search_roots", lambda: [REPO / "corpora"])
    files = inputs.corpus_files("bench,structured", ["structured"], False)
    assert files and {f.group for f in files} == {"structured"}
    with pytest.raises(run.UsageError, match="calgary, canterbury, enwik, large, structured"):
        inputs.corpus_files("bench,structured", ["nosuch"], False)


def _doc(rows: list[tuple[str, str, str, int, float]]) -> dict:
    """A results document from (file, group, tool, compressed bytes, seconds) rows of
    1000-byte files; tools named tzip-* are tzip tools."""
    tools = list(dict.fromkeys(r[2] for r in rows))
    return {"tools": [{"name": t, "kind": "tzip" if t.startswith("tzip") else "python",
                       "available": True} for t in tools],
            "files": [{"file": f, "group": g} for f, g in dict.fromkeys((r[0], r[1]) for r in rows)],
            "results": [{"file": f, "group": g, "tool": t, "status": "ok", "original_bytes": 1000,
                         "compressed_bytes": c, "bpb": 8 * c / 1000, "compress_s": s,
                         "decompress_s": s} for f, g, t, c, s in rows]}


def test_levels_chart_panels_join_the_text_groups():
    from bench import report
    doc = _doc([("canterbury/a", "canterbury", "tzip-1", 250, 0.01),
                ("calgary/b", "calgary", "tzip-1", 250, 0.01),
                ("calgary/b", "calgary", "gzip", 400, 0.001),
                ("canterbury/a", "canterbury", "gzip", 400, 0.001),
                ("calgary/b", "calgary", "tzip-small", 200, 0.1),
                ("structured/c", "structured", "gzip", 300, 0.001)])
    (t1, text), (t2, structured) = report.level_panels(doc)
    assert t1.startswith("Canterbury + Calgary text (2 files)") and t2 == "structured (1 files)"
    by = {p["tool"]: p for p in text}
    assert by["tzip-1"]["bpb"] == 2.0 and by["tzip-1"]["decompress_kbps"] == pytest.approx(100)
    assert by["tzip-small"]["label"] == "tzip-small (1 of 2 files)" and by["tzip-small"]["tzip"]
    assert not by["gzip"]["tzip"] and [p["tool"] for p in structured] == ["gzip"]


def test_levels_check_finds_ppmd_losses_and_dominated_levels(tmp_path):
    from bench import levels
    doc = _doc([("calgary/a", "calgary", "tzip-1", 100, 0.01),
                ("calgary/b", "calgary", "tzip-1", 120, 0.01),
                ("calgary/a", "calgary", "fastsmall", 90, 0.001),
                ("calgary/b", "calgary", "fastsmall", 90, 0.001),
                ("calgary/a", "calgary", "slowbig", 300, 1.0),
                ("calgary/b", "calgary", "slowbig", 300, 1.0)])
    for f in doc["files"]:
        (tmp_path / f["file"].replace("/", "_")).write_bytes(b"x" * 1000)
        f["path"], f["used_bytes"] = str(tmp_path / f["file"].replace("/", "_")), 1000
    sizes = iter([{2: 130, 16: 110}, {2: 115, 16: 118}])
    rows = levels.per_file(doc, "tzip-1", None, sizes=lambda data: next(sizes))
    assert [(r["ppmd_order"], r["margin_bytes"]) for r in rows] == [(16, 10), (2, -5)]
    (d,) = levels.dominated(doc, ["tzip-1"], ["calgary"])
    assert [b["tool"] for b in d["dominated_by"]] == ["fastsmall"]
    assert d["dominated_by"][0]["faster"] == ["compress", "decompress"]
    md = levels.markdown(rows, [d], "tzip-1", None)
    assert "loses on calgary/b by 5 bytes" in md and "fastsmall (0.720 bpb" in md


def test_redraw_draws_the_levels_chart_of_a_finished_run(tmp_path, no_corpora):
    pytest.importorskip("matplotlib")
    from bench import report
    out = tmp_path / "out"
    rc, _, _ = bench(out, "--quick", "--models", "none", "--tools", "gzip,bzip2", "--inline",
                     "--limit-bytes", "300")
    assert rc == 0 and (out / "levels.png").is_file()
    (out / "levels.png").unlink()
    assert report.redraw(out) == ["bpb.png", "speed.png", "levels.png"]
    assert (out / "levels.png").stat().st_size > 0 and "![levels.png]" in (out / "results.md").read_text()


def test_cpu_seconds_resolve_a_short_call():
    """A call of about 2 ms of CPU is not rounded to 0 or 10 ms (os.times() ticks)."""
    from bench import measure
    import time

    def spin():
        t0 = time.process_time()
        while time.process_time() - t0 < 0.002:
            pass
    _, _, _, cpu = measure.best_of_cpu(spin)
    assert 0.0015 < cpu < 0.0099


def test_paq8px_is_skipped_when_missing_and_run_when_on_path(tmp_path, no_corpora, monkeypatch):
    """paq8px is an optional command-line tool: in the default list, reported as skipped
    without its binary, and run through the shell pair when a `paq8px` is on PATH (here a
    stand-in script that copies its input, so the round trip holds)."""
    from bench import tools
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    tool = tools.builtin("paq8px")
    assert not tool.available and "paq8px" in tool.note and "not found" in tool.note
    args = SimpleNamespace(tools=None, tool=[], tools_config=None)
    chosen = run.select_tools(args)
    missing = [t.name for t in chosen if not t.available]  # (zstd, brotli, ppmd: optional packages)
    assert missing[-1:] == ["paq8px"] and set(missing) <= {"zstd", "zstd-long", "brotli", "ppmd", "paq8px"}
    assert {t.name for t in chosen if t.available} >= {"gzip", "xz"}

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "paq8px"  # paq8px -8 IN OUT / paq8px -d IN OUT
    fake.write_text('#!/bin/sh\ncp "$2" "$3"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    tool = tools.builtin("paq8px")
    assert tool.available and tool.spec["compress"] == "paq8px -8 {in} {out}"
    rc, doc, _ = bench(tmp_path / "out", "--quick", "--models", "none", "--tools", "paq8px",
                       "--inline", "--limit-bytes", "200")
    assert rc == 0 and {r["tool"] for r in doc["results"]} == {"paq8px"}


def test_results_name_the_version_of_the_code_that_ran():
    """An editable install's metadata keeps the version it was installed at; the bench's
    JSON names the version of the code it ran."""
    import tzip
    from bench import env
    assert env.versions()["tzip"] == tzip.__version__

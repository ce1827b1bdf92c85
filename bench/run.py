"""python -m bench: measure tzip models and classic compressors on chosen files.

Every (file, tool) pair is compressed, decompressed and compared with the original; a
mismatch or a failing tool is reported on stderr, marked in the table and the JSON, and
makes the run exit 1 after all other pairs were measured. Usage errors (unknown tool,
model or group, missing corpus) exit 2 with a message saying what to do.
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from . import corpora
from tzip.errors import ModelError
from tzip.model.registry import models_dir

from . import env, inputs, measure, report, tools
from .inputs import Input
from .tools import Tool, UsageError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUICK_LIMIT = 1000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark tzip models against classic compressors; every result is "
                    "round-trip verified. `python -m bench download NAME` fetches a corpus.")
    sel = p.add_argument_group("files")
    sel.add_argument("--corpus", help="a registered corpus, or several comma-separated "
                                      "(default: bench; see corpora/README.md)")
    sel.add_argument("--group", help="only these groups of the corpus, comma-separated "
                                     "(bench: canterbury,calgary,large,enwik)")
    sel.add_argument("--files", nargs="+", metavar="PATH", help="your own files instead")
    sel.add_argument("--all-kinds", action="store_true", help="binary corpus files too")
    sel.add_argument("--quick", action="store_true",
                     help=f"three small files cut to {QUICK_LIMIT} bytes, one small model "
                          "(a smoke test of the suite, not a benchmark)")
    sel.add_argument("--limit-bytes", type=int, metavar="N", help="use only the first N bytes")
    tl = p.add_argument_group("tools")
    tl.add_argument("--tools", help="built-in tools, comma-separated, or 'none' (default: all: "
                                    + ",".join(list(tools.BUILTINS) + list(tools.SHELL_BUILTINS))
                                    + "; paq8px only where its binary is on PATH)")
    tl.add_argument("--tool", action="append", default=[], metavar="'NAME=CMD;CMD'",
                    help="add a compressor as two shell commands (compress;decompress) "
                         "using {in} and {out}; may be repeated")
    tl.add_argument("--tools-config", type=Path, metavar="FILE.json",
                    help='more tools: {"NAME": {"compress": CMD, "decompress": CMD}}')
    tl.add_argument("--models", help="tzip models, comma-separated names (or .npz paths; "
                                     "tzip-1: level 1, the context mixer alone), or "
                                     "'none' (default: every installed model; --quick: "
                                     "tzip-small)")
    tl.add_argument("--subset", action="append", default=[], metavar="TOOL=FILES",
                    help="run TOOL only on these files (group names, group/file labels or "
                         "file names, comma-separated), e.g. a slow model on part of a "
                         "corpus; its totals then say 'N of M files'; may be repeated")
    tl.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="device for tzip models (default: auto)")
    run = p.add_argument_group("running")
    run.add_argument("--out", type=Path, help="results folder (default: bench/results/DATE-HOST)")
    run.add_argument("--inline", action="store_true",
                     help="run library codecs in this process: faster start, but no memory "
                          "figures")
    run.add_argument("--timeout", type=float, default=0, metavar="S",
                     help="kill a phase after S seconds (default: no limit)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    run.add_argument("--card", action="store_true",
                     help="write each model's per-file numbers into models/NAME.md "
                          "(next to xz, bzip2 and PPMd of the same run)")
    return p


def select_tools(args: argparse.Namespace) -> list[Tool]:
    known = list(tools.BUILTINS) + list(tools.SHELL_BUILTINS)
    if args.tools is None:
        names = known
    elif args.tools.strip() == "none":
        names = []
    else:
        names = [n.strip() for n in args.tools.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"--tools: unknown tool(s) {', '.join(unknown)} (built-in: "
                             f"{', '.join(known)}; add others with --tool)")
    chosen = [tools.builtin(n) for n in names]
    chosen += [tools.parse_tool_arg(a) for a in args.tool]
    if args.tools_config:
        chosen += tools.load_tools_config(args.tools_config)
    return chosen


def select_models(args: argparse.Namespace) -> list[str]:
    from tzip.model import registry as models
    installed = models.available()
    if args.models is None:
        if not args.quick:
            return installed
        if models.CPU_DEFAULT in installed:
            return [models.CPU_DEFAULT]
        by_size = sorted(installed, key=lambda n: (models.models_dir() / f"{n}.npz").stat().st_size)
        return by_size[:1]
    if args.models.strip() == "none":
        return []
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        if (n not in installed and n not in tools.LEVELS
                and not (n.endswith(".npz") and Path(n).is_file())):
            raise UsageError(f"--models: model {n!r} is not installed in {models.models_dir()} "
                             f"(installed: {', '.join(installed) or 'none'}; levels without a "
                             f"model: {', '.join(tools.LEVELS)}; or give an .npz path)")
    return names


def model_info(spec: str) -> dict:
    """Name, id, weight count and file size of a tzip model (reported apart from bpb)."""
    from tzip.model import registry as models
    m = models.load(spec)
    path = Path(spec) if spec.endswith(".npz") else models.models_dir() / f"{spec}.npz"
    params = m.num_params() + m.arrays["emb"].size  # int8 matrices + the embedding
    return {"name": m.name, "id": m.digest.hex()[:16], "digest": m.digest.hex(),
            "params": int(params),
            "tensor_elements": int(sum(a.size for a in m.arrays.values())),
            "file_bytes": path.stat().st_size, "path": str(path.resolve()),
            "config": m.cfg.to_dict()}


def select_inputs(args: argparse.Namespace) -> tuple[list[Input], list[str]]:
    notes: list[str] = []
    if args.files:
        return inputs.user_files(args.files), notes
    groups = [g.strip() for g in args.group.split(",")] if args.group else None
    if args.quick and not args.corpus and not groups:
        files, note = inputs.quick_files()
        return files, notes + ([note] if note else [])
    return inputs.corpus_files(args.corpus or "bench", groups, args.all_kinds), notes


def describe_selection(args: argparse.Namespace) -> str | None:
    if args.files:
        return None
    if args.quick and not args.corpus and not args.group:
        return "quick set"
    return f"corpus {args.corpus or 'bench'}" + (f", groups {args.group}" if args.group else "")


def parse_subsets(args: list[str], tool_names: list[str]) -> dict[str, set[str]]:
    """--subset TOOL=SEL,SEL... -> {tool: selectors}; a selector is a group, a group/file
    label or a file name."""
    out: dict[str, set[str]] = {}
    for arg in args:
        name, eq, sels = arg.partition("=")
        name = name.strip()
        chosen = {x.strip() for x in sels.split(",") if x.strip()}
        if not eq or not chosen:
            raise UsageError(f"--subset {arg!r}: expected 'TOOL=FILE_OR_GROUP,...'")
        if name not in tool_names:
            raise UsageError(f"--subset {arg!r}: no tool {name!r} in this run "
                             f"(tools: {', '.join(tool_names)})")
        out.setdefault(name, set()).update(chosen)
    return out


def in_subset(subsets: dict[str, set[str]], tool: str, inp: Input) -> bool:
    sel = subsets.get(tool)
    return sel is None or bool({inp.group, inp.label, inp.name} & sel)


def _first_difference(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def measure_one(tool: Tool, inp: Input, data: bytes, inline: bool, timeout: float | None,
                codecs: dict) -> dict:
    """Compress, decompress and verify one file with one tool."""
    rec: dict = {"file": inp.label, "group": inp.group, "tool": tool.name,
                 "original_bytes": len(data), "compressed_bytes": None, "bpb": None,
                 "status": "error", "error": None}
    with tempfile.TemporaryDirectory(prefix="tzip-bench-") as tmp:
        src, comp, back = Path(tmp, "original"), Path(tmp, "compressed"), Path(tmp, "restored")
        src.write_bytes(data)
        try:
            if tool.kind == "shell":
                c = measure.shell_phase(tool.spec["compress"], src, comp, timeout)
                size = comp.stat().st_size
                d = measure.shell_phase(tool.spec["decompress"], comp, back, timeout)
                out = back.read_bytes()
            elif inline:
                if tool.name not in codecs:
                    codecs[tool.name] = tools.make_codec(tool.spec)
                    codecs[tool.name].warmup()
                codec = codecs[tool.name]
                blob, c = measure.gpu_phase(
                    tool.spec, lambda: measure.inline_phase(codec, "compress", data))
                size = len(blob)
                out, d = measure.gpu_phase(
                    tool.spec, lambda: measure.inline_phase(codec, "decompress", blob))
            else:
                c = measure.worker_phase(tool.spec, "compress", src, comp, timeout)
                size = comp.stat().st_size
                d = measure.worker_phase(tool.spec, "decompress", comp, back, timeout)
                out = back.read_bytes()
        except Exception as e:  # noqa: BLE001 - one failing tool must not stop the others
            rec["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, measure.PhaseError) \
                else str(e)
            return rec
    rec["compressed_bytes"] = size
    rec["bpb"] = 8 * size / len(data) if data else None
    for name, ph in (("compress", c), ("decompress", d)):
        rec[f"{name}_s"] = ph.seconds
        rec[f"{name}_kbps"] = len(data) / ph.seconds / 1000 if ph.seconds > 0 else None
        rec[f"{name}_reps"] = ph.reps
        rec[f"{name}_peak_rss"] = ph.peak_rss
        rec[f"{name}_rss_before"] = ph.rss_before
        rec[f"{name}_gpu_peak"] = ph.gpu_peak
        rec[f"{name}_cpu_s"] = ph.cpu_seconds
    if out == data:
        rec["status"] = "ok"
    else:
        rec["status"] = "mismatch"
        rec["error"] = (f"round trip differs: decompressed {len(out):,} bytes, expected "
                        f"{len(data):,}; first difference at byte {_first_difference(out, data):,}")
    return rec


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _line(rec: dict) -> str:
    if rec["status"] != "ok":
        return f"{rec['tool']}: {rec['status'].upper()}: {rec['error']}"
    return (f"{rec['tool']}: {rec['bpb']:.3f} bpb, compress {report.speed(rec['compress_kbps'])} "
            f"KB/s, decompress {report.speed(rec['decompress_kbps'])} KB/s")


def _save(out_dir: Path, doc: dict) -> str:
    """Write results.json and results.md; returns the markdown."""
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = report.markdown(doc)
    (out_dir / "results.md").write_text(md)
    return md


def default_out() -> Path:
    return RESULTS_DIR / f"{datetime.now():%Y%m%d-%H%M%S}-{socket.gethostname()}"


def execute(args: argparse.Namespace, argv: list[str]) -> int:
    chosen = select_tools(args)
    names = [t.name for t in chosen]
    model_specs = select_models(args)
    device, infos, model_tools = None, [], []
    if model_specs:
        from tzip.model import registry as models
        device = str(models.resolve_device(args.device))
        for spec in model_specs:
            tool = tools.tzip_tool(spec, device)
            if spec in tools.LEVELS:  # no model file: nothing for the models table
                model_tools.append(tool)
                continue
            try:
                infos.append(model_info(spec))
            except ModelError as e:
                if args.models is not None:
                    raise
                tool.available, tool.note = False, f"skipped {tool.name}: {e}"
            model_tools.append(tool)
        chosen = model_tools + chosen
        names = [t.name for t in chosen]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"tool name(s) used twice: {', '.join(dupes)}")
    subsets = parse_subsets(args.subset, names)
    files, notes = select_inputs(args)
    for name, sel in subsets.items():
        unknown = sel - {x for f in files for x in (f.group, f.label, f.name)}
        if unknown:
            raise UsageError(f"--subset {name}: {', '.join(sorted(unknown))} not among the "
                             "selected files")
        n = sum(in_subset(subsets, name, f) for f in files)
        notes.append(f"{name} ran on a subset: {n} of {len(files)} files "
                     f"({', '.join(sorted(sel))})")
    limit = args.limit_bytes or (QUICK_LIMIT if args.quick else None)
    for inp in files:
        inp.read()
    skipped = [t for t in chosen if not t.available]
    active = [t for t in chosen if t.available]
    for t in skipped:
        _log(False, f"bench: {t.note}")
    for n in notes:
        _log(args.quiet, f"bench: {n}")
    out_dir = args.out or default_out()
    out_dir.mkdir(parents=True, exist_ok=True)
    _log(args.quiet, f"bench: {len(files)} file(s) x {len(active)} tool(s) -> {out_dir}")

    results, codecs, timeout = [], {}, args.timeout or None
    environment = env.environment(argv)

    def document(done: int) -> dict:
        partial = [f"partial: {done} of {len(files)} file(s) measured"] if done < len(files) else []
        return {
            "schema": "tzip-bench/1",
            "environment": environment,
            "settings": {"corpus": describe_selection(args),
                         "groups": args.group, "all_kinds": args.all_kinds, "quick": args.quick,
                         "limit_bytes": limit, "device": args.device, "device_resolved": device,
                         "inline": args.inline, "timeout_s": timeout,
                         "subsets": {k: sorted(v) for k, v in subsets.items()},
                         "memory": report.MEMORY_NOTE_INLINE if args.inline else report.MEMORY_NOTE},
            "tools": [t.to_json() for t in chosen],
            "skipped": [{"tool": t.name, "note": t.note} for t in skipped],
            "models": infos,
            "files": [{"file": f.label, "name": f.name, "group": f.group, "kind": f.kind,
                       "path": str(f.path), "bytes": f.path.stat().st_size,
                       "used_bytes": min(f.path.stat().st_size, limit or f.path.stat().st_size),
                       "sha256": f.entry.sha256 if f.entry else None} for f in files[:done]],
            "results": results,
            "aggregates": report.aggregates(results, [t.name for t in active]),
            "failures": [{"file": r["file"], "tool": r["tool"], "status": r["status"],
                          "error": r["error"]} for r in results if r["status"] != "ok"],
            "notes": partial + notes,
        }

    done = 0
    try:
        for i, inp in enumerate(files, 1):
            data = inp.read(limit)
            _log(args.quiet, f"[{i}/{len(files)}] {inp.label} ({len(data):,} bytes)")
            for t in active:
                if not in_subset(subsets, t.name, inp):
                    continue
                rec = measure_one(t, inp, data, args.inline, timeout, codecs)
                results.append(rec)
                _log(args.quiet, f"    {_line(rec)}")
                if rec["status"] != "ok":
                    print(f"bench: {'ROUND-TRIP FAILURE' if rec['status'] == 'mismatch' else 'ERROR'}"
                          f": {t.name} on {inp.label}: {rec['error']}", file=sys.stderr, flush=True)
            done = i
            if done < len(files):  # a long run keeps what it has measured so far
                _save(out_dir, document(done))
    except KeyboardInterrupt:
        results[:] = [r for r in results if r["file"] in {f.label for f in files[:done]}]
        doc = document(done)
        _save(out_dir, doc)
        failed = f"; {len(doc['failures'])} of their results FAILED (see above)" if doc["failures"] else ""
        print(f"bench: interrupted; the {done} complete file(s) are in {out_dir}{failed}", file=sys.stderr)
        return 130

    doc = document(done)
    doc["charts"], chart_notes = report.charts(doc, out_dir)
    doc["notes"] += chart_notes
    for n in chart_notes:
        _log(args.quiet, f"bench: {n}")
    print(_save(out_dir, doc))
    _log(args.quiet, f"bench: results in {out_dir}")
    if args.card:
        from . import card
        for path in card.update(out_dir / "results.json", models_dir()):
            _log(args.quiet, f"bench: updated {path}")
    if doc["failures"]:
        print(f"bench: {len(doc['failures'])} result(s) FAILED (see above); exit status 1",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    if args.limit_bytes is not None and args.limit_bytes <= 0:
        print("bench: error: --limit-bytes must be positive", file=sys.stderr)
        return 2
    try:
        return execute(args, argv)
    except (UsageError, corpora.CorpusError, ModelError) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2

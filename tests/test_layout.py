"""The package's shape, read from its source (nothing is imported to check it): no import
cycle at any depth, no import against the layering, PyTorch only where the torch
backends and training need it, and the CLI on top of the API. Then one run: a CPU
compress and decompress that never loads PyTorch.

Imports are parsed with `ast`; an import inside a function (run when it is called) is
"lazy", one at module level (run when the module loads) is not; imports under
`if TYPE_CHECKING:` never run and are left out.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "tzip"

# Parts of the package from the bottom up: a module may import its own part and parts of a
# lower rank, never a part of its own rank or above (function-level imports included).
LAYERS = {
    "tzip.errors": 0,
    "tzip": 1,  # the package's names: its facade loads api/tzfile through importlib
    "tzip.transform": 1, "tzip.model.config": 1, "tzip.threads": 1,
    "tzip.output": 1, "tzip.jitcache": 1,
    "tzip.device": 2, "tzip.modelpath": 2, "tzip.limits": 2, "tzip.container": 2,
    "tzip.archive": 3,
    "tzip.model": 3, "tzip.cm": 3,
    "tzip.engine": 4,  # tzip.engine.plan included: it asks tzip.cm for its default
    "tzip.streams": 5,  # a model block's streams, for both coders below
    "tzip.legacy": 6,  # format 3's coder: below the codec, which hands it method 2 blocks
    "tzip.codec": 7, "tzip.training": 7,
    "tzip.api": 8,
    "tzip.tzfile": 9, "tzip.pipeline": 9,
    "tzip.cluster": 10,
    "tzip.parallel": 11,
    "tzip.cli": 12,
    "tzip.entry": 13, "tzip.__main__": 14,
}
# the only modules that import PyTorch when they load: the torch backends and training
TORCH_MODULES = {"tzip.engine.reference", "tzip.engine.graph", "tzip.training", "tzip.training.net",
                 "tzip.training.train", "tzip.training.convert", "tzip.training.mix",
                 "tzip.training.dequant"}
# where PyTorch is imported inside a function, each only on a path that needs it
LAZY_TORCH = {
    "tzip.device",  # cuda_available: only where a GPU driver exists
    "tzip.threads",  # apply: PyTorch's thread count, only once PyTorch is loaded
    "tzip.limits",  # check_memory: a GPU's memory, only for CUDA tensors
    "tzip.parallel",  # resolve_model: Ray workers on GPUs
    "tzip.engine",  # Engine._build: the torch backends, when chosen
}
# the CLI's ways into the package: the API (tzip's names, api, errors, the thread setting),
# its scale-out (parallel, for -T and --ray), the checked writes it writes through
# (output, as the API's file functions do) and the `tzip train` command
CLI_USES = {"tzip", "tzip.api", "tzip.errors", "tzip.threads", "tzip.parallel", "tzip.output", "tzip.jitcache",
            "tzip.training.train"}
# imports of the CLI past the API that are known and wait for a fix (the second
# architecture review, §3): the search path for `tzip models`
CLI_KNOWN_BREACHES = {"tzip.modelpath"}


@dataclass(frozen=True)
class Import:
    name: str  # a tzip module (a submodule by that name, else its package) or an outside module
    lazy: bool  # inside a function
    line: int


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _files() -> dict[str, Path]:
    return {_module(p): p for p in PKG.rglob("*.py")}


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@cache
def _imports(me: str) -> tuple[Import, ...]:
    """Every import of module `me` (`from . import x` names a module x)."""
    path, modules = _files()[me], set(_files())
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[Import] = []

    def walk(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                for sub in child.orelse:
                    walk(ast.Module(body=[sub], type_ignores=[]), lazy)
                continue
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend(Import(a.name, inner, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package
                for _ in range(child.level - 1):
                    base = base.rpartition(".")[0]
                base = (f"{base}.{child.module}" if child.module else base) if child.level else child.module
                for a in child.names:  # a submodule by that name, else a name from base
                    sub = f"{base}.{a.name}"
                    out.append(Import(sub if sub in modules else base, inner, child.lineno))
            walk(child, inner)

    walk(ast.parse(path.read_text()), False)
    return tuple(i for i in out if i.name != me)


def _tzip(imports) -> set[str]:
    return {i.name for i in imports if i.name in _files()}


def _torch(name: str) -> bool:
    return name == "torch" or name.startswith("torch.")


def _part(module: str) -> str:
    """The longest LAYERS key that is module or a package above it (but "tzip" itself:
    the package's __init__ only, so a new top-level module needs a rank of its own)."""
    if module == "tzip":
        return module
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is in no part of LAYERS: give it a rank")


def _loads(module: str) -> set[str]:
    """Every module (tzip's and outside ones) that importing `module` loads: the closure of
    module-level imports, with the packages above each tzip module."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m in _files():
            todo.extend(i.name for i in _imports(m) if not i.lazy)
            parts = m.split(".")
            todo.extend(".".join(parts[:n]) for n in range(1, len(parts)))
    return seen - {module}


def test_no_import_cycle():
    graph = {m: _tzip(_imports(m)) for m in _files()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_no_import_against_the_layers():
    """model/ never imports the engine, the engine never the codec, nothing below the CLI
    imports training, and so on: every import goes down the ranks of LAYERS."""
    wrong = set()
    for m in sorted(_files()):
        for i in _imports(m):
            if i.name in _files():
                a, b = _part(m), _part(i.name)
                if a != b and LAYERS[b] >= LAYERS[a]:
                    wrong.add(f"{m}:{i.line} imports {i.name} ({a} rank {LAYERS[a]}, "
                                 f"{b} rank {LAYERS[b]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_torch_loads_only_with_the_torch_backends_and_training():
    """No other module imports PyTorch when it loads, nor loads a module that does: the
    model file, the engine's chooser and CPU backends, the context mixer, the codec, the
    container, the API and the CLI need none."""
    top = sorted(m for m in _files() if any(_torch(i.name) and not i.lazy for i in _imports(m)))
    assert set(top) <= TORCH_MODULES, top
    for m in sorted(set(_files()) - TORCH_MODULES):
        loads = _loads(m)
        assert not any(_torch(n) for n in loads) and not loads & TORCH_MODULES, (
            m, sorted(n for n in loads if _torch(n) or n in TORCH_MODULES))


def test_lazy_torch_imports_are_the_known_ones():
    """Each function that imports PyTorch (or a torch backend) is on a path that needs it;
    a new one is a decision, to be added to LAZY_TORCH with its reason."""
    lazy = {m for m in set(_files()) - TORCH_MODULES
            for i in _imports(m) if i.lazy and (_torch(i.name) or i.name in TORCH_MODULES)
            and not (m == "tzip.cli" and i.name == "tzip.training.train")}
    assert lazy == LAZY_TORCH


def test_cpu_backends_and_context_mixer_never_import_torch():
    """Not even inside a function: the numpy and numba backends, the weights they share and
    the context mixer compute with numpy and numba only."""
    for m in sorted(_files()):
        if m.startswith(("tzip.cm", "tzip.legacy", "tzip.engine.compiled", "tzip.model")) or m in (
                "tzip.engine.numpy_step", "tzip.engine.weights", "tzip.engine.exact", "tzip.codec",
                "tzip.streams", "tzip.container", "tzip.transform"):
            bad = [i for i in _imports(m) if _torch(i.name) or i.name in TORCH_MODULES]
            assert not bad, (m, bad)


def test_context_mixer_imports_only_itself():
    """Itself, and tzip.jitcache (numba's cache folder), a leaf that imports no tzip module."""
    assert _tzip(_imports("tzip.jitcache")) == set()
    for m in sorted(_files()):
        if m.startswith("tzip.cm"):
            own = {n for n in _files() if n.startswith("tzip.cm")} | {"tzip.jitcache"}
            assert _tzip(_imports(m)) <= own, m


def test_only_the_train_command_imports_training():
    users = {(m, i.name, i.lazy) for m in _files() if not m.startswith("tzip.training")
             for i in _imports(m) if i.name.startswith("tzip.training")}
    assert users == {("tzip.cli", "tzip.training.train", True)}


def test_the_cli_reaches_the_package_through_the_api():
    used = _tzip(_imports("tzip.cli"))
    assert used <= CLI_USES | CLI_KNOWN_BREACHES, sorted(used - CLI_USES - CLI_KNOWN_BREACHES)
    # a breach that is fixed leaves the list too
    assert used >= CLI_KNOWN_BREACHES, sorted(CLI_KNOWN_BREACHES - used)


def test_the_codec_reads_format_versions_only_from_their_profiles():
    """tzip/codec.py is the current format's: what a version codes with is its
    container.PROFILES entry, never a branch on the version number there, and format 3's
    coder (linear mixing, constriction) is tzip/legacy's."""
    tree = ast.parse(_files()["tzip.codec"].read_text())
    branches = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Compare)
                and any(isinstance(x, ast.Name) and x.id == "version" for x in [n.left, *n.comparators])]
    assert not branches, f"tzip/codec.py compares the format version at lines {branches}"
    assert not {i.name for i in _imports("tzip.codec")} & {"constriction", "tzip.legacy.mixing"}


def test_the_layer_table_covers_every_module():
    for m in _files():
        _part(m)


def _numba() -> bool:
    try:
        import numba  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _numba(), reason="without numba the torch backends are the CPU path")
def test_cpu_compress_and_decompress_never_load_torch(tmp_path, tiny_path, text):
    """The library and the CLI, on the CPU: the model runs on the numba backends and
    PyTorch stays out of the process (on a machine without a GPU driver, "auto" too)."""
    src = tmp_path / "in.txt"
    src.write_bytes(text[:3000])
    script = (
        "import sys\n"
        "import tzip, tzip.api, tzip.codec, tzip.container, tzip.cm, tzip.engine, tzip.model\n"
        "import tzip.model.registry, tzip.tzfile, tzip.cli, tzip.parallel\n"
        "from tzip.device import gpu_possible\n"
        "from tzip.cli import main\n"
        "device = 'cpu' if gpu_possible() else 'auto'\n"
        f"data = open({str(src)!r}, 'rb').read()\n"
        f"blob = tzip.compress(data, {str(tiny_path)!r}, device=device)\n"
        f"assert tzip.decompress(blob, {str(tiny_path)!r}, device=device) == data\n"
        "with tzip.open(sys.argv[1] + '.tz', 'wb', model=sys.argv[2]) as f:\n"
        "    f.write(data)\n"
        "for args in (['-k', '-f', '--model', sys.argv[2], sys.argv[1]],\n"
        "             ['-dc', '--model', sys.argv[2], sys.argv[1] + '.tz']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, (args, e.code)\n"
        "c = tzip.Compressor(sys.argv[2], device=device)\n"
        "c.compress(data)\n"
        "assert c.backend.split()[0] in ('numba', 'vnni') and c.backend.endswith('compiled mixer on cpu'), c.backend\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('tzip'))\n")
    env = dict(os.environ, PYTHONPATH=str(PKG.parent))
    env.pop("TZIP_BACKEND", None)
    p = subprocess.run([sys.executable, "-c", script, str(src), str(tiny_path)], capture_output=True,
                       env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert p.stdout.endswith(text[:3000]), p.stdout[-200:]

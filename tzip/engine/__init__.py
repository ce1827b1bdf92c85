"""The engine: a model's next-byte frequency tables, through one of several backends.

Two interfaces, each implemented by peers that give the same tables bit for bit
(tzip/engine/exact.py says why they can):

    Scorer   compression: many known positions of S streams at once
             new_state(S) -> state;  scorer(tokens (S, C), state) -> freqs (S, C, 256)
    Stepper  decompression: one position per stream, a key/value cache in the state
             new_state(S) -> state;  stepper(tokens (S,), state) -> freqs (S, 256)
             threads(S): a context to run its steps in (thread settings)

| backend | scorer | stepper | where |
|---|---|---|---|
| torch (reference.py) | TorchScorer | TorchStepper | any device; the reference |
| numpy (numpy_step.py) | - | NumpyStep | CPU, few streams |
| numba (compiled/) | JitScorer | JitStep | CPU, numba installed |
| vnni (compiled/vnni.py) | VnniScorer | VnniStep | CPU with AVX-512 VNNI, numba installed: the numba loops with int8 products |
| graph (graph.py) | - | GraphStepper | CUDA (a CUDA graph of the reference step); CPU eagerly |

Which one runs is speed only, never archive bytes, and is decided in one place:
`Engine.scorer` and `Engine.stepper` read the TUNING table below, and the environment
variable TZIP_BACKEND=torch|numpy|numba|vnni|graph overrides it (a backend that cannot run the
model or device is passed over). Each picked backend has a `name`.

Only the torch backends (reference.py, graph.py) import PyTorch, when first built: a CPU
process whose blocks take the numpy and numba backends never loads it.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import ContextManager, Protocol

import numpy as np

from .. import threads
from ..device import Device, need_torch, torch_installed
from ..errors import TzipError
from ..model.intmodel import IntModel
from .weights import Weights

# Speed-only thresholds (docs/performance.md has the evidence for each).
TUNING = {
    # positions per stream from which a block takes the compiled loops (loading numba
    # costs a process about a second); once loaded, every block takes them
    "compiled_from": 1024,
    "compiled_from_decoding": 256,
    # on a CPU, decoding steps of fewer streams take numpy rather than torch
    "numpy_below": 48,
    # the most model blocks decoded in lockstep (codec.decode_cm_group), by device type:
    # on a GPU a step of thousands of streams costs about what one of 16 does; on a CPU
    # a step's cost grows with its streams, and one block's 16 streams keep its cores busy
    "lockstep_blocks_cpu": 1,
    "lockstep_blocks_cuda": 256,
    # decoding steps on CUDA replayed from a CUDA graph (graph.py); off until measured on
    # a GPU (docs/gpu.md): TZIP_BACKEND=graph turns it on
    "cuda_graphs": 0,
    # the kinds whose compiled loops take the int8 dot-product units where the CPU has
    # them (vnni.py): the decoding step 1.9x (docs/performance.md); the pass measured no
    # faster than numpy's BLAS (its products are a quarter of it), so it keeps float32
    "vnni": ("stepper",),
}
BACKENDS = ("torch", "numpy", "numba", "vnni", "graph")


class Scorer(Protocol):
    name: str

    def new_state(self, streams: int) -> object: ...

    def __call__(self, tokens: np.ndarray, state: object) -> np.ndarray: ...


class Stepper(Protocol):
    name: str

    def new_state(self, streams: int) -> object: ...

    def threads(self, streams: int) -> ContextManager: ...

    def __call__(self, tokens: np.ndarray, state: object) -> np.ndarray: ...


@functools.cache
def numba_available() -> bool:
    """Whether the compiled loops can run (numba installed and importable)."""
    try:
        from .compiled import score, step  # noqa: F401
    except Exception as exc:  # not installed, or unusable here: the other backends compute the same
        from ..jitcache import unusable
        unusable(exc)  # one line on stderr: never silently slow
        return False
    return True


_COMPILED_MODULES = ("tzip.engine.compiled.step", "tzip.engine.compiled.score", "tzip.mixing.compiled",
                     "tzip.cm.jit")


def compiled_loaded() -> bool:
    """Whether this process has already loaded compiled loops (then every block takes them:
    their cost is paid)."""
    return any(m in sys.modules for m in _COMPILED_MODULES)


def preferred() -> str:
    """TZIP_BACKEND, or "auto"."""
    want = os.environ.get("TZIP_BACKEND", "auto").strip().lower() or "auto"
    if want not in BACKENDS + ("auto",):
        raise TzipError(f"TZIP_BACKEND={want!r}: use auto, {', '.join(BACKENDS)}")
    return want


class Engine:
    """One model on one device: its weights prepared once, and the backends built from
    them on first use (each is kept: the compiled ones prepare arrays of their own)."""

    def __init__(self, model: IntModel, device: object = "cpu"):
        """device: "cpu", "cuda", "cuda:N", a Device or a torch.device (never "auto":
        tzip/device.py resolves that)."""
        self.model = model
        self.cfg = model.cfg
        self.device = Device(str(device))
        self.weights = Weights.from_model(model)
        self._built: dict[str, object] = {}
        self.picked: dict[str, str] = {}  # kind -> the backend last chosen, for users to see

    def _get(self, key: str):
        b = self._built.get(key)
        if b is None:
            b = self._built[key] = self._build(key)
        return b

    def _build(self, key: str):
        w = self.weights
        if key in ("reference", "torch-scorer", "torch-stepper", "graph-stepper"):
            want = preferred()
            need_torch(f"the {key.split('-')[0]} backend" + (f" (TZIP_BACKEND={want})" if want != "auto" else ""))
        if key == "reference":
            threads.before_torch()  # the thread policy, before PyTorch loads
            from .reference import Engine as Reference
            return Reference(w, self.device)
        if key == "torch-scorer":
            from .reference import TorchScorer
            return TorchScorer(self._get("reference"))
        if key == "torch-stepper":
            from .reference import TorchStepper
            return TorchStepper(self._get("reference"))
        if key == "numpy-stepper":
            from .numpy_step import NumpyStep
            return NumpyStep(w)
        if key == "numba-scorer":
            from .compiled.score import JitScorer
            return JitScorer(w)
        if key == "numba-stepper":
            from .compiled.step import JitStep
            return JitStep(w)
        if key == "vnni-scorer":
            from .compiled.score import VnniScorer
            return VnniScorer(w)
        if key == "vnni-stepper":
            from .compiled.step import VnniStep
            return VnniStep(w)
        if key == "graph-stepper":
            from .graph import GraphStepper
            return GraphStepper(self._get("reference"))
        raise KeyError(key)

    def compiled(self, kind: str, positions: int) -> bool:
        """Whether a block of `positions` positions per stream takes compiled loops (the
        model's on a CPU, and the adaptive models' anywhere)."""
        want = preferred()
        if want != "auto":
            return want in ("numba", "vnni") and numba_available()
        least = TUNING["compiled_from_decoding" if kind == "stepper" else "compiled_from"]
        return (compiled_loaded() or positions >= least) and numba_available()

    def _numba_can(self, kind: str, vnni: bool = False) -> bool:
        """Whether the compiled loops (with int8 products: vnni) run this model here."""
        if self.device.type != "cpu":
            return False
        if kind == "scorer":
            from .compiled.score import JitScorer, VnniScorer
            return (VnniScorer if vnni else JitScorer).usable(self.weights)
        from .compiled.step import JitStep, VnniStep
        return (VnniStep if vnni else JitStep).usable(self.weights)

    def choose(self, kind: str, streams: int, positions: int) -> str:
        """The backend for a block of `streams` streams of up to `positions` positions:
        "torch", "numpy", "numba", "vnni" or "graph". The one place where speed decides."""
        want = preferred()
        cpu = self.device.type == "cpu"
        if self.compiled(kind, positions) and self._numba_can(kind):
            if want in ("auto", "vnni") and (kind in TUNING["vnni"] or want == "vnni") \
                    and self._numba_can(kind, vnni=True):
                return "vnni"
            return "numba"
        if want == "torch":
            return "torch"
        if (want == "auto" or (want == "numpy" and kind == "scorer")) and cpu and not torch_installed() \
                and numba_available() and self._numba_can(kind):
            return "numba"  # PyTorch is an extra (tzip[torch]): the compiled loops, whatever the size
        if kind == "stepper" and (want == "graph" or (self.device.type == "cuda" and TUNING["cuda_graphs"])):
            return "graph"
        if kind == "stepper" and cpu and (want == "numpy" or streams < TUNING["numpy_below"]):
            return "numpy"
        return "torch"

    def scorer(self, streams: int, positions: int) -> Scorer:
        name = self.picked["scorer"] = self.choose("scorer", streams, positions)
        return self._get(name + "-scorer")

    def stepper(self, streams: int, positions: int) -> Stepper:
        name = self.picked["stepper"] = self.choose("stepper", streams, positions)
        return self._get(name + "-stepper")

    @property
    def lockstep_blocks(self) -> int:
        """The most model blocks to decode together on this engine's device."""
        return TUNING.get(f"lockstep_blocks_{self.device.type}", 1)

    def describe(self) -> str:
        """The backends this engine last chose, e.g. 'numba scorer on cpu'."""
        picked = ", ".join(f"{name} {kind}" for kind, name in sorted(self.picked.items()))
        return f"{picked or 'no backend yet'} on {self.device}"

    def backend(self, name: str, kind: str):
        """A backend by name ("torch", "numpy", "numba") and kind ("scorer", "stepper"),
        whatever the tuning says (tests and benchmarks)."""
        return self._get(f"{name}-{kind}")

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
| numpy (numpy_step.py) | - | NumpyStep | CPU, where numba cannot run the model |
| numba (compiled/) | JitScorer | JitStep | CPU, numba installed |
| vnni (compiled/vnni.py) | VnniScorer | VnniStep | CPU with AVX-512 VNNI or AVX-VNNI, numba installed: the numba loops with int8 products |
| graph (graph.py) | - | GraphStepper | CUDA (a CUDA graph of the reference step); CPU eagerly |

Which one runs is speed only, never archive bytes, and is decided in one place, with the
context mixer's implementation and the loops' speed-only numbers: the engine's `Plan`
(tzip/engine/plan.py: the TUNING table, TZIP_BACKEND, TZIP_CM), built once per engine
and shown by `tzip -v`. A backend that cannot run the model or device is passed over.

Only the torch backends (reference.py, graph.py) import PyTorch, when first built: a CPU
process whose blocks take the numpy and numba backends never loads it.
"""
from __future__ import annotations

import functools
from typing import ContextManager, Protocol

import numpy as np

from .. import threads
from ..device import Device, need_torch
from ..model.intmodel import IntModel
from .plan import BACKENDS, TUNING, Plan, wanted_backend  # noqa: F401 (TUNING: the one table, read by the plan)
from .weights import Weights


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


class Engine:
    """One model on one device: its weights prepared once, and the backends built from
    them on first use (each is kept: the compiled ones prepare arrays of their own)."""

    def __init__(self, model: IntModel, device: object = "cpu", mixer: str | None = None,
                 window: int | None = None):
        """device: "cpu", "cuda", "cuda:N", a Device or a torch.device (never "auto":
        tzip/device.py resolves that); mixer: the context mixer's implementation, if the
        caller has chosen it (a Decompressor's models share one), else the plan's;
        window: the positions each position attends to (1 to the model's context; None:
        the context), which changes the tables, hence archive bytes (format 7 records it).

        cfg is the model's own config (its context cuts a block into streams, whatever the
        window); the backends read the window from weights.cfg.context."""
        self.model = model
        self.cfg = model.cfg
        self.device = Device(str(device))
        self.weights = Weights.from_model(model, window)
        self.window = self.weights.cfg.context
        self._built: dict[str, object] = {}
        self._mixer = mixer

    def _get(self, key: str):
        b = self._built.get(key)
        if b is None:
            b = self._built[key] = self._build(key)
        return b

    def _build(self, key: str):
        w = self.weights
        if key in ("reference", "torch-scorer", "torch-stepper", "graph-stepper"):
            want = wanted_backend()
            need_torch(f"the {key.split('-')[0]} backend" + (f" (TZIP_BACKEND={want})" if want != "auto" else ""))
        if key == "reference":
            threads.before_torch()  # the thread policy, before PyTorch loads
            from .reference import Reference
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

    @functools.cached_property
    def plan(self) -> Plan:
        """Every speed choice for this model on this device (tzip/engine/plan.py), made
        when first asked for, from TUNING and the environment."""
        return Plan.build(str(self.device), self.can, self._mixer)

    def compiled(self, kind: str = "scorer", positions: int = 0) -> bool:
        """Whether format 3's adaptive models (tzip/legacy/mixing) run compiled: the plan's
        mixer (kind and positions no longer matter; format 3's callers pass them)."""
        return self.plan.mixer == "compiled"

    def can(self, backend: str, kind: str) -> bool:
        """Whether `backend` runs this model's `kind` ("scorer", "stepper") here."""
        if backend in ("numba", "vnni"):
            return numba_available() and self._numba_can(kind, vnni=backend == "vnni")
        return kind == "stepper" or backend == "torch"

    def _numba_can(self, kind: str, vnni: bool = False) -> bool:
        """Whether the compiled loops (with int8 products: vnni) run this model here."""
        if self.device.type != "cpu":
            return False
        if kind == "scorer":
            from .compiled.score import JitScorer, VnniScorer
            return (VnniScorer if vnni else JitScorer).usable(self.weights)
        from .compiled.step import JitStep, VnniStep
        return (VnniStep if vnni else JitStep).usable(self.weights)

    def scorer(self, streams: int = 0, positions: int = 0) -> Scorer:
        """The plan's scorer (streams and positions no longer matter)."""
        return self._get(self.plan.scorer + "-scorer")

    def stepper(self, streams: int = 0, positions: int = 0) -> Stepper:
        """The plan's stepper (streams and positions no longer matter)."""
        return self._get(self.plan.stepper + "-stepper")

    @property
    def lockstep_blocks(self) -> int:
        """The most model blocks to decode together on this engine's device."""
        return self.plan.lockstep_blocks

    def describe(self) -> str:
        """The engine's plan in a line, e.g. 'numba scorer, vnni stepper, compiled mixer on cpu'."""
        return self.plan.describe()

    def backend(self, name: str, kind: str):
        """A backend by name ("torch", "numpy", "numba") and kind ("scorer", "stepper"),
        whatever the tuning says (tests and benchmarks)."""
        return self._get(f"{name}-{kind}")

"""Every speed choice of a Compressor or Decompressor, made in one place and shown by -v.

A `Plan` names what runs each stage of the codec's loops and the speed-only numbers they
read:

    scorer    the model's backend for compression passes   torch | numba | vnni
    stepper   the model's backend for decoding steps       torch | numpy | numba | vnni | graph
    mixer     the context mixer's implementation (and format 3's adaptive models):
              compiled (numba) | reference (tzip/cm/reference.py, slow, normative)
    and the pass size, the lockstep group size and when a group's mixers share a pool.

None of it changes an archive's bytes (every backend and implementation computes the same
integers; tests/test_backends.py, tests/test_cm.py). Two environment variables override
the automatic choice, read when the plan is built (once per Compressor, once per model of
a Decompressor):

    TZIP_BACKEND=auto|torch|numpy|numba|vnni|graph   the transformer's backend (both kinds;
        numpy and graph are steppers only, so passes then take torch)
    TZIP_CM=auto|compiled|reference                  the context mixer's implementation

They are separate because they answer separate questions: the reference transformer runs
fast on a GPU, while the reference mixer codes a few KB a second, so a GPU user asking
for the torch backend does not want the reference mixer with it. A backend that cannot
run the model or device (see each `usable`) is passed over: numba/vnni fall back to torch
for passes and to numpy for CPU steps.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ..device import torch_installed
from ..errors import TzipError

# Speed-only numbers (docs/performance.md has the evidence for each).
TUNING = {
    # the most model blocks decoded in lockstep (codec.decode_cm_group), by device type:
    # on a GPU a step of thousands of streams costs about what one of 16 does; on a CPU
    # a step's cost grows with its streams, and one block's 16 streams keep its cores busy
    "lockstep_blocks_cpu": 1,
    "lockstep_blocks_cuda": 256,
    # lockstep groups of this many blocks or more decode their mixers on a thread pool
    "lockstep_pool_from": 4,
    # positions x streams per compression pass, and passes of at most this fraction of the
    # context (a pass attends over context - 1 cached keys plus its own positions)
    "pass_rows_cpu": 2048,
    "pass_rows_cuda": 32768,
    "pass_context_fraction_cpu": 4,
    "pass_context_fraction_cuda": 1,
    # decoding steps on CUDA replayed from a CUDA graph (graph.py); off until measured on
    # a GPU (docs/gpu.md): TZIP_BACKEND=graph turns it on
    "cuda_graphs": 0,
    # the kinds whose compiled loops take the int8 dot-product units where the CPU has
    # them (vnni.py): the decoding step 1.9x, the compression pass 1.6x (docs/performance.md)
    "vnni": ("stepper", "scorer"),
    # PyTorch's CPU steps of fewer streams run on one thread (reference.step_threads)
    "torch_one_thread_below": 32,
    # the compiled step runs its streams in parts of at least this many (compiled/step.py)
    "step_parts_from": 4,
    # the compiled pass's attention tables, this many bytes at a time (compiled/score.py)
    "attention_bytes": 2 << 20,
}
BACKENDS = ("torch", "numpy", "numba", "vnni", "graph")
MIXERS = ("compiled", "reference")
COMPILED = ("numba", "vnni")  # the backends that run numba's loops


def wanted_backend() -> str:
    """TZIP_BACKEND, or "auto"."""
    want = os.environ.get("TZIP_BACKEND", "auto").strip().lower() or "auto"
    if want not in BACKENDS + ("auto",):
        raise TzipError(f"TZIP_BACKEND={want!r}: use auto, {', '.join(BACKENDS)}")
    return want


def wanted_mixer() -> str:
    """TZIP_CM resolved: "compiled" (auto, with numba importable) or "reference"."""
    from .. import cm
    want = os.environ.get("TZIP_CM", "auto").strip().lower() or "auto"
    if want not in MIXERS + ("auto",):
        raise TzipError(f"TZIP_CM={want!r}: use auto, {', '.join(MIXERS)}")
    if want == "auto":
        return cm.default_implementation()
    if want == "compiled" and not cm.numba_available():
        raise TzipError("TZIP_CM=compiled: the compiled context mixer needs numba, which is not importable here")
    return want


def choose(kind: str, want: str, device_type: str, can: Callable[[str, str], bool]) -> str:
    """The backend of `kind` ("scorer" or "stepper") for the wanted one (TZIP_BACKEND) on a
    device of this type; can(backend, kind): whether that backend runs the model there."""
    if want in COMPILED + ("auto",):
        vnni = want == "vnni" or (want == "auto" and kind in TUNING["vnni"])
        if vnni and can("vnni", kind):
            return "vnni"
        if (want != "auto" or device_type == "cpu") and can("numba", kind):
            return "numba"
    if kind == "stepper":
        if want == "graph" or (want == "auto" and device_type == "cuda" and TUNING["cuda_graphs"]):
            return "graph"
        if device_type == "cpu" and want != "torch":
            return "numpy"
    if device_type == "cpu" and want != "torch" and not torch_installed() and can("numba", kind):
        return "numba"  # PyTorch is an extra (tzip[torch]): passes take the compiled loops
    return "torch"


@dataclass(frozen=True)
class Plan:
    """What runs each stage, and the loops' speed-only numbers, for one device."""
    device: str  # "cpu", "cuda", "cuda:1"
    mixer: str  # the context mixer's implementation: MIXERS
    scorer: str | None = None  # the model's backends (None: no model, the mixer alone)
    stepper: str | None = None
    lockstep_blocks: int = 1
    lockstep_pool_from: int = TUNING["lockstep_pool_from"]
    pass_rows: int = TUNING["pass_rows_cpu"]
    pass_context_fraction: int = TUNING["pass_context_fraction_cpu"]

    @classmethod
    def build(cls, device: str = "cpu", can: Callable[[str, str], bool] | None = None,
              mixer: str | None = None) -> "Plan":
        """The plan for a model on `device` that backends run where can(backend, kind)
        says (None: no model), from TUNING and the environment; mixer: already chosen
        (a Decompressor's models share one)."""
        kind = device.split(":")[0]
        want = wanted_backend()
        scorer = stepper = None
        if can is not None:
            scorer, stepper = (choose(k, want, kind, can) for k in ("scorer", "stepper"))
        return cls(device, mixer or wanted_mixer(), scorer, stepper,
                   lockstep_blocks=TUNING.get(f"lockstep_blocks_{kind}", 1),
                   lockstep_pool_from=TUNING["lockstep_pool_from"],
                   pass_rows=TUNING.get(f"pass_rows_{kind}", TUNING["pass_rows_cpu"]),
                   pass_context_fraction=TUNING.get(f"pass_context_fraction_{kind}",
                                                    TUNING["pass_context_fraction_cpu"]))

    @property
    def overlap(self) -> bool:
        """Whether a pass's coding runs on a thread of its own while the next pass is
        scored (codec._passes): the compiled pass leaves gaps on the cores (its threads
        wait for each other, and for the GIL) that the compiled mixer's coding fills."""
        return self.scorer in COMPILED

    def describe(self) -> str:
        """The whole plan in a line, e.g. 'numba scorer, vnni stepper, compiled mixer on cpu'."""
        stages = [] if self.scorer is None else [f"{self.scorer} scorer", f"{self.stepper} stepper"]
        stages.append(f"{self.mixer} mixer")
        group = f", {self.lockstep_blocks} blocks in lockstep" if self.lockstep_blocks > 1 else ""
        return f"{', '.join(stages)} on {self.device}{group}"

"""A stepper that replays the reference step from a CUDA graph.

Decoding runs one model step per byte position; on a GPU each step of the reference
(tzip/engine/reference.py) is some 40 small kernels per layer, and their launches, not
their arithmetic, set the speed (about 8 ms per step of 128 streams on an H200). A CUDA
graph records those launches once and replays them with one call, so a step costs about
its arithmetic. The graph replays exactly the kernels the reference runs eagerly
(`Reference.step_on_device`, which keeps the position on the device so that nothing in the
step depends on a host value), so the tables are the reference's, bit for bit.

Shapes must be fixed for a graph: a state's streams are padded to the next power of two
(the padding streams step on with BOS and are never read), and one graph is captured per
state, on its first step. On a CPU the same step runs eagerly (tests compare it with the
reference there). Chosen with TZIP_BACKEND=graph, or on CUDA when TUNING["cuda_graphs"].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.config import BOS
from .reference import Cache, Reference, step_threads


@dataclass
class GraphState:
    streams: int  # the caller's streams (the first rows of the padded ones)
    cache: Cache
    tokens: torch.Tensor  # (padded,) int64 on the device: the step's input
    t: torch.Tensor  # (1,) int64 on the device: the next position
    graph: "torch.cuda.CUDAGraph | None" = None
    out: torch.Tensor | None = None  # the graph's output tables (padded, 256)


def padded(streams: int) -> int:
    """The stream count a state of `streams` streams is padded to: the next power of two."""
    return 1 << max(0, streams - 1).bit_length()


class GraphStepper:
    """Reference.step_on_device behind the Stepper interface, captured as a CUDA graph."""
    name = "graph"

    def __init__(self, engine: Reference):
        self.engine = engine

    def new_state(self, streams: int) -> GraphState:
        e, S = self.engine, padded(streams)
        return GraphState(streams, e.new_cache(S, ring=True),
                          torch.full((S,), BOS, dtype=torch.long, device=e.device),
                          torch.zeros(1, dtype=torch.long, device=e.device))

    def threads(self, streams: int):
        return step_threads(self.engine.device, streams)

    def __call__(self, tokens: np.ndarray, state: GraphState) -> np.ndarray:
        e = self.engine
        state.tokens[:state.streams].copy_(torch.from_numpy(tokens))
        if e.device.type != "cuda":
            out = e.step_on_device(state.tokens, state.cache, state.t)
        else:
            if state.graph is None:
                self._capture(state)
            state.graph.replay()
            out = state.out
        return out[:state.streams].cpu().numpy()

    def _capture(self, state: GraphState) -> None:
        """Record one step on state's tensors. Capturing runs nothing; the warm-up before
        it (which allocates the engine's scratch buffers, reused by every replay) steps a
        throwaway state of the same shapes, so state itself is untouched."""
        e = self.engine
        scratch = self.new_state(state.tokens.shape[0])
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                e.step_on_device(scratch.tokens, scratch.cache, scratch.t)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            state.out = e.step_on_device(state.tokens, state.cache, state.t)
        state.graph = graph

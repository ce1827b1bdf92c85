"""A model's shape and its input alphabet, without PyTorch.

The integer model file (intmodel.py), the engine and the codec need these and nothing of
the float network that training uses (tzip/training/net.py), so they live here, where
importing them costs no `import torch`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

BOS = 256  # the input token before a stream's first byte (inputs are 256 bytes plus BOS)


@dataclass
class ModelConfig:
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 1
    mlp_mult: int = 4
    context: int = 256  # W: a position sees itself and the W-1 bytes before it

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

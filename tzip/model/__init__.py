"""The model: the float network that is trained (net.py), the integer model file the
engine runs (intmodel.py), the conversion between them (convert.py), and where installed
models are found (registry.py)."""
from .intmodel import IntModel, ModelFileError
from .net import BOS, ByteTransformer, ModelConfig

__all__ = ["BOS", "ByteTransformer", "IntModel", "ModelConfig", "ModelFileError"]

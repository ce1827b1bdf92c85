"""The model as the engine reads it, without PyTorch: its shape (config.py), the integer
model file (intmodel.py) and where installed models are found (registry.py). The float
network that is trained and its conversion to an integer model are tzip/training/."""
from .config import BOS, ModelConfig
from .intmodel import IntModel, ModelFileError

__all__ = ["BOS", "IntModel", "ModelConfig", "ModelFileError"]

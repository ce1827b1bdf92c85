"""Training end to end on text every clone has: loss falls, the model converts and codes."""
from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="training needs PyTorch (pip install 'tzip[torch]')")

import tzip
from tzip.model.intmodel import IntModel
from tzip.training.convert import calibration_windows, convert
from tzip.training.train import load_float, train

import numpy as np


@pytest.mark.slow
def test_tiny_training_run(tmp_path, text):
    data = tmp_path / "data"
    data.mkdir()
    (data / "src.txt").write_bytes(text * 3)
    config = {"name": "t", "model": {"d_model": 32, "n_layer": 1, "n_head": 2, "context": 32},
              "train": {"batch_size": 16, "lr": 1e-2, "warmup": 5, "eval_every": 10**9,
                        "val_bytes_per_file": 8192}}
    logs = []
    out = train(config, data, tmp_path / "run", steps=60, device="cpu", log=logs.append)
    losses = [float(l.split()[4]) for l in logs if " train " in l]
    assert losses and losses[-1] < 6.0, logs  # an untrained model costs about 8 bits a byte
    model, meta = load_float(out)
    assert meta["steps"] == 60 and meta["val_bpb"] < 7.0
    im = convert(model, calibration_windows(np.frombuffer(text, np.uint8), 32, 8), "t")
    im.save(tmp_path / "t.npz")
    loaded = IntModel.load(tmp_path / "t.npz")
    assert loaded.digest == im.digest
    sample = text[:2000]
    assert tzip.decompress(tzip.compress(sample, loaded, streams=4), loaded) == sample


def test_resume_continues_counters_and_optimizer(tmp_path, text):
    """A run resumed from a saved one carries its step/byte totals and AdamW moments."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "src.txt").write_bytes(text * 2)
    config = {"name": "t", "model": {"d_model": 16, "n_layer": 1, "n_head": 2, "context": 16},
              "train": {"batch_size": 4, "warmup": 2, "eval_every": 10**9, "val_bytes_per_file": 4096}}
    first = train(config, data, tmp_path / "a", steps=5, device="cpu", log=lambda s: None,
                  optimizer_state=True)
    assert (first / "optim.npz").exists()
    logs = []
    second = train(config, data, tmp_path / "b", steps=3, device="cpu", log=logs.append, resume=first)
    assert any("optimizer moments restored" in l for l in logs)
    _, meta = load_float(second)
    assert meta["steps"] == 3 and meta["total"]["steps"] == 8
    assert meta["total"]["bytes_seen"] == 8 * 4 * 16


def test_quantisation_cost_compares_float_and_integer_on_the_same_bytes(text):
    """`python -m tzip.training.convert` reports both; the integer engine's bits stay
    close to the float model's (an untrained model: about 8 bits a byte for both)."""
    import torch

    from tzip.model.config import ModelConfig
    from tzip.training.convert import quantisation_cost
    from tzip.training.net import ByteTransformer
    torch.manual_seed(0)
    model = ByteTransformer(ModelConfig(d_model=16, n_layer=1, n_head=2, context=32))
    data = np.frombuffer(text, np.uint8)
    im = convert(model, calibration_windows(data, 32, 8), "q")
    fb, ib = quantisation_cost(model, im, data, streams=2, length=96, every=8)
    assert 7.0 < fb < 9.0 and abs(ib - fb) < 0.25, (fb, ib)

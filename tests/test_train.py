"""Training end to end on text every clone has: loss falls, the model converts and codes."""
from __future__ import annotations

import tzip
from tzip.quant import IntModel, calibration_windows, convert
from tzip.train import load_float, train

import numpy as np


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

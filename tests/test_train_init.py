"""A fine-tune can start from a shipped integer model: made float again it scores text as
the integer model does (tzip/training/dequant.py), and `--init` trains from it."""
from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="training needs PyTorch (pip install 'tzip[torch]')")

import numpy as np
import torch
import torch.nn.functional as F

from tzip.model.config import ModelConfig
from tzip.training.convert import calibration_windows, convert, quantisation_cost
from tzip.training.dequant import float_model
from tzip.training.net import ByteTransformer
from tzip.training.train import load_float, main, train

CFG = ModelConfig(d_model=32, n_layer=2, n_head=4, n_kv_head=2, context=32)


def _peaked_model() -> ByteTransformer:
    """A random model far from uniform, with norm gains that are not 1, so every scale
    that convert folds away matters."""
    torch.manual_seed(3)
    m = ByteTransformer(CFG)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name == "head.weight":
                p.mul_(20)
            else:
                p.mul_(5)
    return m


def _logp(model: ByteTransformer, windows: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.log_softmax(model(windows).double(), -1)


def test_float_model_of_an_integer_model_scores_like_it(text):
    data = np.frombuffer(text, np.uint8)
    orig = _peaked_model()
    im = convert(orig, calibration_windows(data, CFG.context, 16), "p")
    back = float_model(im)
    windows = calibration_windows(data[len(data) // 2:], CFG.context, 16)
    lp, lq = _logp(orig, windows), _logp(back, windows)
    entropy = -(lp.exp() * lp).sum(-1).mean().item() / np.log(2)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean().item() / np.log(2)
    assert entropy < 6.0, entropy  # far enough from uniform for a wrong scale to show
    assert kl < 0.02 * entropy, (kl, entropy)
    fb, ib = quantisation_cost(back, im, data, streams=2, length=96, every=8)
    assert abs(fb - ib) < 0.05 * ib, (fb, ib)
    for name, p in back.named_parameters():  # the chosen gauges keep weights ordinary
        assert torch.isfinite(p).all() and p.abs().max() < 1e4, name
    assert back.emb.weight.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-3)


def test_init_starts_a_run_from_an_integer_model(tmp_path, text):
    data = tmp_path / "d"
    data.mkdir()
    (data / "src.txt").write_bytes(text)
    im = convert(_peaked_model(), calibration_windows(np.frombuffer(text, np.uint8), CFG.context, 8), "p",
                 info={"training": {"total": {"steps": 100, "bytes_seen": 5000, "seconds": 1.0}}})
    im.save(tmp_path / "p.npz")
    config = {"name": "p2", "model": CFG.to_dict(),
              "train": {"batch_size": 4, "warmup": 2, "eval_every": 10**9, "val_bytes_per_file": 4096}}
    logs = []
    out = train(config, data, tmp_path / "run", steps=2, device="cpu", log=logs.append,
                init=tmp_path / "p.npz")
    _, meta = load_float(out)
    assert meta["init_from"]["id"] == im.digest.hex()[:16] and meta["init_from"]["name"] == "p"
    assert meta["total"]["steps"] == 102 and meta["total"]["bytes_seen"] == 5000 + 2 * 4 * 32
    assert any("starting from" in l for l in logs)
    assert set(meta["val_kinds_start"]) == set(meta["val_kinds"]) == {"src"}
    again = train(config, data, tmp_path / "run2", steps=1, device="cpu", log=lambda s: None, resume=out)
    _, meta2 = load_float(again)
    assert meta2["init_from"] == meta["init_from"] and meta2["total"]["steps"] == 103


def test_init_of_another_shape_or_with_resume_is_a_one_line_error(tmp_path, text, capsys):
    data = tmp_path / "d"
    data.mkdir()
    (data / "src.txt").write_bytes(text)
    convert(_peaked_model(), calibration_windows(np.frombuffer(text, np.uint8), CFG.context, 8),
            "p").save(tmp_path / "p.npz")
    config = tmp_path / "c.json"
    config.write_text('{"model": {"d_model": 16, "n_layer": 1, "n_head": 2, "context": 32}}')
    base = ["--config", str(config), "--data", str(data), "--out", str(tmp_path / "r"), "--steps", "1",
            "--device", "cpu"]
    assert main(base + ["--init", str(tmp_path / "p.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tzip train: ") and "the config asks for" in err and err.count("\n") == 1
    assert main(base + ["--init", str(tmp_path / "p.npz"), "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tzip train: ") and "not both" in err and err.count("\n") == 1
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    assert main(base + ["--init", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "not a readable tzip model" in err and err.count("\n") == 1

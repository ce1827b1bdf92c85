"""Where the model runs, decided without PyTorch where the answer is known: device names
(tzip/device.py) and the CPU loops' thread count (tzip/threads.py `count`)."""
from __future__ import annotations

import sys

import pytest

from tzip import device, threads
from tzip.errors import ModelError


def test_device_names():
    d = device.Device("cuda:1")
    assert (d.type, d.index, str(d)) == ("cuda", 1, "cuda:1") and d == "cuda:1"
    assert (device.Device("cpu").type, device.Device("cpu").index) == ("cpu", None)
    assert device.resolve("cpu") == "cpu" and device.resolve("cpu").type == "cpu"
    for bad in ("tpu", "cpu:0", "cuda:x", "", "CUDA"):
        with pytest.raises(ModelError, match="unknown device"):
            device.resolve(bad)


def test_a_torch_device_is_taken_by_name():
    torch = pytest.importorskip("torch")
    assert device.resolve(torch.device("cpu")) == "cpu"
    assert torch.device(device.Device("cpu")) == torch.device("cpu")  # and handed back


def test_no_gpu_is_known_without_torch(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not device.gpu_possible() and not device.cuda_available()
    assert device.resolve("auto") == "cpu" and "torch" not in sys.modules
    with pytest.raises(ModelError, match="no CUDA GPU|needs PyTorch"):
        device.resolve("cuda")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(device, "DRIVER_FILES", ())
    if sys.platform.startswith("linux"):
        assert not device.gpu_possible()


def test_thread_count_without_torch(monkeypatch):
    """Before PyTorch loads, the CPU loops take the policy's count, made once."""
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(threads, "_count", None)
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setenv("TZIP_THREADS", "3")
    assert threads.count() == 3
    monkeypatch.setenv("TZIP_THREADS", "5")
    assert threads.count() == 3  # made once: a decoding step asks every time
    monkeypatch.setattr(threads, "_count", None)
    monkeypatch.delenv("TZIP_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.count() == 2  # the user's, as PyTorch would read it
    monkeypatch.setattr(threads, "_count", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert 1 <= threads.count() <= threads.available_cores()
    monkeypatch.setattr(threads, "_chosen", 4)
    monkeypatch.setattr(threads, "_count", None)
    assert threads.count() == 4



def _no_torch(monkeypatch):
    """A process where PyTorch is not installed (it is the extra tzip[torch])."""
    import tzip.engine as engine
    from tzip.engine import plan
    monkeypatch.setattr(device, "torch_installed", lambda: False)
    monkeypatch.setattr(plan, "torch_installed", lambda: False)
    return engine


def test_without_torch_the_torch_paths_name_the_extra_in_one_line(monkeypatch, tiny):
    engine = _no_torch(monkeypatch)
    with pytest.raises(ModelError, match=r"^--device cuda needs PyTorch, which is not installed: "
                                         r"pip install 'tzip\[torch\]'$"):
        device.resolve("cuda")
    assert not device.cuda_available() and device.resolve("auto") == "cpu"
    monkeypatch.setenv("TZIP_BACKEND", "torch")
    with pytest.raises(ModelError, match=r"TZIP_BACKEND=torch\) needs PyTorch.*tzip\[torch\]"):
        engine.Engine(tiny).scorer(1, 10)


def test_without_torch_passes_take_the_compiled_loops(monkeypatch, tiny):
    """numpy has no compression pass: with PyTorch the pass takes torch, without it the
    compiled loops (the plan, tzip/engine/plan.py)."""
    engine = _no_torch(monkeypatch)
    if not engine.numba_available():
        pytest.skip("numba not installed")
    monkeypatch.setenv("TZIP_BACKEND", "numpy")
    p = engine.Engine(tiny).plan
    assert (p.scorer, p.stepper) == ("numba", "numpy")


"""The shipped models: both decode on a CPU, and their archives are pinned.

An archive must decode the same way forever: a change to the engine, the adaptive models
or the container that alters a single byte of these archives breaks every archive users
already have, and must come with a new format version instead."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import tzip

SAMPLE = Path(__file__).resolve().parent.parent / "bench" / "sample" / "gettysburg.txt"
PINNED = {  # sha256 of compress(SAMPLE, name, streams=4), archive format 3
    "tzip-small": "825c08ef79232684ce7b5183b3a21f5c08691039ff0ef331f6076b6824d7947b",
    "tzip-large": "3df72f4c3799d575414ab889a7a9ba7daff0c8f0b38e897214e54a216328f66f",
}


DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["tzip-small", pytest.param("tzip-large", marks=pytest.mark.slow)])
def test_shipped_model_archive_is_pinned_and_decodes(name, device):
    """The same hashes whichever device makes the archive; it decodes on the CPU."""
    data = SAMPLE.read_bytes()
    blob = tzip.compress(data, name, device=device, streams=4)
    info = tzip.info(blob)
    assert info.model_name == name and [b.method for b in info.blocks] == ["model"]
    assert len(blob) < len(data) // 3
    assert hashlib.sha256(blob).hexdigest() == PINNED[name]
    assert tzip.decompress(blob, device="cpu") == data  # model found by name and id

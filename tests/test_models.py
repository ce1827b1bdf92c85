"""The shipped models: archives made with them are pinned, and decode on a CPU.

An archive must decode the same way forever: a change to the engine, the adaptive models
or the container that alters a single byte of these archives breaks every archive users
already have, and must come with a new format version instead. Archives of earlier
formats are kept in tests/data and must keep decoding: format 3 as the tzip of 8150c8c
wrote it, format 4 as the tzip of 51f9654 did, format 5 as the tzip of ae02ea1 did,
format 7 (a window: levels -2..-5), format 8 (the context mixer's revision 3: 0.4's -8),
format 9 (its revision 4: 0.5's -8), format 10 (its revision 5: 0.6's -8), format 11 (its
revision 6: 0.7's -8) and format 12 (its revision 7: level -8) as the tzips that
introduced them did."""
from __future__ import annotations

import hashlib
from pathlib import Path

import importlib.util

import pytest

import tzip

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "bench" / "sample" / "gettysburg.txt"
PINNED = {  # sha256 of compress(SAMPLE, name, streams=4, format=F)
    ("tzip-small", 3): "825c08ef79232684ce7b5183b3a21f5c08691039ff0ef331f6076b6824d7947b",
    ("tzip-large", 3): "3df72f4c3799d575414ab889a7a9ba7daff0c8f0b38e897214e54a216328f66f",
    ("tzip-small", 4): "3d820ad64e68afa1f5ba482c67268b329ddff0763a9a6e32f0e29867419e466e",
    ("tzip-large", 4): "08b897ee81198be1ad730a07946d48ccd13e7832991422dfdb8faa9021490121",
    ("tzip-small", 5): "9d7f4e8b7528478fae188587ea7d3215af98f196a6e412fc28872de091184b24",
    ("tzip-large", 5): "3e5dbd5508deb6082bfd832897e968e5cc8bb3af139ee98832fa915db0157245",
}
# sha256 of compress(SAMPLE, "tzip-small", streams=4, window=64): format 7, level -2's window
PINNED_WINDOW = "767acac335b85df45d7f49ccc9a15d44614decba8278112521c7a080567d9ca0"
# sha256 of compress(SAMPLE, "tzip-small", streams=4, format=F): level -8's format, by F
# (8: tzip 0.4's -8, the context mixer's revision 3; 9: 0.5's, revision 4; 10: 0.6's,
# revision 5; 11: 0.7's, revision 6; 12: revision 7)
PINNED_CM = {8: ("model+cm3", "2348f77a57baaf821f1164cc0f465ccddda78f9f99c69668200c59a8170069ee"),
             9: ("model+cm4", "13f90a68e9a3d6b2d0e62c1a40272f12834d6d3062c75c3dd8b0c51b71e2ab61"),
             10: ("model+cm5", "1e1a302521b0285eb038f5c652e8fb873c7e4e2a94d012c59b9a4453ba911270"),
             11: ("model+cm6", "4ac2abb16448d72f90f2003e6a3e122a8e316d768a43aa8e4adaf0d18750782d"),
             12: ("model+cm7", "bc35037a27c5cb62e7533df7c973a26557cbe0386c347b4d9d918f89e423dafd")}
METHOD = {3: "model", 4: "model+cm", 5: "model+cm2"}
NAMES = ["tzip-small", pytest.param("tzip-large", marks=pytest.mark.slow)]
DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(importlib.util.find_spec("torch") is None or not __import__("torch").cuda.is_available(), reason="no CUDA GPU")])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", [3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_archive_is_pinned_and_decodes(name, fmt, device):
    """The same hashes whichever device makes the archive; it decodes on the CPU."""
    data = SAMPLE.read_bytes()
    blob = tzip.compress(data, name, device=device, streams=4, format=fmt)
    info = tzip.info(blob)
    assert info.model_name == name and info.version == fmt
    assert [b.method for b in info.blocks] == [METHOD[fmt]]
    assert len(blob) < len(data) // 3
    assert hashlib.sha256(blob).hexdigest() == PINNED[name, fmt]
    assert tzip.decompress(blob, device="cpu") == data  # model found by name and id


@pytest.mark.parametrize("fmt", [3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_archives_of_earlier_tzip_decode(name, fmt):
    blob = (HERE / "data" / f"gettysburg.{name}.format{fmt}.tz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == PINNED[name, fmt]
    assert tzip.decompress(blob, device="cpu") == SAMPLE.read_bytes()


@pytest.mark.parametrize("device", DEVICES)
def test_windowed_archive_is_pinned_and_decodes(device):
    """Format 7: tzip-small over a window of 64 (level -2), the same bytes on every
    device; the archive the tzip that introduced it wrote decodes to the text."""
    data = SAMPLE.read_bytes()
    blob = tzip.compress(data, "tzip-small", device=device, streams=4, window=64)
    info = tzip.info(blob)
    assert (info.version, info.window, [b.method for b in info.blocks]) == (7, 64, ["model+cm2"])
    assert hashlib.sha256(blob).hexdigest() == PINNED_WINDOW
    kept = (HERE / "data" / "gettysburg.tzip-small.window64.format7.tz").read_bytes()
    assert kept == blob
    assert tzip.decompress(kept, device="cpu") == data
    assert blob != tzip.compress(data, "tzip-small", device=device, streams=4, format=5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", sorted(PINNED_CM))
def test_level_8_archives_are_pinned_and_decode(device, version):
    """Formats 8 to 12: tzip-small and the context mixer's revision 3 to 7 (level -8 of
    tzip 0.4 to 0.8), the same bytes on every device; the archive the tzip that
    introduced the format wrote decodes to the text."""
    data = SAMPLE.read_bytes()
    blob = tzip.compress(data, "tzip-small", device=device, streams=4, format=version)
    info = tzip.info(blob)
    method, pinned = PINNED_CM[version]
    assert (info.version, info.window, [b.method for b in info.blocks]) == (version, None, [method])
    assert hashlib.sha256(blob).hexdigest() == pinned
    kept = (HERE / "data" / f"gettysburg.tzip-small.format{version}.tz").read_bytes()
    assert kept == blob
    assert tzip.decompress(kept, device="cpu") == data
    assert blob != tzip.compress(data, "tzip-small", device=device, streams=4, format=5)

"""The training data mix: windows follow the stated weights, every kind is held out and
measured, and a bad --data entry is one line, not a traceback."""
from __future__ import annotations

import lzma

import pytest

pytest.importorskip("torch", reason="training needs PyTorch (pip install 'tzip[torch]')")

import torch

from tzip.training.mix import MixError, Sampler, load_mix, parse_entry
from tzip.training.train import load_float, main, train


def _folder(root, files: dict[str, bytes]):
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(lzma.compress(data) if name.endswith(".xz") else data)
    return root


def _two_folders(tmp_path):
    """prose/ with one big file of 'p's; wide/ with a small file of 'j's and one of 'l's,
    so a window's bytes say which kind it came from."""
    prose = _folder(tmp_path / "prose", {"books.txt.xz": b"p" * 60_000})
    wide = _folder(tmp_path / "wide", {"json.txt": b"j" * 6_000, "logs.txt.xz": b"l" * 2_000})
    return prose, wide


def test_windows_follow_the_weights_not_the_sizes(tmp_path):
    prose, wide = _two_folders(tmp_path)
    kinds = load_mix([f"{prose}=0.6", f"{wide}=0.4"], val_bytes=1000, window=33)
    share = {k.name: k.weight for k in kinds}
    # wide's 0.4 is split by size between its files: json 5,000 and logs 1,000 training bytes
    assert share == pytest.approx({"books": 0.6, "json": 0.4 * 5 / 6, "logs": 0.4 / 6})
    s = Sampler(kinds, 33, torch.device("cpu"))
    gen = torch.Generator().manual_seed(7)
    n = 40_000
    x, y = s.batch(n, 0.0, gen)
    first = torch.cat([x[:, :1], y], 1)
    counts = {}
    for k, byte in (("books", ord("p")), ("json", ord("j")), ("logs", ord("l"))):
        counts[k] = int((first == byte).all(1).sum())  # windows never cross files
        sd = (share[k] * (1 - share[k]) / n) ** 0.5
        assert abs(counts[k] / n - share[k]) < 5 * sd, (k, counts[k] / n, share[k])
    assert sum(counts.values()) == n
    assert s.bytes_seen() == {k: c * 32 for k, c in counts.items()}


def test_without_weights_the_mix_follows_sizes(tmp_path):
    prose, wide = _two_folders(tmp_path)
    kinds = load_mix([prose, wide], val_bytes=1000, window=33)
    assert {k.name: k.weight for k in kinds} == pytest.approx(
        {"books": 59 / 65, "json": 5 / 65, "logs": 1 / 65})
    assert [len(k.val) for k in kinds] == [1000, 1000, 1000]


def test_starts_cover_a_kind_and_stay_inside_it(tmp_path):
    """Every start from 0 to len - window is reachable; none runs past the kind's end."""
    d = _folder(tmp_path / "d", {"a.txt": bytes(range(256)) * 4, "b.txt": b"b" * 3000})
    kinds = load_mix([f"{d / 'a.txt'}=1", f"{d / 'b.txt'}=1"], val_bytes=256, window=17)
    s = Sampler(kinds, 17, torch.device("cpu"))
    k, ix = s.draw(200_000, torch.Generator().manual_seed(1))
    a = ix[k == 0]
    assert a.min().item() == 0 and a.max().item() == len(kinds[0].train) - 17
    b = ix[k == 1] - len(kinds[0].train)
    assert b.min().item() == 0 and b.max().item() == len(kinds[1].train) - 17


@pytest.mark.parametrize("entries, message", [
    (["{p}=abc"], "the weight after '=' must be a number, not 'abc'"),
    (["{p}=0"], "the weight must be a positive finite number"),
    (["{p}=-1"], "the weight must be a positive finite number"),
    (["{p}=nan"], "the weight must be a positive finite number"),
    (["{p}=inf"], "the weight must be a positive finite number"),
    (["=2"], "no path before '='"),
    (["{p}=1", "{w}"], "give every entry a weight (PATH=WEIGHT) or none"),
    (["{w}", "{w}"], "is already in the mix"),
    (["{w}/json.txt", "{w}/json.txt"], "is already in the mix"),
    (["{p}=1", "{p}/books.txt.xz=1"], "every file of this folder is named on its own"),
    (["{p}/missing=1"], "no such folder or file"),
    (["{w}/json.txt", "{empty}"], "no *.txt or *.txt.xz training files"),
    (["{p}/books.txt.xz", "{short}"], "too few for training windows of 33 bytes"),
])
def test_bad_entries_are_one_line_errors(tmp_path, capsys, entries, message):
    prose, wide = _two_folders(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    short = _folder(tmp_path / "short", {"tiny.txt": b"x" * 40})
    specs = [e.format(p=prose, w=wide, empty=empty, short=short) for e in entries]
    with pytest.raises(MixError, match="^--data") as e:
        load_mix(specs, val_bytes=1000, window=33)
    assert message in str(e.value) and "\n" not in str(e.value)
    config = tmp_path / "c.json"
    config.write_text('{"model": {"d_model": 16, "n_layer": 1, "n_head": 2, "context": 32}}')
    assert main(["--config", str(config), "--out", str(tmp_path / "run"), "--steps", "1",
                 "--device", "cpu", "--data", *specs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tzip train: --data") and message in err and err.count("\n") == 1


def test_a_file_named_beside_its_folder_takes_its_own_weight(tmp_path):
    prose, wide = _two_folders(tmp_path)
    kinds = load_mix([f"{prose}=0.6", f"{wide}=0.3", f"{wide / 'logs.txt.xz'}=0.1"], val_bytes=1000, window=33)
    assert {k.name: k.weight for k in kinds} == pytest.approx({"books": 0.6, "json": 0.3, "logs": 0.1})


def test_a_path_holding_an_equals_sign_is_a_path(tmp_path):
    d = _folder(tmp_path / "a=b", {"x.txt": b"x" * 100})
    assert parse_entry(str(d)) == (d, None)
    assert parse_entry(f"{d}=2.5") == (d, 2.5)


def test_same_file_name_in_two_folders_gets_the_folder_in_front(tmp_path):
    a = _folder(tmp_path / "a", {"code.txt": b"a" * 500})
    b = _folder(tmp_path / "b", {"code.txt": b"b" * 500})
    assert [k.name for k in load_mix([a, b], 100, 33)] == ["a/code", "b/code"]


def test_a_run_reports_held_out_bpb_per_kind(tmp_path, text):
    """The end of a run prints each kind's held-out bpb and stores it, the mix, and the
    bytes seen per kind in the checkpoint's meta (which convert copies into the model)."""
    prose = _folder(tmp_path / "prose", {"books.txt": text})
    wide = _folder(tmp_path / "wide", {"logs.txt": b"sshd[42]: Accepted key for root\n" * 300})
    config = {"name": "t", "model": {"d_model": 16, "n_layer": 1, "n_head": 2, "context": 16},
              "train": {"batch_size": 8, "warmup": 2, "eval_every": 10**9, "val_bytes_per_file": 2048}}
    logs = []
    out = train(config, [f"{prose}=3", f"{wide}=1"], tmp_path / "run", steps=4, device="cpu",
                log=logs.append)
    _, meta = load_float(out)
    assert set(meta["val_kinds"]) == {"books", "logs"}
    assert all(0 < v < 10 for v in meta["val_kinds"].values())
    assert [(d["kind"], d["weight"]) for d in meta["data"]] == [("books", 0.75), ("logs", 0.25)]
    assert sum(meta["bytes_seen_kinds"].values()) == meta["bytes_seen"] == 4 * 8 * 16
    assert meta["total"]["bytes_seen_kinds"] == meta["bytes_seen_kinds"]
    w = meta["val_kinds"]
    assert meta["val_bpb_mix"] == pytest.approx(0.75 * w["books"] + 0.25 * w["logs"], abs=1e-3)
    for kind in ("books", "logs"):
        assert any(l.strip().startswith(f"val {kind} ") for l in logs), logs
    again = train(config, [f"{prose}=3", f"{wide}=1"], tmp_path / "run2", steps=2, device="cpu",
                  log=lambda s: None, resume=out)
    _, meta2 = load_float(again)
    assert sum(meta2["total"]["bytes_seen_kinds"].values()) == meta2["total"]["bytes_seen"] == 6 * 8 * 16

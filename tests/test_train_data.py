"""The training data's manifest: each kind's output file is identified (sha256 of the text
and of the .xz), and a model's manifest holds the mix, the prose files and every wide
file, one record a line."""
from __future__ import annotations

import hashlib
import json
import lzma

from bench import train_data


def test_kind_outputs_and_the_model_manifest(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    fresh = b"".join(b"id-%05d,value number %d,a longer text field for tzip\n" % (i, i * 7) for i in range(300))
    (src / "c_fresh.csv").write_bytes(fresh)
    wide = tmp_path / "wide"
    assert train_data.main(["--out", str(wide), "--kinds", "csv", "--add", f"csv={src}:*.csv",
                            "--crlf-mb", "0.001"]) == 0
    man = json.loads((wide / "MANIFEST.json").read_text())
    assert man["command"].startswith("python -m bench.train_data --out ")
    csv = man["kinds"]["csv"]
    packed = (wide / "csv.txt.xz").read_bytes()
    assert csv["xz_sha256"] == hashlib.sha256(packed).hexdigest() and csv["xz_bytes"] == len(packed)
    assert csv["sha256"] == hashlib.sha256(lzma.decompress(packed)).hexdigest()
    assert man["kinds"]["crlf"]["file"] == "crlf.txt.xz"

    prose = tmp_path / "prose"
    prose.mkdir()
    (prose / "books.txt.xz").write_bytes(lzma.compress(b"It was a dark night.\n" * 50))
    (prose / "MANIFEST.json").write_text("{}")
    out = tmp_path / "m.train-manifest.json"
    assert train_data.main(["--out", str(wide), "--model-manifest", str(out), "--model", "m-2",
                            "--prose", str(prose), "--mix", f"{prose}=0.6", f"{wide}=0.4"]) == 0
    text = out.read_text()
    m = json.loads(text)
    assert m["model"] == "m-2" and m["mix"] == [f"{prose}=0.6", f"{wide}=0.4"]
    assert m["prose"]["files"][0]["sha256"] == hashlib.sha256(b"It was a dark night.\n" * 50).hexdigest()
    assert m["prose"]["sources_manifest_sha256"] == hashlib.sha256(b"{}").hexdigest()
    assert m["wide"]["kinds"] == man["kinds"] and m["wide"]["dropped"] == man["dropped"]
    record = json.dumps(csv["files"][0])
    assert any(line.strip().rstrip(",") == record for line in text.splitlines())  # one file, one line

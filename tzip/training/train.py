"""Train a ByteTransformer on the training text (bf16 + torch.compile on CUDA, fp32 on CPU).

    python -m tzip.training.train --config tzip/configs/tzip-small.json --out runs/small [--seconds 400]

The run stops after `steps` optimizer steps, or after `seconds` of training when the
config (or the command line) gives a time budget; the learning-rate schedule follows
whichever is used. Weights are saved as a float npz (no pickle) that tzip.training.convert turns
into a shippable integer model; with `--optimizer-state` the AdamW moments are saved too.

`--resume DIR` continues from a saved run: its weights, its step and byte counters, and
its optimizer moments when DIR has them (otherwise they restart, after a short warmup).
A new learning-rate schedule then runs over this run's own budget, so a model can keep
training across several time-limited GPU sessions.

`--init MODEL.npz` starts from a shipped integer model made float again
(tzip/training/dequant.py): a fine-tune when the model's float checkpoint is gone.

`--data` names the training text and its mix: `DIR`, `FILE` or `PATH=WEIGHT` entries
(tzip/training/mix.py). At the end the held-out bits per byte of every kind (file) are
printed and stored in the checkpoint's meta (`val_kinds`), with the bytes seen per kind.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..model.config import ModelConfig
from ..model.intmodel import IntModel, ModelFileError
from .mix import MixError, Sampler, evaluate_kinds, load_mix, mixed_bpb
from .net import ByteTransformer


class TrainError(ValueError):
    """A run that cannot start as asked (one line for the user)."""


DEFAULT_TRAIN = {
    "batch_size": 64,
    "lr": 2e-3,
    "min_lr_frac": 0.05,
    "warmup": 200,
    "weight_decay": 0.1,
    "steps": 1000,
    "seconds": None,
    "bos_prob": 0.125,
    "seed": 1234,
    "eval_every": 250,
    "val_bytes_per_file": 262144,
    "val_batches": 32,  # the final held-out measurement over all text: batches of windows
    "val_windows_per_kind": 1024,  # and over each kind's held-out text: at most this many windows
}


def save_float(model: ByteTransformer, out: Path, meta: dict, shard_bytes: int = 12 << 20) -> None:
    """Float16 weights as npz shards float-NN.npz (no pickle, each small enough to move
    around), with config and meta as JSON inside every shard."""
    meta = dict(meta, config=model.cfg.to_dict())
    m = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    shards, cur, size = [], {}, 0
    for k, v in model.state_dict().items():
        a = v.detach().float().cpu().numpy().astype(np.float16)
        if cur and size + a.nbytes > shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = a
        size += a.nbytes
    shards.append(cur)
    for old in out.glob("float-*.npz"):
        old.unlink()
    for i, sd in enumerate(shards):
        tmp = out / f"float-{i:02d}.tmp.npz"
        np.savez(tmp, __meta__=m, **sd)
        os.replace(tmp, out / f"float-{i:02d}.npz")


def save_optimizer(opt: torch.optim.Optimizer, out: Path) -> None:
    """AdamW moments as float32 npz (no pickle), in parameter order."""
    arrays = {}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, st in enumerate(opt.state[p] for p in params):
        for k in ("exp_avg", "exp_avg_sq"):
            arrays[f"{i}.{k}"] = st[k].float().cpu().numpy()
        arrays[f"{i}.step"] = np.asarray(float(st["step"]))
    tmp = out / "optim.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, out / "optim.npz")


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """Inverse of save_optimizer, through load_state_dict (which puts each tensor where the
    optimizer wants it, e.g. the step count on the GPU for fused AdamW)."""
    sd = opt.state_dict()
    params = [i for g in sd["param_groups"] for i in g["params"]]
    with np.load(path, allow_pickle=False) as z:
        sd["state"] = {i: {"step": torch.tensor(float(z[f"{n}.step"])),
                           "exp_avg": torch.from_numpy(z[f"{n}.exp_avg"]),
                           "exp_avg_sq": torch.from_numpy(z[f"{n}.exp_avg_sq"])}
                       for n, i in enumerate(params)}
    opt.load_state_dict(sd)


def load_float(folder: Path) -> tuple[ByteTransformer, dict]:
    """Inverse of save_float: merge the shards in folder into a float32 model."""
    sd, meta = {}, None
    shards = sorted(Path(folder).glob("float-*.npz"))
    if not shards:
        raise FileNotFoundError(f"no float-*.npz weights in {folder}")
    for p in shards:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(z["__meta__"].tobytes())
            sd.update({k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files if k != "__meta__"})
    model = ByteTransformer(ModelConfig.from_dict(meta["config"]))
    model.load_state_dict(sd)
    return model, meta


@torch.no_grad()
def evaluate(model, data: torch.Tensor, T: int, batches: int, batch: int, amp) -> float:
    """Mean bits per byte over fixed, evenly spaced windows of the validation slice."""
    model.eval()
    n = batches * batch
    starts = torch.linspace(0, len(data) - T - 1, n, device=data.device).long()
    total = 0.0
    for i in range(batches):
        ix = starts[i * batch:(i + 1) * batch]
        win = data[ix[:, None] + torch.arange(T + 1, device=data.device)].long()
        with amp():
            logits = model(win[:, :-1])
        total += F.cross_entropy(logits.float().reshape(-1, 256), win[:, 1:].reshape(-1)).item()
    model.train()
    return total / batches / math.log(2)


def train(config: dict, data_dir: "str | Path | list[str | Path]", out: Path, seconds: float | None = None,
          steps: int | None = None, device: str = "auto", log=print, resume: Path | None = None,
          optimizer_state: bool = False, init: Path | None = None) -> Path:
    tc = dict(DEFAULT_TRAIN, **config.get("train", {}))
    if seconds is not None:
        tc["seconds"] = seconds
    if steps is not None:
        tc["steps"] = steps
    cfg = ModelConfig.from_dict(config["model"])
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    torch.manual_seed(tc["seed"])
    gen = torch.Generator(device=dev).manual_seed(tc["seed"])
    out.mkdir(parents=True, exist_ok=True)

    model, before = ByteTransformer(cfg), {"steps": 0, "bytes_seen": 0, "seconds": 0.0}
    before_kinds: dict[str, int] = {}
    init_from = {}
    if resume and init:
        raise TrainError("give --resume (a float run) or --init (an integer model), not both")
    if init:
        from .dequant import float_model
        im = IntModel.load(init)
        if im.cfg != cfg:
            raise TrainError(f"{init} holds a {im.cfg} model, the config asks for {cfg}")
        model = float_model(im)
        prev = im.info.get("training", {}).get("total", {})
        before = {k: prev.get(k, 0) for k in before}
        init_from = {"name": im.name, "id": im.digest.hex()[:16], "path": str(init), "total": prev}
        log(f"starting from {init} ({im.name}, id {init_from['id']}), made float; "
            f"{before['steps']} steps, {before['bytes_seen']:,} bytes before")
    if resume:
        model, prev = load_float(resume)
        if model.cfg != cfg:
            raise TrainError(f"{resume} holds a {model.cfg} model, the config asks for {cfg}")
        before = {k: prev.get("total", prev).get(k, 0) for k in before}
        before_kinds = prev.get("total", {}).get("bytes_seen_kinds", {})
        init_from = prev.get("init_from", {})  # the lineage goes on across sessions
        log(f"resuming from {resume}: {before['steps']} steps, {before['bytes_seen']:,} bytes so far")
    specs = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    kinds = load_mix(specs, tc["val_bytes_per_file"], cfg.context + 1)
    sampler = Sampler(kinds, cfg.context + 1, dev)
    va = np.concatenate([k.val for k in kinds])
    log(f"train bytes {len(sampler.data):,}  val bytes {len(va):,}  device {dev}")
    for k in kinds:
        log(f"  kind {k.name:24s} {100 * k.weight:6.2f}% of windows, {len(k.train):,} training bytes, "
            f"{len(k.val):,} held out")
    va_t = torch.from_numpy(va).to(dev)

    model = model.to(dev)
    log(f"params {model.num_params():,}  config {cfg.to_dict()}")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=tc["lr"], betas=(0.9, 0.95), fused=dev.type == "cuda")
    if resume and (resume / "optim.npz").exists():
        load_optimizer(opt, resume / "optim.npz")
        log("optimizer moments restored")
    fwd = model
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            fwd = torch.compile(model)
        except Exception as e:  # compile is an optimisation only
            log(f"torch.compile unavailable ({e}); running eager")

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else \
            torch.autocast("cpu", enabled=False)

    def checkpoint(step: int, seen: int, val: float | None, val_kinds: dict | None = None) -> None:
        secs = round(time.time() - t0, 1)
        by_kind = sampler.bytes_seen()
        total_kinds = {n: before_kinds.get(n, 0) + by_kind.get(n, 0) for n in {**before_kinds, **by_kind}}
        meta = {"steps": step, "bytes_seen": seen, "seconds": secs, "val_bpb": val and round(val, 4),
                "val_kinds": val_kinds or {}, "val_bpb_mix": mixed_bpb(kinds, val_kinds or {}),
                "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                "train": tc, "name": config.get("name", ""), "resumed_from": str(resume or ""),
                "init_from": init_from, "val_kinds_start": start_kinds,
                "data": [k.describe() for k in kinds], "bytes_seen_kinds": by_kind,
                "total": {"steps": before["steps"] + step, "bytes_seen": before["bytes_seen"] + seen,
                          "seconds": round(before["seconds"] + secs, 1), "bytes_seen_kinds": total_kinds}}
        save_float(model, out, meta)
        if optimizer_state:
            save_optimizer(opt, out)
        if val is not None:
            log(f"held-out bpb by kind ({'mix' if val_kinds else 'none measured'}):")
            for k in kinds:
                if k.name in val_kinds:
                    log(f"  val {k.name:24s} {val_kinds[k.name]:.4f} bpb  ({100 * k.weight:.2f}% of windows, "
                        f"{by_kind[k.name]:,} bytes seen)")
            log(f"done: {step} steps, {seen:,} bytes, {secs}s, val {val:.4f} bpb"
                f" (mix-weighted {meta['val_bpb_mix']}) -> {out}")

    T, B = cfg.context, tc["batch_size"]
    start_kinds = {}
    if init or resume:  # where the run starts from, kind by kind, to compare with its end
        start_kinds = evaluate_kinds(model, kinds, T, B, amp, tc["val_windows_per_kind"])
        log("held-out bpb by kind at the start: " + ", ".join(f"{k} {v:.4f}" for k, v in start_kinds.items()))
    budget_s, max_steps = tc["seconds"], tc["steps"]
    t0 = time.time()
    step, seen = 0, 0
    last_save = time.time()
    while True:
        elapsed = time.time() - t0
        progress = elapsed / budget_s if budget_s else step / max_steps
        if progress >= 1.0:
            break
        warm = min(1.0, (step + 1) / tc["warmup"])
        decay_f = tc["min_lr_frac"] + (1 - tc["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = tc["lr"] * warm * decay_f
        x, y = sampler.batch(B, tc["bos_prob"], gen)
        with amp():
            logits = fwd(x)
        loss = F.cross_entropy(logits.float().reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += B * T
        if step % 50 == 0:
            log(f"step {step}  {time.time() - t0:7.1f}s  train {loss.item() / math.log(2):.4f} bpb"
                f"  {seen / (time.time() - t0) / 1e6:.2f} MB/s")
        if step % tc["eval_every"] == 0:
            log(f"step {step}  val {evaluate(model, va_t, T, 8, B, amp):.4f} bpb")
        if time.time() - last_save > 60:
            checkpoint(step, seen, None)
            last_save = time.time()
    checkpoint(step, seen, evaluate(model, va_t, T, tc["val_batches"], B, amp),
               evaluate_kinds(model, kinds, T, B, amp, tc["val_windows_per_kind"]))
    return out


def train_dir() -> Path:
    """The training corpus: $TZIP_CORPORA/train, or ../shared/corpora/train beside the repo."""
    roots = [Path(os.environ["TZIP_CORPORA"])] if os.environ.get("TZIP_CORPORA") else []
    roots.append(Path(__file__).resolve().parents[3] / "shared" / "corpora")
    for r in roots:
        if (r / "train").is_dir():
            return r / "train"
    raise FileNotFoundError("no training corpus found; looked for train/ under "
                            + ", ".join(map(str, roots)) + " (set TZIP_CORPORA)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tzip train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--data", nargs="+", default=None, metavar="PATH[=WEIGHT]",
                    help="folders or *.txt[.xz] files of training text; with =WEIGHT on every "
                         "entry, each entry's share of the training windows (else by size)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (overrides the config)")
    ap.add_argument("--resume", type=Path, default=None, help="a run folder to continue from")
    ap.add_argument("--init", type=Path, default=None,
                    help="an integer model (.npz) of the config's shape to start from (a fine-tune)")
    ap.add_argument("--optimizer-state", action="store_true", help="also save AdamW moments")
    a = ap.parse_args(argv)
    config = json.loads(a.config.read_text())
    if a.lr is not None:
        config.setdefault("train", {})["lr"] = a.lr
    try:
        train(config, a.data or train_dir(), a.out, a.seconds, a.steps, a.device,
              log=lambda s: print(s, flush=True, file=sys.stderr), resume=a.resume,
              optimizer_state=a.optimizer_state, init=a.init)
    except (MixError, ModelFileError, TrainError, FileNotFoundError) as e:
        print(f"tzip train: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

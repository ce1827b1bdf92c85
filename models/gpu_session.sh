#!/usr/bin/env bash
# One GPU session (fits the 10-minute limit of one device call on an H100/H200): continue
# training both models from their last checkpoints, convert them to integer models, check
# that GPU archives are byte-identical to CPU-made ones, and measure per-file sizes and
# GPU speed. Inputs (git-ignored, carried to the device):
#   .data/train/*.txt.xz           training text (a copy of ../shared/corpora/train)
#   .data/prev/{small,large}/      float checkpoints of the previous session
#   .data/check/                   CPU-made reference archives (bench/device_check.py)
#   .data/bench.tar.xz             the bench text files, for the per-file sizes
# Everything that comes back is written under $OUT (at most 8 files).
set -u
SECS=${SECS:-240}
OUT=${OUT:-runs/session}
LOG=$OUT/logs
mkdir -p "$LOG" runs
nvidia-smi -L > "$LOG/gpu.txt" 2>&1
python -m tzip.train --config models/tzip-small.json --data .data/train --out runs/small \
    --seconds "$SECS" --resume .data/prev/small --lr 2e-3 > "$LOG/tzip-small.train.log" 2>&1 &
python -m tzip.train --config models/tzip-large.json --data .data/train --out runs/large \
    --seconds "$SECS" --resume .data/prev/large --lr 1e-3 > "$LOG/tzip-large.train.log" 2>&1 &
timeout 120 python bench/device_check.py --refs .data/check --out "$LOG/check" > "$LOG/check.log" 2>&1
wait
cp runs/small/float-00.npz "$OUT/small-float-00.npz"
for f in runs/large/float-*.npz; do cp "$f" "$OUT/large-$(basename "$f")"; done
for m in small large; do
    python -m tzip.quant "runs/$m" "models/tzip-$m.npz" --name "tzip-$m" --data .data/train \
        >> "$LOG/convert.log" 2>&1 && cp "models/tzip-$m.npz" "$OUT/"
done
mkdir -p /tmp/bench && tar -xJf .data/bench.tar.xz -C /tmp/bench
head -c 1000000 /tmp/bench/enwiki-2016-sample.xml > /tmp/bench/enwik-1M
head -c 262144 /tmp/bench/book2 > /tmp/bench/speed.txt
timeout 80 python bench/device_check.py --out "$LOG/eval-large" \
    --eval "tzip-large=/tmp/bench/alice29.txt,/tmp/bench/book1,/tmp/bench/enwik-1M,/tmp/bench/lcet10.txt" \
    > "$LOG/eval-large.log" 2>&1
small_files=$(ls /tmp/bench/* | grep -v -e speed.txt -e enwik-1M | paste -sd,)
timeout 60 python bench/device_check.py --out "$LOG/eval-small" --eval "tzip-small=$small_files" \
    > "$LOG/eval-small.log" 2>&1
timeout 50 python bench/device_check.py --out "$LOG/speed" --speed /tmp/bench/speed.txt \
    --models tzip-small,tzip-large > "$LOG/speed.log" 2>&1
tar -czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$LOG"

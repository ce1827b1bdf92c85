#!/usr/bin/env bash
# One GPU session (fits the 10-minute limit of one device call on an H100/H200): continue
# training the models named in MODELS from their last checkpoints, convert them to integer
# models, check that GPU archives are byte-identical to CPU-made ones, and measure per-file
# sizes on the GPU. Inputs (git-ignored, carried to the device):
#   .data/train/*.txt.xz           training text (a copy of ../shared/corpora/train)
#   .data/prev/<model>/            float checkpoints of the previous session
#   .data/check/                   CPU-made reference archives (bench/device_check.py)
#   .data/bench.tar.xz             the bench text files, for the per-file sizes
# Results are written straight to $OUT as they are made (at most 8 files), so a run cut
# short still returns the weights.
set -u
SECS=${SECS:-330}
MODELS=${MODELS:-large}
# Groups of bench files, separated by ';', evaluated by parallel processes on the one GPU.
EVAL=${EVAL:-enwiki-2016-sample.xml;bible.txt;world192.txt,alice29.txt;book1,book2,plrabn12.txt,lcet10.txt,news}
OUT=${OUT:-runs/session}
mkdir -p "$OUT" runs /tmp/bench
declare -A LR=([small]=2e-3 [large]=1e-3)
nvidia-smi -L > "$OUT/train.log" 2>&1
for m in $MODELS; do
    python -m tzip.train --config "models/tzip-$m.json" --data .data/train --out "runs/$m" \
        --seconds "$SECS" --resume ".data/prev/$m" --lr "${LR[$m]}" > "runs/$m.train.log" 2>&1 &
done
timeout 100 python bench/device_check.py --refs .data/check --out /tmp/check > /tmp/check.log 2>&1
cp /tmp/check/device_check.json "$OUT/check.json"
tar -xJf .data/bench.tar.xz -C /tmp/bench
wait
for m in $MODELS; do
    cat "runs/$m.train.log" >> "$OUT/train.log"
    for f in runs/$m/float-*.npz; do cp "$f" "$OUT/$m-$(basename "$f")"; done
    python -m tzip.quant "runs/$m" "models/tzip-$m.npz" --name "tzip-$m" --data .data/train \
        >> "$OUT/convert.log" 2>&1 && cp "models/tzip-$m.npz" "$OUT/"
done
# A GPU-made archive of a small slice, to be rebuilt and decoded on a CPU afterwards.
head -c 8000 /tmp/bench/paper1 > /tmp/slice
for m in $MODELS; do
    timeout 60 python -c "import sys, tzip; d = open(sys.argv[1], 'rb').read(); b = tzip.compress(d, sys.argv[2], device='cuda', streams=8); open(sys.argv[3], 'wb').write(b); print(sys.argv[2], 'slice round trip on the GPU:', tzip.decompress(b, device='cuda') == d)" \
        /tmp/slice "tzip-$m" "$OUT/slice.$m.tz" >> "$OUT/convert.log" 2>&1
done
for m in $MODELS; do
    IFS=';' read -ra groups <<< "$EVAL"
    for i in "${!groups[@]}"; do
        OMP_NUM_THREADS=3 timeout 240 python bench/device_check.py --out "/tmp/eval-$m-$i" \
            --eval "tzip-$m=$(echo "${groups[$i]}" | tr ',' '\n' | sed 's|^|/tmp/bench/|' | paste -sd,)" \
            >> "/tmp/eval-$m-$i.log" 2>&1 &
    done
    wait
    cat /tmp/eval-"$m"-*.log >> "$OUT/convert.log"
    python -c "import json, sys; print(json.dumps([r for f in sys.argv[1:] for r in json.load(open(f))['eval']], indent=1))" \
        /tmp/eval-"$m"-*/device_check.json > "$OUT/eval-$m.json"
done

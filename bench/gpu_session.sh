#!/usr/bin/env bash
# One GPU session (fits the 10-minute limit of one device call on an H100/H200): continue
# training the models named in MODELS from their last checkpoints, convert them to integer
# models, check that GPU archives are byte-identical to CPU-made ones, and measure per-file
# sizes on the GPU. Inputs (git-ignored, carried to the device):
#   .data/train/*.txt.xz           training text (a copy of ../shared/corpora/train)
#   .data/prev/<model>/            float checkpoints of the previous session (if any)
#   .data/check/                   CPU-made reference archives (bench/device_check.py)
#   .data/bench.tar.xz             the bench text files, for the per-file sizes
# Results are written straight to $OUT as they are made (at most 8 files), so a run cut
# short still returns the weights.
set -u
SECS=${SECS:-330}
MODELS=${MODELS:-large}
DEADLINE=${DEADLINE:-580}  # seconds after the start by which everything must be done
# Groups of bench files, separated by ';', evaluated by parallel processes on the one GPU.
EVAL=${EVAL-enwiki-2016-sample.xml;bible.txt;world192.txt,alice29.txt;book1,book2,plrabn12.txt,lcet10.txt,news}
OUT=${OUT:-runs/session}
mkdir -p "$OUT" runs /tmp/bench
WIDE=$([ -d .data/train-wide ] && echo .data/train-wide)  # bench/train_data.py output, if carried
declare -A LR=([small]=2e-3 [large]=1e-3)
left() { local s=$((DEADLINE - SECONDS)); echo $((s > 10 ? s : 10)); }  # for timeout
log() { sed -u "s/^/[$1] /"; }  # logs go live to $OUT, prefixed, so a cut run keeps them
nvidia-smi -L > "$OUT/train.log" 2>&1
for m in $MODELS; do  # resume where a previous session left off, else start fresh
    more=(); [ -d ".data/prev/$m" ] && more=(--resume ".data/prev/$m" --lr "${LR[$m]:-1e-3}")
    python -m tzip.train --config "tzip/configs/tzip-$m.json" --data .data/train $WIDE --out "runs/$m" \
        --seconds "$SECS" "${more[@]}" 2>&1 | log "$m" >> "$OUT/train.log" &
done
timeout 100 python bench/device_check.py --refs .data/check --out /tmp/check 2>&1 | log check >> "$OUT/convert.log"
cp /tmp/check/device_check.json "$OUT/check.json"
tar -xJf .data/bench.tar.xz -C /tmp/bench
wait
for m in $MODELS; do
    for f in runs/$m/float-*.npz; do cp "$f" "$OUT/$m-$(basename "$f")"; done
    timeout "$(left)" python -m tzip.model.convert "runs/$m" "models/tzip-$m.npz" --name "tzip-$m" --data .data/train \
        2>&1 | log "$m quant" >> "$OUT/convert.log" && cp "models/tzip-$m.npz" "$OUT/"
done
# A GPU-made archive of a small slice, to be rebuilt and decoded on a CPU afterwards
# (commit it with the session's logs: it is the evidence for the cross-device claim).
head -c 8000 /tmp/bench/paper1 > /tmp/slice
for m in $MODELS; do
    timeout 60 python -c "import sys, tzip; d = open(sys.argv[1], 'rb').read(); b = tzip.compress(d, sys.argv[2], device='cuda', streams=8); open(sys.argv[3], 'wb').write(b); print(sys.argv[2], 'slice round trip on the GPU:', tzip.decompress(b, device='cuda') == d)" \
        /tmp/slice "tzip-$m" "$OUT/slice.$m.tz" 2>&1 | log "$m slice" >> "$OUT/convert.log"
done
for m in $MODELS; do
    IFS=';' read -ra groups <<< "$EVAL"
    for i in "${!groups[@]}"; do
        OMP_NUM_THREADS=3 timeout "$(left)" python bench/device_check.py --out "/tmp/eval-$m-$i" \
            --eval "tzip-$m=$(echo "${groups[$i]}" | tr ',' '\n' | sed 's|^|/tmp/bench/|' | paste -sd,)" \
            2>&1 | log "$m eval $i" >> "$OUT/convert.log" &
    done
    wait
    # device_check.py rewrites its JSON after every file, so a group cut by the timeout
    # still gives the files it finished; a group with no JSON is named in the log
    python - "$OUT/eval-$m.json" /tmp/eval-"$m"-*/device_check.json <<'PY' 2>&1 | log "$m merge" >> "$OUT/convert.log"
import json, sys
merged = {"device": None, "torch": None, "eval": []}
for f in sys.argv[2:]:
    try:
        part = json.load(open(f))
    except (OSError, ValueError) as e:
        print(f"skipped {f}: {e}")
        continue
    merged["device"], merged["torch"] = part["device"], part["torch"]
    merged["eval"] += part["eval"]
json.dump(merged, open(sys.argv[1], "w"), indent=1)
print(f"{len(merged['eval'])} file(s) evaluated")
PY
done

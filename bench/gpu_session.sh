#!/usr/bin/env bash
# One GPU training session, sized for one 10-minute device call on an H100/H200: train the
# models named in MODELS on the prose + wide-data mix, convert them to integer models,
# make a GPU archive of a slice, and measure per-file sizes of bench and structured files.
#
#   here:   bash bench/gpu_session.sh prepare      # .data/train, .data/bench.tar.xz, .whl/
#           (.data/train-wide: python -m bench.train_data, see docs/training.md)
#   device: run(command="bash bench/gpu_session.sh",
#               carry=[".data/train", ".data/train-wide", ".data/bench.tar.xz", ".data/prev", ".whl"],
#               timeout_s=600)
#
# Inputs (git-ignored, carried to the device; 64 MiB in all):
#   .data/train/*.txt.xz       the prose it was trained on (a copy of ../shared/corpora/train)
#   .data/train-wide/          code, data, markup, logs, other languages (bench/train_data.py)
#   .data/prev/<model>/        float checkpoints of an earlier session of the same model, if any
#   .data/bench.tar.xz         the bench text files, for the per-file sizes
#   .data/check/refs.json      optional: CPU-made archives to compare (bench/device_check.py)
#   .whl/constriction-*.whl    installed if the machine lacks constriction
# A model starts from .data/prev/<model> when carried (--resume), else from the shipped
# integer model it is the next version of (MODEL-N from models/tzip-MODEL.npz, made float
# again: --init), else from scratch. A model whose models/tzip-<model>.npz already exists is
# refused: archives name that file, so a retrained model needs a new name and config.
# Results go straight to $OUT as they are made, so a run cut short still returns them:
#   train.log, convert.log        every step's output, prefixed by model
#   <model>-float-NN.npz          float checkpoint (the next session's .data/prev/<model>)
#   <model>.meta.json             its meta: bytes seen and held-out bpb per kind, start and end
#   tzip-<model>.npz              the integer model (commit as models/tzip-<model>.npz)
#   eval-<model>.json             per-file sizes; slice.<model>.tz: a GPU-made archive
#   data.sha256                   the carried training files, to match the committed manifest
set -u
OUT=${OUT:-runs/session}
SECS=${SECS:-330}
MODELS=${MODELS:-small-2}
DEADLINE=${DEADLINE:-580}  # seconds after the start by which everything must be done
MIX=${MIX:-.data/train=0.6 .data/train-wide=0.4}  # --data entries: prose and wide text
DEVICE=${DEVICE:-cuda}  # where the slice archive is made (cpu for a dry run on a CPU)
CONFIGS=${CONFIGS:-tzip/configs}  # tzip-<model>.json (a dry run may point at smaller batches)
# Groups of files, separated by ';', evaluated by parallel processes on the one GPU; a
# name without '/' is a bench file from .data/bench.tar.xz.
S=corpora/structured
EVAL=${EVAL-$S/gdb-check.log,$S/mime-db.json,$S/airports.csv;$S/lodash.js,$S/xkb-base.xml,$S/fail2ban-server-logs.log;$S/regex-syntax-parse.rs,$S/lz4.c,$S/typing_extensions.py,$S/nodejs-fs.md,$S/bashref.html;alice29.txt,paper1,progc,news;book1,bib}
declare -A LR=([small-2]=1e-3 [large-2]=5e-4)  # peak rate when resuming
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TZIP_MODELS=$PWD/runs/models

if [ "${1:-}" = prepare ]; then  # on the CPU machine, before the device call
    set -e
    shared=${TZIP_CORPORA:-../shared/corpora}  # as tzip train looks for it
    mkdir -p .data/train .whl
    cp -u "$shared"/train/*.txt.xz .data/train/
    find "$shared/bench" -type f ! -name MANIFEST.json -printf '%P\n' |
        tar -cJf .data/bench.tar.xz -C "$shared/bench" --transform 's|.*/||' -T -
    ls .whl/constriction-*.whl >/dev/null 2>&1 || python -m pip download 'constriction==0.5.*' --python-version 3.12 \
        --only-binary :all: --platform manylinux2014_x86_64 --no-deps -d .whl
    [ -f .data/train-wide/MANIFEST.json ] || echo "missing .data/train-wide: python -m bench.train_data --out .data/train-wide (docs/training.md)"
    du -ch .data/train .data/train-wide .data/bench.tar.xz .data/prev .whl 2>/dev/null | tail -1
    exit 0
fi

mkdir -p "$OUT" runs/models /tmp/bench
left() { local s=$((DEADLINE - SECONDS)); echo $((s > 10 ? s : 10)); }  # for timeout
log() { sed -u "s/^/[$1] /"; }  # logs go live to $OUT, prefixed, so a cut run keeps them
python -c "import constriction" 2>/dev/null || python -m pip install -q --no-deps .whl/constriction-*.whl
nvidia-smi -L > "$OUT/train.log" 2>&1
(cd .data && sha256sum train/*.txt.xz train-wide/*.txt.xz train-wide/MANIFEST.json) > "$OUT/data.sha256" 2>&1
trained=()
for m in $MODELS; do
    config=$CONFIGS/tzip-$m.json
    if [ -e "models/tzip-$m.npz" ]; then
        echo "models/tzip-$m.npz is shipped: archives name it, so retrain under a new name" | log "$m" >> "$OUT/train.log"
        continue
    fi
    if [ ! -f "$config" ]; then echo "no $config" | log "$m" >> "$OUT/train.log"; continue; fi
    rm -f "runs/models/tzip-$m.npz"  # only this session's conversion may be returned
    start=(); base=models/tzip-${m%-[0-9]*}.npz
    if ls ".data/prev/$m"/float-*.npz >/dev/null 2>&1; then start=(--resume ".data/prev/$m" --lr "${LR[$m]:-1e-3}")
    elif [ "$base" != "models/tzip-$m.npz" ] && [ -f "$base" ]; then start=(--init "$base")
    fi
    limit=$((SECS + 150)); [ "$limit" -lt "$(left)" ] || limit=$(left)  # leave time to convert a hung run's last save
    # shellcheck disable=SC2086  # MIX is a list of --data entries
    timeout "$limit" python -m tzip.training.train --config "$config" --data $MIX --out "runs/$m" \
        --seconds "$SECS" "${start[@]}" 2>&1 | log "$m" >> "$OUT/train.log" &
    trained+=("$m")
done
if [ -f .data/check/refs.json ]; then
    timeout 100 python bench/device_check.py --refs .data/check --out /tmp/check 2>&1 | log check >> "$OUT/convert.log"
    cp /tmp/check/device_check.json "$OUT/check.json"
fi
[ -f .data/bench.tar.xz ] && tar -xJf .data/bench.tar.xz -C /tmp/bench
wait
for m in "${trained[@]}"; do
    for f in runs/$m/float-*.npz; do cp "$f" "$OUT/$m-$(basename "$f")"; done
    python -c "import json, sys, numpy as np; z = np.load(sys.argv[1]); print(json.dumps(json.loads(z['__meta__'].tobytes()), indent=1))" \
        "runs/$m/float-00.npz" > "$OUT/$m.meta.json" 2>> "$OUT/convert.log"
    timeout "$(left)" python -m tzip.training.convert "runs/$m" "runs/models/tzip-$m.npz" --name "tzip-$m" \
        2>&1 | log "$m quant" >> "$OUT/convert.log"
    [ -f "runs/models/tzip-$m.npz" ] && cp "runs/models/tzip-$m.npz" "$OUT/"
done
# A GPU-made archive of a small slice, to be rebuilt and decoded on a CPU afterwards
# (commit it with the session's logs: it is the evidence for the cross-device claim).
head -c 8000 corpora/structured/mime-db.json > /tmp/slice
for m in "${trained[@]}"; do
    timeout 60 python -c "import sys, tzip; d = open(sys.argv[1], 'rb').read(); b = tzip.compress(d, sys.argv[2], device=sys.argv[4], streams=8); open(sys.argv[3], 'wb').write(b); print(sys.argv[2], 'slice round trip on', sys.argv[4], tzip.decompress(b, device=sys.argv[4]) == d)" \
        /tmp/slice "tzip-$m" "$OUT/slice.$m.tz" "$DEVICE" 2>&1 | log "$m slice" >> "$OUT/convert.log"
done
for m in "${trained[@]}"; do
    [ -f "runs/models/tzip-$m.npz" ] || continue
    rm -rf /tmp/eval-"$m"-*  # a group that writes nothing must not find an earlier run's JSON
    IFS=';' read -ra groups <<< "$EVAL"
    for i in "${!groups[@]}"; do
        files=$(echo "${groups[$i]}" | tr ',' '\n' | sed '/\//!s|^|/tmp/bench/|' | paste -sd,)
        OMP_NUM_THREADS=2 timeout "$(left)" python bench/device_check.py --out "/tmp/eval-$m-$i" \
            --eval "tzip-$m=$files" 2>&1 | log "$m eval $i" >> "$OUT/convert.log" &
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
echo "session done in ${SECONDS}s" | log end >> "$OUT/convert.log"

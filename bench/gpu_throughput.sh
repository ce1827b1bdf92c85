#!/usr/bin/env bash
# The GPU throughput session (issue: GPU throughput), one device call of at most 8 minutes:
#
#   here:   mkdir -p .data/corpora && cp -r ../shared/corpora/train .data/corpora/
#           pip download 'constriction==0.5.*' --python-version 3.12 --only-binary :all: \
#               --platform manylinux2014_x86_64 --no-deps -d .whl
#   device: run(command="bash bench/gpu_throughput.sh", carry=[".data/corpora", ".whl"], timeout_s=540)
#
# .data/ and .whl/ are git-ignored. Installs the carried constriction wheel if the machine
# lacks it, runs `pytest -m gpu` (pinned archives and the steppers on CUDA against the
# CPU), then bench/gpu_throughput.py on >= 100 MB of the training text with both decoding
# steppers. Everything lands in $OUT (throughput.json, results.md, logs); commit it as
# bench/published/gpu-DATE/.
set -u
OUT=${OUT:-runs/gpu-throughput}
BUDGET=${BUDGET:-360}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
python -c "import constriction" 2>/dev/null || python -m pip install -q --no-deps .whl/constriction-*.whl
nvidia-smi -L > "$OUT/device.txt" 2>&1
timeout 90 python -m pytest -q -m gpu -p no:cacheprovider tests/test_models.py tests/test_backends.py \
    > "$OUT/pytest-gpu.log" 2>&1
echo "pytest -m gpu: exit $?" >> "$OUT/pytest-gpu.log"
timeout $((BUDGET + 60)) python bench/gpu_throughput.py --data .data/corpora --mb "${MB:-100}" \
    --budget "$BUDGET" --out "$OUT" 2>&1 | tee "$OUT/throughput.log"

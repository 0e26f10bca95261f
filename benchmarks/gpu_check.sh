#!/usr/bin/env bash
# The one prepared GPU check (benchmarks/README.md, "GPU check"): the training step and
# end-to-end `hspnet tag` speed (CPU vs GPU JPEG decoding vs the forward ceiling) of RN50 at 224 px.
#
# On the device machine, from the repository root, with the wheels of benchmarks/README.md in .whl/:
#     bash benchmarks/gpu_check.sh            # results in $OUT (at most 8 flat files)
# Here, on a CPU, to prove the plumbing at tiny sizes (tiny model, 64 images, a few steps):
#     GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh     # PYTHON defaults to .venv/bin/python, OUT to /tmp/gpu_check_out
#
# Each step runs under `timeout`, its cap cut to what is left of GPU_CHECK_BUDGET seconds (default
# 480), so the whole stays inside one 540 s run call and a hung step (e.g. DataLoader workers)
# cannot take the others' results with it. Steps run most important first; a failed step does not
# stop the next. summary.txt lists each step's exit status (124 = timed out).
set -uo pipefail

DRY=${GPU_CHECK_DRY:-0}
if [ "$DRY" = 1 ]; then
    PY=${PYTHON:-.venv/bin/python}
    SITE=${SITE:-/tmp/gpu_check_site}
else
    PY=${PYTHON:-python3}
    SITE=/tmp/site
fi
OUT=${OUT:-/tmp/gpu_check_out}  # the device tool sets OUT; elsewhere results go here
mkdir -p "$OUT"

# Missing packages travel as wheels in .whl/ (the device has no network); the repository root on
# PYTHONPATH stands in for installing hspnet_cli itself.
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    && export PYTHONPATH="$SITE:$PWD" || { echo "wheel install failed" | tee "$OUT/summary.txt"; exit 1; }
export PYTHONUNBUFFERED=1
# No network there: fail at once instead of retrying downloads, should anything ask the Hub.
export HF_HUB_OFFLINE=1

if [ "$DRY" = 1 ]; then
    DEVICE=cpu MODEL=hspnet-tiny-rn SIZE=64 TRAIN_BS=8 STEPS=2 WARMUP=1
    TAG_IMAGES=64 TAG_BS=16 WORKERS=2 FWD_ITERS=3 E2E_IMAGES=64 E2E_STEPS=1
else
    DEVICE=cuda MODEL=RN50 SIZE=224 TRAIN_BS=128 STEPS=200 WARMUP=20
    TAG_IMAGES=4000 TAG_BS=256 WORKERS=16 FWD_ITERS=50 E2E_IMAGES=4096 E2E_STEPS=20
fi

BUDGET=${GPU_CHECK_BUDGET:-480}
START=$SECONDS
: >"$OUT/summary.txt"

# step NAME CAP_SECONDS MIN_SECONDS CMD...: run CMD with its output in $OUT/NAME.log, under a
# timeout of CAP seconds or what is left of the budget; skipped when less than MIN is left.
step() {
    local name=$1 cap=$2 min=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt "$min" ]; then
        echo "$name: skipped (${left}s of the budget left)" | tee -a "$OUT/summary.txt"
        return
    fi
    echo "=== $name (timeout ${limit}s): $*"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"
}

{
    date -u
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
    nproc
    df -h /tmp /dev/shm 2>/dev/null
    "$PY" - <<'EOF'
import platform
import sys

import torch
import torchvision

print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "cudnn", torch.backends.cudnn.version())
print("torchvision", torchvision.__version__)
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
import hspnet_cli
import open_clip

print("hspnet_cli", hspnet_cli.__version__, hspnet_cli.__file__)
print("open_clip", open_clip.__version__, open_clip.__file__)
EOF
} 2>&1 | tee "$OUT/env.txt"

# 1. Training step alone (pre-made tensors): images/s against the published 1,285 and 8.4 GiB.
step train_step 180 60 "$PY" benchmarks/train_throughput.py --device "$DEVICE" --clip-model "$MODEL" \
    --image-size "$SIZE" --batch-size "$TRAIN_BS" --steps "$STEPS" --warmup "$WARMUP"

# 2. hspnet tag: CPU decoding, GPU decoding, decoding alone, forward ceiling (goal: > 3,000 images/s).
step gpu_tag 240 90 "$PY" benchmarks/gpu_tag.py --device "$DEVICE" --clip-model "$MODEL" --images "$TAG_IMAGES" \
    --batch-size "$TAG_BS" --workers "$WORKERS" --forward-iters "$FWD_ITERS" --modes cpu,gpu,decode,forward \
    --out-json "$OUT/gpu_tag.json"

# 3. Real `hspnet train` loop on generated images, data loading included (a short step part first,
#    since train_throughput always runs it). Last: it matters least and may be cut by the budget.
step train_e2e 150 90 "$PY" benchmarks/train_throughput.py --device "$DEVICE" --clip-model "$MODEL" \
    --image-size "$SIZE" --batch-size "$TRAIN_BS" --steps "$E2E_STEPS" --warmup "$WARMUP" \
    --end-to-end "$E2E_IMAGES" --epochs 2 --workers "$WORKERS"

echo "total: $((SECONDS - START))s" | tee -a "$OUT/summary.txt"

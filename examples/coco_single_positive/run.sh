#!/usr/bin/env bash
# Reproduce HSPNet's COCO single-positive result (the paper's LargeLoss setup, Table 1).
#
#   COCO=/data/coco bash examples/coco_single_positive/run.sh        # the real run, one GPU
#   EXAMPLE_SMALL=1 bash examples/coco_single_positive/run.sh        # same commands, demo world
#
# COCO must hold annotations/instances_{train,val}2014.json and the train2014/ and val2014/
# image folders. OUT (default runs/coco-sp) receives the split, the run and the test metrics.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../_shared/small.sh"
OUT=${OUT:-runs/coco-sp}
mkdir -p "$OUT"

if [[ $SMALL == 1 ]]; then
  small_world coco "$OUT/data"
  COCO=$OUT/data; TAXONOMY=$OUT/data/taxonomy.yaml; TRAIN=("${SMALL_TRAIN[@]}")
else
  COCO=${COCO:?set COCO to the folder holding annotations/, train2014/ and val2014/}
  TAXONOMY=coco; TRAIN=(--config "$HERE/config.yaml")
fi

# 1. Single positive per training image (seeded), 20% of train2014 held out for validation with
#    full labels (65,665 / 16,416 images on COCO), val2014 as the test set with full labels.
$HSPNET split "$COCO/annotations/instances_train2014.json" -t "$TAXONOMY" -o "$OUT/split" \
  --mode single-positive --val-fraction 0.2 --seed 1 \
  --test "$COCO/annotations/instances_val2014.json" --overwrite

# 2. Train. The best epoch is chosen on the validation split, never on test.
$HSPNET train --split "$OUT/split" --images "$COCO/train2014" --out "$OUT/run" -t "$TAXONOMY" \
  "${TRAIN[@]}" --overwrite

# 3. Test mAP on val2014 (the number the paper reports).
$HSPNET eval --checkpoint "$OUT/run" --data "$OUT/split/test.csv" --images "$COCO/val2014" \
  --json "$OUT/test-metrics.json"
echo "test metrics: $OUT/test-metrics.json"

#!/usr/bin/env bash
# Pascal VOC 2012 with partial labels: every label entry (positive or negative) of a training
# image is kept with probability p, the rest unknown; one run per ratio, partial BCE on the
# known entries only.
#
#   VOC=/data/VOCdevkit/VOC2012 bash examples/voc_partial/run.sh
#   EXAMPLE_SMALL=1 bash examples/voc_partial/run.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../_shared/small.sh"
OUT=${OUT:-runs/voc-partial}
RATIOS=${RATIOS:-0.1,0.3,0.5}
[[ ${EXAMPLE_SMALL:-0} == 1 ]] && RATIOS=${EXAMPLE_RATIOS:-0.1,0.5}
mkdir -p "$OUT"

if [[ $SMALL == 1 ]]; then
  small_world voc "$OUT/data"
  VOC=$OUT/data; TAXONOMY=$OUT/data/taxonomy.yaml; TRAIN=("${SMALL_TRAIN[@]}")
else
  VOC=${VOC:?set VOC to the VOC2012 folder (Annotations/, JPEGImages/, ImageSets/)}
  TAXONOMY=voc; TRAIN=(--preset official)
fi

# 1. One self-contained keep-<p>/ folder per ratio; masks are nested (what is known at 0.1 is
#    known at 0.3). ImageSets/Main/train.txt is the training set, val.txt the test set.
$HSPNET split "$VOC" -t "$TAXONOMY" -o "$OUT/split" --voc-set train --mode partial --keep "$RATIOS" \
  --val-fraction 0.2 --seed 1 --test "$VOC" --test-voc-set val --overwrite

# 2-3. Train and test each ratio.
for p in ${RATIOS//,/ }; do
  SPLIT=$OUT/split; [[ $RATIOS == *,* ]] && SPLIT=$OUT/split/keep-$p   # one ratio: no keep-<p>/ folder
  $HSPNET train --split "$SPLIT" --images "$VOC" --out "$OUT/run-$p" -t "$TAXONOMY" \
    "${TRAIN[@]}" --loss bce --overwrite
  $HSPNET --quiet eval --checkpoint "$OUT/run-$p" --data "$SPLIT/test.csv" --images "$VOC" \
    --json "$OUT/test-metrics-$p.json"
  echo "keep $p: $OUT/test-metrics-$p.json"
done

#!/usr/bin/env bash
# The labeling loop: a folder of unlabelled images -> zero-shot tags -> review in Label Studio ->
# reviewed labels back -> train -> tag everything with the trained model -> audit the reviewed labels,
# drop near-duplicates -> select the next batch.
#
#   IMAGES=/data/photos TAXONOMY=coco bash examples/label_loop/run.sh
#       phase 1: tags and Label Studio tasks; it prints what to import and stops
#   IMAGES=/data/photos TAXONOMY=coco REVIEWED=export.json bash examples/label_loop/run.sh
#       phase 2: reads Label Studio's JSON export, trains, tags, selects the next batch
#   EXAMPLE_SMALL=1 bash examples/label_loop/run.sh
#       both phases on a demo world; a script reviews the first tasks from the world's truth
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../_shared/small.sh"
OUT=${OUT:-runs/label-loop}
NEXT=${NEXT:-100}                 # images to pick for the next round of labelling
mkdir -p "$OUT"

if [[ $SMALL == 1 ]]; then
  small_world folder "$OUT/data"
  IMAGES=$OUT/data/images; TAXONOMY=$OUT/data/taxonomy.yaml
  ZERO_SHOT=(--clip-model hspnet-tiny --pretrained none)   # random: its pre-ticks are noise
  TRAIN=("${SMALL_TRAIN[@]}"); NEXT=${EXAMPLE_NEXT:-20}
else
  IMAGES=${IMAGES:?set IMAGES to the folder of images to label}
  TAXONOMY=${TAXONOMY:?set TAXONOMY to a built-in name (coco, voc, ...) or a taxonomy file}
  ZERO_SHOT=(--clip-model "${ZERO_SHOT_MODEL:-RN50}" --pretrained "${ZERO_SHOT_PRETRAINED:-openai}")
  TRAIN=(--preset official)
fi

# 1. Zero-shot tags for every image (CLIP prompts; resumable, rerun to continue).
$HSPNET tag "$IMAGES" --out "$OUT/zero-shot/tags.csv" --zero-shot -t "$TAXONOMY" "${ZERO_SHOT[@]}" --top-k 5

# 2. Label Studio tasks with the tags pre-ticked, and the labeling config to create the project.
$HSPNET export-labels "$OUT/zero-shot/tags.csv" --to label-studio -o "$OUT/review/tasks.json" --overwrite

if [[ $SMALL == 1 ]]; then
  REVIEWED=$OUT/review/export.json
  "$PYTHON" "$HERE/scripted_review.py" "$OUT/review/tasks.json" "$OUT/data/truth.csv" \
    "${EXAMPLE_REVIEW:-120}" "$REVIEWED"
elif [[ -z ${REVIEWED:-} ]]; then
  cat <<MSG
Next: in Label Studio create a project with the labeling config $OUT/review/tasks.labeling-config.xml,
import $OUT/review/tasks.json (serve the images with local files, or rerun export-labels with
--url-prefix), review the pre-ticked choices, then Export -> JSON and run this again with
REVIEWED=<the export>.
MSG
  exit 0
fi

# 3. Reviewed labels back in: answered tasks are full labels; unanswered ones are left out.
$HSPNET split "$REVIEWED" -t "$TAXONOMY" -o "$OUT/split" --mode full --val-fraction 0.2 --seed 1 \
  --overwrite

# 4. Train on them, then tag every image with the trained model. The reviewed validation images
#    are fully labelled, so training fits per-label thresholds on them ($OUT/run/thresholds.json,
#    also stored in best.ckpt) and tag cuts at those (select's uncertainty is measured around them).
$HSPNET train --split "$OUT/split" --images "$IMAGES" --out "$OUT/run" -t "$TAXONOMY" "${TRAIN[@]}" --overwrite
$HSPNET tag "$IMAGES" --out "$OUT/tags/tags.csv" --checkpoint "$OUT/run" --overwrite

# 5. Likely label errors among the reviewed images the model never trained on (the validation
#    part), surest first, as Label Studio tasks with the fix pre-ticked; near-duplicates of the
#    tagged images, one keeper each (the others are never picked again).
$HSPNET audit "$OUT/split/val.csv" -t "$TAXONOMY" --checkpoint "$OUT/run" --images "$IMAGES" \
  --out "$OUT/audit/issues.csv" --to label-studio
$HSPNET dedup "$OUT/tags/tags.csv" --out "$OUT/dedup/dups.csv"

# 6. What to label next: the most useful unreviewed images, as Label Studio tasks again.
mkdir -p "$OUT/next"
$HSPNET select "$OUT/tags/tags.csv" -n "$NEXT" -o "$OUT/next/next.txt" --exclude "$REVIEWED" \
  --exclude "$OUT/dedup/dups.exclude.txt" --to label-studio --overwrite
echo "next batch: $OUT/next/next.txt (reasons: next.picks.csv; Label Studio tasks: next.tasks.json)"

#!/usr/bin/env bash
# Your own label list -> two hierarchies (WordNet hypernyms, k-means over CLIP text features)
# -> compare them -> train HSPNet with the one you keep.
#
#   LABELS=my-labels.txt ANNOTATIONS=annotations.csv IMAGES=/data/images bash examples/custom_labels/run.sh
#   EXAMPLE_SMALL=1 bash examples/custom_labels/run.sh
#
# ANNOTATIONS is any format `hspnet split` reads (image,labels CSV, COCO JSON, JSONL, ...).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../_shared/small.sh"
OUT=${OUT:-runs/custom}
N_GROUPS=${N_GROUPS:-4}
mkdir -p "$OUT"

if [[ $SMALL == 1 ]]; then
  small_world folder "$OUT/data"
  # The demo world's own label list, so the built hierarchies can be scored against its truth.
  "$PYTHON" - "$OUT/data/taxonomy.yaml" "$OUT/labels.txt" <<'PY'
import sys
from hspnet_cli.taxonomy import load_taxonomy
tax = load_taxonomy(sys.argv[1])
open(sys.argv[2], "w").write("".join(f"{l.name}\n" for l in tax.labels))
PY
  LABELS=$OUT/labels.txt; ANNOTATIONS=$OUT/data/truth.csv; IMAGES=$OUT/data/images
  KMEANS_MODEL=(--clip-model hspnet-tiny --pretrained none)   # random text tower: expect chance level
  TRAIN=("${SMALL_TRAIN[@]}"); REFERENCE=(--compare "$OUT/data/taxonomy.yaml")
else
  LABELS=${LABELS:-$HERE/labels.txt}
  ANNOTATIONS=${ANNOTATIONS:?set ANNOTATIONS to your annotation file}
  IMAGES=${IMAGES:?set IMAGES to the folder the annotation paths are relative to}
  KMEANS_MODEL=(--clip-model RN50 --pretrained openai)
  TRAIN=(--preset official); REFERENCE=()
fi

# 1. Two hierarchies from the same list.
$HSPNET taxonomy build --wordnet "$LABELS" --groups "$N_GROUPS" -o "$OUT/wordnet.yaml" "${REFERENCE[@]}" --overwrite
$HSPNET taxonomy build --kmeans "$LABELS" -k "$N_GROUPS" "${KMEANS_MODEL[@]}" -o "$OUT/kmeans.yaml" "${REFERENCE[@]}" --overwrite

# 2. How far apart are they? (adjusted Rand index and NMI over the common labels)
$HSPNET taxonomy compare "$OUT/wordnet.yaml" "$OUT/kmeans.yaml"

# 3. Look at both (`hspnet taxonomy show`), keep one (here: WordNet), split and train.
CHOSEN=${CHOSEN:-$OUT/wordnet.yaml}
$HSPNET taxonomy show "$CHOSEN"
$HSPNET split "$ANNOTATIONS" -t "$CHOSEN" -o "$OUT/split" --mode single-positive --val-fraction 0.2 --seed 1 --overwrite
$HSPNET train --split "$OUT/split" --images "$IMAGES" --out "$OUT/run" -t "$CHOSEN" "${TRAIN[@]}" --overwrite

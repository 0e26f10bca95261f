# Sourced by the examples. EXAMPLE_SMALL=1 (what CI sets) swaps the public dataset for a generated
# demo world in the same layout and the published model for the tiny random `demo` preset, so the
# example's own commands run end to end in seconds and cannot rot. Numbers from a small run mean
# nothing about the published ones.
HERE_SHARED="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HSPNET=${HSPNET:-hspnet}
PYTHON=${PYTHON:-python3}
SMALL=${EXAMPLE_SMALL:-0}
SMALL_IMAGES=${EXAMPLE_SMALL_IMAGES:-240}
SMALL_TRAIN=(--preset demo --epochs 1 --batch-size 32 --workers 0)

small_world() {  # small_world LAYOUT OUT: a demo world laid out as LAYOUT (coco|voc|folder) in OUT
  "$PYTHON" "$HERE_SHARED/demo_world_as.py" "$1" "$2" --images "$SMALL_IMAGES"
}

#!/usr/bin/env bash
# The main job: set up, find the Hippocampus data, train EMF-former-S, evaluate it on the held-out
# test cases (3D Dice / IoU / HD95), predict one test case with overlays, and print where it all is.
#
#   bash scripts/main_job.sh [--data DIR]
#
# Data: --data DIR, else $EMFFORMER_DATA, else the cache (~/.cache/emfformer/Task04_Hippocampus),
# else it downloads the official MSD archive (needs internet; offline it stops with a clear message).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ARG=""
case "${1:-}" in
  --data) DATA_ARG="${2:?--data needs a folder}" ;;
  --data=*) DATA_ARG="${1#--data=}" ;;
  "") ;;
  *) echo "usage: bash scripts/main_job.sh [--data DIR]" >&2; exit 2 ;;
esac
START=$(date +%s)
bash scripts/setup.sh
EMF=.venv/bin/emfformer
PY=.venv/bin/python

find_data() {  # prints the folder, or nothing when no local copy exists; a bad --data is an error
  $PY - "$DATA_ARG" <<'PYEOF'
import sys
from emfformer.data.cases import DataError
from emfformer.data.locate import resolve_data_dir
explicit = sys.argv[1] or None
try:
    print(resolve_data_dir("hippocampus", explicit))
except DataError as exc:
    if explicit:  # a folder was named: say what is wrong with it, never fall back to a download
        sys.exit(f"error: {exc}")
PYEOF
}
DATA=$(find_data)
if [ -z "$DATA" ]; then
  echo "No Hippocampus data found locally: downloading the official MSD archive into the cache..."
  $EMF download hippocampus
  DATA=$(find_data)
fi
echo "Data: $DATA"

RUN="runs/main_job_$(date +%Y%m%d_%H%M%S)"
$EMF train --config configs/main_job.yaml --data "$DATA" --out "$RUN"
$EMF evaluate --checkpoint "$RUN/best.pt" --part test
CASE=$($PY -c "import json,sys; print(json.load(open('$RUN/splits.json'))['test'][0])")
$EMF predict -i "$DATA/imagesTr/$CASE.nii.gz" -o "$RUN/predictions" --checkpoint "$RUN/best.pt" --overlays

echo
echo "=== main job done in $(( $(date +%s) - START )) s ==="
echo "Run folder:        $RUN"
echo "  curves:          $RUN/curves.png   log: $RUN/log.csv   config+seed: $RUN/config.yaml"
echo "  test metrics:    $RUN/eval_test/summary.md  (per case: $RUN/eval_test/per_case.csv)"
echo "  prediction:      $RUN/predictions/$CASE.nii.gz   overlay: $RUN/predictions/overlays/$CASE.nii.gz.png"
echo "Go further: headline recipe  -> bash scripts/train_headline.sh --data $DATA   (3 slice axes, fused)"
echo "            other models     -> .venv/bin/emfformer models;  add --model unet"
echo "            efficiency bench -> .venv/bin/emfformer bench --out runs/bench"
echo "            one HTML page    -> .venv/bin/emfformer report $RUN -o $RUN/report.html"

#!/usr/bin/env bash
# The peer comparison (issue 22; its table goes to docs/results.md): every model of --models trained with one shared recipe
# (--config) for each seed, then scored on the test part. Re-running skips what is done (resumable).
#
#   bash scripts/compare_peers.sh --data DIR --config configs/compare_hippocampus.yaml [--seeds "0 1 2"]
#        [--models "emf_former_s:head_stride=1 unext ..."] [--out runs/compare/NAME] [--threads 1]
#
# A model spec is a registry name with optional constructor options, name:key=value,key=value.
# Output per run: OUT/<spec>/s<seed>/ (config, plan, log.json with epoch times, best.pt) and its eval_test/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=""; CONFIG=""; SEEDS="0 1 2"; OUT=""; THREADS=1
MODELS="emf_former_t:head_stride=1 emf_former_s:head_stride=1 unext ege_unet malunet unet emf_former_s_twin_sdpa:head_stride=1"
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="${2:?--data needs a folder}"; shift 2 ;;
    --config) CONFIG="${2:?--config needs a file}"; shift 2 ;;
    --seeds) SEEDS="${2:?--seeds needs numbers}"; shift 2 ;;
    --models) MODELS="${2:?--models needs specs}"; shift 2 ;;
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --threads) THREADS="${2:?--threads needs a number}"; shift 2 ;;
    *) echo "usage: bash scripts/compare_peers.sh --data DIR --config FILE [--seeds \"0 1 2\"] [--models \"SPEC ...\"] [--out DIR] [--threads N]" >&2; exit 2 ;;
  esac
done
[ -n "$DATA" ] && [ -n "$CONFIG" ] || { echo "error: --data DIR and --config FILE are required" >&2; exit 2; }
[ -f "$CONFIG" ] || { echo "error: no config file $CONFIG" >&2; exit 2; }
OUT="${OUT:-runs/compare/$(basename "$CONFIG" .yaml | sed 's/^compare_//')}"
[ -x .venv/bin/emfformer ] || bash scripts/setup.sh
EMF=.venv/bin/emfformer
for SEED in $SEEDS; do
  for SPEC in $MODELS; do
    NAME="${SPEC%%:*}"; SETS=()
    if [ "$SPEC" != "$NAME" ]; then
      IFS=',' read -ra OPTS <<< "${SPEC#*:}"
      for O in "${OPTS[@]}"; do SETS+=("model.kwargs.$O"); done
    fi
    RUN="$OUT/${SPEC//[:,=]/_}/s$SEED"
    mkdir -p "$(dirname "$RUN")" && echo "$SPEC" > "$(dirname "$RUN")/spec.txt"  # the table's row name
    if [ ! -f "$RUN/.done" ]; then
      if [ -f "$RUN/last.pt" ]; then
        $EMF train --out "$RUN" --resume --data "$DATA" --threads "$THREADS"
      else
        $EMF train --config "$CONFIG" --data "$DATA" --model "$NAME" --seed "$SEED" --threads "$THREADS" \
          --out "$RUN" ${SETS[@]:+--set "${SETS[@]}"}
      fi
      touch "$RUN/.done"
    fi
    if [ ! -f "$RUN/eval_test/metrics.json" ]; then
      $EMF evaluate --checkpoint "$RUN/best.pt" --part test --data "$DATA" --out "$RUN/eval_test" --threads "$THREADS"
    fi
  done
done
echo "Comparison runs under $OUT; table: python scripts/compare_table.py $OUT"

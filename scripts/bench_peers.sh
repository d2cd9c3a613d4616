#!/usr/bin/env bash
# The measured columns of the peer comparison (issue 22) and the memory-friendly-training check, on an idle
# machine (nothing else computing), 2 threads per child process. Three `emfformer bench` runs:
#   recipe/    training memory at the recipes' patches and batch (64^2 hippocampus, 128^2 left atrium, batch 32)
#   engines/   params, FLOPs, latency at 224^2; training memory at 512^2 (batch 2); the inference engines
#              (all but compile: minutes of compiling per model) at 224^2, batch 16, for the compared models
#              and EMF-former-S (the 5x goal against MONAI UNet, one of the compared models)
#   recompute/ EMF-former-S and both twins (SDPA, explicit softmax) with and without recomputation at 512^2
#              and 1024^2 (batch 2): training memory and step time
#   bash scripts/bench_peers.sh [--out docs/bench_peers] [--threads 2]
# Then: python scripts/compare_table.py --runs ... --bench OUT/engines/bench.json OUT/recipe/bench.json
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/bench_peers; THREADS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --threads) THREADS="${2:?--threads needs a number}"; shift 2 ;;
    *) echo "usage: bash scripts/bench_peers.sh [--out DIR] [--threads N]" >&2; exit 2 ;;
  esac
done
[ -x .venv/bin/emfformer ] || bash scripts/setup.sh
EMF=.venv/bin/emfformer
PEERS="emf_former_t:head_stride=1 emf_former_s:head_stride=1 unext ege_unet malunet unet emf_former_s_twin_sdpa:head_stride=1"
COMMON=(--threads "$THREADS" --repeats 5 --time-budget-s 5 --no-progress)
# shellcheck disable=SC2086
$EMF bench --models $PEERS --size 64 --batch 32 --train-batch 32 --scaling-sizes 64 128 --scaling-models $PEERS \
  "${COMMON[@]}" -o "$OUT/recipe"
# shellcheck disable=SC2086
$EMF bench --models $PEERS --size 224 --batch 16 --train-batch 2 --scaling-sizes 512 --scaling-models $PEERS \
  --engines eager fused channels_last bf16 onnxruntime onnxruntime_int8 --engine-models emf_former_s $PEERS \
  --engine-batch 16 "${COMMON[@]}" -o "$OUT/engines"
RECOMPUTE="emf_former_s emf_former_s:recompute=cheap emf_former_s:recompute=all emf_former_s_twin_sdpa emf_former_s_twin_sdpa:recompute=cheap emf_former_s_twin_sdpa:recompute=all emf_former_s_twin emf_former_s_twin:recompute=cheap emf_former_s_twin:recompute=all"
# shellcheck disable=SC2086
$EMF bench --models $RECOMPUTE --size 224 --batch 16 --train-batch 2 --scaling-sizes 512 1024 \
  --scaling-models $RECOMPUTE "${COMMON[@]}" -o "$OUT/recompute"

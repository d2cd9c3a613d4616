#!/usr/bin/env bash
# v0.6 hippocampus recipe (24 epochs per slice axis, configs/hippocampus.yaml), seed 1, on the 2-core CPU with
# --threads 2 (axis 0 and 19 epochs of axis 1 at the end of one session, the rest resumed from last.pt in
# the next with nothing else computing). Test fg mIoU: see eval_test/summary.md; the 3-seed table is in
# docs/results.md. Seed 0 (the shipped file) is in ../v06_headline_e24_s0.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
H=${H:?set H to the Task04_Hippocampus folder}
bash scripts/train_headline.sh --data "$H" --seed 1 --out runs/headline_e24_s1 --threads 2

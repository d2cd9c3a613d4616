#!/usr/bin/env bash
# How the shipped left-atrium ensemble was made (D = a Dataset101_LeftAtrium folder). Each training ran
# with --threads 1 beside a second training on the 2-core CPU.
set -euo pipefail
D=${D:?set D to the Dataset101_LeftAtrium folder}
emfformer train --config configs/left_atrium.yaml --data $D --threads 1 -o runs/left_atrium_s0      # axis 2, 12 epochs
for A in 0 1; do                                                                                  # axes 0 and 1, 8 epochs
  emfformer train --config configs/left_atrium.yaml --data $D --threads 1 -o runs/left_atrium_ax$A \
    --set data.slice_axis=$A optim.epochs=8
done
emfformer pack runs/left_atrium_s0/best.pt runs/left_atrium_ax0/best.pt runs/left_atrium_ax1/best.pt --tta \
  -o src/emfformer/weights/left_atrium.pt
emfformer evaluate --checkpoint left-atrium --part test --data $D -o runs/left_atrium_shipped_eval --threads 1

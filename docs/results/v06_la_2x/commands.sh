#!/usr/bin/env bash
# How the shipped left-atrium ensemble (v0.6) was made: the v0.4 three-axis recipe with twice the epochs
# (axis 2: 24, axes 0 and 1: 16). Each training ran with --threads 2 on the idle 2-core CPU.
# Training time (sums of the logged epoch times): 29.0 + 26.1 + 30.2 = 85.3 min.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
D=${D:?set D to the Dataset101_LeftAtrium folder}
EMF=.venv/bin/emfformer
$EMF train --config configs/left_atrium.yaml --data "$D" --threads 2 -o runs/la_ax2_24ep            # axis 2, 24 epochs
for A in 0 1; do                                                                                  # axes 0 and 1, 16 epochs
  $EMF train --config configs/left_atrium.yaml --data "$D" --threads 2 -o runs/la_ax${A}_16ep \
    --set data.slice_axis=$A optim.epochs=16
done
$EMF pack runs/la_ax2_24ep/best.pt runs/la_ax0_16ep/best.pt runs/la_ax1_16ep/best.pt --tta -o runs/la_2x/left_atrium.pt
$EMF evaluate --checkpoint runs/la_2x/left_atrium.pt --part test --data "$D" -o runs/la_2x/eval_test
# mix_8_8_24/: the intermediate ensemble of the v0.4 shipped members for axes 0 and 1 (8 epochs, taken out
# of the v0.4 left_atrium.pt with torch.load(...)["members"][1:]) and the 24-epoch axis-2 member:
# $EMF evaluate --checkpoint ax0_8ep.pt ax1_8ep.pt runs/la_ax2_24ep/best.pt --tta --part test --data "$D"

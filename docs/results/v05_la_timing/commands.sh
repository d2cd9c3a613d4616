set -e
cd "$(git rev-parse --show-toplevel)"
.venv/bin/emfformer train --config configs/left_atrium.yaml --data ${D:?set D to the Dataset101_LeftAtrium folder} --threads 2 -o runs/la_time_ax2 --set optim.epochs=1
for A in 0 1; do .venv/bin/emfformer train --config configs/left_atrium.yaml --data ${D:?set D to the Dataset101_LeftAtrium folder} --threads 2 -o runs/la_time_ax$A --set data.slice_axis=$A optim.epochs=1; done

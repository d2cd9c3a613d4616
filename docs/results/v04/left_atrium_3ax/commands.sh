#!/usr/bin/env bash
# Left atrium 3-axis ensemble: axes 0 and 1 (8 epochs each) + the existing axis-2 run (12 epochs)
set -euo pipefail
cd /work/main
D=../shared/data/Dataset101_LeftAtrium
EMF=.venv/bin/emfformer
for A in 0 1; do
  R=runs/left_atrium_ax$A
  if [ ! -f $R/.done ]; then
    if [ -f $R/last.pt ]; then $EMF train --out $R --resume --data $D --threads 1
    else $EMF train --config configs/left_atrium.yaml --data $D --threads 1 --out $R --set data.slice_axis=$A optim.epochs=8; fi
    touch $R/.done
  fi
done
$EMF pack runs/left_atrium_ax0/best.pt runs/left_atrium_ax1/best.pt runs/left_atrium_s0/best.pt --tta -o runs/left_atrium_3ax.pt
$EMF evaluate --checkpoint runs/left_atrium_3ax.pt --part test --data $D --out runs/left_atrium_3ax_eval --threads 1
echo LA3 DONE

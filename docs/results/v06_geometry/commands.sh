#!/usr/bin/env bash
# The shipped v0.6 models on real held-out cases stored on other grids (each copy with its true affine).
# 2-core CPU, nothing else computing: about 2 min for the left atrium (16 cases, no TTA), 1 min for the
# hippocampus (3 cases, full ensemble with TTA) and 1 min for its off-centre table. Outputs: left_atrium.md,
# hippocampus.md, off_centre.md.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
LA=${LA:?set LA to the Dataset101_LeftAtrium folder}
H=${H:?set H to the Task04_Hippocampus folder}
.venv/bin/python scripts/geometry_check_nnunet.py --data "$LA" | tee docs/results/v06_geometry/left_atrium.md
.venv/bin/python scripts/geometry_check.py --data "$H" | tee docs/results/v06_geometry/hippocampus.md
.venv/bin/python scripts/off_centre_check.py --data "$H" | tee docs/results/v06_geometry/off_centre.md   # the committed file adds a '#' header line

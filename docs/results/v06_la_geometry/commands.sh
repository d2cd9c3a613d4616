#!/usr/bin/env bash
# The shipped left-atrium model (v0.6) on its 16 held-out test cases stored on other grids: as stored, LPS,
# 1 x 1 x 2.5 mm, and 0.8 mm off-centre in a 2x wider zero field (each with its true affine; no TTA).
# 2-core CPU, 1 thread of work at a time, about 100 s in all. Output: table.md.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
LA=${LA:?set LA to the Dataset101_LeftAtrium folder}
.venv/bin/python scripts/geometry_check_nnunet.py --data "$LA" | tee docs/results/v06_la_geometry/table.md

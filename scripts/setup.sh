#!/usr/bin/env bash
# Create the project virtualenv (.venv) and install emfformer with its pinned dependencies
# (torch==2.13.0 from constraints.txt, MONAI, nibabel, ...; no timm/torchvision). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# pipefail: a failing pip fails this script; grep only hides this machine's local-index warnings
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/python -c "import torch, monai, emfformer; print(f'emfformer {emfformer.__version__}, torch {torch.__version__}, monai {monai.__version__}')"

#!/usr/bin/env bash
# Set up (if needed) and run the linter and the whole test suite. Exit status: non-zero on any
# failure, and also when pytest collected no test at all (pytest exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests scripts
.venv/bin/ruff format --check src tests scripts
set +e
# two pytest-xdist workers (one torch thread each, tests/conftest.py), whole test modules per worker so
# that module fixtures run once; EMFFORMER_TEST_WORKERS=0 runs in this process only
.venv/bin/python -m pytest -q -n "${EMFFORMER_TEST_WORKERS:-2}" --dist loadscope "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"

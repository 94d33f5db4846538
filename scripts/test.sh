#!/usr/bin/env bash
# Set up .venv with the test extras, run the whole test suite, then check the published install
# path (the wheel in a fresh virtualenv without torch: scripts/check_install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest -q "$@"
bash scripts/check_install.sh

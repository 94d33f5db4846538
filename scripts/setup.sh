#!/usr/bin/env bash
# Create .venv in the project root and install cs into it.
#   bash scripts/setup.sh            # cs with the offline MiniLM model, `cs mcp` and the int8 engine
#   bash scripts/setup.sh test       # everything the test suite needs
# torch is installed first and pinned, so pip never resolves it to a multi-GB CUDA build on a CPU
# machine. GPU users: install the CUDA build of torch into .venv first, then run with CS_KEEP_TORCH=1.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-minilm,mcp,fast}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "${CS_KEEP_TORCH:-0}" != 1 ]; then
    .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -e ".[$extras]"

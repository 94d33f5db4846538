#!/usr/bin/env bash
# For contributors: create .venv in the project root and install cs into it, editable, with torch.
#   bash scripts/setup.sh            # cs with torch (CPU build), the offline MiniLM model, `cs mcp`
#   bash scripts/setup.sh test       # everything the test suite needs
# (Users install cs as a tool without torch: `uv tool install .` or `pipx install .`; see README.)
# torch is installed first and pinned, so pip never resolves it to a multi-GB CUDA build on a CPU
# machine. GPU users: install the CUDA build of torch into .venv first, then run with CS_KEEP_TORCH=1.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-torch,minilm,mcp}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "${CS_KEEP_TORCH:-0}" != 1 ]; then
    .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -e ".[$extras]"

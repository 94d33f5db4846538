#!/usr/bin/env bash
# The published install path, as a new user takes it: the built wheel into a fresh virtualenv with
# its default dependencies (no torch), then one `cs index` and one `cs find` with an offline model.
# Needs .venv (scripts/setup.sh test): it builds the wheel and exports the offline model, MiniLM,
# to ONNX with torch, the way a torch-free install gets an offline model (README "Offline").
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
started=$SECONDS
dev="${CS_DEV_VENV:-.venv}"  # the contributor venv (scripts/setup.sh test)
fresh() { env -u PYTHONPATH "$@"; }  # the fresh venv sees only what its wheel installed

"$dev"/bin/python -m pip wheel -q --no-deps -w "$work/dist" .
wheel="$(ls "$work"/dist/codesearch-*.whl)"

# What the default install resolves: no torch, triton or nvidia-* package may be among them.
"$dev"/bin/python -m pip install -q --dry-run --ignore-installed --report "$work/report.json" "$wheel"
"$dev"/bin/python - "$work/report.json" <<'PY'
import json, sys
names = sorted(i["metadata"]["name"].lower() for i in json.load(open(sys.argv[1]))["install"])
heavy = [n for n in names if n in ("torch", "triton") or n.startswith("nvidia-")]
print(f"default install resolves {len(names)} packages; CUDA/torch among them: {heavy or 'none'}")
sys.exit(1 if heavy else 0)
PY

python3 -m venv "$work/venv"
fresh "$work/venv/bin/python" -m pip install -q "$wheel"
fresh "$work/venv/bin/python" -c "
import importlib.util, sys
found = [m for m in ('torch', 'transformers') if importlib.util.find_spec(m)]
sys.exit(f'the default install has {found}' if found else 0)"

"$dev"/bin/cs model export minilm --out "$work/minilm"
cp -r fixtures/python "$work/repo"
export CS_HOME="$work/home" HF_HUB_OFFLINE=1 CS_SERVER_AUTOSTART=0
fresh "$work/venv/bin/cs" index "$work/repo" --model "$work/minilm"
fresh "$work/venv/bin/cs" find "parse CSV and compute mean" --path "$work/repo" --grep -k 3
echo "published install path checked in $((SECONDS - started)) s"

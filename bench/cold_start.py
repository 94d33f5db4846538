"""The first `cs find` on a CPU, before and after the ONNX Runtime engine (issue 31), in one run.

A cold query is a fresh `cs find --no-server` process: interpreter, imports, model load, index
open, query. With MiniLM on this CPU `auto` picks int8 (ONNX Runtime); before issue 31 a query
still imported torch and transformers and loaded the torch weights before handing the forward
pass to ONNX Runtime. Now the engine is chosen before anything heavy is imported, and a finished
int8 build answers alone.

Variants, each with its own CS_HOME (indexed once, untimed, so every timed query is warm on disk):
- before: the code of ``--before`` (a git ref; default 01ad8ce, main when this began), extracted
  to a temp dir and run with the same interpreter;
- after: this checkout;
- after, torch engine: this checkout with CS_ENGINE=torch (what a contributor install can force);
- after, install without torch (``--no-torch-venv DIR``: a venv holding the built wheel only),
  with MiniLM exported by `cs model export`.

    python bench/cold_start.py                  # ~3 minutes on 2 busy cores
    python bench/cold_start.py --runs 7 --no-torch-venv /tmp/cs-wheel-venv

Prints a table (median and min seconds, whether torch was imported) and writes
bench/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
QUERY = "parse a CSV file and compute the mean of a column"


def load_average() -> float:
    return os.getloadavg()[0]


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # From the temp dir: `python -c` puts the working directory first on sys.path, and this
    # checkout's codesearch/ must not shadow the code a variant runs.
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                         cwd=tempfile.gettempdir())
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return out


def variant(name: str, cs: list[str], code: Path | None, model: str, root: Path, work: Path,
            runs: int, extra: dict[str, str] | None = None) -> dict[str, Any]:
    home = work / f"home-{name.replace(' ', '-').replace(',', '')}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(CS_HOME=str(home), CS_SERVER_AUTOSTART="0", HF_HUB_OFFLINE="1",
               XDG_RUNTIME_DIR=str(home / "run"), **(extra or {}))
    if code is not None:
        env["PYTHONPATH"] = str(code)
    (home / "run").mkdir(parents=True)
    run([*cs, "index", str(root), "--model", model], env)
    find = [*cs, "find", QUERY, "--path", str(root), "--json", "--no-server", "-k", "5"]
    first = run(find, env)  # measures and remembers `auto` if the index run did not
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        out = run(find, env)
        seconds.append(time.perf_counter() - start)
        assert out.stdout == first.stdout, "a cold query changed its answer"
    probe = run([cs[0], "-X", "importtime", *cs[1:], *find[len(cs):]], env)
    imported = sorted({line.rsplit("|", 1)[-1].strip().split(".")[0]
                       for line in probe.stderr.splitlines() if line.startswith("import time:")}
                      & {"torch", "transformers", "onnxruntime", "tokenizers"})
    precision = json.loads(run([*cs, "status", str(root), "--json"], env).stdout).get(
        "precision")
    return {"variant": name, "runs": runs, "median_s": round(statistics.median(seconds), 3),
            "min_s": round(min(seconds), 3), "seconds": [round(s, 3) for s in seconds],
            "imports": imported, "precision": precision, "load_avg": round(load_average(), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="01ad8ce", help="git ref of the code before")
    parser.add_argument("--runs", type=int, default=5, help="timed cold queries per variant")
    parser.add_argument("--no-torch-venv", type=Path, help="a venv with the wheel, no torch")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/cold_start.json")
    args = parser.parse_args()
    cs = [sys.executable, "-c", "from codesearch.cli import main; main()"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cs-cold-") as tmp:
        work = Path(tmp)
        root = work / "repo"
        shutil.copytree(REPO / "fixtures", root)
        before = work / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "codesearch"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        rows.append(variant(f"before ({args.before})", cs, before, "minilm", root, work,
                            args.runs))
        rows.append(variant("after", cs, REPO, "minilm", root, work, args.runs))
        rows.append(variant("after, torch engine", cs, REPO, "minilm", root, work, args.runs,
                            {"CS_ENGINE": "torch"}))
        if args.no_torch_venv is not None:
            exported = work / "minilm-onnx"
            run([*cs, "model", "export", "minilm", "--out", str(exported)],
                {**os.environ, "PYTHONPATH": str(REPO)})
            venv_cs = [str(args.no_torch_venv / "bin" / "python"), *cs[1:]]
            rows.append(variant("after, install without torch", venv_cs, None, str(exported),
                                root, work, args.runs))
    base = rows[0]["median_s"]
    for row in rows:
        row["speedup_vs_before"] = round(base / row["median_s"], 2)
    print(f"{'variant':32} {'median s':>9} {'min s':>7} {'x before':>9}  precision  imports")
    for r in rows:
        print(f"{r['variant']:32} {r['median_s']:9.2f} {r['min_s']:7.2f} "
              f"{r['speedup_vs_before']:9.2f}  {str(r['precision']):9}  {', '.join(r['imports'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"query": QUERY, "model": "minilm", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

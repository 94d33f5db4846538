"""What installing cs costs a new user on a CPU machine: time and disk of `uv tool install PATH`,
`pipx install PATH` and `pip install PATH` (into a fresh virtualenv), each into fresh locations
with an empty cache of its own (so downloads count), and what `pip install --dry-run --report`
resolves for the default install (no torch, triton or nvidia-* package may be in it).

    python bench/install_size.py --tools /tmp/uv-pipx-venv      # a venv holding uv and pipx

Run one tool at a time on a quiet machine: all three download from the package index. Prints a
table and writes bench/results/install_size.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "triton")


def du(path: Path) -> int:
    """Bytes under ``path`` (each hard-linked file once), as `du -sb` counts them."""
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def heavy_in(site: Path) -> list[str]:
    names = [p.name.split("-")[0].lower() for p in site.glob("*.dist-info")]
    return sorted(n for n in names if n in HEAVY or n.startswith("nvidia"))


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def dry_run(work: Path) -> dict[str, Any]:
    report = work / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run",
                    "--ignore-installed", "--report", str(report), str(REPO)],
                   capture_output=True, check=True)
    names = sorted(i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"])
    heavy = [n for n in names if n in HEAVY or n.startswith("nvidia-")]
    return {"packages": len(names), "heavy": heavy, "names": names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=Path, required=True, help="a venv with uv and pipx")
    parser.add_argument("--only", default="pip,uv,pipx", help="which installers to time")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/install_size.json")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cs-install-") as tmp:
        work = Path(tmp)
        resolved = dry_run(work)
        print(f"pip install --dry-run --report: {resolved['packages']} packages, "
              f"torch/triton/nvidia-*: {resolved['heavy'] or 'none'}")
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        for tool in args.only.split(","):
            place = work / tool
            env = dict(base)
            if tool == "pip":
                subprocess.run([sys.executable, "-m", "venv", str(place)], check=True)
                env["PIP_CACHE_DIR"] = str(work / "cache-pip")
                cmd = [str(place / "bin/python"), "-m", "pip", "install", "-q", str(REPO)]
                installed, site_root = place, place
            elif tool == "uv":
                env.update(UV_TOOL_DIR=str(place / "tools"), UV_TOOL_BIN_DIR=str(place / "bin"),
                           UV_CACHE_DIR=str(work / "cache-uv"))
                cmd = [str(args.tools / "bin/uv"), "tool", "install", str(REPO)]
                installed, site_root = place / "tools", place / "tools"
            else:
                env.update(PIPX_HOME=str(place / "home"), PIPX_BIN_DIR=str(place / "bin"),
                           PIP_CACHE_DIR=str(work / "cache-pipx"))
                cmd = [str(args.tools / "bin/pipx"), "install", str(REPO)]
                installed, site_root = place / "home", place / "home"
            seconds = timed(cmd, env)
            sites = list(site_root.rglob("site-packages"))
            heavy = sorted({h for s in sites for h in heavy_in(s)})
            size = du(installed)
            rows.append({"installer": tool, "command": " ".join(Path(c).name if i == 0 else c
                                                                for i, c in enumerate(cmd)),
                         "seconds": round(seconds, 1), "installed_bytes": size,
                         "installed_mib": round(size / 2**20, 1), "torch_or_cuda": heavy,
                         "load_avg": round(os.getloadavg()[0], 2)})
            print(f"{tool:5} {seconds:7.1f} s {size / 2**20:8.1f} MiB  heavy: {heavy or 'none'}",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dry_run": resolved, "installs": rows}, indent=1))


if __name__ == "__main__":
    main()

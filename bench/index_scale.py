"""`cs index` at scale: files/s, chunks/s, peak RSS and index size on the Python standard library,
at several tree sizes, to show memory stays bounded as the tree grows (the indexer streams files
in batches and never holds the repository in memory).

The tree is a copy of Lib/ (every file, minus site-packages and __pycache__: about 2,450 files, of
which discovery indexes about 2,000 and skips the binaries). Each size is an evenly spread subset
of it (every 4th file for 25%, ...), indexed from scratch by a real `cs index` subprocess with the
tiny test model (tests/support/tiny_model.py) and a fresh cache, so nothing is reused between
sizes. Peak RSS is the child's own ru_maxrss (os.wait4), not the largest of all children.

    python bench/index_scale.py                         # 25%, 50%, 100% of the stdlib
    python bench/index_scale.py --fractions 1 --limit 500
    python bench/index_scale.py --subdirs json email asyncio

Prints a table and writes bench/results/index_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "index_scale.json"
SKIP_DIRS = {"site-packages", "__pycache__"}


def stdlib_files(lib: Path, subdirs: list[str] | None) -> list[Path]:
    """Every file under ``lib`` (or its ``subdirs``), relative, sorted; site-packages and
    bytecode left out."""
    tops = [lib / s for s in subdirs] if subdirs else [lib]
    out = []
    for top in tops:
        candidates = [top] if top.is_file() else top.rglob("*")
        for p in candidates:
            if p.is_file() and not p.is_symlink() and not SKIP_DIRS & set(p.relative_to(lib).parts):
                out.append(p.relative_to(lib))
    return sorted(out)


def subset(files: list[Path], fraction: float) -> list[Path]:
    """An evenly spread ``fraction`` of ``files`` (so every size has the same mix of code)."""
    return [f for i, f in enumerate(files) if int((i + 1) * fraction) > int(i * fraction)]


def copy_tree(lib: Path, files: list[Path], dest: Path) -> int:
    """Copy ``files`` under ``dest`` (Lib/ sits in a git checkout of pyenv whose .gitignore would
    hide it); returns the bytes copied."""
    total = 0
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib / rel, target)
        total += target.stat().st_size
    return total


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_index(root: Path, model: Path, home: Path) -> dict[str, Any]:
    """One `cs index` from scratch in a subprocess: its JSON summary, wall time and peak RSS."""
    env = dict(os.environ, CS_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               NO_COLOR="1", TOKENIZERS_PARALLELISM="false")
    for var in ("CS_INDEX_DIR", "CS_CACHE_DIR", "CS_INDEX_URI", "CS_CACHE_URI", "CS_MODEL"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "codesearch", "index", str(root), "--model", str(model), "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=REPO)
        # wait4 gives this child's own rusage: ru_maxrss is its peak RSS in KiB on Linux.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"cs index failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        stats = json.loads(out.read())
    return {"stats": stats, "wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="the standard library to copy (default: this Python's)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--limit", type=int, default=None, help="at most this many files")
    parser.add_argument("--subdirs", nargs="+", default=None,
                        help="only these entries of the stdlib (e.g. json email asyncio)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from tests.support.tiny_model import build_tiny_model

    lib = args.lib.resolve()
    files = stdlib_files(lib, args.subdirs)
    if args.limit:
        files = subset(files, min(1.0, args.limit / len(files)))
    work = Path(tempfile.mkdtemp(prefix="cs-index-scale-"))
    rows = []
    try:
        model = build_tiny_model(work / "model")
        for fraction in sorted(args.fractions):
            chosen = subset(files, fraction)
            root = work / f"lib-{int(fraction * 100)}"
            source_bytes = copy_tree(lib, chosen, root)
            home = work / f"home-{int(fraction * 100)}"
            run = run_index(root, model, home)
            stats = run["stats"]
            index_bytes = dir_bytes(Path(stats["index"]))
            cache_bytes = dir_bytes(home / "embeddings") if (home / "embeddings").exists() else 0
            indexed = stats["files_scanned"]
            row = {
                "fraction": fraction,
                "files_in_tree": len(chosen),
                "files_indexed": indexed,
                "files_skipped": stats["files_skipped"],
                "files_failed": stats["files_failed"],
                "source_mib": round(source_bytes / 2**20, 1),
                "chunks": stats["chunks_total"],
                "wall_s": round(run["wall_s"], 1),
                "index_s": stats["seconds"],
                "files_per_s": round(indexed / stats["seconds"], 1),
                "chunks_per_s": round(stats["chunks_total"] / stats["seconds"], 1),
                "peak_rss_mib": round(run["peak_rss_mib"], 1),
                "cpu_s": round(run["cpu_s"], 1),
                "index_mib": round(index_bytes / 2**20, 1),
                "cache_mib": round(cache_bytes / 2**20, 1),
            }
            rows.append(row)
            print(f"{fraction:>5.0%}  {indexed:>5} files  {row['chunks']:>6} chunks  "
                  f"{row['files_per_s']:>6.1f} files/s  {row['chunks_per_s']:>7.1f} chunks/s  "
                  f"peak RSS {row['peak_rss_mib']:>6.1f} MiB  index {row['index_mib']:>6.1f} MiB  "
                  f"(source {row['source_mib']} MiB, {row['index_s']:.0f}s in cs, "
                  f"{row['wall_s']:.0f}s wall)", flush=True)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "tree": f"{lib} (minus site-packages, __pycache__)"
                + (f", entries {args.subdirs}" if args.subdirs else "")
                + (f", limited to {args.limit} files" if args.limit else ""),
        "model": "tests/support/tiny_model.py (random Qwen2, hidden 64, 2 layers): measures the "
                 "pipeline around the model, not a real model's embedding speed",
        "definitions": {
            "files_per_s, chunks_per_s": "over the run's own time (IndexStats.seconds: model "
                                         "load, scan, chunk, embed, store, optimize; not imports)",
            "wall_s": "the whole process: imports, model load, run",
            "peak_rss_mib": "ru_maxrss of the cs index process (os.wait4)",
            "index_mib": "bytes on disk of the index directory after the run (optimized)",
            "cache_mib": "bytes of the shared embedding cache it filled",
        },
        "note": "rates depend on the machine's load (see load_average_at_end); the peak "
                "RSS across sizes is the point",
        "results": rows,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

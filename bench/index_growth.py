"""An index that keeps its size (issue 27): size on disk, LanceDB versions and search latency of an
index followed by ``cs watch`` through ``--edits`` one-line edits (default 1,000).

The tree is the python, go, rust and typescript sample repositories of fixtures/ in one root,
indexed with the tiny random Qwen2 model of the tests (tests/support/tiny_model.py: this measures
the store, not the model). A real in-process :class:`~codesearch.index.watch.Watcher` with its
default compaction settings (at a quiet moment, else every ``optimize_every`` commits) follows
the tree; the benchmark rewrites one line of one file at a time and waits for the watcher's
commit, so each edit is one commit, as fast as the watcher takes them (a user is far slower).
Versions are kept for readers for ``CS_VERSION_GRACE`` seconds (set to ``--grace``, default 5 s,
so that the run is not dominated by its last minute; at most a few recent versions stay whatever
the window, see codesearch/store/versions.py).

Reported: the index's bytes on disk and versions per table at the start (after the first index),
every 50 edits (the largest seen), and at the end once the watcher had a quiet moment; a fresh
build of the final tree for comparison; p50 of 41 searches as ``cs find`` runs them (fresh
connection, top-10 BM25 and vector search) at the start and the end.

    python bench/index_growth.py               # ~15 minutes on 2 loaded CPU cores
    python bench/index_growth.py --edits 100   # a quick look

Prints a table and writes bench/results/index_growth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TREES = ("python", "go", "rust", "typescript")
COMMENT = {".py": "#", ".go": "//", ".rs": "//", ".ts": "//"}
MARK = "cs-bench-edit"


def build_tree(root: Path) -> list[Path]:
    """The sample repositories under ``root``; returns the files the edits go to."""
    for name in TREES:
        shutil.copytree(REPO / "fixtures" / name, root / name)
    return sorted(p for p in root.rglob("*") if p.suffix in COMMENT)


def edit(path: Path, k: int) -> None:
    """Rewrite one line: the file's last line becomes (or stays) an edit-marker comment."""
    lines = path.read_text().rstrip("\n").split("\n")
    line = f"{COMMENT[path.suffix]} {MARK} {k}"
    if MARK in lines[-1]:
        lines[-1] = line
    else:
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def footprint(uri: str) -> dict[str, Any]:
    from codesearch.store.store import Store

    store = Store.open(uri)
    fp = store.footprint()
    return {"bytes": fp["bytes"], "versions": fp["versions"], "chunks": store.count_chunks()}


def search_p50(uri: str, dim: int, n: int = 41) -> dict[str, float]:
    """Median ms of ``n`` searches each as ``cs find`` runs one: open the index, top 10."""
    import numpy as np

    from codesearch.store.store import Store

    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for kind in ("bm25", "vector"):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            store = Store.open(uri)
            if kind == "bm25":
                hits = store.text_search("parse stack error", 10)
            else:
                hits = store.vector_search(rng.standard_normal(dim).astype(np.float32), 10)
            times.append(time.perf_counter() - t)
            assert hits
        out[f"{kind}_p50_ms"] = round(statistics.median(times) * 1000, 1)
    return out


def settle(watcher: Any, quiet: float) -> None:
    """Wait until the watcher compacted at its quiet moment, and dropped the versions that
    compaction kept for readers once the grace window passed (nothing left to do)."""
    deadline = time.monotonic() + quiet + 180
    while time.monotonic() < deadline:
        if (watcher._commits_since_optimize == 0 and watcher._prune_at is None
                and watcher.status.phase == "watching"):
            return
        time.sleep(0.05)
    raise RuntimeError("the watcher did not compact at a quiet moment")


def run(edits: int, grace: float, seed: int) -> dict[str, Any]:
    os.environ["CS_VERSION_GRACE"] = str(grace)
    from codesearch.config import resolve_index_uri
    from codesearch.index.indexer import IndexOptions
    from codesearch.index.run import index_root
    from codesearch.index.watch import Watcher, WatchOptions
    from codesearch.store.store import Store
    from tests.support.tiny_model import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="cs-growth-"))
    os.environ["CS_HOME"] = str(tmp / "home")
    model = str(build_tiny_model(tmp / "model"))
    root = tmp / "tree"
    files = build_tree(root)
    first = index_root(root, options=IndexOptions(model=model))
    uri = resolve_index_uri(root)
    time.sleep(grace + 0.5)
    Store.open(uri).optimize()  # past the grace window: what a user finds a minute later
    dim = first.dim
    out: dict[str, Any] = {"edits": edits, "grace_s": grace, "files": len(files)}
    watch_options = WatchOptions(debounce=0.01, max_delay=0.2)
    out["optimize_every"] = watch_options.optimize_every
    out["optimize_quiet_s"] = watch_options.optimize_quiet
    store = Store.open(uri, read_consistency_interval=timedelta(0))  # as watch_root opens it
    watcher = Watcher(root, store, IndexOptions(model=model), watch_options)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    assert watcher.wait_ready(600), watcher.error
    out["start"] = {**footprint(uri), **search_p50(uri, dim)}
    rng = random.Random(seed)
    largest: dict[str, int] = {}
    biggest = 0
    t0 = time.perf_counter()
    try:
        base = watcher.status.commits
        for k in range(1, edits + 1):
            edit(rng.choice(files), k)
            deadline = time.monotonic() + 120
            while watcher.status.commits < base + k:
                if time.monotonic() > deadline or watcher.error:
                    raise RuntimeError(f"edit {k} was not committed: {watcher.error!r}")
                time.sleep(0.002)
            if k % 50 == 0:
                fp = footprint(uri)
                biggest = max(biggest, fp["bytes"])
                for table, n in fp["versions"].items():
                    largest[table] = max(largest.get(table, 0), n)
                print(f"  {k} edits: {fp['bytes']:,} bytes, versions {fp['versions']}",
                      flush=True)
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        settle(watcher, watch_options.optimize_quiet)
        out["end"] = {**footprint(uri), **search_p50(uri, dim)}
        out["during"] = {"max_bytes": biggest, "max_versions": largest}
        out["compactions"] = watcher.status.optimizations
    finally:
        watcher.stop()
        thread.join(600)
    fresh_root = tmp / "fresh"
    shutil.copytree(root, fresh_root)
    index_root(fresh_root, options=IndexOptions(model=model))
    time.sleep(grace + 0.5)
    fresh_uri = resolve_index_uri(fresh_root)
    Store.open(fresh_uri).optimize()
    out["fresh"] = footprint(fresh_uri)
    out["end_vs_fresh_bytes"] = round(out["end"]["bytes"] / out["fresh"]["bytes"], 2)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--edits", type=int, default=1000)
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=27)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "index_growth.json"))
    args = ap.parse_args()
    result = run(args.edits, args.grace, args.seed)
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    s, e, f = result["start"], result["end"], result["fresh"]
    print(f"\n{'':<22}{'bytes':>12}{'chunks ver.':>12}{'files ver.':>11}{'chunks':>8}"
          f"{'bm25 p50':>10}{'vector p50':>12}")
    for name, row in (("start", s), (f"after {result['edits']} edits", e)):
        print(f"{name:<22}{row['bytes']:>12,}{row['versions']['chunks']:>12}"
              f"{row['versions']['files']:>11}{row['chunks']:>8}{row['bm25_p50_ms']:>8} ms"
              f"{row['vector_p50_ms']:>9} ms")
    print(f"{'fresh build':<22}{f['bytes']:>12,}{f['versions']['chunks']:>12}"
          f"{f['versions']['files']:>11}{f['chunks']:>8}")
    d = result["during"]
    print(f"largest while editing: {d['max_bytes']:,} bytes, versions {d['max_versions']}; "
          f"{result['compactions']} compactions; end / fresh = {result['end_vs_fresh_bytes']}x")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Watch mode: edit-to-searchable latency, and query latency after many small commits.

A generated tree of ``--files`` Python files (default 5,000; 100 packages of 50 modules, each
module three real functions from this Python's standard library, renamed to be unique) is indexed
with random vectors (this measures watching, not the first index: embedding 15,000 chunks with the
0.5B model on 2 CPU cores would take most of an hour; every edit is embedded by the model itself,
inside ``cs watch``), then:

1. **Edit-to-searchable, tiny model.** A real ``cs watch --json --no-serve`` process follows the
   tree; the benchmark renames one function in one file, waits for the watcher's batch event
   (blocking, so the measuring process takes no CPU from the watcher), then queries as
   ``cs find --mode lexical`` would (fresh index connection) until the new name is found.
   Reported: p50/p90/max of write -> found, and the watcher's own batch time (judge paths, hash,
   chunk, embed the one changed chunk, commit).
2. **The same with the real 0.5B architecture on CPU** (Qwen2: hidden 896, 24 layers, 14 heads,
   2 KV heads, MLP 4864, vocab 151936; random weights, saved with a BPE tokenizer to a temp dir:
   FLOPs, hence timings, do not depend on the weights).
3. **Query latency after ``--commits`` small edit commits** (default 1,000; one-function edits
   through an in-process watcher, random vectors): what ``cs find`` pays per query (open the
   index, top-10 vector search / BM25 search, median of 15) at checkpoints, with compaction off
   (then after one ``Store.optimize``), and with the watcher's periodic compaction (default
   ``optimize_every``), with compaction costs and per-commit write times.

    python bench/watch_latency.py                 # ~10 minutes on 2 loaded CPU cores
    python bench/watch_latency.py --files 1000 --edits 5 --commits 200 --skip-05b

Prints a table and writes bench/results/watch_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._models import QWEN25_05B, build_05b  # noqa: E402

_DEF = re.compile(r"^def (\w+)", re.M)


# --- the tree ----------------------------------------------------------------------------------


def stdlib_functions(limit_lines: int = 40) -> list[str]:
    """Top-level functions of the standard library (real code, realistic token counts)."""
    from codesearch.source.chunk import chunk_source

    lib = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    for f in sorted(lib.glob("*.py")):
        try:
            source = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for c in chunk_source(source, f.name, "python"):
            if (c.kind == "function" and c.text.startswith("def ")
                    and c.end_line - c.start_line < limit_lines):
                out.append(c.text)
    return out


def make_tree(root: Path, n_files: int, functions: list[str], seed: int) -> None:
    """``n_files`` modules in packages of 50, three uniquely renamed functions each."""
    rng = random.Random(seed)
    for i in range(n_files):
        path = root / f"pkg{i // 50:03d}" / f"mod{i % 50:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        parts = []
        for j in range(3):
            text = rng.choice(functions)
            parts.append(_DEF.sub(rf"def \g<1>_m{i}_{j}", text, 1))
        path.write_text("\n\n\n".join(parts) + "\n", encoding="utf-8")


def edit_one_function(root: Path, rng: random.Random, n_files: int, marker: str) -> Path:
    """Rename the first function of a random module to ``marker`` (one chunk changes)."""
    i = rng.randrange(n_files)
    path = root / f"pkg{i // 50:03d}" / f"mod{i % 50:02d}.py"
    text = path.read_text(encoding="utf-8")
    path.write_text(_DEF.sub(f"def {marker}", text, 1), encoding="utf-8")
    return path


# --- models ------------------------------------------------------------------------------------


def random_embed_fn(dim: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)

    def embed(texts: Any, progress: Any = None, task: str = "nl2code") -> Any:
        v = rng.standard_normal((len(texts), dim)).astype(np.float32)
        if progress:
            progress(len(texts))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return embed


# --- measuring ---------------------------------------------------------------------------------


class Events:
    """JSON lines of a `cs watch --json` process, read on a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith("{"):
                self.queue.put(json.loads(line))

    def wait(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if event["event"] == name:
                return event


def searchable(root: Path, uri: str, marker: str) -> bool:
    """Would `cs find MARKER --mode lexical` (in-process) find it now?"""
    from codesearch.location import IndexLocation
    from codesearch.query.request import SearchOptions
    from codesearch.query.searcher import Searcher

    hits = Searcher.open(IndexLocation(root.resolve(), uri)).find(
        marker, SearchOptions(k=3, mode="lexical"))
    return any(h.symbol == marker for h in hits)


def edit_latency(root: Path, uri: str, model: str, n_files: int, edits: int,
                 start_timeout: float, seed: int) -> dict[str, Any]:
    """Run `cs watch` on ``root`` and time ``edits`` one-function edits until searchable."""
    cmd = [sys.executable, "-m", "codesearch", "watch", str(root), "--json", "--no-serve",
           "--model", model, "--index-uri", uri]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    events = Events(proc.stdout)
    rng = random.Random(seed)
    latencies, batch_seconds, embedded = [], [], []
    try:
        ready = events.wait("ready", start_timeout)
        startup = time.perf_counter() - t0
        for k in range(edits):
            # One full-text token (no "_"): BM25 splits identifiers, and "edited_marker_1_0"
            # would rank below earlier markers sharing most of its words.
            marker = f"wmark{seed}x{k}z"
            start = time.perf_counter()
            edit_one_function(root, rng, n_files, marker)
            # Block on the watcher's batch event rather than spinning on queries, which would
            # take CPU from the watcher on a small machine; then confirm as another reader.
            batch = events.wait("batch", 600)
            while not searchable(root, uri, marker):
                time.sleep(0.005)
            latencies.append(time.perf_counter() - start)
            batch_seconds.append(batch["seconds"])
            embedded.append(batch["chunks_embedded"])
        t1 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        stop_s = time.perf_counter() - t1
    finally:
        if proc.poll() is None:
            proc.kill()
    return {
        "files": ready["files"], "chunks": ready["chunks"], "edits": edits,
        "startup_to_ready_s": round(startup, 2),
        "catch_up_s": ready["catch_up"]["seconds"],
        "edit_to_searchable_s": summary(latencies),
        "watcher_batch_s": summary(batch_seconds),
        "chunks_embedded_per_edit": sorted(set(embedded)),
        "debounce_s": 0.25,
        "sigterm_to_exit_s": round(stop_s, 2), "exit_code": rc,
    }


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    p90 = values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]
    return {"p50": round(statistics.median(values), 3), "p90": round(p90, 3),
            "max": round(values[-1], 3), "n": len(values)}


def query_latency(uri: str, dim: int, reps: int = 15) -> dict[str, Any]:
    """What `cs find` pays after the model: open the index, top-10 search (median of reps)."""
    import numpy as np

    from codesearch.store.records import CHUNKS
    from codesearch.store.store import Store

    rng = np.random.default_rng(1)
    vec, fts = [], []
    for _ in range(reps):
        q = rng.standard_normal(dim).astype(np.float32)
        t = time.perf_counter()
        Store.open(uri).vector_search(q / np.linalg.norm(q), 10)
        vec.append(time.perf_counter() - t)
        t = time.perf_counter()
        Store.open(uri).text_search("parse file path", 10)
        fts.append(time.perf_counter() - t)
    table = Store.open(uri)._table(CHUNKS)
    assert table is not None
    stats = table.stats()
    fragments = stats.get("fragment_stats", {}).get("num_fragments") if isinstance(
        stats, dict) else getattr(getattr(stats, "fragment_stats", None), "num_fragments", None)
    versions = len(list((Path(uri) / f"{CHUNKS}.lance" / "_versions").glob("*.manifest")))
    size = sum(f.stat().st_size for f in Path(uri).rglob("*") if f.is_file())
    return {"vector_top10_ms": round(1000 * statistics.median(vec), 1),
            "bm25_top10_ms": round(1000 * statistics.median(fts), 1),
            "chunk_fragments": fragments, "chunk_versions_on_disk": versions,
            "index_mb": round(size / 1e6, 1)}


def settle(watcher: Any, quiet: float = 1.0, timeout: float = 600) -> None:
    """Wait until the watcher has been idle (no batch, no compaction) for ``quiet`` seconds;
    it compacts within a poll interval of going idle when compaction is due."""
    deadline = time.monotonic() + timeout
    last = (watcher.status.commits, watcher.status.optimizations)
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise RuntimeError("the watcher did not settle")
        now = (watcher.status.commits, watcher.status.optimizations)
        if now != last or watcher.status.phase != "watching":
            last, since = now, time.monotonic()
        time.sleep(0.02)


def many_commits(root: Path, uri: str, model: str, n_files: int, commits: int,
                 checkpoints: list[int], seed: int, optimize_every: int | None) -> dict[str, Any]:
    """Drive ``commits`` one-function edits (one commit each) through an in-process watcher and
    measure query latency at checkpoints. ``optimize_every=None``: compaction off, and one
    compaction at the end; else the watcher compacts on its own every ``optimize_every`` commits
    (measured once it has). Vectors are random here: this is about the store, not the model."""
    from codesearch.index.indexer import IndexOptions
    from codesearch.index.watch import Watcher, WatchOptions, WatchStatus
    from codesearch.store.store import Store

    store = Store.open(uri, read_consistency_interval=timedelta(0))  # as watch_root opens it
    dim = store.read_manifest().dim  # type: ignore[union-attr]
    compactions: list[float] = []
    began: list[float] = []

    def on_status(status: WatchStatus) -> None:
        if status.phase == "optimizing" and not began:
            began.append(time.perf_counter())
        elif status.phase != "optimizing" and began:
            compactions.append(time.perf_counter() - began.pop())

    off = optimize_every is None
    every = optimize_every or 10**9
    watcher = Watcher(root, store, IndexOptions(model=model),
                      WatchOptions(debounce=0.01, max_delay=0.2, optimize_every=every,
                                   optimize_interval=1e9),
                      embed_fn=random_embed_fn(dim), on_status=on_status)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    assert watcher.wait_ready(600), watcher.error
    compactions.clear()  # the catch-up's, if any
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    batch_s: list[float] = []
    t_all = time.perf_counter()
    out: dict[str, Any] = {"commits": commits,
                           "optimize_every": "off" if off else optimize_every}
    try:
        base = watcher.status.commits
        rows.append({"commits": 0, **query_latency(uri, dim)})
        for k in range(1, commits + 1):
            edit_one_function(rng=rng, root=root, n_files=n_files, marker=f"c_marker_{k}")
            deadline = time.monotonic() + 120
            while watcher.status.commits < base + k:
                if time.monotonic() > deadline or watcher.error:
                    raise RuntimeError(f"commit {k} did not happen: {watcher.error!r}")
                time.sleep(0.002)
            last = watcher.status.last_batch
            if last is not None:
                batch_s.append(last.seconds)
            if k in checkpoints:
                if not off:  # let the watcher idle: a compaction that is due now runs now
                    settle(watcher)
                rows.append({"commits": k, **query_latency(uri, dim)})
            if k % 100 == 0:
                print(f"  {k} commits, compaction {out['optimize_every']}", flush=True)
        out["wall_s"] = round(time.perf_counter() - t_all, 1)
        during = list(compactions)  # not the one on stop
        if off:
            t = time.perf_counter()
            Store.open(uri).optimize()
            out["final_compaction_s"] = round(time.perf_counter() - t, 2)
            rows.append({"commits": commits, "compacted": True, **query_latency(uri, dim)})
    finally:
        watcher.stop()
        thread.join(600)
    tenth = max(1, len(batch_s) // 10)
    out.update({
        "batch_s_first_tenth": round(statistics.mean(batch_s[:tenth]), 3),
        "batch_s_last_tenth": round(statistics.mean(batch_s[-tenth:]), 3),
        "queries": rows,
        "compactions": len(during),
        "compaction_s_mean": round(statistics.mean(during), 2) if during else None,
        "compaction_s_max": round(max(during), 2) if during else None,
    })
    return out


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--edits", type=int, default=10, help="timed edits, tiny model")
    parser.add_argument("--edits-05b", type=int, default=5, help="timed edits, 0.5B model")
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--vocab", type=int, default=32000, help="BPE vocabulary (0.5B)")
    parser.add_argument("--skip-05b", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench" / "results" / "watch_latency.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cs-watch-bench-"))
    os.environ["CS_HOME"] = str(work / "home")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from codesearch.index.indexer import Indexer, IndexOptions
    from codesearch.store.store import Store
    from tests.support.tiny_model import build_tiny_model

    results: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "tree": {"files": args.files, "layout": "packages of 50 modules, 3 stdlib functions "
                 "each, renamed to be unique"},
    }
    try:
        t = time.perf_counter()
        functions = stdlib_functions()
        root = work / "tree"
        make_tree(root, args.files, functions, args.seed)
        results["tree"]["generate_s"] = round(time.perf_counter() - t, 1)
        print(f"tree: {args.files} files under {root}", flush=True)

        # 1. tiny model
        tiny = str(build_tiny_model(work / "tiny"))
        tiny_uri = str(work / "index-tiny")
        t = time.perf_counter()
        # The initial vectors are random (this is about watching, not the first index); every
        # edit below is embedded by the model itself.
        stats = Indexer(root, Store.open(tiny_uri), IndexOptions(model=tiny),
                        embed_fn=random_embed_fn(64)).run()
        results["tiny_initial_index"] = {"seconds_random_vectors":
                                         round(time.perf_counter() - t, 1),
                                         "chunks": stats.chunks_total}
        print(f"tiny: indexed {stats.chunks_total} chunks in "
              f"{results['tiny_initial_index']['seconds_random_vectors']}s", flush=True)
        results["tiny"] = edit_latency(root, tiny_uri, tiny, args.files, args.edits, 600,
                                       args.seed)
        save(results, args.out)
        print(f"tiny: {results['tiny']['edit_to_searchable_s']}", flush=True)

        # 2. the 0.5B architecture on CPU
        if not args.skip_05b:
            t = time.perf_counter()
            model_dir = build_05b(work / "qwen05b", functions, args.vocab)
            build_s = time.perf_counter() - t
            uri = str(work / "index-05b")
            t = time.perf_counter()
            stats = Indexer(root, Store.open(uri), IndexOptions(model=str(model_dir)),
                            embed_fn=random_embed_fn(256)).run()
            results["qwen05b_setup"] = {"build_and_save_s": round(build_s, 1),
                                        "index_with_random_vectors_s":
                                        round(time.perf_counter() - t, 1),
                                        "vocab": args.vocab, "config": QWEN25_05B}
            print(f"0.5B: built in {build_s:.0f}s, indexed (random vectors)", flush=True)
            results["qwen05b_cpu"] = edit_latency(root, uri, str(model_dir), args.files,
                                                  args.edits_05b, 1200, args.seed + 1)
            print(f"0.5B: {results['qwen05b_cpu']['edit_to_searchable_s']}", flush=True)
            save(results, args.out)
            shutil.rmtree(model_dir, ignore_errors=True)

        # 3. many small commits, without and with the watcher's periodic compaction
        from codesearch.index.watch import WatchOptions

        every = WatchOptions().optimize_every
        checkpoints = sorted({c for c in (50, 100, 300, args.commits) if c <= args.commits})
        results["commits_no_compaction"] = many_commits(
            root, tiny_uri, tiny, args.files, args.commits, checkpoints, args.seed + 2, None)
        save(results, args.out)
        results["commits_with_compaction"] = many_commits(
            root, tiny_uri, tiny, args.files, args.commits,
            sorted({c for c in (every, args.commits) if c <= args.commits}), args.seed + 3,
            every)
    finally:
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        save(results, args.out)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args.out)


def save(results: dict[str, Any], out: Path) -> None:
    """Write what is known so far (a long run that fails late keeps its first parts)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def report(r: dict[str, Any], out: Path) -> None:
    print()
    print(f"{args_line(r)}")
    print(f"{'edit -> searchable (one function)':<40}{'p50 s':>8}{'p90 s':>8}{'max s':>8}"
          f"{'batch p50 s':>13}")
    for key, name in (("tiny", "tiny model"), ("qwen05b_cpu", "0.5B architecture, CPU")):
        if key in r:
            e, b = r[key]["edit_to_searchable_s"], r[key]["watcher_batch_s"]
            print(f"{name:<40}{e['p50']:>8}{e['p90']:>8}{e['max']:>8}{b['p50']:>13}")
    for key in ("commits_no_compaction", "commits_with_compaction"):
        m = r.get(key)
        if not m:
            continue
        every = m["optimize_every"]
        print()
        print(f"{'compaction ' + (str(every) if every == 'off' else f'every {every} commits'):<34}"
              f"{'vector ms':>10}{'bm25 ms':>9}{'fragments':>11}{'versions':>10}{'MB':>8}")
        for row in m["queries"]:
            label = (f"  after {row['commits']} commits"
                     + (", then compacted" if row.get("compacted") else ""))
            print(f"{label:<34}{row['vector_top10_ms']:>10}{row['bm25_top10_ms']:>9}"
                  f"{str(row['chunk_fragments']):>11}{row['chunk_versions_on_disk']:>10}"
                  f"{row['index_mb']:>8}")
        extra = (f"; final compaction {m['final_compaction_s']}s" if "final_compaction_s" in m
                 else f"; {m['compactions']} compactions, mean {m['compaction_s_mean']}s, "
                      f"max {m['compaction_s_max']}s")
        print(f"  {m['commits']} commits in {m['wall_s']}s; batch {m['batch_s_first_tenth']}s "
              f"(first tenth) -> {m['batch_s_last_tenth']}s (last tenth){extra}")
    print(f"\nwrote {out}")


def args_line(r: dict[str, Any]) -> str:
    m = r["machine"]
    return (f"{r['tree']['files']} files; {m['cores']} cores, load average "
            f"{m['load_average_at_start'][0]} at start, {m['load_average_at_end'][0]} at end")


if __name__ == "__main__":
    main()

"""`cs watch` with a real watchdog observer on a temporary copy of a fixture repository and the
tiny model: adds, edits, renames and moves (files and directories), deletes, atomic saves,
ignore-file changes, a burst of 500 files, readers in another process during writes, the writer
lock, a stop in the middle of a batch (what SIGTERM does; a kill -9 leaves the same state, without
the final commit), and a real `cs watch` process serving queries and stopped by SIGTERM.

Every wait polls the index with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from codesearch.config import resolve_index_uri
from codesearch.documents import content_hash, row_tasks
from codesearch.index.indexer import IndexOptions
from codesearch.index.watch import Watcher, WatchOptions, WatchStatus
from codesearch.location import IndexSettings
from codesearch.query.request import SearchOptions
from codesearch.query.searcher import Searcher
from codesearch.source.chunk import chunk_source
from codesearch.source.discover import Discovery, read_source
from codesearch.store.store import Store
from tests.support.cli import cs
from tests.support.wait import wait_for

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
DEADLINE = 60.0  # generous: a loaded CI machine; normally each wait ends in well under a second


# --- helpers ---------------------------------------------------------------------------------


def expected_chunks(root: Path, scheme: str = "jina-code-v1") -> list[tuple[str, int, int, str]]:
    """What a clean index of ``root`` holds, from discovery and the chunker."""
    out = []
    for f in Discovery(root):
        for c in chunk_source(read_source(f), f.rel, f.language):
            # One row per document side: a doc chunk has two with the (prefixed) tiny model.
            out.extend((c.path, c.start_line, c.end_line, content_hash(c, task))
                       for task in row_tasks(c, scheme))
    return sorted(out)


def stored_chunks(root: Path) -> list[tuple[str, int, int, str]]:
    """What the index holds, read like another process would (a fresh connection)."""
    store = Store.open(resolve_index_uri(root))
    return sorted((c.path, c.start_line, c.end_line, c.hash) for c in store.chunks())


def converged(root: Path, what: str) -> None:
    """Wait until the index equals a clean index of the tree (chunks and file records)."""
    wait_for(what, lambda: stored_chunks(root) == expected_chunks(root))
    records = Store.open(resolve_index_uri(root)).file_records()
    assert set(records) == {f.rel for f in Discovery(root)}


def texts(root: Path) -> list[str]:
    return [c.text for c in Store.open(resolve_index_uri(root)).chunks()]


def lexical(root: Path, query: str) -> list[str]:
    """Symbols `cs find --mode lexical` returns for ``query`` (no model needed)."""
    searcher = Searcher.open(IndexSettings().locate(root))
    hits = searcher.find(query, SearchOptions(k=5, mode="lexical"))
    return [h.symbol for h in hits]


@contextmanager
def watching(root: Path, model: Path, *, batch_files: int = 64,
             on_status: Callable[[WatchStatus], None] | None = None,
             **options: Any) -> Iterator[Watcher]:
    """A watcher on ``root`` running in a background thread through the public API."""
    store = Store.open(resolve_index_uri(root))
    watch_options = WatchOptions(**{"debounce": 0.05, "max_delay": 1.0, **options})
    watcher = Watcher(root, store, IndexOptions(model=str(model), batch_files=batch_files),
                      watch_options, on_status=on_status)
    thread = threading.Thread(target=watcher.run, name="test-watch", daemon=True)
    thread.start()
    try:
        assert watcher.wait_ready(DEADLINE), f"watcher did not start: {watcher.error!r}"
        yield watcher
    finally:
        watcher.stop()
        thread.join(DEADLINE)
        assert not thread.is_alive(), "watcher did not stop"
    if watcher.error is not None:
        raise watcher.error
    assert watcher.status.phase == "stopped"


# --- edits -----------------------------------------------------------------------------------


def test_add_edit_delete_a_function(repo: Path, tiny_model_dir: Path) -> None:
    with watching(repo, tiny_model_dir) as w:
        converged(repo, "the catch-up")
        assert w.status.catch_up is not None and w.status.catch_up.files_new == 10

        new = repo / "datatools" / "geometry.py"
        new.write_text("def polygon_area_marker(points):\n    return 0.5 * sum(points)\n")
        wait_for("the new function to be found",
                 lambda: lexical(repo, "polygon_area_marker"),
                 lambda syms: "polygon_area_marker" in syms)

        new.write_text("def polygon_perimeter_marker(points):\n    return sum(points)\n")
        wait_for("the edit to be found", lambda: lexical(repo, "polygon_perimeter_marker"),
                 lambda syms: "polygon_perimeter_marker" in syms)
        assert not any("polygon_area_marker" in t for t in texts(repo))
        assert "polygon_area_marker" not in lexical(repo, "polygon_area_marker")

        # One function edited in a file of many: only that chunk reaches the model.
        stats = repo / "datatools" / "stats.py"
        before = w.status.batches
        stats.write_text(stats.read_text().replace("return math.comb(n, k)",
                                                   "return int(math.comb(n, k))"))
        wait_for("the one-function edit", lambda: texts(repo),
                 lambda ts: any("int(math.comb(n, k))" in t for t in ts))
        wait_for("its batch to be reported", lambda: w.status.batches, lambda n: n > before)
        batch = w.status.last_batch
        assert batch is not None and batch.files_changed == 1 and batch.chunks_embedded == 1
        n_chunks = len(chunk_source(stats.read_text(), "datatools/stats.py", "python"))
        assert batch.chunks_reused == n_chunks - 1

        new.unlink()
        wait_for("the deleted file to leave the index", lambda: texts(repo),
                 lambda ts: not any("polygon_perimeter_marker" in t for t in ts))
        converged(repo, "after delete")


def test_renames_and_moves_of_files_and_directories(repo: Path, tmp_path: Path,
                                                    tiny_model_dir: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    with watching(repo, tiny_model_dir):
        converged(repo, "the catch-up")
        (repo / "datatools" / "net.py").rename(repo / "datatools" / "network.py")
        converged(repo, "a file rename")

        (repo / "lib").mkdir()
        (repo / "datatools" / "text.py").rename(repo / "lib" / "text.py")
        converged(repo, "a file moved to a new directory")

        (repo / "datatools").rename(repo / "pkg")
        converged(repo, "a directory rename")
        assert not any(p.startswith("datatools/") for p, *_ in stored_chunks(repo))

        (repo / "pkg").rename(repo / "lib" / "pkg")
        converged(repo, "a directory moved into another")

        (repo / "lib").rename(outside / "lib")  # moved out of the root: gone
        converged(repo, "a directory moved out of the root")
        assert {p for p, *_ in stored_chunks(repo)} == {"README.md"}

        (outside / "lib").rename(repo / "src")  # moved in from outside: walked
        converged(repo, "a directory moved in from outside")
        assert any(p.startswith("src/pkg/") for p, *_ in stored_chunks(repo))

        shutil.rmtree(repo / "src")
        converged(repo, "a directory tree deleted")


def test_atomic_saves(repo: Path, tiny_model_dir: Path) -> None:
    stats = repo / "datatools" / "stats.py"
    with watching(repo, tiny_model_dir):
        converged(repo, "the catch-up")
        # Write a temp file, rename it over the original (most editors, and many tools).
        tmp = stats.with_name(".stats.py.tmp.12345")
        tmp.write_text(stats.read_text().replace("def mean_of_column", "def mean_of_csv_column"))
        os.replace(tmp, stats)
        wait_for("the atomic save", lambda: lexical(repo, "mean_of_csv_column"),
                 lambda syms: "mean_of_csv_column" in syms)
        converged(repo, "the atomic save")

        # Vim's way: move the original to a backup, write a new file, delete the backup.
        backup = stats.with_name("stats.py~")
        text = stats.read_text()
        stats.rename(backup)
        stats.write_text(text.replace("def binomial", "def binomial_coefficient"))
        backup.unlink()
        wait_for("the backup-style save", lambda: lexical(repo, "binomial_coefficient"),
                 lambda syms: "binomial_coefficient" in syms)
        converged(repo, "the backup-style save")
        assert not any("~" in p or ".tmp" in p for p, *_ in stored_chunks(repo))


def test_ignore_file_changes_and_ignored_paths(repo: Path, tiny_model_dir: Path) -> None:
    with watching(repo, tiny_model_dir) as w:
        converged(repo, "the catch-up")
        (repo / ".gitignore").write_text("datatools/net.py\n")
        converged(repo, "a root .gitignore")
        assert "datatools/net.py" not in {p for p, *_ in stored_chunks(repo)}

        (repo / "datatools" / ".csignore").write_text("stats.py\ntimeseries.py\n")
        converged(repo, "a nested .csignore")
        paths = {p for p, *_ in stored_chunks(repo)}
        assert not paths & {"datatools/stats.py", "datatools/timeseries.py"}

        (repo / "datatools" / ".csignore").unlink()
        (repo / ".gitignore").write_text("generated/\n")
        converged(repo, "ignore rules lifted")
        assert {"datatools/net.py", "datatools/stats.py"} <= {p for p, *_ in stored_chunks(repo)}

        # Writes in ignored and vendored places never reach the index (nor cause a commit).
        commits = w.status.commits
        for d in ("generated", "node_modules/pkg", ".git/objects"):
            (repo / d).mkdir(parents=True)
            (repo / d / "junk.py").write_text("def ignored_marker():\n    pass\n")
        (repo / "datatools" / "sentinel.py").write_text("def sentinel_marker():\n    pass\n")
        wait_for("the sentinel", lambda: texts(repo),
                 lambda ts: any("sentinel_marker" in t for t in ts))
        converged(repo, "ignored writes")
        assert not any("ignored_marker" in t for t in texts(repo))
        assert w.status.commits == commits + 1

        (repo / ".git" / "info").mkdir()
        (repo / ".git" / "info" / "exclude").write_text("datatools/text.py\n")
        converged(repo, ".git/info/exclude")
        assert "datatools/text.py" not in {p for p, *_ in stored_chunks(repo)}


@pytest.mark.slow
def test_a_burst_of_500_files_converges_in_few_batches(repo: Path, tiny_model_dir: Path,
                                                       tmp_path: Path) -> None:
    with watching(repo, tiny_model_dir) as w:
        converged(repo, "the catch-up")
        before = w.status.batches
        for d in range(10):  # like a branch switch: many files, many directories, at once
            sub = repo / "gen" / f"m{d}"
            sub.mkdir(parents=True)
            for i in range(50):
                (sub / f"f{i}.py").write_text(
                    f"def gen_{d}_{i}(x):\n    return x * {d} + {i}\n\n\n"
                    f"class Box{d}x{i}:\n    size = {i}\n")
        converged(repo, "500 new files")
        assert w.status.batches - before < 50  # coalesced: not one commit per file
        store = Store.open(resolve_index_uri(repo))  # reads the version current now

        # Counts equal a clean `cs index` of the same tree.
        result = cs("index", str(repo), "--json", "--model", str(tiny_model_dir),
                    "--index-dir", str(tmp_path / "clean"))
        assert result.exit_code == 0, result.output
        clean = json.loads(result.stdout)
        assert clean["chunks_total"] == store.count_chunks()
        assert clean["files_scanned"] == store.count_files() == 510

        shutil.rmtree(repo / "gen")
        converged(repo, "500 files deleted")
        assert Store.open(resolve_index_uri(repo)).count_files() == 10


# --- concurrency -------------------------------------------------------------------------------

_READER = r"""
import json, os, sys
from pathlib import Path
from codesearch.store.store import Store
from codesearch.location import IndexSettings
uri, stop, started = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
versions = json.loads(sys.argv[4])
seen = {name: 0 for name in versions}
bad = []
n = 0
while not stop.exists():
    store = Store.open(uri)  # what `cs find` does: a fresh connection, the latest commit
    symbols = sorted(c.symbol for c in store.chunks("path = 'flip.py'"))
    name = next((k for k, v in versions.items() if sorted(v) == symbols), None)
    if name is None:
        bad.append(symbols)
    else:
        seen[name] += 1
    n += 1
    if n == 1:
        started.write_text("1")
print(json.dumps({"reads": n, "seen": seen, "bad": bad[:5], "n_bad": len(bad)}))
"""


def _flip_source(names: list[str]) -> str:
    return "\n\n".join(f"def {n}(x):\n    return x + {i}\n" for i, n in enumerate(names))


def test_readers_in_another_process_see_whole_batches(repo: Path, tmp_path: Path,
                                                      tiny_model_dir: Path) -> None:
    versions = {"a": [f"alpha_{i}" for i in range(6)], "b": [f"beta_{i}" for i in range(3)]}
    flip = repo / "flip.py"
    flip.write_text(_flip_source(versions["a"]))
    uri = resolve_index_uri(repo)

    def symbols() -> list[str]:
        return sorted(c.symbol for c in Store.open(uri).chunks("path = 'flip.py'"))

    with watching(repo, tiny_model_dir, optimize_every=3) as w:
        wait_for("version a", symbols, lambda s: s == sorted(versions["a"]))
        stop, started = tmp_path / "stop", tmp_path / "started"
        reader = subprocess.Popen(
            [sys.executable, "-c", _READER, uri, str(stop), str(started), json.dumps(versions)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for("the reader to start", lambda: started.exists() or reader.poll() is not None)
            # Flip between versions; compactions (every 3 commits) run in between too.
            for i in range(8):
                want = sorted(versions["b" if i % 2 == 0 else "a"])
                flip.write_text(_flip_source(want))
                wait_for(f"flip {i}", symbols, want.__eq__)
            stop.write_text("1")
            out, err = reader.communicate(timeout=DEADLINE)
            assert w.status.optimizations >= 2  # compactions ran while the reader read
        finally:
            if reader.poll() is None:
                reader.kill()
    assert reader.returncode == 0, err
    report = json.loads(out)
    assert report["n_bad"] == 0, report  # never a half-applied batch, never an error
    assert report["seen"]["a"] > 0 and report["seen"]["b"] > 0, report


def test_stop_finishes_the_commit_in_progress_and_the_next_run_the_rest(
        repo: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for i in range(20):
        (incoming / f"m{i}.py").write_text(f"def late_{i}(x):\n    return x + {i}\n")

    def stop_after_first_commit(status: WatchStatus) -> None:
        if status.phase == "indexing" and status.commits > catch_up_commits:
            watcher.stop()  # as SIGTERM does, in the middle of a 10-commit batch

    catch_up_commits = 10**9
    with watching(repo, tiny_model_dir, batch_files=2, on_status=stop_after_first_commit) as w:
        watcher, catch_up_commits = w, w.status.commits
        (incoming).rename(repo / "incoming")  # one event; the batch walks 20 files
        wait_for("the stop", lambda: w.status.phase, lambda ph: ph == "stopped")
    batch = w.status.last_batch
    assert batch is not None and not batch.complete and batch.commits == 1
    assert batch.files_new == 2  # the first commit of 2 files went through, whole
    assert len([p for p in Store.open(resolve_index_uri(repo)).file_records()
                if p.startswith("incoming/")]) == 2

    result = cs("index", str(repo), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["files_new"] == 18 and out["files_changed"] == 18 and out["files_removed"] == 0
    assert stored_chunks(repo) == expected_chunks(repo)


def test_cs_index_is_refused_while_watching(repo: Path, tiny_model_dir: Path) -> None:
    with watching(repo, tiny_model_dir):
        result = cs("index", str(repo))
        assert result.exit_code == 2
        assert f"pid {os.getpid()}" in result.stderr and "cs watch" in result.stderr
    result = cs("index", str(repo), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files_changed"] == 0


# --- the real command ------------------------------------------------------------------------


class _Lines:
    """JSON lines of a process's stdout, read on a thread so waits can have deadlines."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                self._queue.put(json.loads(line))

    def next_event(self, name: str, timeout: float = DEADLINE) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {name!r} event; saw {self.seen}")
            self.seen.append(event)
            if event["event"] == name:
                return event


def _cs_watch(root: Path, *args: str) -> tuple[subprocess.Popen[str], _Lines]:
    proc = subprocess.Popen([sys.executable, "-m", "codesearch", "watch", str(root), "--json",
                             "--debounce", "0.05", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, _Lines(proc.stdout)


@pytest.mark.slow
def test_cs_watch_process_serves_queries_and_stops_cleanly_on_sigterm(
        repo: Path, tiny_model_dir: Path) -> None:
    from codesearch.location import IndexSettings
    from codesearch.query.client import find_server
    from codesearch.query.protocol import request
    from codesearch.query.request import Query, SearchOptions

    location = IndexSettings().for_root(repo)

    proc, events = _cs_watch(repo, "--model", str(tiny_model_dir))
    try:
        ready = events.next_event("ready")
        assert ready["files"] == 10 and ready["catch_up"]["files_new"] == 10
        serve = events.next_event("serve")
        assert serve["serving"], serve
        (repo / "a.py").write_text("def served_marker():\n    return 1\n")
        batch = events.next_event("batch")
        assert batch["files_new"] == 1 and batch["chunks_embedded"] == 1
        # Queries are answered by the watching process itself, from the latest commit.
        sock = find_server(location)
        assert sock is not None
        query = Query("find", "served_marker", SearchOptions(mode="lexical"))
        answer = request(sock, {"op": "answer", "root": str(repo.resolve()),
                                "query": query.to_dict(), "device": None, "precision": None})
        assert answer["ok"], answer
        assert answer["answer"]["hits"][0]["symbol"] == "served_marker", answer
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    assert proc.returncode == 0, proc.stderr.read()
    assert events.next_event("stopped")["files"] == 11
    assert find_server(location) is None  # the socket went with it
    # Nothing was left undone, and the writer lock is free again.
    result = cs("index", str(repo), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files_changed"] == 0
    converged(repo, "after the watcher stopped")

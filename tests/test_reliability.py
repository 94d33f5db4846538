"""Reliability of `cs` on a user's index (issue 7), through the real CLI and real processes with the
tiny model:

- interruption: a real `cs index` process killed with SIGKILL while it loads the model, before its
  first commit, between batches, and inside a commit; a rerun ends with exactly a clean index of
  the tree and no duplicate ids;
- concurrency: a loop of `cs find` (lexical and semantic) in one process while `cs index` or
  `cs watch` commits in another sees only whole versions of a file; two `cs index` processes never
  interleave;
- storage faults: an unwritable index directory, a full disk (tmpfs, as root) and a file size
  limit (RLIMIT_FSIZE) give one error line and exit code 2, and the previous index still answers;
- bad input: odd files are skipped and counted, bad arguments and damaged indexes are one error
  line with the right exit code, and nothing is lost;
- cleanup of old versions (issue 27): a loop of `cs find` while each run drops every old version
  never fails nor sees a partial answer; a kill -9 inside the cleanup leaves an index that opens
  and answers, and the next run leaves a clean one.

Every wait polls with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from codesearch.config import resolve_index_uri
from codesearch.source.discover import Discovery
from codesearch.store.store import Store
from codesearch.store.versions import GRACE_ENV
from tests.support.cli import cs
from tests.support.wait import wait_for
from tests.test_index import _many_files, expected_chunks, index, store_of, stored_chunks

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
DEADLINE = 120.0  # generous: a loaded 2-core machine; each wait normally ends in seconds
CS = [sys.executable, "-m", "codesearch"]


# --- helpers ---------------------------------------------------------------------------------


def assert_one_error_line(stderr: str, *needles: str) -> None:
    """stderr ends with `error: <one line>`, optionally followed by one `hint:` line; before it
    at most notices (e.g. "Measuring fp32 vs bf16 ..."), never a traceback or another error."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert lines[errors[0] + 1:] in ([], [lines[-1]]) and (
        errors[0] == len(lines) - 1 or lines[-1].startswith("hint: ")), stderr
    assert "Traceback" not in stderr, stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)


def lexical_hits(root: Path, query: str = "mean", *extra: str) -> list[tuple[str, int, str]]:
    """What `cs find --mode lexical --json` answers (no model needed)."""
    result = cs("find", query, "--path", str(root), "--mode", "lexical", "--json", "-k", "20",
                *extra)
    assert result.exit_code == 0, result.output
    return [(h["path"], h["start_line"], h["symbol"]) for h in json.loads(result.stdout)]


def assert_clean_index(root: Path) -> None:
    """The index equals a clean index of ``root``: same chunks, no duplicate ids, one record per
    discovered file, and the full-text index answers."""
    rows = store_of(root).chunks()
    assert len({c.id for c in rows}) == len(rows), "duplicate chunk ids"
    assert stored_chunks(root) == expected_chunks(root)
    assert set(store_of(root).file_records()) == {f.rel for f in Discovery(root)}
    assert lexical_hits(root, "mean")


def store_of_dir(root: Path, index_dir: Path) -> Store:
    """The store of ``root`` under ``--index-dir index_dir``."""
    return Store.open(resolve_index_uri(root, index_dir=index_dir))


# --- interruption ----------------------------------------------------------------------------


def _count(path: Path) -> int:
    """Finished files in a directory (lance writes ``.tmp*`` files, then renames them), -1 when
    the directory does not exist."""
    try:
        return sum(1 for name in os.listdir(path) if not name.startswith("."))
    except FileNotFoundError:
        return -1


class _Disk:
    """What a `cs index` run has put on disk so far, read from LanceDB's directories: data files
    and versions of the chunks and files tables. Each batch commits chunks (a data file, then a
    version), then files (the same), so the two tables are level between batches and the chunks
    table is ahead inside a commit."""

    def __init__(self, index_dir: Path) -> None:
        self.dir = index_dir

    def snapshot(self) -> dict[str, int]:
        return {f"{table}.{part}": _count(self.dir / f"{table}.lance" / part)
                for table in ("manifest", "chunks", "files") for part in ("data", "_versions")}

    @staticmethod
    def lead(s: dict[str, int]) -> int:
        """How far the chunks table is ahead of the files table (data files plus versions)."""
        return (s["chunks.data"] - s["files.data"]) + (s["chunks._versions"] - s["files._versions"])


# (when to kill, given the snapshot at the start of this attempt and now) and (did the kill land
# where it was meant to, from the snapshot after the process died).
KillPoint = tuple[Callable[[dict[str, int], dict[str, int]], bool],
                  Callable[[dict[str, int], dict[str, int]], bool]]
KILL_POINTS: dict[str, KillPoint] = {
    # The lock is taken, nothing is written yet (a new index is described from the model's
    # files; its weights load later, in phase 2).
    "loading the model": (
        lambda base, s: s["manifest._versions"] == -1,
        lambda base, s: s["manifest._versions"] == -1,
    ),
    # Tables exist; the first batch is being chunked and embedded.
    "before the first commit": (
        lambda base, s: s["chunks._versions"] > 0 and s["chunks.data"] == -1,
        lambda base, s: s["chunks._versions"] > 0 and s["chunks.data"] == -1,
    ),
    # Three batches are fully committed; the next one is being chunked and embedded.
    "between batches": (
        lambda base, s: s["files.data"] >= 3 and _Disk.lead(s) == _Disk.lead(base),
        lambda base, s: s["files.data"] >= 3 and _Disk.lead(s) == _Disk.lead(base),
    ),
    # A later batch's chunks are written (a data file, maybe its version) but its file records
    # are not: the window the store's two-commit design must survive.
    "inside a commit": (
        lambda base, s: s["files.data"] >= 1 and _Disk.lead(s) > _Disk.lead(base),
        lambda base, s: _Disk.lead(s) > _Disk.lead(base),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_at_any_point_then_rerun_equals_a_clean_index(
        point: str, tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 6)  # 54 files: 27 batches of 2
    disk = _Disk(Path(resolve_index_uri(root)))
    lock_file = disk.dir / ".cs-writer.lock"
    cmd = [*CS, "index", str(root), "--model", str(tiny_model_dir), "--batch-files", "2", "--json"]
    trigger, landed = KILL_POINTS[point]
    # The window inside a commit is a few milliseconds: a kill that misses it still leaves a
    # valid (earlier) state, and the next attempt resumes from there and tries again.
    attempts = 6 if point == "inside a commit" else 1
    hit = False
    for _attempt in range(attempts):
        base = disk.snapshot()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + DEADLINE
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                # Only once this process holds the lock (its pid is in the lock file).
                if lock_file.exists() and lock_file.read_bytes() == str(proc.pid).encode():
                    if trigger(base, disk.snapshot()):
                        break
                time.sleep(0.0005)
        finally:
            proc.send_signal(signal.SIGKILL)  # on a timeout too: never leave a writer behind
            _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, (
            f"the run ended ({proc.returncode}) before the kill point: {err.decode()[-2000:]}")
        if landed(base, disk.snapshot()):
            hit = True
            break
    assert hit, f"no kill landed {point}; last state {disk.snapshot()}"

    # --model again: a kill before the manifest was written leaves no record of the model.
    out = index(root, "--model", str(tiny_model_dir))
    assert out["files_scanned"] == 54
    assert_clean_index(root)


def _coverage(root: Path) -> tuple[int, int]:
    try:
        return store_of(root).coverage()
    except Exception:  # noqa: BLE001 - the tables may not exist yet
        return 0, 0


def _searchable(root: Path) -> bool:
    try:
        return not store_of(root).needs_indexes() and store_of(root).count_chunks() > 0
    except Exception:  # noqa: BLE001 - the tables may not exist yet
        return False


# Phase 2 (issue 17): (when to kill, given the coverage) for a run of the big tree.
PHASE2_POINTS: dict[str, Callable[[Path], bool]] = {
    # Phase 1 is done (the full-text index exists); the model is loading, no vector yet.
    "before the first vector": lambda root: _searchable(root) and _coverage(root)[0] == 0,
    # Some batches of vectors are committed, others are not.
    "between vector batches": lambda root: 0 < _coverage(root)[0] < _coverage(root)[1],
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(PHASE2_POINTS))
def test_sigkill_in_phase_two_keeps_the_lexical_index_and_the_vectors(
        point: str, tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 6)
    lock_file = Path(resolve_index_uri(root)) / ".cs-writer.lock"
    cmd = [*CS, "index", str(root), "--model", str(tiny_model_dir), "--json"]
    hit = False
    for _attempt in range(4):  # a fast tiny model may finish a batch between two polls
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + DEADLINE
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if (lock_file.exists() and lock_file.read_bytes() == str(proc.pid).encode()
                        and PHASE2_POINTS[point](root)):
                    break
                time.sleep(0.005)
        finally:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        if proc.returncode == -signal.SIGKILL and PHASE2_POINTS[point](root):
            hit = True
            break
        shutil.rmtree(Path(resolve_index_uri(root)).parent.parent, ignore_errors=True)
    assert hit, f"no kill landed {point}: {err.decode()[-2000:]}"

    # Killed in phase 2: every chunk is there and searchable by words; committed vectors stay.
    assert stored_chunks(root) == expected_chunks(root)
    assert lexical_hits(root, "mean")
    embedded, total = store_of(root).coverage()
    result = cs("find", "mean", "--path", str(root), "--json", "--no-server", "-k", "3",
                "--model", str(tiny_model_dir))
    assert result.exit_code == 0 and json.loads(result.stdout), result.output
    assert f"vectors for {embedded:,} of {total:,} chunks" in result.stderr

    out = index(root, "--model", str(tiny_model_dir))
    assert out["files_unchanged"] == 54 and out["chunks_with_vectors"] == out["chunks_total"]
    assert out["chunks_embedded"] <= total - embedded  # committed vectors are not redone
    assert_clean_index(root)


class _NO_RUN:  # noqa: N801 - a stand-in manifest without a last run
    last_run = None


def _signal_after_phase_one(root: Path, model: Path, signum: int, *args: str
                            ) -> tuple[subprocess.Popen[bytes], bytes, bytes]:
    """Run `cs index ROOT`, send ``signum`` once phase 1 has ended (its summary is in the
    manifest, just before phase 2 starts), and wait for the process: (process, stdout, stderr)."""
    proc = subprocess.Popen([*CS, "index", str(root), "--model", str(model), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for("phase 1 to end", lambda: proc.poll() is not None or (
            _searchable(root) and (store_of(root).read_manifest() or _NO_RUN).last_run),
            deadline=DEADLINE)
    finally:
        proc.send_signal(signum)
        out, err = proc.communicate()
    return proc, out, err


@pytest.mark.slow
def test_ctrl_c_in_phase_two_keeps_its_batch_says_how_far_it_got_and_resumes(
        tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    """A first Ctrl-C once the tree is searchable ends the run after the batch in progress:
    that batch is committed (it used to be thrown away), the line says so once, exit 130."""
    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 6)
    proc, _, err = _signal_after_phase_one(root, tiny_model_dir, signal.SIGINT)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt")  # a very fast machine
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    embedded, total = store_of(root).coverage()
    # (that the batch in flight is kept: test_first_ctrl_c_commits_the_batch_being_embedded)
    assert (f"Interrupted: kept vectors for {embedded:,} of {total:,} chunks (the batch in "
            "progress was committed); the tree is searchable, and `cs index` resumes"
            in err.decode()), err.decode()[-2000:]
    assert err.decode().count("Interrupted") == 1, err.decode()[-2000:]  # said once
    assert "Ctrl-C again to stop now" in err.decode()
    assert stored_chunks(root) == expected_chunks(root)
    out = index(root)
    assert out["chunks_with_vectors"] == out["chunks_total"]
    assert out["chunks_embedded"] <= total - embedded  # committed vectors are not redone
    assert_clean_index(root)


def test_first_ctrl_c_commits_the_batch_being_embedded(
        tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    """Ctrl-C while a batch is being embedded: that batch is committed before the run ends (it
    used to be thrown away: the bar had shown 48 vectors, 32 were kept)."""
    from codesearch.index.indexer import IndexOptions, IndexProgress
    from codesearch.index.run import RunOptions, run_index
    from codesearch.location import IndexSettings

    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 6)
    shown: list[int] = []

    def press_ctrl_c_mid_batch(p: IndexProgress) -> None:
        if p.phase == "embed" and p.chunks_embedded and not shown:
            shown.append(p.chunks_embedded)  # the bar shows these as embedded
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="the batch in progress was committed"):
        run_index(root, IndexSettings(), IndexOptions(model=str(tiny_model_dir)), RunOptions(),
                  progress=press_ctrl_c_mid_batch)
    embedded, total = store_of(root).coverage()
    assert shown and shown[0] <= embedded < total


@pytest.mark.slow
def test_sigterm_in_phase_two_prints_what_it_kept_and_exits_143(
        tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    """A run stopped by SIGTERM finishes its batch, prints its summary, and exits 143: a script
    can tell it from a finished run."""
    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 6)
    proc, out, err = _signal_after_phase_one(root, tiny_model_dir, signal.SIGTERM, "--json")
    if proc.returncode == 0 and not json.loads(out)["stopped"]:
        pytest.skip("the run finished before the signal")  # a very fast machine
    assert proc.returncode == 143, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    summary = json.loads(out)
    assert summary["stopped"] is True
    assert summary["chunks_total"] == len(expected_chunks(root))
    assert stored_chunks(root) == expected_chunks(root)
    again = index(root)
    assert again["stopped"] is False and again["chunks_with_vectors"] == again["chunks_total"]
    assert_clean_index(root)


# --- concurrency -----------------------------------------------------------------------------

# One process, one loop of `cs find` (the CLI's own code through CliRunner): each answer must be
# whole (exactly one version of flip.py), never an error, never a duplicate.
_READER = r"""
import json, sys
from pathlib import Path
from typer.testing import CliRunner
from codesearch.cli import app

root, stop, started = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
versions = {name: sorted(symbols) for name, symbols in json.loads(sys.argv[4]).items()}
runner = CliRunner()
reads, seen, bad = 0, {name: 0 for name in versions}, []
while not stop.exists():
    for mode in ("lexical", "semantic"):
        r = runner.invoke(app, ["find", "alpha beta", "--path", root, "--mode", mode, "--json",
                                "-k", "50", "--glob", "flip.py"])
        reads += 1
        if r.exit_code != 0:
            bad.append({"mode": mode, "exit": r.exit_code, "stderr": r.stderr[-500:],
                        "exception": repr(r.exception)})
            continue
        try:
            hits = json.loads(r.stdout)
        except ValueError:
            bad.append({"mode": mode, "unparsable": r.stdout[-500:]})
            continue
        spans = [(h["path"], h["start_line"], h["end_line"]) for h in hits]
        symbols = sorted(h["symbol"] for h in hits)
        if len(set(spans)) != len(spans):
            bad.append({"mode": mode, "duplicates": spans})
        match = [name for name, want in versions.items() if symbols == want]
        if not match:
            bad.append({"mode": mode, "partial": symbols})
        else:
            seen[match[0]] += 1
    if reads == 2:
        started.write_text("1")
print(json.dumps({"reads": reads, "seen": seen, "bad": bad[:5], "n_bad": len(bad)}))
"""

FLIP_VERSIONS = {"a": [f"alpha_{i}" for i in range(6)], "b": [f"beta_{i}" for i in range(3)]}


def _flip_source(names: list[str]) -> str:
    return "\n\n".join(f"def {n}(x):\n    return x + {i}\n" for i, n in enumerate(names))


def _flip_is(root: Path, symbols: list[str]) -> bool:
    return sorted(c.symbol for c in store_of(root).chunks("path = 'flip.py'")) == sorted(symbols)


@contextmanager
def _reader(root: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The `cs find` loop in its own process; yields its report (filled in when it stops)."""
    stop, started = tmp_path / "stop", tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", _READER, str(root), str(stop), str(started),
         json.dumps(FLIP_VERSIONS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    report: dict[str, Any] = {}
    try:
        wait_for("the reader's first answers", lambda: started.exists() or proc.poll() is not None,
                 deadline=DEADLINE)
        yield report
        stop.write_text("1")
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    report.update(json.loads(out))


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["cs index", "cs watch"])
def test_find_in_a_loop_while_another_process_commits(
        writer: str, repo: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    flip = repo / "flip.py"
    flip.write_text(_flip_source(FLIP_VERSIONS["a"]))
    index(repo, "--model", str(tiny_model_dir))
    flips = 2 if writer == "cs index" else 8  # a cs index process costs seconds to start
    watch: subprocess.Popen[str] | None = None
    with _reader(repo, tmp_path) as report:
        if writer == "cs watch":
            watch = subprocess.Popen([*CS, "watch", str(repo), "--json", "--debounce", "0.05"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for i in range(flips):
                want = FLIP_VERSIONS["b" if i % 2 == 0 else "a"]
                flip.write_text(_flip_source(want))
                # other files change too, so commits carry more than flip.py
                (repo / "datatools" / f"extra_{i}.py").write_text(f"def extra_{i}():\n    pass\n")
                if watch is None:
                    result = subprocess.run([*CS, "index", str(repo), "--json"],
                                            capture_output=True, text=True, timeout=DEADLINE)
                    assert result.returncode == 0, result.stderr
                wait_for(f"flip {i}", partial(_flip_is, repo, want), deadline=DEADLINE)
        finally:
            if watch is not None:
                watch.send_signal(signal.SIGTERM)
                _, err = watch.communicate(timeout=DEADLINE)
                assert watch.returncode == 0, err
    assert report["n_bad"] == 0, report  # no error, no partial or duplicated answer
    assert report["seen"]["a"] > 0 and report["seen"]["b"] > 0, report
    assert_clean_index(repo)


@pytest.mark.slow
def test_two_cs_index_processes_never_interleave(tmp_path: Path, fixtures_dir: Path,
                                                tiny_model_dir: Path) -> None:
    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 6)
    lock_file = Path(resolve_index_uri(root)) / ".cs-writer.lock"
    cmd = [*CS, "index", str(root), "--model", str(tiny_model_dir), "--batch-files", "2", "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for("the first writer to hold the lock",
             lambda: lock_file.exists() and lock_file.read_text() == str(first.pid)
             or first.poll() is not None, deadline=DEADLINE)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE)
    out, err = first.communicate(timeout=DEADLINE)
    assert first.returncode == 0, err
    assert json.loads(out)["files_new"] == 54
    # Not decided by whether the first process was still alive: it may have released the lock
    # and still be exiting when the second took it.
    if second.returncode != 0:  # the first still wrote when the second gave up waiting: refused
        assert second.returncode == 2, second.stderr
        assert_one_error_line(second.stderr, f"pid {first.pid}", "is writing this index")
    else:  # the second waited for the lock and found nothing left to do
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["files_changed"] == 0
    assert_clean_index(root)


# --- storage faults --------------------------------------------------------------------------


def _edit(repo: Path) -> None:
    stats = repo / "datatools" / "stats.py"
    stats.write_text(stats.read_text() + "\n\ndef harmonic_mean(xs):\n"
                     "    return len(xs) / sum(1 / x for x in xs)\n")


@contextmanager
def _unwritable(paths: list[Path]) -> Iterator[None]:
    """Make ``paths`` (recursively) unwritable: read-only modes for a normal user; for root, whom
    modes do not stop, the immutable attribute (skips where the filesystem has none)."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("root ignores permission bits and chattr is not installed")
        done = subprocess.run(["chattr", "-R", "+i", *map(str, paths)], capture_output=True,
                              text=True)
        try:
            if done.returncode != 0:
                pytest.skip(f"root ignores permission bits and chattr failed: {done.stderr}")
            yield
        finally:
            subprocess.run(["chattr", "-R", "-i", *map(str, paths)], capture_output=True)
        return
    modes: dict[Path, int] = {}
    for path in paths:
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            modes[p] = p.stat().st_mode
    try:
        for p, mode in sorted(modes.items(), key=lambda kv: -len(kv[0].parts)):
            p.chmod(mode & 0o555)
        yield
    finally:
        for p, mode in sorted(modes.items(), key=lambda kv: len(kv[0].parts)):
            p.chmod(mode)


@pytest.mark.parametrize("what", ["the whole directory", "the tables (lock file writable)"])
def test_unwritable_index_is_a_clear_error_and_stays_searchable(
        what: str, repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    before_chunks, before_hits = stored_chunks(repo), lexical_hits(repo)
    index_dir = Path(resolve_index_uri(repo))
    _edit(repo)
    paths = ([index_dir] if what == "the whole directory"
             else [p for p in index_dir.iterdir() if p.name != ".cs-writer.lock"])
    with _unwritable(paths):
        result = cs("index", str(repo))
        assert result.exit_code == 2, result.output
        assert_one_error_line(result.stderr, str(index_dir), "permission denied", "hint: ")
        assert stored_chunks(repo) == before_chunks  # the previous index, intact
        assert lexical_hits(repo) == before_hits  # and searchable
    index(repo)
    assert_clean_index(repo)
    assert "harmonic_mean" in {s for *_, s in lexical_hits(repo, "harmonic")}


@contextmanager
def _tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tiny tmpfs (root only; skips where mounting is not allowed)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs a tmpfs mount, which needs root")
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Write zeros until the filesystem is full; returns the filler file. Unbuffered: a buffered
    file keeps what a partial write left over and raises again when it is closed."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_full_disk_is_a_clear_error_and_the_index_survives(
        repo: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    with _tmpfs(tmp_path / "small", "16m") as disk:
        dir_args = ("--index-dir", str(disk))
        result = cs("index", str(repo), "--json", "--model", str(tiny_model_dir), *dir_args)
        assert result.exit_code == 0, result.output
        before = store_of_dir(repo, disk).chunks()
        _edit(repo)
        filler = _fill(disk)
        result = cs("index", str(repo), *dir_args)
        assert result.exit_code == 2, result.output
        assert_one_error_line(result.stderr, "no space left on device", "free some disk space")
        assert sorted(c.id for c in store_of_dir(repo, disk).chunks()) == sorted(
            c.id for c in before)
        result = cs("find", "mean", "--path", str(repo), "--mode", "lexical", "--json", *dir_args)
        assert result.exit_code == 0 and json.loads(result.stdout), result.output
        filler.unlink()
        result = cs("index", str(repo), "--json", *dir_args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["files_changed"] == 1
        after = store_of_dir(repo, disk).chunks()
        assert sorted((c.path, c.start_line, c.end_line, c.hash) for c in after) == (
            expected_chunks(repo))
        assert len({c.id for c in after}) == len(after)


@pytest.mark.slow
def test_file_size_limit_is_a_clear_error_and_the_index_survives(
        repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    before = stored_chunks(repo)
    _edit(repo)

    def limit_file_size() -> None:  # in the child: writes past 4 KiB fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = subprocess.run([*CS, "index", str(repo)], capture_output=True, text=True,
                            preexec_fn=limit_file_size, timeout=DEADLINE)
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, "cannot write the", "file too large", "ulimit -f")
    # Either nothing of the batch or all of its chunks (they commit in one), never part of it.
    assert stored_chunks(repo) in (before, expected_chunks(repo))
    assert lexical_hits(repo)
    index(repo)
    assert_clean_index(repo)


# --- bad input -------------------------------------------------------------------------------


def test_odd_files_are_skipped_counted_and_cost_nothing_else(
        repo: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.py").write_text("def leaked():\n    pass\n")
    expected_skips = {
        "blob.py": "binary",
        "huge.py": "too large",
        "app.min.js": "minified",
        "bundle_like.js": "minified",
        "self_loop.py": "broken symlink",
        "loop_dir": "symlink",
        "out_file.py": "symlink outside root",
        "out_dir": "symlink outside root",
    }
    (repo / "blob.py").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    with open(repo / "huge.py", "wb") as f:  # 50 MB of real text, not a sparse file
        line = b"value = 'abcdefghijklmnopqrstuvwxyz0123456789'\n"
        f.write(line * (50_000_000 // len(line) + 1))
    (repo / "app.min.js").write_text("function a(){return 1}" * 50)
    (repo / "bundle_like.js").write_text("var x=" + "1+" * 30_000 + "1;\n")
    (repo / "self_loop.py").symlink_to(repo / "self_loop.py")
    (repo / "loop_dir").symlink_to(repo)
    (repo / "out_file.py").symlink_to(outside / "leak.py")
    (repo / "out_dir").symlink_to(outside)
    (repo / "latin1.py").write_bytes(b"# caf\xe9\ndef menu_price(item):\n    return 3\n")
    if os.geteuid() != 0:  # root reads anything; tests/test_discover.py covers it unprivileged
        (repo / "locked.py").write_text("def hidden():\n    pass\n")
        (repo / "locked.py").chmod(0)
        expected_skips["locked.py"] = "unreadable"

    result = cs("index", str(repo), "--json", "--verbose", "--model", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert "error" not in result.stderr.lower(), result.stderr
    out = json.loads(result.stdout)
    skips = {s["path"]: s["reason"] for s in out["skips"]}
    assert {p: skips.get(p) for p in expected_skips} == expected_skips
    assert out["files_failed"] == 0
    assert_clean_index(repo)  # every other file indexed, nothing from the skipped ones
    paths = {p for p, *_ in stored_chunks(repo)}
    assert "latin1.py" in paths and not paths & set(expected_skips)
    result = cs("find", "leaked", "--path", str(repo), "--mode", "lexical", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout) == []  # nothing from outside


def _damage(files: list[Path]) -> None:
    for f in files:
        f.write_bytes(b"garbage")


def _table_files(index_dir: Path, table: str, part: str) -> list[Path]:
    return [p for p in (index_dir / f"{table}.lance" / part).iterdir()
            if p.suffix in (".lance", ".manifest")]


def test_bad_arguments_are_one_line_errors_and_lose_nothing(
        repo: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    before_chunks, before_hits = stored_chunks(repo), lexical_hits(repo)
    stats = repo / "datatools" / "stats.py"
    n = len(stats.read_text().splitlines())
    (tmp_path / "elsewhere.py").write_text("def f():\n    pass\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    other_model = tmp_path / "other-model"  # another model, same weights: still another model
    shutil.copytree(tiny_model_dir, other_model)
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("index", str(tmp_path / "nope")), 2, "does not exist"),
        (("index", str(stats)), 2, "not a directory"),
        (("find", "mean", "--path", str(tmp_path / "nope")), 2, "does not exist"),
        (("find", "", "--path", str(repo)), 2, "empty query"),
        (("find", "  \t ", "--path", str(repo)), 2, "empty query"),
        (("find", "mean", "--path", str(empty)), 2, "no index for"),
        (("similar", f"{stats}:{n + 1}", "--path", str(repo)), 2, "out of range"),
        (("similar", f"{stats}:0", "--path", str(repo)), 2, "out of range"),
        (("similar", f"{tmp_path / 'elsewhere.py'}:1", "--path", str(repo)), 2,
         "outside the indexed root"),
        (("similar", str(stats), "--path", str(repo)), 2, "expected FILE:LINE"),
        (("index", str(repo), "--dim", "32"), 2, "dim 64"),
        (("index", str(repo), "--model", str(other_model)), 2, "--rebuild"),
        (("find", "mean", "--path", str(repo), "--model", str(other_model)), 2, "--rebuild"),
    ]
    for args, code, needle in cases:
        result = cs(*args)
        assert result.exit_code == code, (args, result.output)
        assert_one_error_line(result.stderr, needle)
    assert stored_chunks(repo) == before_chunks and lexical_hits(repo) == before_hits

    # An empty repository is not an error: an empty index, and no results (exit 1).
    assert index(empty, "--model", str(tiny_model_dir))["chunks_total"] == 0
    result = cs("find", "mean", "--path", str(empty), "--mode", "lexical")
    assert result.exit_code == 1 and "No results" in result.stderr


@pytest.mark.parametrize(("table", "part"), [("manifest", "data"), ("manifest", "_versions"),
                                             ("chunks", "data")])
def test_damaged_index_is_a_clear_error_until_rebuild(
        table: str, part: str, repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    index_dir = Path(resolve_index_uri(repo))
    _damage(_table_files(index_dir, table, part))
    needle = "manifest" if table == "manifest" else "damaged"
    commands = [("find", "mean", "--path", str(repo), "--mode", "lexical"),
                ("find", "mean", "--path", str(repo))]
    if table == "manifest":  # status reads the manifest; chunk data only when searched
        commands.append(("status", str(repo)))
    for args in commands:
        result = cs(*args)
        assert result.exit_code == 2, (args, result.output)
        assert_one_error_line(result.stderr, needle, "damaged", "cs index --rebuild")
    if table == "manifest":  # a plain run refuses too; the chunks' damage shows when read
        result = cs("index", str(repo))
        assert result.exit_code == 2, result.output
        assert_one_error_line(result.stderr, "damaged", "cs index --rebuild")
    out = index(repo, "--rebuild", "--model", str(tiny_model_dir))
    assert out["rebuilt"] and out["chunks_embedded"] == 0  # the embedding cache survived
    assert_clean_index(repo)


# --- cleanup of old versions (issue 27) ------------------------------------------------------


@pytest.mark.slow
def test_find_in_a_loop_while_cleanups_drop_old_versions(
        repo: Path, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A grace window of 0: each run's cleanup drops every version but the latest, the one the
    # reader may be in the middle of included (its read retries on the latest).
    monkeypatch.setenv(GRACE_ENV, "0")
    flip = repo / "flip.py"
    flip.write_text(_flip_source(FLIP_VERSIONS["a"]))
    index(repo, "--model", str(tiny_model_dir))
    with _reader(repo, tmp_path) as report:
        for i in range(12):
            want = FLIP_VERSIONS["b" if i % 2 == 0 else "a"]
            flip.write_text(_flip_source(want))
            (repo / "datatools" / f"extra_{i}.py").write_text(f"def extra_{i}():\n    pass\n")
            index(repo)
            assert store_of(repo).footprint()["versions"]["chunks"] <= 3
    assert report["n_bad"] == 0, report  # no error, no partial or duplicated answer
    assert report["seen"]["a"] > 0 and report["seen"]["b"] > 0, report
    assert_clean_index(repo)


def _pile_up_versions(root: Path, n: int) -> dict[str, int]:
    """Give each table of ``root``'s index ``n`` more versions (rewrites of what it holds, as
    many small commits would leave); returns the version counts."""
    import numpy as np

    store = store_of(root)
    manifest = store.read_manifest()
    assert manifest is not None
    records = list(store.file_records().values())
    rows = store.chunks(with_vectors=True)
    ids, vectors = [c.id for c in rows], np.stack([c.vector for c in rows])
    for _ in range(n):
        store.update_vectors(ids, vectors)
        store.commit_batch(files=[], chunks=[], vectors=vectors[:0], touched=records)
        store.write_manifest(manifest)
    return store.footprint()["versions"]


@pytest.mark.slow
def test_sigkill_during_cleanup_then_rerun_equals_a_clean_index(
        repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    disk = _Disk(Path(resolve_index_uri(repo)))
    cmd = [*CS, "index", str(repo), "--compact", "--json"]
    env = {**os.environ, GRACE_ENV: "0"}
    hit = False
    for _attempt in range(6):
        base = _pile_up_versions(repo, 30)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + DEADLINE
        try:
            # The cleanup has begun once the chunks table lost versions (it goes first).
            while proc.poll() is None and time.monotonic() < deadline:
                if 0 <= disk.snapshot()["chunks._versions"] < base["chunks"]:
                    break
                time.sleep(0.0002)
        finally:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, (
            f"the run ended ({proc.returncode}) before the cleanup: {err.decode()[-2000:]}")
        # Landed inside the cleanup: the chunks table pruned, the others not (all) yet.
        after = disk.snapshot()
        if (after["chunks._versions"] < base["chunks"]
                and after["manifest._versions"] >= base["manifest"]):
            hit = True
            break
    assert hit, f"no kill landed inside the cleanup; last state {disk.snapshot()}"
    # The index opens and answers as it is...
    assert lexical_hits(repo, "mean")
    assert stored_chunks(repo) == expected_chunks(repo)
    # ...and the next run leaves a clean index of the tree, whose old versions are gone.
    _edit(repo)
    index(repo)
    assert_clean_index(repo)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=DEADLINE)
    assert out.returncode == 0, out.stderr
    assert store_of(repo).footprint()["versions"]["chunks"] == 1
    assert_clean_index(repo)

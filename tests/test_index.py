"""`cs index` mechanics through the real CLI with the tiny model: counts, incremental reuse, edits,
renames, deletes, the shared embedding cache, mismatches, the writer lock, and resuming after a
kill -9 with no duplicates."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from codesearch.config import resolve_index_uri
from codesearch.documents import content_hash, row_tasks
from codesearch.source.chunk import chunk_source
from codesearch.source.discover import Discovery, read_source
from codesearch.store.store import Store
from tests.support.cli import cs

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")


def index(root: Path, *args: str) -> dict[str, Any]:
    result = cs("index", str(root), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def store_of(root: Path) -> Store:
    return Store.open(resolve_index_uri(root))


def expected_chunks(root: Path, scheme: str = "jina-code-v1") -> list[tuple[str, int, int, str]]:
    """What a clean index of ``root`` must hold, computed from discovery and the chunker."""
    out = []
    for f in Discovery(root):
        for c in chunk_source(read_source(f), f.rel, f.language):
            # One row per document side: a doc chunk has two with the (prefixed) tiny model.
            out.extend((c.path, c.start_line, c.end_line, content_hash(c, task))
                       for task in row_tasks(c, scheme))
    return sorted(out)


def stored_chunks(root: Path) -> list[tuple[str, int, int, str]]:
    return sorted((c.path, c.start_line, c.end_line, c.hash) for c in store_of(root).chunks())


def test_first_and_second_run(repo: Path, tiny_model_dir: Path) -> None:
    first = index(repo, "--model", str(tiny_model_dir))
    expected = expected_chunks(repo)
    n_files = len({p for p, *_ in expected})
    assert first["files_scanned"] == first["files_changed"] == first["files_new"] == n_files
    assert first["chunks_total"] == len(expected)
    assert first["chunks_embedded"] == len({h for *_, h in expected})
    assert stored_chunks(repo) == expected

    second = index(repo)  # the index's own model, no --model needed
    assert second["files_unchanged"] == n_files
    assert second["files_changed"] == second["chunks_embedded"] == second["chunks_reused"] == 0
    assert second["chunks_total"] == first["chunks_total"]


def test_edit_one_function_reembeds_only_it(repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    stats = repo / "datatools/stats.py"
    old = stats.read_text()
    stats.write_text(old.replace("total / count", "total / max(count, 1)"))
    out = index(repo)
    assert out["files_changed"] == 1 and out["files_new"] == 0
    assert out["chunks_embedded"] == 1
    assert out["chunks_reused"] == len([c for c in expected_chunks(repo)
                                        if c[0] == "datatools/stats.py"]) - 1
    assert stored_chunks(repo) == expected_chunks(repo)
    texts = [c.text for c in store_of(repo).chunks("path = 'datatools/stats.py'")]
    assert any("max(count, 1)" in t for t in texts)
    assert not any("return total / count" in t for t in texts)

    # A new mtime with the same content costs a hash, not a chunk.
    os.utime(stats, ns=(stats.stat().st_atime_ns, stats.stat().st_mtime_ns + 10**9))
    out = index(repo)
    assert out["files_touched"] == 1 and out["files_changed"] == out["chunks_embedded"] == 0
    assert index(repo)["files_unchanged"] == out["files_scanned"]


def test_rename_and_delete_leave_nothing_stale(repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    (repo / "datatools/smoothing.py").rename(repo / "datatools/filters.py")
    (repo / "datatools/net.py").unlink()
    out = index(repo)
    assert out["files_removed"] == 2 and out["files_new"] == 1
    paths = {p for p, *_ in stored_chunks(repo)}
    assert "datatools/filters.py" in paths
    assert not paths & {"datatools/smoothing.py", "datatools/net.py"}
    assert stored_chunks(repo) == expected_chunks(repo)
    assert set(store_of(repo).file_records()) == {p for p, *_ in expected_chunks(repo)}


def test_second_clone_embeds_nothing(repo: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone)
    out = index(clone, "--model", str(tiny_model_dir))
    assert out["chunks_embedded"] == 0
    assert out["chunks_reused"] == out["chunks_total"] > 0
    # --rebuild drops the index but not the shared cache.
    again = index(repo, "--rebuild")
    assert again["rebuilt"] and again["chunks_embedded"] == 0


def test_mismatch_is_refused_until_rebuild(repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    result = cs("index", str(repo), "--dim", "32")
    assert result.exit_code == 2
    assert "dim 64" in result.stderr and "cs index --rebuild" in result.stderr
    result = cs("index", str(repo), "--model", "minilm")
    assert result.exit_code == 2
    assert "was built with" in result.stderr and "--rebuild" in result.stderr
    result = cs("find", "mean", "--path", str(repo), "--model", "minilm")
    assert result.exit_code == 2 and "--rebuild" in result.stderr

    rebuilt = index(repo, "--dim", "32", "--rebuild")
    assert rebuilt["rebuilt"] and rebuilt["dim"] == 32
    assert rebuilt["chunks_embedded"] == rebuilt["chunks_total"]  # new dim, new cache key
    assert store_of(repo).read_manifest().dim == 32  # type: ignore[union-attr]
    result = cs("find", "mean of a csv column", "--path", str(repo), "--json")
    assert result.exit_code == 0, result.output


def test_an_index_from_an_older_chunker_is_chunked_again_on_the_next_run(
        repo: Path, tiny_model_dir: Path) -> None:
    from dataclasses import replace

    first = index(repo, "--model", str(tiny_model_dir))
    store = store_of(repo)
    manifest = store.read_manifest()
    assert manifest is not None
    store.write_manifest(replace(manifest, chunker_version="0"))
    result = cs("find", "mean", "--path", str(repo))
    assert result.exit_code == 2
    assert "older cs" in result.stderr and f"cs index {repo}" in result.stderr

    again = index(repo)  # no --rebuild needed; same model, every vector from the cache
    assert again["rebuilt"] and again["chunks_embedded"] == 0
    assert again["chunks_total"] == first["chunks_total"]
    assert stored_chunks(repo) == expected_chunks(repo)
    assert cs("find", "mean", "--path", str(repo)).exit_code == 0


def test_missing_manifest_is_a_clear_error(repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    shutil.rmtree(Path(resolve_index_uri(repo)) / "manifest.lance")
    for args in (("find", "mean", "--path", str(repo)), ("index", str(repo))):
        result = cs(*args)
        assert result.exit_code == 2
        assert "no manifest" in result.stderr and "--rebuild" in result.stderr
    assert index(repo, "--rebuild", "--model", str(tiny_model_dir))["chunks_total"] > 0


def test_second_writer_is_refused(repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    with store_of(repo).writer_lock(wait=0):
        result = cs("index", str(repo))
    assert result.exit_code == 2
    assert f"pid {os.getpid()}" in result.stderr and "is writing this index" in result.stderr
    assert index(repo)["files_changed"] == 0


def test_bad_input(tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    result = cs("index", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "does not exist" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = index(empty, "--model", str(tiny_model_dir))
    assert out["files_scanned"] == out["chunks_total"] == 0
    # Skipped files are counted, and listed with reasons under --verbose.
    root = tmp_path / "mixed"
    shutil.copytree(fixtures_dir / "python", root)
    (root / "blob.py").write_bytes(b"\x00\x01binary")
    (root / "latin1.py").write_bytes(b"def caf\xe9():\n    return 1\n")
    result = cs("index", str(root), "--json", "--verbose", "--model", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["files_skipped"] >= 1 and {"path": "blob.py", "reason": "binary"} in out["skips"]
    assert "latin1.py" in {c.path for c in store_of(root).chunks()}


def test_human_summary(repo: Path, tiny_model_dir: Path) -> None:
    result = cs("index", str(repo), "--model", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert re.search(r"\d+ files scanned, \d+ changed \(\d+ new\), 0 removed", result.stdout)
    assert re.search(r"Chunks: \d+ embedded, 0 reused, \d+ in the index", result.stdout)


def _many_files(root: Path, fixtures_dir: Path, copies: int) -> None:
    """A tree big enough for many batches: copies of the Python fixture, each made distinct."""
    for i in range(copies):
        dest = root / f"pkg{i}"
        shutil.copytree(fixtures_dir / "python" / "datatools", dest)
        for f in dest.glob("*.py"):
            f.write_text(f.read_text().replace("def ", f"def v{i}_"))


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 6)
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "codesearch", "index", str(root), "--model", str(tiny_model_dir),
           "--batch-files", "4", "--json"]
    files_dir = Path(resolve_index_uri(root)) / "files.lance"
    total = sum(1 for _ in Discovery(root))
    killed_midway = False
    for _attempt in range(3):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        # Kill once a few batches are committed (the files table has several versions).
        while time.monotonic() < deadline and proc.poll() is None:
            versions = files_dir / "_versions"
            if versions.is_dir() and len(list(versions.iterdir())) >= 4:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        done = store_of(root).count_files()
        if proc.returncode == -signal.SIGKILL and 0 < done < total:
            killed_midway = True
            break
    assert killed_midway, "could not kill the indexer mid-run"

    out = index(root)
    # Recorded files are done; the rest (including a batch whose chunks were written but whose
    # records were not) is redone, and nothing is duplicated.
    assert out["files_unchanged"] == done and out["files_new"] == total - done
    rows = store_of(root).chunks()
    assert len({c.id for c in rows}) == len(rows)  # no duplicate ids
    assert stored_chunks(root) == expected_chunks(root)
    assert len(store_of(root).file_records()) == total


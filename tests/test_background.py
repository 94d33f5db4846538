"""Background indexing (codesearch.index.background, `cs index --background` / `--stop`): the
detached phase 2 end to end, and its state file, its process and the arguments it is started with.
Real processes: `cs index` children, and plain `sleep`-like Python processes standing in for a
job where only the process matters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codesearch.index import background
from codesearch.index.indexer import IndexOptions
from codesearch.location import IndexSettings
from codesearch.store.records import CHUNKS, EMBEDDED
from tests.support.cli import cs
from tests.test_index import _many_files, expected_chunks, index, store_of, stored_chunks

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")

# --- end to end ----------------------------------------------------------------------------------


def _status(root: Path) -> dict:
    result = cs("status", str(root), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_background_returns_searchable_and_finishes_detached(
        tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 4)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-m", "codesearch", "index", str(root), "--model",
                           str(tiny_model_dir), "--background", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["chunks_embedded"] == 0 and stats["chunks_total"] > 0
    assert "embedding in the background (pid" in done.stderr
    assert stored_chunks(root) == expected_chunks(root)  # searchable by words right away
    job = _status(root)["background"]
    assert job is not None and Path(job["log"]).exists()

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _status(root)["coverage"]["complete"]:
        time.sleep(0.2)
    status = _status(root)
    assert status["coverage"]["complete"], Path(job["log"]).read_text()[-2000:]
    while time.monotonic() < deadline and _status(root)["background"] is not None:
        time.sleep(0.1)  # the job removes its state file as it exits
    assert _status(root)["background"] is None
    log = Path(job["log"]).read_text()
    assert '"stopped": false' in log and f'"chunks_embedded": {stats["chunks_total"]}' in log
    result = cs("index", str(root), "--stop")
    assert result.exit_code == 0 and "no background indexing is running" in result.stderr
    rows = store_of(root).chunks()
    assert len({r.id for r in rows}) == len(rows) == stats["chunks_total"]


def test_stop_ends_the_background_job_after_its_batch(
        tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "big"
    _many_files(root, fixtures_dir, 6)
    index(root, "--model", str(tiny_model_dir), "--batch-files", "2")
    store = store_of(root)
    # Take every vector away (they stay in the cache only if embedded before: use a fresh one).
    table = store._table(CHUNKS)
    dim = int(table.schema.field("vector").type.list_size)
    table.update(values_sql={EMBEDDED: "false", "vector": "[" + ",".join(["0.0"] * dim) + "]"})
    shutil.rmtree(Path(os.environ["CS_HOME"]) / "embeddings")
    from codesearch.index import background
    job = background.start(root.resolve(), store.uri, ["--json"])
    assert _status(root)["background"]["pid"] == job.pid
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and store_of(root).coverage()[0] == 0:
        time.sleep(0.05)  # stop it once it is embedding (its SIGTERM handler is in place)
    stopped = background.stop(store.uri, wait=120)
    embedded, total = store_of(root).coverage()
    log = Path(job.log).read_text()
    if stopped is not None:  # else it had already finished everything
        assert not stopped.running()
        assert '"stopped": true' in log or embedded == total, log[-2000:]
    assert 0 < embedded <= total and "Traceback" not in log
    assert _status(root)["background"] is None  # it removed its state file on the way out
    out = index(root)  # resumes whatever the job left
    assert out["chunks_with_vectors"] == out["chunks_total"] == total
    assert out["chunks_embedded"] <= total - embedded
    assert stored_chunks(root) == expected_chunks(root)


# --- the state file, the process, the child's arguments ------------------------------------------


def _sleeper() -> subprocess.Popen[bytes]:
    """A real process that runs until killed (SIGTERM ends it, as it ends a background job)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _job(proc: subprocess.Popen[bytes], uri: str) -> background.BackgroundJob:
    return background.BackgroundJob(proc.pid, "/src/tree", uri, "/logs/job.log", 1.5e9)


def test_a_recorded_job_is_read_back_and_forgotten_only_by_its_own_pid() -> None:
    proc = _sleeper()
    try:
        job = _job(proc, "/indexes/a")
        background.record(job)
        assert background.job_for("/indexes/a") == job
        assert background.job_for("/indexes/b") is None  # one state file per index
        assert job.running() and job.to_dict() == {
            "pid": proc.pid, "root": "/src/tree", "index": "/indexes/a", "log": "/logs/job.log",
            "started_at": 1.5e9, "running": True}
        background.forget("/indexes/a", proc.pid + 1)  # a newer job's state stays
        assert background.job_for("/indexes/a") == job
        background.forget("/indexes/a", proc.pid)
        assert background.job_for("/indexes/a") is None
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_process_is_not_running_even_before_it_is_reaped() -> None:
    proc = _sleeper()
    job = _job(proc, "/indexes/a")
    assert job.running()
    proc.kill()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{proc.pid}").exists() and job.running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not job.running()  # a zombie (not reaped yet) is not a running job
    proc.wait()
    assert not job.running()  # nor is a pid that is gone


def test_stop_terminates_the_running_job_only(tmp_path: Path) -> None:
    assert background.stop("/indexes/none") is None  # nothing recorded
    proc = _sleeper()
    try:
        job = _job(proc, "/indexes/a")
        background.record(job)
        assert background.stop("/indexes/a", wait=60) == job
        assert proc.wait(timeout=60) == -signal.SIGTERM
        assert not job.running()
        assert background.stop("/indexes/a") is None  # recorded, but no longer running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_damaged_state_file_reads_as_no_job(cs_home: Path) -> None:
    proc = _sleeper()
    try:
        background.record(_job(proc, "/indexes/a"))
    finally:
        proc.kill()
        proc.wait()
    (state,) = (cs_home / "background").glob("*.json")
    state.write_text("{not json", encoding="utf-8")
    assert background.job_for("/indexes/a") is None
    state.write_text(json.dumps({"pid": 1, "root": "/src/tree"}), encoding="utf-8")
    assert background.job_for("/indexes/a") is None


def test_the_child_gets_every_option_that_shapes_the_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths become absolute (the child's working directory may differ); options left
    to their defaults are left out, so the child reads them from the index as the parent did."""
    (tmp_path / "models" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    settings = IndexSettings(index_dir=Path("ix"), storage_options={"region": "eu-west-1"})
    options = IndexOptions(model="models/mine", dim=64, device="cpu", cache_uri="s3://b/cache")
    assert background.child_args(settings, options) == [
        "--json", "--model", str(tmp_path.resolve() / "models" / "mine"), "--dim", "64",
        "--device", "cpu", "--index-dir", str(tmp_path.resolve() / "ix"),
        "--cache-uri", "s3://b/cache", "--storage-option", "region=eu-west-1"]
    assert background.child_args(IndexSettings(), IndexOptions()) == ["--json"]
    assert background.child_args(IndexSettings(index_uri="s3://b/idx"),
                                 IndexOptions(model="minilm")) == [
        "--json", "--model", "minilm", "--index-uri", "s3://b/idx"]

"""An index that keeps its size (issue 27): every run that writes compacts the index and drops the
versions no reader needs any more (codesearch/store/versions.py); ``cs status`` shows the size on
disk and the versions; ``cs index --compact`` does it on demand. The reliability cases (a reader
during cleanup, kill -9 during cleanup) are in tests/test_reliability.py."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from codesearch.store.versions import GRACE_ENV, VERSIONS_KEPT, prune_cutoff, version_grace
from tests.support.cli import cs
from tests.support.wait import wait_for
from tests.test_index import expected_chunks, index, store_of, stored_chunks

MAX_VERSIONS = 20  # per table, after any run


def _edit(repo: Path, i: int) -> None:
    stats = repo / "datatools" / "stats.py"
    stats.write_text(stats.read_text() + f"\n\ndef edit_{i}(x):\n    return x + {i}\n")


def _indexed(root: Path, symbol: str) -> bool:
    return any(c.symbol == symbol for c in store_of(root).chunks("path = 'datatools/stats.py'"))


def _footprint(root: Path) -> dict[str, object]:
    return store_of(root).footprint()


@pytest.mark.slow
def test_sixty_edits_keep_the_index_within_twice_a_fresh_build(
        repo: Path, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No reader is left on an old version between two runs here: a grace window of 0.
    monkeypatch.setenv(GRACE_ENV, "0")
    index(repo, "--model", str(tiny_model_dir))
    for i in range(60):
        _edit(repo, i)
        out = index(repo)
        assert out["files_changed"] == 1
    edited = _footprint(repo)
    fresh_root = tmp_path / "fresh"
    shutil.copytree(repo, fresh_root)
    index(fresh_root, "--model", str(tiny_model_dir))
    fresh = _footprint(fresh_root)
    assert edited["bytes"] <= 2 * fresh["bytes"], (edited, fresh)
    assert all(n <= MAX_VERSIONS for n in edited["versions"].values()), edited
    assert store_of(repo).count_chunks() == store_of(fresh_root).count_chunks()
    assert stored_chunks(repo) == expected_chunks(repo)


def test_recent_versions_stay_for_readers_but_never_more_than_a_few(
        repo: Path, tiny_model_dir: Path) -> None:
    # The default grace window (a minute): every run here is within it, so the count caps it.
    index(repo, "--model", str(tiny_model_dir))
    for i in range(8):
        _edit(repo, i)
        index(repo)
    versions = _footprint(repo)["versions"]
    # The versions kept for readers, the latest, and what the run wrote after its compaction.
    assert all(n <= VERSIONS_KEPT + 4 for n in versions.values()), versions
    assert stored_chunks(repo) == expected_chunks(repo)


def test_status_shows_the_size_on_disk_and_the_versions(repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    result = cs("status", str(repo), "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["size_bytes"] > 0
    assert set(status["versions"]) == {"chunks", "files", "manifest"}
    assert all(n >= 1 for n in status["versions"].values())
    text = cs("status", str(repo))
    assert text.exit_code == 0, text.output
    line = next(x for x in text.stdout.splitlines() if x.startswith("on disk:"))
    assert "KB" in line and f"{sum(status['versions'].values())} versions" in line, line


def test_a_run_that_changes_nothing_drops_the_versions_past_their_grace(
        repo: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh index ends holding the versions its run kept for readers; the next `cs index`
    after the grace window drops them even when nothing changed (it used to leave them, so a
    first build stayed at twice its size), and `--compact` also compacts."""
    index(repo, "--model", str(tiny_model_dir))
    for i in range(3):
        _edit(repo, i)
        index(repo)
    before = _footprint(repo)
    assert before["versions"]["chunks"] > 1  # kept for readers (grace window)
    out = index(repo)  # nothing changed, within the grace window: a few stay for readers
    assert out["files_changed"] == 0
    assert 1 < _footprint(repo)["versions"]["chunks"] <= before["versions"]["chunks"]
    monkeypatch.setenv(GRACE_ENV, "0")
    out = index(repo)  # nothing changed, past the grace window: dropped, no compaction
    assert out["files_changed"] == 0
    pruned = _footprint(repo)
    assert pruned["versions"]["chunks"] == 1, pruned
    assert pruned["bytes"] < before["bytes"]
    out = index(repo, "--compact")
    assert out["files_changed"] == 0
    after = _footprint(repo)
    assert after["versions"]["chunks"] == 1, after
    # The chunks table, not the whole index: the manifest's record of the run (its timings)
    # can be a byte longer than the last one's.
    assert after["tables"]["chunks"] <= pruned["tables"]["chunks"]
    assert stored_chunks(repo) == expected_chunks(repo)


def test_watch_compacts_at_a_quiet_moment_then_drops_what_it_kept_for_readers(
        repo: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_watch import converged, watching

    monkeypatch.setenv(GRACE_ENV, "1")  # short, so the second step comes within the test
    with watching(repo, tiny_model_dir, optimize_quiet=0.3, optimize_every=1000) as w:
        converged(repo, "the catch-up")
        for i in range(6):
            _edit(repo, i)
            wait_for(f"edit {i}", lambda i=i: _indexed(repo, f"edit_{i}"))
        converged(repo, "the edits")
        # The quiet moment compacts (keeping the versions just superseded for readers); once the
        # grace window has passed, those go too: one version of each data table is left.
        wait_for("the versions to go", lambda: _footprint(repo)["versions"]["chunks"] == 1
                 and _footprint(repo)["versions"]["files"] == 1)
        assert w.status.optimizations >= 1
    assert stored_chunks(repo) == expected_chunks(repo)


# --- which versions go (pure) --------------------------------------------------------------------


def _versions(*ages: float, now: datetime) -> list[dict[str, object]]:
    """Versions 1.. written ``ages`` seconds before ``now`` (oldest first)."""
    return [{"version": i + 1, "timestamp": now - timedelta(seconds=a)}
            for i, a in enumerate(ages)]


def _kept(versions: list[dict[str, object]], older_than: timedelta | None,
          now: datetime) -> list[object]:
    """The versions Lance keeps given ``older_than`` (the latest always stays)."""
    if older_than is None:
        return [v["version"] for v in versions]
    cut = now - older_than
    return [v["version"] for v in versions[:-1] if v["timestamp"] >= cut] + \
        [versions[-1]["version"]]


def test_versions_superseded_within_the_grace_window_stay() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0)
    grace = timedelta(seconds=60)
    # 1 and 2 were superseded 100 s and 90 s ago; 3 was superseded 30 s ago (a reader may hold it)
    versions = _versions(200, 100, 90, 30, now=now)
    assert _kept(versions, prune_cutoff(versions, grace, 4, now), now) == [3, 4]
    # Nothing superseded long enough ago: nothing goes.
    versions = _versions(50, 40, 30, now=now)
    assert prune_cutoff(versions, grace, 4, now) is None
    # A grace window of 0: only the latest.
    assert _kept(versions, prune_cutoff(versions, timedelta(0), 4, now), now) == [3]
    assert prune_cutoff(_versions(5, now=now), grace, 4, now) is None


def test_a_burst_of_commits_keeps_only_a_few_versions() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0)
    versions = _versions(*[10 - i * 0.1 for i in range(50)], now=now)
    kept = _kept(versions, prune_cutoff(versions, timedelta(seconds=60), 4, now), now)
    assert kept == [46, 47, 48, 49, 50]


def test_the_grace_window_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GRACE_ENV, "2.5")
    assert version_grace() == timedelta(seconds=2.5)
    for bad in ("", "soon", "-1"):
        monkeypatch.setenv(GRACE_ENV, bad)
        assert version_grace() == timedelta(seconds=60)

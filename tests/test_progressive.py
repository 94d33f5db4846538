"""The progressive index (issue 17): phase 1 makes the whole tree lexically searchable without
vectors, phase 2 fills them in (recent files first, tests last), and searching works at every
moment in between. Real LanceDB, real tree-sitter, the tiny model; the CLI through CliRunner and
real processes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from codesearch.config import resolve_index_uri
from codesearch.index.indexer import Indexer, IndexOptions
from codesearch.index.order import embed_order, git_recency
from codesearch.location import IndexSettings
from codesearch.query.ranking import fuse, unembedded_semantic
from codesearch.query.request import SearchOptions
from codesearch.query.searcher import Searcher
from codesearch.store.records import CHUNKS, EMBEDDED, FileRecord
from codesearch.store.store import Store
from tests.support.cli import cs
from tests.test_index import expected_chunks, index, store_of, stored_chunks

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
QUERIES = ["mean of a list of numbers", "parse csv rows", "binomial coefficient", "def median"]


def indexer(root: Path, model: Path, **options: object) -> Indexer:
    return Indexer(root, Store.open(resolve_index_uri(root)),
                   IndexOptions(model=str(model), **options))  # type: ignore[arg-type]


def ranked(root: Path, mode: str = "hybrid") -> list[list[tuple[str, int]]]:
    searcher = Searcher.open(IndexSettings().locate(root))
    return [[(h.path, h.start_line) for h in searcher.find(q, SearchOptions(k=8, mode=mode))]
            for q in QUERIES]


# --- fusion ------------------------------------------------------------------------------------


def test_a_chunk_without_a_vector_fuses_as_its_lexical_score() -> None:
    lexical = {"a": 9.0, "b": 3.0, "c": 6.0}
    # 0% vectors: every candidate is imputed, and the fused order is the lexical order.
    semantic = {k: unembedded_semantic(v, 9.0, 0.0) for k, v in lexical.items()}
    fused = fuse(semantic, lexical)
    assert fused == pytest.approx({"a": 1.0, "b": 1 / 3, "c": 2 / 3})
    # Partly embedded: the imputed chunk's normalised semantic equals its normalised lexical.
    semantic = {"a": 0.5, "b": 0.25, "c": unembedded_semantic(6.0, 9.0, 0.5)}
    fused = fuse(semantic, lexical)
    assert fused["c"] == pytest.approx(2 / 3)
    assert fused["a"] == pytest.approx(1.0) and fused["b"] == pytest.approx(0.8 * 0.5 + 0.2 / 3)
    assert unembedded_semantic(5.0, 0.0, 0.7) == 0.0


# --- phases ------------------------------------------------------------------------------------


def test_phase_one_alone_is_a_complete_lexical_index(repo: Path, tiny_model_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A known precision: the manifest can be written before the model loads (with auto and the
    # int8 engine installed, the model loads first: test_auto_precision_may_pick_int8...).
    monkeypatch.setenv("CS_PRECISION", "fp32")
    ix = indexer(repo, tiny_model_dir, embed=False)
    stats = ix.run()
    assert stats.chunks_embedded == 0 and stats.chunks_with_vectors == 0
    assert not ix.handle.loaded  # a new index never loaded the model for phase 1
    assert stored_chunks(repo) == expected_chunks(repo)
    searcher = Searcher.open(IndexSettings().locate(repo))
    assert searcher.coverage().embedded == 0 and searcher.coverage().total == stats.chunks_total
    assert searcher.find("mean", SearchOptions(mode="lexical"))
    # Hybrid answers from the lexical side alone; semantic has nothing to rank yet.
    hybrid = searcher.find("mean", SearchOptions(k=5, mode="hybrid"))
    lexical = searcher.find("mean", SearchOptions(k=5, mode="lexical"))
    assert hybrid and {h.path for h in hybrid} <= {h.path for h in
                                                    searcher.find("mean", SearchOptions(k=50,
                                                                  mode="lexical"))}
    assert hybrid[0].path == lexical[0].path
    assert searcher.find("mean", SearchOptions(mode="semantic")) == []

    result = cs("status", str(repo), "--json")
    assert json.loads(result.stdout)["coverage"] == {
        "embedded": 0, "total": stats.chunks_total, "complete": False, "percent": 0,
        "writing": False}
    result = cs("find", "mean", "--path", str(repo), "--json", "--no-server")
    assert result.exit_code == 0 and json.loads(result.stdout)
    assert f"vectors for 0 of {stats.chunks_total} chunks (0%)" in result.stderr


def test_auto_precision_may_pick_int8_so_the_model_loads_before_phase_one(
        repo: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    ix = indexer(repo, tiny_model_dir, embed=False)
    ix.run()
    assert ix.handle is not None and ix.handle.loaded
    manifest = Store.open(resolve_index_uri(repo)).read_manifest()
    assert manifest is not None and manifest.precision == ix.handle.get().precision


def test_phase_two_resumes_and_ends_equal_to_a_one_shot_index(
        repo: Path, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One precision for both homes: auto measures speed afresh in the second one, and may choose
    # another (a timing, not what this test is about).
    monkeypatch.setenv("CS_PRECISION", "fp32")
    ix = indexer(repo, tiny_model_dir, embed=False)
    total = ix.run().chunks_total
    # Stop phase 2 after its first batch (the smallest, EMBED_BATCH_MIN).
    ix = indexer(repo, tiny_model_dir)
    with ix.lock():
        ix.prepare()
        ix.fill_vectors(should_stop=lambda: ix.stats.batches >= 1)
    partial, n = store_of(repo).coverage()
    assert n == total and 0 < partial < total
    during = ranked(repo)
    assert all(during)

    stats = indexer(repo, tiny_model_dir).run()  # the next `cs index` resumes
    assert stats.files_unchanged == stats.files_scanned  # nothing re-chunked
    assert stats.chunks_with_vectors == stats.chunks_total == total
    assert stats.chunks_embedded <= total - partial  # what was committed is never redone
    rows = store_of(repo).chunks()
    assert len({r.id for r in rows}) == len(rows)
    resumed = ranked(repo)

    # The same tree indexed in one go, in a fresh home (no shared cache): the same answers.
    monkeypatch.setenv("CS_HOME", str(tmp_path / "other-home"))
    index(repo, "--model", str(tiny_model_dir))
    assert ranked(repo) == resumed
    assert ranked(repo, "semantic")
    assert Searcher.open(IndexSettings().locate(repo)).coverage().complete


def test_embed_order_recent_first_tests_last(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    paths = ["old.py", "new.py", "mid.py", "tests/test_new.py", "lib/util_test.go"]
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text("x = 1\n")
    records = {p: FileRecord(p, mtime_ns=t, size=1, hash="") for p, t in
               zip(paths, [1, 5, 3, 9, 8], strict=True)}
    # No git: by mtime, tests (and Go _test files) last.
    assert git_recency(root) is None
    assert embed_order(root, paths, records) == [
        "new.py", "mid.py", "old.py", "tests/test_new.py", "lib/util_test.go"]
    # Git: by the time of each file's last commit; files absent from the history after, by mtime.
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args: str, when: int | None = None) -> None:
        extra = {"GIT_COMMITTER_DATE": f"{when} +0000", "GIT_AUTHOR_DATE": f"{when} +0000"}
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                       env={**env, **(extra if when else {})})

    git("init", "-q")
    git("add", "old.py", "mid.py")
    git("commit", "-qm", "one", when=1_700_000_000)
    (root / "old.py").write_text("x = 2\n")
    git("add", "old.py")
    git("commit", "-qm", "two", when=1_700_000_100)
    assert git_recency(root) == {"old.py": 1_700_000_100, "mid.py": 1_700_000_000}
    assert embed_order(root, paths, records) == [
        "old.py", "mid.py", "new.py", "tests/test_new.py", "lib/util_test.go"]


def test_embed_order_puts_documentation_after_code(tmp_path: Path) -> None:
    # issue 32: the newest files of a release are often its docs; code is searched first
    paths = ["README.rst", "doc/build/conf.py", "doc/build/orm/session.rst", "lib/orm/session.py",
             "CHANGES.md", "lib/engine.py", "test/orm/test_session.py"]
    records = {p: FileRecord(p, mtime_ns=t, size=1, hash="") for p, t in
               zip(paths, [9, 8, 7, 2, 6, 1, 5], strict=True)}
    assert embed_order(tmp_path, paths, records, recency={}) == [
        "lib/orm/session.py", "lib/engine.py",
        "README.rst", "doc/build/conf.py", "doc/build/orm/session.rst", "CHANGES.md",
        "test/orm/test_session.py"]


def test_an_index_without_the_embedded_column_works_and_is_migrated(
        repo: Path, tiny_model_dir: Path) -> None:
    index(repo, "--model", str(tiny_model_dir))
    before = ranked(repo)
    table = store_of(repo)._table(CHUNKS)
    table.drop_columns([EMBEDDED])  # what an index written before issue 17 looks like
    store = store_of(repo)
    assert EMBEDDED not in store._table(CHUNKS).schema.names
    assert store.coverage() == (len(store.chunks()), len(store.chunks()))
    assert ranked(repo) == before and ranked(repo, "semantic")
    (repo / "datatools" / "extra.py").write_text("def extra_mean(xs):\n    return sum(xs)\n")
    out = index(repo)  # the next write adds the column (all true) and carries on
    assert EMBEDDED in store_of(repo)._table(CHUNKS).schema.names
    assert out["chunks_with_vectors"] == out["chunks_total"]


"""The LanceDB store on hand-made chunks and vectors: atomic batches, prefilters, full text, the
manifest, the embedding cache and the writer lock (real LanceDB in tmp_path)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from codesearch.documents import lexical_text
from codesearch.embed.handle import check_compatible
from codesearch.errors import IndexBusyError, IndexMismatchError, IndexMissingError
from codesearch.index.plan import chunk_id
from codesearch.query.ranking import build_where
from codesearch.store.cache import EmbeddingCache
from codesearch.store.locks import WriterLock
from codesearch.store.records import ChunkRecord, FileRecord, Manifest, sql_in
from codesearch.store.store import Store

DIM = 4


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def chunk(path: str, symbol: str, text: str, line: int = 1,
          language: str = "python") -> ChunkRecord:
    h = f"h-{path}-{symbol}-{text}"
    return ChunkRecord(
        id=chunk_id(path, h, 0), path=path, language=language, kind="function", symbol=symbol,
        start_line=line, end_line=line + 2, text=text, hash=h,
        search_text=lexical_text(path, symbol, text),
    )


def record(path: str, n: int, size: int = 10) -> FileRecord:
    return FileRecord(path=path, mtime_ns=1, size=size, hash=f"f-{path}-{size}", language="python",
                      chunks=n)


MANIFEST = Manifest(model="m", model_id="org/m", revision="abc", dim=DIM, prefix_scheme="none",
                    max_length=128, chunker_version="1")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(str(tmp_path / "index"))
    s.write_manifest(MANIFEST)
    s.ensure_tables(DIM)
    return s


def ids(store: Store, where: str | None = None) -> list[str]:
    return sorted(c.id for c in store.chunks(where))


def test_commit_batch_replaces_a_files_chunks_in_one_commit(store: Store) -> None:
    a1, a2 = chunk("a.py", "one", "def one(): ..."), chunk("a.py", "two", "def two(): ...", 5)
    b1 = chunk("b.py", "three", "def three(): ...")
    store.commit_batch(files=[record("a.py", 2), record("b.py", 1)], chunks=[a1, a2, b1],
                       vectors=np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0)]))
    assert store.count_chunks() == 3
    before = store.index_info()["version"]

    # a.py now has one new chunk and keeps `one`: one commit replaces its rows, b.py untouched.
    a3 = chunk("a.py", "four", "def four(): ...", 9)
    store.commit_batch(files=[record("a.py", 2, size=20)], chunks=[a1, a3],
                       vectors=np.stack([unit(1, 0, 0, 0), unit(0, 0, 0, 1)]))
    assert store.index_info()["version"] == before + 1
    assert ids(store, "path = 'a.py'") == sorted([a1.id, a3.id])
    assert ids(store, "path = 'b.py'") == [b1.id]
    assert store.file_records()["a.py"].size == 20


def test_rerunning_a_batch_never_duplicates(store: Store) -> None:
    rows = [chunk("a.py", "one", "x"), chunk("a.py", "two", "y", 5)]
    vectors = np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0)])
    for _ in range(3):
        store.commit_batch(files=[record("a.py", 2)], chunks=rows, vectors=vectors)
    assert store.count_chunks() == 2
    assert store.count_files() == 1


def test_removed_and_touched_files(store: Store) -> None:
    a, b = chunk("a.py", "one", "x"), chunk("b.py", "two", "y")
    store.commit_batch(files=[record("a.py", 1), record("b.py", 1)], chunks=[a, b],
                       vectors=np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0)]))
    touched = replace(record("b.py", 1), mtime_ns=99)
    store.commit_batch(files=[], chunks=[], vectors=np.zeros((0, DIM), np.float32),
                       touched=[touched], removed=["a.py"])
    assert ids(store) == [b.id]
    assert set(store.file_records()) == {"b.py"}
    assert store.file_records()["b.py"].mtime_ns == 99


def test_vector_search_filters_before_ranking(store: Store) -> None:
    # Ten Go chunks sit right on the query; the one Python chunk is far from it. With k=1 and a
    # python filter applied after ranking we would get nothing; before ranking, the Python chunk.
    go = [chunk(f"g{i}.go", f"G{i}", f"func G{i}()", language="go") for i in range(10)]
    py = chunk("p.py", "far", "def far(): ...")
    vectors = np.stack([unit(1, 0.01 * i, 0, 0) for i in range(10)] + [unit(0, 0, 0, 1)])
    store.commit_batch(files=[record(c.path, 1) for c in go] + [record("p.py", 1)],
                       chunks=[*go, py], vectors=vectors)
    hits = store.vector_search(unit(1, 0, 0, 0), 1, where=build_where(["python"]))
    assert [h.symbol for h in hits] == ["far"]
    hits = store.vector_search(unit(1, 0, 0, 0), 3, where=build_where(globs=["g1*.go"]))
    assert [h.path for h in hits] == ["g1.go"]
    top = store.vector_search(unit(1, 0, 0, 0), 1)[0]
    assert top.path == "g0.go" and top.score == pytest.approx(1.0, abs=1e-5)


def test_text_search_sees_rows_added_after_the_index(store: Store) -> None:
    first = chunk("csv.py", "readCsvRows", "def readCsvRows(path): ...")
    store.commit_batch(files=[record("csv.py", 1)], chunks=[first],
                       vectors=np.stack([unit(1, 0, 0, 0)]))
    with pytest.raises(IndexMissingError, match="no full-text index yet"):
        store.text_search("csv", 5)  # a run that died before its first optimize
    store.optimize()
    later = chunk("json.py", "loadJson", "def loadJson(path): ...")
    store.commit_batch(files=[record("json.py", 1)], chunks=[later],
                       vectors=np.stack([unit(0, 1, 0, 0)]))
    assert [h.symbol for h in store.text_search("csv rows", 5)] == ["readCsvRows"]
    assert [h.symbol for h in store.text_search("json", 5)] == ["loadJson"]  # unindexed yet
    assert store.text_search("json", 5, where=build_where(globs=["*.txt"])) == []


def test_bm25_scores_do_not_count_replaced_or_deleted_rows(store: Store, tmp_path: Path) -> None:
    # Thirty files in one fragment; one is edited, one removed (under the 10% of a fragment past
    # which LanceDB's compaction would purge them), a third's rows get new vectors. Afterwards
    # BM25 must score exactly as an index built from the surviving rows only.
    rows = [chunk(f"m{i}.py", f"f{i}", f"def f{i}(): return mean(column{i % 3})")
            for i in range(30)]
    vectors = np.stack([unit(1, 0, 0, 0)] * len(rows))
    store.commit_batch(files=[record(c.path, 1) for c in rows], chunks=rows, vectors=vectors)
    store.optimize()
    edited = chunk("m0.py", "f0", "def f0(): return mean(mean(column0)) + mean(column1)")
    store.commit_batch(files=[record("m0.py", 1, size=20)], chunks=[edited],
                       vectors=np.stack([unit(0, 1, 0, 0)]), removed=["m1.py"])
    store.update_vectors([rows[2].id], np.stack([unit(0, 0, 1, 0)]))
    store.optimize()

    fresh = Store.open(str(tmp_path / "fresh"))
    fresh.write_manifest(MANIFEST)
    fresh.ensure_tables(DIM)
    live = [edited, *rows[2:]]
    fresh.commit_batch(files=[record(c.path, 1) for c in live], chunks=live,
                       vectors=np.stack([unit(1, 0, 0, 0)] * len(live)))
    fresh.optimize()
    for query in ("mean column", "mean column0", "f5"):
        got = {h.id: h.score for h in store.text_search(query, 40)}
        want = {h.id: h.score for h in fresh.text_search(query, 40)}
        assert got.keys() == want.keys()
        assert [got[i] for i in want] == pytest.approx(list(want.values()), rel=1e-6), query


def test_paths_with_quotes_are_safe(store: Store) -> None:
    odd = "it's a \\ path.py"
    c = chunk(odd, "f", "x")
    store.commit_batch(files=[record(odd, 1)], chunks=[c], vectors=np.stack([unit(1, 1, 0, 0)]))
    assert ids(store, sql_in("path", [odd])) == [c.id]
    store.commit_batch(files=[], chunks=[], vectors=np.zeros((0, DIM), np.float32), removed=[odd])
    assert store.count_chunks() == 0


def test_manifest_round_trip_and_mismatch(store: Store, tmp_path: Path) -> None:
    assert store.read_manifest() == MANIFEST
    check_compatible(MANIFEST, replace(MANIFEST, created_at=5.0))
    with pytest.raises(IndexMismatchError, match="dim 4 .* vs 8") as err:
        check_compatible(MANIFEST, replace(MANIFEST, dim=8))
    assert "cs index --rebuild" in (err.value.hint or "")
    # Data tables without a manifest: a clear error, not a guess.
    bare = Store.open(str(tmp_path / "bare"))
    assert bare.read_manifest() is None and not bare.exists()
    bare.ensure_tables(DIM)
    with pytest.raises(IndexMismatchError, match="no manifest"):
        bare.read_manifest()


def test_reset_drops_everything(store: Store) -> None:
    store.commit_batch(files=[record("a.py", 1)], chunks=[chunk("a.py", "f", "x")],
                       vectors=np.stack([unit(1, 0, 0, 0)]))
    store.reset()
    assert not store.exists()
    assert store.read_manifest() is None


def test_embedding_cache_is_keyed_by_identity(tmp_path: Path) -> None:
    cache = EmbeddingCache.open(MANIFEST.identity(), DIM, uri=str(tmp_path / "cache"))
    assert cache.get(["h1"]) == {}
    cache.put(["h1", "h2"], np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0)]))
    got = cache.get(["h2", "h3", "h1"])
    assert set(got) == {"h1", "h2"}
    np.testing.assert_allclose(got["h2"], unit(0, 1, 0, 0))
    cache.optimize()
    assert set(cache.get(["h1"])) == {"h1"}
    other = EmbeddingCache.open(MANIFEST.identity() | {"dim": 8}, 8, uri=str(tmp_path / "cache"))
    assert other.get(["h1"]) == {}


def test_second_writer_is_refused(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "index"))
    with store.writer_lock(wait=0):
        with pytest.raises(IndexBusyError, match=r"pid \d+"):
            store.writer_lock(wait=0.2)
    with store.writer_lock(wait=0):  # released on exit
        pass
    lock = WriterLock(tmp_path / "x.lock")
    lock.acquire()
    lock.release()


def test_ann_index_past_the_threshold(store: Store) -> None:
    rng = np.random.default_rng(0)
    n = 600
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [chunk(f"f{i}.py", f"s{i}", f"t{i}", language=("go", "python")[i % 2])
            for i in range(n)]
    store.commit_batch(files=[record(r.path, 1) for r in rows], chunks=rows, vectors=vectors)
    store.optimize(ann_threshold=n + 1)
    assert not any("vector" in i for i in store.index_info()["indexes"])
    store.optimize(ann_threshold=n)
    assert any(i.startswith("IvfHnswSq(vector") for i in store.index_info()["indexes"])

    query = vectors[7]
    assert store.vector_search(query, 1)[0].symbol == "s7"
    hits = store.vector_search(query, 5, where=build_where(["python"]))
    assert len(hits) == 5 and all(h.language == "python" for h in hits)
    # Rows added after training are found before the next optimize folds them in.
    late = chunk("late.py", "late", "late")
    store.commit_batch(files=[record("late.py", 1)], chunks=[late],
                       vectors=unit(1, 1, 1, 1)[None, :])
    assert store.vector_search(unit(1, 1, 1, 1), 1)[0].symbol == "late"
    store.optimize(ann_threshold=n)
    assert store.vector_search(unit(1, 1, 1, 1), 1)[0].symbol == "late"

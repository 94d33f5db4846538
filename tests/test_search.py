"""Search helpers as tables (query-type detection, globs, fusion, identifiers, FILE:LINE), and the
Searcher on a real index built with the tiny model."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from codesearch.documents import fold, lexical_query, lexical_text, query_views
from codesearch.errors import IndexMissingError, UsageError
from codesearch.index.indexer import IndexOptions
from codesearch.index.run import index_root
from codesearch.location import IndexSettings, parse_location
from codesearch.query.ranking import detect_task, fuse, glob_to_regex
from codesearch.query.request import SearchOptions
from codesearch.query.searcher import Searcher, enclosing_chunk
from codesearch.source.chunk import Chunk
from codesearch.vocabulary import identifier_words

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")


@pytest.mark.parametrize(
    ("query", "task"),
    [
        ("parse CSV and compute mean", "nl2code"),
        ("function that returns the mean of a column", "nl2code"),
        ("class that parses csv files", "nl2code"),
        ("where do we retry failed http requests?", "nl2code"),
        ("parse_csv", "nl2code"),
        ("def mean(xs): return sum(xs) / len(xs)", "code2code"),
        ("for (let i = 0; i < n; i++) {", "code2code"),
        ("x = foo(bar)", "code2code"),
        ("fn main() -> Result<(), Error>", "code2code"),
        ("if a == b:\n    return", "code2code"),
        ("std::vector<int>", "code2code"),
    ],
)
def test_detect_task(query: str, task: str) -> None:
    assert detect_task(query) == task


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("*.py", ["a.py", "src/deep/b.py"], ["a.pyc", "a.py/x.go"]),
        ("src/*.py", ["src/a.py"], ["src/deep/a.py", "lib/src/a.py"]),
        ("src/**/*.py", ["src/a.py", "src/x/y/a.py"], ["a.py", "lib/src/a.py"]),
        ("**/test_*.py", ["test_a.py", "t/test_b.py"], ["t/a_test.py"]),
        ("tests/", ["tests/a.py", "tests/x/b.go"], ["src/tests.py"]),
        ("file?.[ch]", ["file1.c", "x/fileA.h"], ["file10.c", "file1.cpp"]),
        ("[!a]*.go", ["b.go"], ["a.go"]),
        ("a+b(1).js", ["a+b(1).js"], ["aab1.js"]),
    ],
)
def test_glob_to_regex(glob: str, matches: list[str], misses: list[str]) -> None:
    regex = re.compile(glob_to_regex(glob))
    for path in matches:
        assert regex.search(path), (glob, path)
    for path in misses:
        assert not regex.search(path), (glob, path)


def test_fuse_is_linear_on_max_normalised_scores() -> None:
    fused = fuse({"a": 0.8, "b": 0.4}, {"b": 10.0, "c": 5.0}, weight=0.75)
    assert fused["a"] == pytest.approx(0.75)
    assert fused["b"] == pytest.approx(0.75 * 0.5 + 0.25)
    assert fused["c"] == pytest.approx(0.25 * 0.5)
    assert fuse({"a": -0.2}, {}) == {"a": 0.0}


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("parseCSVFile", ["parse", "csv", "file"]),
        ("mean_of_column", ["mean", "of", "column"]),
        ("HTTPServer2", ["http", "server", "2"]),
        ("src/data_tools/CsvReader.py", ["src", "data", "tools", "csv", "reader", "py"]),
        ("(*Stack).Push", ["stack", "push"]),
    ],
)
def test_identifier_words_of_paths_and_symbols(name: str, words: list[str]) -> None:
    assert identifier_words(name) == words


def test_lexical_text_and_query_split_camel_case() -> None:
    text = lexical_text("src/CsvReader.ts", "CsvReader.readRows",
                        "readRows() { return parseLine(x) }")
    assert "csv reader" in text and "read rows" in text and "parse line" in text
    assert lexical_query("where is parseLine() && x?") == "where is parseline x parse line"


def test_parse_location() -> None:
    assert parse_location("src/a.py:42") == ("src/a.py", 42)
    assert parse_location("C:/x/a.py:7") == ("C:/x/a.py", 7)
    for bad in ("src/a.py", "a.py:", ":3", "a.py:x"):
        with pytest.raises(UsageError, match="FILE:LINE"):
            parse_location(bad)


def test_enclosing_chunk_prefers_the_smallest() -> None:
    def c(start: int, end: int) -> Chunk:
        return Chunk("a.py", "python", "function", f"f{start}", start, end, "x")

    chunks = [c(1, 20), c(5, 9), c(12, 14)]
    assert enclosing_chunk(chunks, 6).symbol == "f5"
    assert enclosing_chunk(chunks, 3).symbol == "f1"
    assert enclosing_chunk([c(1, 3), c(10, 12)], 8).symbol == "f10"
    assert enclosing_chunk([], 1) is None


def test_kind_prior_ranks_definitions_first_exactly(tmp_path: Path) -> None:
    """Glue code and prose lose to a definition that scores as well, and still win when they score
    clearly higher; the prior is applied per group under the same filter, before top-k."""
    from codesearch.embed.handle import EmbedderHandle
    from codesearch.index.plan import chunk_id
    from codesearch.query.ranking import SECONDARY_WEIGHT
    from codesearch.store.records import ChunkRecord, FileRecord, Manifest
    from codesearch.store.store import Store

    store = Store.open(str(tmp_path / "ix"))
    manifest = Manifest(model="m", model_id="m", revision=None, dim=2, prefix_scheme="none",
                        max_length=64, chunker_version="x")
    store.write_manifest(manifest)
    store.ensure_tables(2)

    def row(path: str, kind: str, text: str) -> ChunkRecord:
        return ChunkRecord(chunk_id(path, text, 0), path, "python", kind, "", 1, 1, text, text,
                           lexical_text(path, "", text))

    # Modules, a Go-style variable of callbacks, the leftover lines of a Rust impl block and a
    # method implementing a trait, with exactly the function's text, tie with it on BM25 and come
    # first in storage.
    glue = ["module"] * 4 + ["variable", "impl", "trait_impl"]
    rows = [*[row(f"m{i}.py", kind, "parse csv mean") for i, kind in enumerate(glue)],
            row("f.py", "function", "parse csv mean"),
            row("g.py", "function", "tokenize words"),
            row("d.py", "module", "tokenize words " * 4)]
    store.commit_batch(files=[FileRecord(r.path, 1, 1, r.path) for r in rows], chunks=rows,
                       vectors=np.array([[1, 0]] * len(rows), dtype=np.float32))
    store.optimize()
    searcher = Searcher(tmp_path, store, manifest, EmbedderHandle("unused"))
    raw = {h.path: h.score for h in store.text_search("parse csv mean", 10)}
    assert len(set(raw.values())) == 1  # a tie before the prior
    hits = searcher.find("parse csv mean", SearchOptions(k=1, mode="lexical"))
    assert [h.path for h in hits] == ["f.py"]
    hits = searcher.find("parse csv mean", SearchOptions(k=8, mode="lexical"))
    assert hits[0].path == "f.py"
    assert [h.score for h in hits[1:]] == pytest.approx([raw["m0.py"] * SECONDARY_WEIGHT] * 7)

    raw = {h.path: h.score for h in store.text_search("tokenize words", 10)}
    assert raw["d.py"] * SECONDARY_WEIGHT > raw["g.py"]  # far ahead: the prior does not flip it
    hits = searcher.find("tokenize words", SearchOptions(k=2, mode="lexical"))
    assert [h.path for h in hits] == ["d.py", "g.py"]
    assert not searcher.handle.loaded


def test_filters_apply_before_ranking(indexed_py_go_repo: Path) -> None:
    searcher = Searcher.open(IndexSettings().locate(indexed_py_go_repo))
    for mode in ("semantic", "lexical", "hybrid"):
        hits = searcher.find("push a value on the stack", SearchOptions(k=3, mode=mode,
                                                                       languages=("go",)))
        assert hits and all(h.language == "go" for h in hits), mode
        if mode != "lexical":  # BM25 only returns chunks sharing a word with the query
            assert len(hits) == 3
    hits = searcher.find("mean", SearchOptions(k=50, globs=("py/datatools/stats.py",)))
    assert hits and {h.path for h in hits} == {"py/datatools/stats.py"}
    hits = searcher.find("mean", SearchOptions(k=50, globs=("!*.py",)))
    assert hits and all(not h.path.endswith(".py") for h in hits)


def test_lexical_needs_no_model_and_min_score_cuts(indexed_py_go_repo: Path) -> None:
    searcher = Searcher.open(IndexSettings().locate(indexed_py_go_repo))
    hits = searcher.find("mean of column", SearchOptions(k=5, mode="lexical"))
    assert hits[0].symbol == "mean_of_column"
    assert not searcher.handle.loaded
    assert searcher.find("mean of column", SearchOptions(mode="lexical", min_score=1e9)) == []


def test_similar_excludes_itself(indexed_py_go_repo: Path) -> None:
    searcher = Searcher.open(IndexSettings().locate(indexed_py_go_repo))
    target = indexed_py_go_repo / "py/datatools/smoothing.py"
    lines = target.read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if "def rolling_mean" in t)
    hits = searcher.similar(f"{target}:{line + 2}", SearchOptions(k=50))
    assert hits
    assert not any(h.path == "py/datatools/smoothing.py" and h.start_line <= line + 2 <= h.end_line
                   for h in hits)


def test_a_long_definition_is_one_hit_and_similar_skips_all_its_pieces(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """A function cut into pieces answers once (its best piece), so -k still counts distinct
    definitions; `similar` from inside it returns none of its other pieces."""
    root = tmp_path / "repo"
    root.mkdir()
    body = "".join(f"    total_{i} = sum(row[{i}] for row in rows) * weight_{i}\n"
                   for i in range(150))
    (root / "report.py").write_text(f"def summarise(rows):\n{body}    return total_0\n")
    (root / "other.py").write_text(
        "def row_total(rows):\n    return sum(sum(row) for row in rows)\n\n\n"
        "def weighted_total(rows, weight):\n    return sum(row[0] * weight for row in rows)\n")
    index_root(root, options=IndexOptions(model=str(tiny_model_dir)))
    searcher = Searcher.open(IndexSettings().locate(root))
    pieces = searcher.store.chunks("path = 'report.py'")
    assert len(pieces) >= 3 and {p.definition_line for p in pieces} == {1}
    for mode in ("semantic", "lexical", "hybrid"):
        hits = searcher.find("sum of row totals times weight", SearchOptions(k=3, mode=mode))
        assert [h.path for h in hits].count("report.py") == 1, mode
        assert len(hits) == 3, mode
    middle = pieces[1].start_line + 1
    hits = searcher.similar(f"{root / 'report.py'}:{middle}", SearchOptions(k=10))
    assert hits and all(h.path != "report.py" for h in hits)


def test_search_errors(indexed_py_go_repo: Path, tmp_path: Path) -> None:
    searcher = Searcher.open(IndexSettings().locate(indexed_py_go_repo))
    with pytest.raises(UsageError, match="empty query"):
        searcher.find("  ")
    with pytest.raises(UsageError, match="no indexed files in language 'cobol'") as err:
        searcher.find("x", SearchOptions(languages=("cobol",)))
    assert "go" in (err.value.hint or "") and "python" in (err.value.hint or "")
    with pytest.raises(UsageError, match="unknown mode"):
        searcher.find("x", SearchOptions(mode="fuzzy"))
    stats = indexed_py_go_repo / "py/datatools/stats.py"
    n = len(stats.read_text().splitlines())
    with pytest.raises(UsageError, match=f"line {n + 1} is out of range: .* has {n} lines"):
        searcher.similar(f"{stats}:{n + 1}")
    with pytest.raises(UsageError, match="line 0 is out of range"):
        searcher.similar(f"{stats}:0")
    outside = tmp_path / "elsewhere.py"
    outside.write_text("def f():\n    pass\n")
    with pytest.raises(UsageError, match="outside the indexed root"):
        searcher.similar(f"{outside}:1")
    with pytest.raises(UsageError, match="no such file"):
        searcher.similar(f"{indexed_py_go_repo}/nope.py:1")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IndexMissingError, match="no index"):
        Searcher.open(IndexSettings().locate(empty))


@pytest.mark.parametrize(
    ("query", "views"),
    [
        ("Returns the number of flags set",
         ("function returns number flags set", "Returns the number of flags")),
        ("Sets the program's description for the long help (--help).",
         ("function sets program s description long help help",
          "Sets the program's description for")),
        ("Parse a CSV file", ("function parse csv file", "Parse a CSV file")),
        ("the of a", ("function ", "the of a")),
    ],
)
def test_query_views(query: str, views: tuple[str, str]) -> None:
    assert query_views(query) == views


def test_fold_weighs_the_query_one_and_normalises() -> None:
    q, a, b = np.eye(3, dtype=np.float32)
    folded = fold(np.stack([q, a, b]), (0.25, 0.2))
    np.testing.assert_allclose(folded, np.array([1, 0.25, 0.2]) / np.sqrt(1 + 0.25**2 + 0.2**2),
                               rtol=1e-6)
    with pytest.raises(ValueError):
        fold(np.stack([q, a]), (0.25, 0.2))  # one weight per view


@pytest.mark.slow
def test_a_text_models_find_query_folds_in_its_views(tmp_path: Path,
                                                     fixtures_dir: Path) -> None:
    """With MiniLM (a text model, words writing) a find query's vector is its own with its two
    views folded in, each written like the documents; semantic scores are cosines with it (times
    the kind prior; the find evidence is added on that scale)."""
    from codesearch.documents import QUERY_VIEW_WEIGHTS, in_words
    from codesearch.query.ranking import kind_weight

    root = tmp_path / "repo"
    shutil.copytree(fixtures_dir / "python", root)
    index_root(root, options=IndexOptions(model="minilm"))
    searcher = Searcher.open(IndexSettings().locate(root))
    query = "Returns the mean of a numeric column"
    hits = searcher.find(query, SearchOptions(k=3, mode="semantic", kinds=("code",)))
    embedder = searcher.handle.get()
    texts = [in_words(t) for t in (query, *query_views(query))]
    vectors = embedder.embed_queries(texts, task="nl2code")
    expected = fold(vectors, QUERY_VIEW_WEIGHTS)
    stored = {(r.path, r.start_line): r.vector for r in searcher.store.chunks(with_vectors=True)}
    best = max(float(np.dot(v, expected)) for v in stored.values())
    for hit in hits:
        vector = stored[(hit.path, hit.start_line)]
        cosine = float(np.dot(vector, expected))
        assert hit.signals["semantic"] == pytest.approx(cosine / best, abs=1e-4)
        evidence = sum(v for k, v in hit.signals.items() if k not in ("semantic", "prose"))
        assert hit.score == pytest.approx(
            (cosine + evidence * best) * kind_weight(hit.kind), abs=1e-4)
    plain = vectors[0]
    assert float(np.dot(plain, expected)) < 0.999  # the views really moved the query

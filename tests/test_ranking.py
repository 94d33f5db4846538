"""Hybrid ranking priors (name coverage, test paths, namesakes) as tables, and their effect on a
real index built with the tiny model: a definition whose name the query spells out outranks test
code, and `similar` finds a function's rewritten namesake first."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from codesearch.index.indexer import IndexOptions
from codesearch.index.run import index_root
from codesearch.location import IndexSettings
from codesearch.query import ranking
from codesearch.query.ranking import (
    NAME_BOOST,
    NAMESAKE_BOOST,
    TEST_PENALTY,
    is_test_path,
    name_coverage,
    name_key,
    namesake_priors,
    prior,
    query_terms,
    wants_tests,
)
from codesearch.query.request import SearchOptions
from codesearch.query.searcher import Searcher

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")


@pytest.mark.parametrize(
    ("query", "symbol", "coverage"),
    [
        ("Returns the number of flags set", "FlagSet.NFlag", 0.5),  # "flag" only: n is not a word
        ("Returns the number of flags set", "FlagSet.NumberOfFlags", 1.0),  # plural and case
        ("Sets the short version of the argument", "impl Arg.short", 1.0),
        ("Sets the short version of the argument", "Arg::short", 1.0),
        ("Parse a CSV file", "(*Reader).parseCsvFile", 1.0),
        ("Parse a CSV file", "CsvWriter.write_row", 0.0),
        ("Removes leading whitespace", "trimStart", 0.0),
        ("Compute the mean of a column", "mean_of_column", 1.0),
        ("Returns the length of the argument list", "Parser.arg_len", 1.0),  # abbreviations
        ("anything", "", 0.0),
    ],
)
def test_name_coverage(query: str, symbol: str, coverage: float) -> None:
    assert name_coverage(query_terms(query), symbol) == pytest.approx(coverage)


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("tests/test_api.py", True),
        ("src/foo/test_util.py", True),
        ("conftest.py", True),
        ("pkg/router_test.go", True),
        ("src/__tests__/button.js", True),
        ("src/button.spec.ts", True),
        ("lib/parser.test.js", True),
        ("examples/derive.rs", True),
        ("benches/bench.rs", True),
        ("absl/strings/str_cat_benchmark.cc", True),
        ("benchmarks/run.py", True),
        ("gson/src/main/java/JsonParserTest.java", True),  # JUnit, xUnit, ScalaTest naming
        ("Src/Tests/Linq/JObjectTests.cs", True),
        ("core/src/MonadSpec.scala", True),
        ("src/main/java/Latest.java", False),
        ("src/Contest.kt", False),
        ("src/testing.rs", False),  # a module named "testing" is not a test directory
        ("src/contest/main.py", False),
        ("lib/attestation.js", False),
        ("src/latest.go", False),
    ],
)
def test_is_test_path(path: str, is_test: bool) -> None:
    assert is_test_path(path) is is_test


def test_prior_combines_name_and_test_and_spares_tests_when_asked() -> None:
    terms = query_terms("push a value on the stack")
    assert prior(terms, False, "Stack.Push", "stack/stack.go") == pytest.approx(NAME_BOOST)
    assert prior(terms, False, "TestPush", "stack/stack_test.go") == pytest.approx(
        NAME_BOOST * 0.5 - TEST_PENALTY)
    assert wants_tests("tests for push") and not wants_tests("push a value on the stack")
    assert prior(terms, True, "TestPush", "stack/stack_test.go") == pytest.approx(NAME_BOOST * 0.5)
    assert prior(None, False, "TestPush", "stack/stack_test.go") == 0.0  # similar: no priors


@pytest.fixture
def repo_with_tests(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """The same function in code and in a test file: only the test prior can tell them apart
    (a different name would let the tiny random model's vectors decide, by chance)."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "tests").mkdir()
    body = "    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n"
    (root / "src" / "stats.py").write_text(f"def column_mean(xs):\n{body}")
    (root / "tests" / "test_stats.py").write_text(f"def column_mean(xs):\n{body}")
    index_root(root, options=IndexOptions(model=str(tiny_model_dir)))
    return root


def test_hybrid_find_prefers_the_definition_over_its_test_copy(repo_with_tests: Path) -> None:
    searcher = Searcher.open(IndexSettings().locate(repo_with_tests))
    hits = searcher.find("mean of a column", SearchOptions(k=2, mode="hybrid"))
    assert [h.path for h in hits] == ["src/stats.py", "tests/test_stats.py"]
    assert hits[1].signals["test"] == -TEST_PENALTY and "test" not in hits[0].signals
    # the same text: the scores differ by the test penalty and the file evidence it changes
    file_gap = hits[0].signals.get("file", 0.0) - hits[1].signals.get("file", 0.0)
    assert hits[0].score - hits[1].score == pytest.approx(TEST_PENALTY + file_gap)


def test_lexical_mode_reads_abbreviations_written_out(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The description says "position" where the code says ``pos``: BM25 finds it only because the
    full-text index also holds the written-out word; and a definition whose name the query spells
    out comes before a longer body that merely uses the words."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "cursor.py").write_text(
        "class Cursor:\n"
        "    def pos(self):\n        return self._offset\n\n"
        "    def width(self):\n        return len(self._text)\n")
    (root / "render.py").write_text(
        "def draw(screen, text):\n"
        "    for line in text.splitlines():\n"
        "        screen.write(line)\n"
        "        screen.advance()\n"
        "    return screen.cursor_width()\n")
    index_root(root, options=IndexOptions(model=str(tiny_model_dir)))
    searcher = Searcher.open(IndexSettings().locate(root))
    hits = searcher.find("the byte position of this cursor", SearchOptions(k=3, mode="lexical"))
    assert hits and hits[0].symbol == "Cursor.pos"
    hits = searcher.find("cursor width", SearchOptions(k=3, mode="lexical"))
    assert hits[0].symbol == "Cursor.width"


def test_namesake_priors_split_the_boost_over_every_candidate_of_that_name() -> None:
    def priors(query: str, symbols: dict[str, str]) -> dict[str, float]:
        return namesake_priors(name_key(query, "method"),
                               {cid: name_key(s, "method") for cid, s in symbols.items()})

    candidates = {"a": "impl Arg.get_action", "b": "Command.getAction", "c": "Arg.action", "d": ""}
    assert priors("Arg::get_action", candidates) == {
        "a": pytest.approx(NAMESAKE_BOOST / math.sqrt(2)),
        "b": pytest.approx(NAMESAKE_BOOST / math.sqrt(2))}
    assert priors("parse_values", {"x": "Reader.parseValues", "y": "parse_value"}) == {
        "x": pytest.approx(NAMESAKE_BOOST)}  # two identifiers, not two inflections
    assert priors("", candidates) == {}  # a chunk without a name: no prior
    assert name_key("Usage > Examples", "section") == frozenset()  # a heading path is no name


def test_hybrid_similar_adds_the_namesake_prior_to_each_namesake(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`similar` from a function in v1/ lifts its two rewritten namesakes (v2/, v3/) by the split
    boost each, and leaves a differently named look-alike where it was."""
    v1 = ("def render_table(rows, widths):\n    lines = []\n    for row in rows:\n"
          "        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]\n"
          "        lines.append(' | '.join(cells))\n    return '\\n'.join(lines)\n")
    files = {
        "v1/table.py": v1,
        "v2/table.py": v1.replace("ljust(width)", "rjust(width)").replace("render_table",
                                                                       "render_rows"),
        "v3/table.py": v1.replace("str(cell).ljust(width)", "format(cell, f'<{width}')"),
        "v4/table.py": ("def render_table(rows, widths=None):\n"
                        "    widths = widths or column_widths(rows)\n"
                        "    return '\\n'.join(' | '.join(format(c, f'<{w}') for c, w in"
                        " zip(r, widths)) for r in rows)\n"),
    }
    root = tmp_path / "repo"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    index_root(root, options=IndexOptions(model=str(tiny_model_dir)))
    searcher = Searcher.open(IndexSettings().locate(root))

    def scores() -> dict[str, float]:
        hits = searcher.similar(f"{root / 'v1' / 'table.py'}:3", SearchOptions(k=5, mode="hybrid"))
        return {h.path: h.score for h in hits}

    with_prior = scores()
    monkeypatch.setattr(ranking, "NAMESAKE_BOOST", 0.0)
    without = scores()
    assert set(with_prior) == set(without) == {"v2/table.py", "v3/table.py", "v4/table.py"}
    split = NAMESAKE_BOOST / math.sqrt(2)
    assert with_prior["v3/table.py"] - without["v3/table.py"] == pytest.approx(split)
    assert with_prior["v4/table.py"] - without["v4/table.py"] == pytest.approx(split)
    assert with_prior["v2/table.py"] == pytest.approx(without["v2/table.py"])


def test_hybrid_similar_gives_prose_sections_no_namesakes(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Markdown section's symbol is its heading path, not a name: two "Usage > Examples"
    sections are not namesakes."""
    root = tmp_path / "repo"
    root.mkdir()
    for name, tool in (("a.md", "grep"), ("b.md", "sed"), ("c.md", "awk")):
        (root / name).write_text(f"# Usage\n\n## Examples\n\nRun {tool} on every file of the tree"
                                 f" and print what {tool} finds.\n")
    index_root(root, options=IndexOptions(model=str(tiny_model_dir)))
    searcher = Searcher.open(IndexSettings().locate(root))

    def scores() -> dict[str, float]:
        hits = searcher.similar(f"{root / 'a.md'}:5", SearchOptions(k=5, mode="hybrid"))
        return {f"{h.path}:{h.start_line}": h.score for h in hits}

    with_prior = scores()
    assert with_prior
    monkeypatch.setattr(ranking, "NAMESAKE_BOOST", 0.0)
    assert scores() == pytest.approx(with_prior)


def test_hybrid_rank_fuses_both_lists_with_its_priors_and_levers() -> None:
    """The pure hybrid ranking: max-normalised fusion (0.8 semantic), the name and test priors,
    the kind prior, one piece per definition; each constant can be replaced per call (what
    bench/replica.py sweeps)."""
    import numpy as np

    from codesearch.query.ranking import hybrid_rank
    from codesearch.store.records import StoredChunk

    def row(cid: str, path: str, kind: str, symbol: str, start: int, vector: list[float],
            score: float = 0.0) -> StoredChunk:
        return StoredChunk(id=cid, path=path, language="python", kind=kind, symbol=symbol,
                           start_line=start, end_line=start + 1, text="", hash="", score=score,
                           vector=np.array(vector, dtype=np.float32))

    impl = row("a", "flags.py", "function", "FlagSet.NumFlags", 1, [1, 0])
    test = row("b", "tests/test_flags.py", "function", "test_num_flags", 1, [0.8, 0.6])
    glue = row("m", "flags.py", "module", "", 10, [0.9, 0.1])
    semantic = [impl, test, glue]
    lexical = [replace(test, score=2.0), replace(impl, score=1.0)]
    query = "Returns the number of flags set"
    vector = np.array([1, 0], dtype=np.float32)

    def ranked(**levers: Any) -> list[tuple[str, float]]:
        return [(r.id, s) for s, r in hybrid_rank(vector, semantic, lexical, 3, query=query,
                                                  **levers)]

    # impl: .8 x 1 + .2 x .5 + NAME_BOOST x 1; glue: .8 x .9 x SECONDARY_WEIGHT;
    # test: .8 x .8 + .2 x 1 + NAME_BOOST x 2/3 (test, num, flags: 2 of 3 words) - TEST_PENALTY;
    # each + .05: its file's name spells "flags", 1 of the query's 4 content words (path_boost .2)
    assert ranked() == [("a", pytest.approx(1.1)), ("b", pytest.approx(0.69)),
                        ("m", pytest.approx((0.72 + 0.05) * 0.85))]
    assert [cid for cid, _ in ranked(semantic_weight=0.0)] == ["b", "a", "m"]
    assert [cid for cid, _ in ranked(secondary_weight=1.0)] == ["a", "m", "b"]
    assert ranked(name_boost=0.0, test_penalty=0.0)[:2] == [("a", pytest.approx(0.95)),
                                                          ("b", pytest.approx(0.89))]
    # similar: no query priors; the query chunk's namesakes gain NAMESAKE_BOOST (or the lever)
    namesake = name_key("Reader.NumFlags", "method")
    similar = hybrid_rank(vector, semantic, lexical, 1, namesake=namesake, namesake_boost=0.5)
    assert [(r.id, s) for s, r in similar] == [("a", pytest.approx(0.9 + 0.5))]

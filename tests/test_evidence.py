"""The find evidence (query.evidence) and how query.ranking weighs it: the query's shape, a
definition of the symbol it names, the file's name, prose below code, a file's several hits, and
the signals that say why a hit ranked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from codesearch.query.evidence import (
    Levers,
    content_words,
    defines,
    embedded_identifiers,
    is_prose,
    path_match,
    query_shape,
    symbol_query,
    wants_prose,
)
from codesearch.query.ranking import find_scores, hybrid_rank, select, single_rank
from codesearch.store.records import StoredChunk

# Every lever off: the ranking before query.evidence.
OFF = Levers(definition_boost=0.0, path_boost=0.0, prose_weight=1.0, question_semantic_weight=0.8,
             area_embedded_definition_boost=0.0,
             area_path_boost=0.0, area_file_boost=0.0, area_file_decay=1.0)


@pytest.mark.parametrize("query, symbol", [
    ("APIRouter", "APIRouter"), ("Sinatra::Base", "Base"), ("http.Client", "Client"),
    ("parse_args", "parse_args"), ("getUser()", "getUser"), ("$container->get", "get"),
    ("session", None), ("how sessions work", None), ("Router and middleware", None),
])
def test_symbol_query_is_one_identifier_with_a_shape(query: str, symbol: str | None) -> None:
    assert symbol_query(query) == symbol


@pytest.mark.parametrize("query, shape", [
    ("APIRouter", "symbol"),
    ("how are redirects followed", "question"),
    ("does it retry?", "question"),
    ("Returns the number of flags set", "description"),
    ("parse CSV and compute mean", "description"),
    ("applies a function to every value", "description"),
    ("The name of the group", "description"),
    ("if the flag is set, print it", "description"),
    ("Helper for the parser", "description"),
    ("cookie storage and persistence", "topic"),
    ("JSON element hierarchy and tree model", "topic"),
    ("absl::StrCat for string concatenation", "topic"),
    ("WebSocket client implementation", "topic"),
])
def test_query_shape_tells_one_behaviour_from_a_subject(query: str, shape: str) -> None:
    assert query_shape(query) == shape


def test_questions_and_topics_get_the_file_levers_descriptions_do_not() -> None:
    levers = Levers()
    for shape in ("question", "topic"):
        lv = levers.for_shape(shape)
        assert (lv.file_boost, lv.file_decay, lv.path_boost) == (
            levers.area_file_boost, levers.area_file_decay, levers.area_path_boost)
    assert levers.for_shape("question").semantic_weight == levers.question_semantic_weight
    assert levers.for_shape("topic").semantic_weight == levers.semantic_weight
    assert levers.for_shape("description") == levers.for_shape("symbol") == levers


def test_embedded_identifiers_are_the_code_words_of_prose() -> None:
    assert embedded_identifiers("how parseParams reads a spec with read_config and HTTPAdapter"
                                ) == ["parseParams", "read_config", "HTTPAdapter"]
    assert embedded_identifiers("how redirects are followed") == []


@pytest.mark.parametrize("name, symbol, text, expected", [
    ("Session", "Session", "class Session:\n    pass", True),
    ("Session", "Session.send", "def send(self): ...", False),
    ("send", "Session.send", "def send(self): ...", True),
    ("Timeout", "Client.timeout", "def timeout(self):", False),
    ("Key", "", "data Key = Key Int\n  deriving Show", True),
    ("windows", "", "windows :: (WindowSet -> WindowSet) -> X ()\nwindows f = do", True),
    ("Param", "", "pub fn Param(comptime Id: type) type {", True),
    ("Param", "", "pub const Param = struct {", True),
    ("Param", "", "    const p = Param(Help){ .id = 1 };", False),
    ("Router", "", "router := NewRouter()\nrouter.Handle(x)", False),
    ("Conn", "", "defmodule Plug.Conn do", True),
    ("Conn", "", "defmodule Plug.Conn.WrapperError do", False),
])
def test_defines_reads_the_name_or_a_declaration(name: str, symbol: str, text: str,
                                                 expected: bool) -> None:
    assert defines(name, symbol, text) is expected


def test_prose_is_documentation_and_configuration() -> None:
    assert all(is_prose(p) for p in ["README.md", "docs/guide.rst", "LICENSE", "CHANGELOG",
                                     ".github/workflows/ci.yml", "package.json", "notes.txt"])
    assert not any(is_prose(p) for p in ["src/readme_parser.py", "clap.zig", "Core.hs",
                                         "lib/docs.go"])
    assert wants_prose("where is the configuration documented")
    assert not wants_prose("how redirects are followed")


def test_path_match_is_the_share_of_query_words_the_file_name_spells() -> None:
    words = content_words("cookie storage and persistence")
    assert words == ["cookie", "storage", "persistence"]
    assert path_match(words, "src/requests/cookies.py") == pytest.approx(1 / 3)
    assert path_match(words, "src/requests/models.py") == 0.0
    # the directory's name counts too, a short word only exactly
    assert path_match(content_words("the tcp stream"), "net/tcp/stream.rs") == 1.0
    assert path_match(content_words("how Key works"), "Data/Keymap.hs") == 0.0
    # another form of the word, or its usual abbreviation
    assert path_match(["quantize"], "model2vec/quantization.py") == 1.0
    assert path_match(["arguments"], "clap/args.zig") == 1.0
    assert path_match(["transform"], "lib/transport.js") == 0.0


def row(cid: str, path: str, *, symbol: str = "", kind: str = "function", text: str = "",
        start: int = 1, vector: tuple[float, float] = (1.0, 0.0),
        score: float = 0.0) -> StoredChunk:
    return StoredChunk(id=cid, path=path, language="python", kind=kind, symbol=symbol,
                       start_line=start, end_line=start + 1, text=text, hash="", score=score,
                       vector=np.array(vector, dtype=np.float32))


def test_find_scores_add_each_lever_as_a_named_signal() -> None:
    rows = {"def": row("def", "src/session.py", symbol="Session", text="class Session:"),
            "use": row("use", "src/api.py", symbol="get", text="return Session().get(url)"),
            "doc": row("doc", "README.md", kind="section", text="Session keeps cookies")}
    base = {"def": 0.5, "use": 0.8, "doc": 1.0}
    off, _ = find_scores("Session", base, rows, OFF)
    on, signals = find_scores("Session", base, rows, replace(
        OFF, definition_boost=0.5, path_boost=0.2, prose_weight=0.5))
    assert max(off, key=off.__getitem__) == "doc"
    assert max(on, key=on.__getitem__) == "def"
    assert signals["def"]["definition"] == 0.5
    assert signals["def"]["path"] == pytest.approx(0.2)
    assert signals["doc"]["prose"] == 0.5 and "definition" not in signals["use"]
    # a query that asks for documentation keeps its prose
    asked, _ = find_scores("Session docs", base, rows, replace(OFF, prose_weight=0.5))
    assert asked["doc"] > asked["use"]


def test_file_evidence_lifts_the_best_hit_of_a_file_with_several() -> None:
    rows = {"a1": row("a1", "a.py", start=1), "a2": row("a2", "a.py", start=10),
            "a3": row("a3", "a.py", start=20), "b": row("b", "b.py")}
    base = {"a1": 0.7, "a2": 0.6, "a3": 0.6, "b": 0.8}
    plain, _ = find_scores("how values are read", base, rows, OFF)
    assert max(plain, key=plain.__getitem__) == "b"
    boosted, signals = find_scores("how values are read", base, rows,
                                   replace(OFF, file_boost=0.5))
    assert max(boosted, key=boosted.__getitem__) == "a1"
    assert "file" in signals["a1"] and "file" not in signals["a2"]


def test_select_decays_further_hits_of_one_file() -> None:
    rows = {"a1": row("a1", "a.py", start=1), "a2": row("a2", "a.py", start=10),
            "b": row("b", "b.py")}
    scores = {"a1": 1.0, "a2": 0.9, "b": 0.6}
    assert [r.id for _, r in select(scores, rows, 3)] == ["a1", "a2", "b"]
    assert [r.id for _, r in select(scores, rows, 3, file_decay=0.5)] == ["a1", "b", "a2"]


def test_rankings_report_signals_for_what_they_return() -> None:
    a = row("a", "src/stack.py", symbol="Stack.push", vector=(1.0, 0.0))
    b = row("b", "tests/test_stack.py", symbol="test_push", vector=(0.8, 0.6))
    explain: dict[str, dict[str, float]] = {}
    best = hybrid_rank(np.array([1.0, 0.0], dtype=np.float32), [a, b],
                       [replace(b, score=2.0), replace(a, score=1.0)], 2,
                       query="push a value", explain=explain)
    assert [r.id for _, r in best] == ["a", "b"]
    assert explain["a"]["semantic"] == pytest.approx(1.0)
    assert explain["a"]["lexical"] == pytest.approx(0.5) and explain["b"]["test"] < 0
    explain = {}
    lexical = single_rank([replace(b, score=1.5), replace(a, score=1.0)], 2, "push a value",
                          explain=explain)
    assert [r.id for _, r in lexical] == ["a", "b"]  # the test penalty applies in every mode
    assert set(explain) == {"a", "b"}

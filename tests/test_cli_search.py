"""`cs find`, `cs similar` and `cs status` through the real CLI: output forms, exit codes, errors
(tiny model), and real meaning with MiniLM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codesearch.location import IndexSettings
from tests.support.cli import cs

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
HIT_KEYS = {"path", "start_line", "end_line", "symbol", "language", "kind", "score", "text"}
# find hits also say why they ranked (query.ranking.find_scores)
FIND_KEYS = HIT_KEYS | {"signals"}


def line_of(path: Path, needle: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if needle in t)


def test_find_json_grep_and_rich(indexed_py_go_repo: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    result = cs("find", "arithmetic mean of a column", "--path", str(indexed_py_go_repo), "--json",
                "-k", "4")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 4 and all(set(h) == FIND_KEYS for h in hits)
    # Why each ranked: code by the find evidence, docs by their side's scores and weight.
    assert all({"semantic", "lexical", "name"} <= set(h["signals"]) for h in hits
               if h["kind"] != "doc")
    assert all({"semantic", "lexical", "doc"} <= set(h["signals"]) for h in hits
               if h["kind"] == "doc")
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    for h in hits:  # paths relative to the root; text is exactly the file's lines
        lines = (indexed_py_go_repo / h["path"]).read_text().splitlines()
        assert h["text"] == "\n".join(lines[h["start_line"] - 1:h["end_line"]])

    monkeypatch.chdir(indexed_py_go_repo)
    result = cs("find", "arithmetic mean of a column", "--grep", "-k", "4")
    assert result.exit_code == 0, result.output
    expected = [f"{h['path']}:{h['start_line']}:{h['symbol'] or h['kind']}" for h in hits]
    assert result.stdout.splitlines() == expected

    result = cs("find", "arithmetic mean of a column", "-k", "1")
    assert result.exit_code == 0
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{hits[0]['path']}:{hits[0]['start_line']}")
    assert f"{hits[0]['score']:.3f}" in first


def test_find_files_ranks_files_with_their_best_hits(indexed_py_go_repo: Path) -> None:
    """--files: the -k files that answer best, each once, in the order of their best hit in
    the chunk ranking, with their hits (lines, symbol, score, signals; no text)."""
    root = str(indexed_py_go_repo)
    result = cs("find", "arithmetic mean of a column", "--path", root, "--files", "--json",
                "-k", "2")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)
    assert len(files) == 2 and len({f["path"] for f in files}) == 2
    assert all(set(f) == {"path", "language", "score", "hits"} for f in files)
    assert files[0]["score"] >= files[1]["score"]
    for f in files:
        assert f["score"] == f["hits"][0]["score"]
        assert all("text" not in h and "signals" in h for h in f["hits"])
    chunks = json.loads(cs("find", "arithmetic mean of a column", "--path", root, "--json",
                           "-k", "8").stdout)
    assert files[0]["path"] == chunks[0]["path"]
    assert [f["path"] for f in files] == list(dict.fromkeys(h["path"] for h in chunks))[:2]
    grep = cs("find", "arithmetic mean of a column", "--path", root, "--files", "--grep",
              "-k", "2")
    lines = grep.stdout.splitlines()  # paths as the shell sees them, here absolute
    assert len(lines) == 2 and all(line.split(":")[0] == f"{root}/{f['path']}"
                                   for line, f in zip(lines, files, strict=True))
    rich = cs("find", "arithmetic mean of a column", "--path", root, "--files", "-k", "2")
    lines = rich.stdout.splitlines()
    assert len(lines) == 2 and all(line.split()[0] == f"{root}/{f['path']}"
                                   for line, f in zip(lines, files, strict=True))


def test_find_exit_codes(indexed_py_go_repo: Path) -> None:
    result = cs("find", "zzqx vvkw", "--path", str(indexed_py_go_repo), "--mode", "lexical",
                "--json")
    assert result.exit_code == 1 and json.loads(result.stdout) == []
    result = cs("find", "zzqx vvkw", "--path", str(indexed_py_go_repo), "--mode", "lexical")
    assert result.exit_code == 1 and "No results" in result.stderr
    result = cs("find", "mean", "--path", str(indexed_py_go_repo), "--min-score", "2")
    assert result.exit_code == 1
    for args, message in [
        (("find", "   ", "--path", str(indexed_py_go_repo)), "empty query"),
        (("find", "x", "--path", str(indexed_py_go_repo), "--mode", "fuzzy"),
         "unknown mode 'fuzzy'"),
        (("find", "x", "--path", str(indexed_py_go_repo), "--task", "poetry"),
         "unknown task 'poetry'"),
        (("find", "x", "--path", str(indexed_py_go_repo), "-k", "0"), "-k must be at least 1"),
        (("find", "x", "--path", str(indexed_py_go_repo), "--lang", "cobol"),
         "no indexed files in language"),
        (("find", "x", "--path", str(indexed_py_go_repo / "nope")), "does not exist"),
        (("find", "x", "--path", str(indexed_py_go_repo.parent)), "no index for"),
    ]:
        result = cs(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.startswith("error: ")


def test_find_filters(indexed_py_go_repo: Path) -> None:
    result = cs("find", "push onto a stack", "--path", str(indexed_py_go_repo), "--lang", "go",
                "--json", "-k", "3")
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and {h["language"] for h in hits} == {"go"}
    result = cs("find", "parse", "--path", str(indexed_py_go_repo), "--glob", "py/**",
                "--glob", "!*cli.py", "--json", "-k", "50")
    paths = {h["path"] for h in json.loads(result.stdout)}
    assert paths and all(p.startswith("py/") and not p.endswith("cli.py") for p in paths)
    # A directory inside an indexed root searches that root, limited to the directory.
    result = cs("find", "push onto a stack", "--path", str(indexed_py_go_repo / "py"), "--json",
                "-k", "50")
    assert result.exit_code == 0, result.output
    paths = {h["path"] for h in json.loads(result.stdout)}
    assert paths and all(p.startswith("py/") for p in paths)
    status = json.loads(cs("status", str(indexed_py_go_repo / "go" / "stack"), "--json").stdout)
    assert status["root"] == str(indexed_py_go_repo.resolve())


def test_similar_cli(indexed_py_go_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smoothing = indexed_py_go_repo / "py/datatools/smoothing.py"
    line = line_of(smoothing, "def rolling_mean")
    result = cs("similar", f"{smoothing}:{line}", "--path", str(indexed_py_go_repo), "--json",
                "-k", "50")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits and not any(h["path"] == "py/datatools/smoothing.py" and h["start_line"] == line
                            for h in hits)
    monkeypatch.chdir(indexed_py_go_repo / "py")  # FILE is relative to the working directory
    result = cs("similar", f"datatools/smoothing.py:{line}", "--path", str(indexed_py_go_repo),
                "--grep")
    assert result.exit_code == 0, result.output
    n = len(smoothing.read_text().splitlines())
    for location, message in [
        (f"datatools/smoothing.py:{n + 5}", f"line {n + 5} is out of range"),
        ("datatools/missing.py:3", "no such file"),
        ("datatools/smoothing.py", "expected FILE:LINE"),
        (f"{indexed_py_go_repo.parent}/outside.py:1", "outside the indexed root"),
    ]:
        (indexed_py_go_repo.parent / "outside.py").write_text("x = 1\n")
        result = cs("similar", location, "--path", str(indexed_py_go_repo))
        assert result.exit_code == 2 and message in result.stderr, (location, result.stderr)


def test_similar_refuses_files_that_are_not_indexable(indexed_py_go_repo: Path) -> None:
    """A binary, data or ignored file is no source to compare: one error that says why, never
    confident results."""
    (indexed_py_go_repo / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\n" * 4)
    (indexed_py_go_repo / "data.dat").write_text("1 2 3\n4 5 6\n")
    (indexed_py_go_repo / ".csignore").write_text("scratch.py\n")
    (indexed_py_go_repo / "scratch.py").write_text("def mean(xs):\n    return sum(xs)\n")
    for name, why in [("a.png", "binary"), ("data.dat", "data file"),
                      ("scratch.py", "excluded by .csignore")]:
        result = cs("similar", f"{indexed_py_go_repo / name}:1", "--path",
                    str(indexed_py_go_repo), "--json")
        assert result.exit_code == 2, (name, result.output)
        assert result.stdout == ""
        assert "is not indexed" in result.stderr and why in result.stderr, result.stderr
        assert "hint: " in result.stderr
    # An indexable file written since the last index is still compared as it is now.
    (indexed_py_go_repo / "fresh.py").write_text("def mean(xs):\n    return sum(xs)\n")
    result = cs("similar", f"{indexed_py_go_repo / 'fresh.py'}:1", "--path",
                str(indexed_py_go_repo), "--json")
    assert result.exit_code == 0, result.output


def test_status(indexed_py_go_repo: Path) -> None:
    result = cs("status", str(indexed_py_go_repo), "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["dim"] == 64 and status["files"] > 0 and status["chunks"] > 0
    assert status["changed_since"] == {"total": 0, "new": 0, "modified": 0, "removed": 0}
    assert status["last_run"]["files_changed"] == status["files"]
    (indexed_py_go_repo / "py/datatools/new.py").write_text("def fresh():\n    return 1\n")
    (indexed_py_go_repo / "go/stack/stack.go").write_text("package stack\n")
    (indexed_py_go_repo / "py/datatools/net.py").unlink()
    status = json.loads(cs("status", str(indexed_py_go_repo), "--json").stdout)
    assert status["changed_since"] == {"total": 3, "new": 1, "modified": 1, "removed": 1}
    result = cs("status", str(indexed_py_go_repo))
    assert "changed since: 3 files (1 new, 1 modified, 1 removed)" in result.stdout
    result = cs("status", str(indexed_py_go_repo.parent))
    assert result.exit_code == 2 and "no index for" in result.stderr


# --- meaning, with MiniLM ----------------------------------------------------------------------


@pytest.fixture
def minilm_repo(tmp_path: Path, fixtures_dir: Path) -> Path:
    root = tmp_path / "repo"
    for lang in ("python", "javascript", "go", "rust"):
        shutil.copytree(fixtures_dir / lang, root / lang)
    result = cs("index", str(root), "--model", "minilm")
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.slow
def test_minilm_meaning(minilm_repo: Path) -> None:
    for mode in ("semantic", "hybrid"):
        result = cs("find", "parse CSV and compute mean", "--path", str(minilm_repo), "--json",
                    "--mode", mode)
        assert result.exit_code == 0, result.output
        top = json.loads(result.stdout)[0]
        assert (top["path"], top["symbol"]) == ("python/datatools/stats.py", "mean_of_column"), mode

    # Two near-duplicate functions in different files: each finds the other first.
    smoothing = minilm_repo / "python/datatools/smoothing.py"
    timeseries = minilm_repo / "python/datatools/timeseries.py"
    result = cs("similar", f"{smoothing}:{line_of(smoothing, 'def rolling_mean') + 3}",
                "--path", str(minilm_repo), "--json")
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)[0]
    assert (top["path"], top["symbol"]) == ("python/datatools/timeseries.py", "moving_average")
    result = cs("similar", f"{timeseries}:{line_of(timeseries, 'def moving_average')}",
                "--path", str(minilm_repo), "--json")
    top = json.loads(result.stdout)[0]
    assert (top["path"], top["symbol"]) == ("python/datatools/smoothing.py", "rolling_mean")


@pytest.mark.slow
def test_minilm_chunk_vectors_fold_in_their_views(minilm_repo: Path) -> None:
    """A general text model's stored vector is its text's with its short views' (name line with
    signature, with last return) folded in and normalised: what the indexer stores, recomputed
    here from the model directly; and `similar` folds the views of the chunk it starts from into
    its query alike."""
    from codesearch.documents import (
        DOCUMENT_TASK,
        VIEW_WEIGHTS,
        WORDS_STYLE,
        embedding_text,
        in_words,
        views,
    )
    from codesearch.query.request import SearchOptions
    from codesearch.query.searcher import Searcher
    from codesearch.source.chunk import chunk_source

    def fold(text_vector: np.ndarray, view_vectors: list[np.ndarray]) -> np.ndarray:
        mixed = (1 - sum(VIEW_WEIGHTS)) * text_vector + sum(
            w * v for w, v in zip(VIEW_WEIGHTS, view_vectors, strict=True))
        return mixed / np.linalg.norm(mixed)

    searcher = Searcher.open(IndexSettings().locate(minilm_repo))
    embedder = searcher.handle.get()
    assert searcher.manifest.prefix_scheme == "none+" + WORDS_STYLE
    rel = "python/datatools/stats.py"
    chunk = next(c for c in chunk_source((minilm_repo / rel).read_text(), rel, "python")
                 if c.symbol == "mean_of_column")
    head, tail = views(chunk, WORDS_STYLE)
    assert head.split("\n")[1].startswith("def mean_of_column(")
    assert tail.split("\n")[1].startswith("return ")
    text_vector, *view_vectors = embedder.embed_documents(
        [embedding_text(chunk, WORDS_STYLE), head, tail], task=DOCUMENT_TASK)
    stored = next(r.vector for r in searcher.store.chunks(with_vectors=True)
                  if r.path == rel and r.symbol == "mean_of_column")
    # Compared as directions: batch padding and the engine move single components by ~1e-4 under
    # load, while folding the views in moves the vector by more than 1e-3.
    assert float(np.dot(stored, fold(text_vector, view_vectors))) > 0.99999
    assert float(np.dot(stored, text_vector)) < 0.999  # the views really moved it

    # `similar` embeds the chunk it starts from the same way: its code, with its views folded in.
    timeseries = minilm_repo / "python/datatools/timeseries.py"
    rel = "python/datatools/timeseries.py"
    start = next(c for c in chunk_source(timeseries.read_text(), rel, "python")
                 if c.symbol == "moving_average")
    code_vector, *query_view_vectors = embedder.embed_queries(
        [in_words(start.text), *views(start, WORDS_STYLE)], task="code2code")
    query = fold(code_vector, query_view_vectors)
    hit = searcher.similar(f"{timeseries}:{start.start_line}",
                           SearchOptions(k=1, mode="semantic"))[0]
    hit_vector = next(r.vector for r in searcher.store.chunks(with_vectors=True)
                      if r.path == hit.path and r.start_line == hit.start_line)
    assert hit.score == pytest.approx(float(np.dot(hit_vector, query)), abs=2e-4)
    assert abs(hit.score - float(np.dot(hit_vector, code_vector))) > 1e-3  # views folded in


def test_similar_from_outside_the_tree_uses_the_root_holding_the_file(
        indexed_py_go_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --path and a cwd outside any indexed tree: the indexed root that holds FILE answers,
    whole (not limited to FILE's directory); paths print relative to the cwd."""
    stats = indexed_py_go_repo / "py/datatools/stats.py"
    line = line_of(stats, "def mean_of_column") + 2
    monkeypatch.chdir(indexed_py_go_repo.parent)
    result = cs("similar", f"repo/py/datatools/stats.py:{line}", "--grep", "-k", "20")
    assert result.exit_code == 0, result.output
    paths = [row.split(":")[0] for row in result.stdout.splitlines()]
    assert paths and all(p.startswith("repo/") for p in paths)
    assert any(p.startswith("repo/go/") for p in paths)  # the whole tree, not one directory
    elsewhere = indexed_py_go_repo.parent / "elsewhere.py"
    elsewhere.write_text("a = 1\nb = 2\nc = 3\n")
    result = cs("similar", f"{elsewhere}:3")
    assert result.exit_code == 2 and "no index" in result.output


def test_similar_blames_the_location_before_the_index(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside any index, a bad FILE:LINE is named as such, not as a missing index of the cwd."""
    (tmp_path / "url.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    for location, message in [("missing.py:3", "no such file: missing.py"),
                              ("url.py", "expected FILE:LINE, got 'url.py'"),
                              ("url.py:abc", "expected FILE:LINE, got 'url.py:abc'"),
                              (".:3", "not a file: ."),
                              ]:
        result = cs("similar", location)
        assert result.exit_code == 2, (location, result.output)
        assert message in result.stderr and "no index" not in result.stderr, result.stderr
        assert "\nhint: " in result.stderr, result.stderr
    result = cs("find", "x", "--path", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert "hint: " in result.stderr, result.stderr
    result = cs("status", str(tmp_path / "url.py"))
    assert result.exit_code == 2 and "is not a directory" in result.stderr
    assert "hint: " in result.stderr, result.stderr


def test_queries_of_a_root_never_indexed_leave_no_index_folder(tmp_path: Path) -> None:
    from codesearch.config import resolve_index_uri

    root = tmp_path / "plain"
    root.mkdir()
    (root / "a.py").write_text("def f():\n    return 1\n")
    for args in (("find", "x", "--path", str(root)), ("find", "x", "--path", str(root),
                                                      "--no-server"),
                 ("similar", f"{root / 'a.py'}:1", "--path", str(root)), ("status", str(root))):
        result = cs(*args)
        assert result.exit_code == 2 and "no index for" in result.stderr, (args, result.output)
    assert not Path(resolve_index_uri(root)).exists()


def test_similar_line_out_of_range_says_the_range(indexed_py_go_repo: Path) -> None:
    stats = indexed_py_go_repo / "py/datatools/stats.py"
    n = len(stats.read_text().splitlines())
    result = cs("similar", f"{stats}:99999", "--path", str(indexed_py_go_repo))
    assert result.exit_code == 2 and "line 99999 is out of range" in result.stderr
    assert f"hint: pick a line from 1 to {n}" in result.stderr, result.stderr


def test_help_says_what_each_option_does() -> None:
    """Help is plain text (brackets are not markup) and names the real defaults and outputs."""
    from codesearch import __version__
    from codesearch.query.ranking import DEFAULT_MODE, DEFAULT_SIMILAR_MODE

    def help_of(*command: str) -> str:
        result = cs(*command, "--help")
        assert result.exit_code == 0, result.output
        return " ".join(result.stdout.split())

    index_help = help_of("index")
    assert "pip install 'codesearch[ray]'" in index_help
    assert "[env CS_CACHE_URI]" in index_help
    status_help = help_of("status")
    assert "JSON object" in status_help and "array" not in status_help
    similar_help = help_of("similar")
    assert "nl2code or code2code (default: code2code)" in similar_help
    assert "detected from the query" not in similar_help
    assert f"(default: {DEFAULT_SIMILAR_MODE})" in similar_help
    find_help = help_of("find")
    assert f"semantic, lexical or hybrid (default: {DEFAULT_MODE})" in find_help
    assert "README" not in find_help
    result = cs("--version")
    assert result.exit_code == 0 and result.stdout == f"cs {__version__}\n"

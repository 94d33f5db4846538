"""Documentation as its own kind of result (issue 29): doc chunks stored for the qa and code2nl
sides with their exact prefixes, `cs find` merging code and docs, `--docs`/`--code`, `cs docs`.

The tiny random Qwen2 model checks the mechanics (which prefix every stored and query vector
got, through both indexing paths: the progressive first run and an in-place incremental one);
MiniLM checks meaning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from codesearch.documents import embedding_text
from codesearch.index.run import IndexOptions, index_root
from codesearch.location import IndexSettings
from codesearch.query.ranking import SUBJECT_WEIGHT
from codesearch.query.request import SearchOptions
from codesearch.query.searcher import Searcher
from codesearch.source.chunk import chunk_source
from tests.support.cli import cs

# The jina model card's prefixes, typed out independently of codesearch/embed/presets.py.
CODE_DOC = "Candidate code snippet:\n"
ANSWER_DOC = "Candidate answer:\n"
COMMENT_DOC = "Candidate comment:\n"
QA_QUERY = "Find the most relevant answer given the following question:\n"
CODE2NL_QUERY = "Find the most relevant comment given the following code snippet:\n"

FAQ = """\
FAQ
===

How do I compute the mean of a column?
--------------------------------------

Call ``mean_of_column`` with the path of a CSV file and the column name.

Why are empty lines skipped?
----------------------------

Blank rows carry no value, so the reader drops them.
"""


@pytest.fixture(autouse=True)
def fp32(cs_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact comparisons need fp32 vectors (auto may pick bf16 on this CPU)."""
    monkeypatch.setenv("CS_PRECISION", "fp32")


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path):
    """f(text, prefix, dim) -> the normalised last-token vector of prefix + text, run alone."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()

    def run(text: str, prefix: str, dim: int) -> np.ndarray:
        ids = tok(prefix + text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            full = model(input_ids=ids).last_hidden_state[0, -1].numpy().astype(np.float64)
        cut = full[:dim]
        return cut / np.linalg.norm(cut)

    return run


@pytest.fixture
def doc_repo(repo: Path) -> Path:
    """fixtures/python (README.md and the datatools package) plus docs/faq.rst."""
    (repo / "docs").mkdir()
    (repo / "docs/faq.rst").write_text(FAQ)
    return repo


def _rows(root: Path) -> dict[tuple[str, int, str], tuple[str, np.ndarray]]:
    """(path, start line, task) -> (kind, vector) of every stored row."""
    searcher = Searcher.open(IndexSettings().locate(root))
    table = searcher.store._table("chunks")
    data = table.search().select(["path", "start_line", "task", "kind", "vector"]).limit(None) \
        .to_arrow().to_pylist()
    return {(r["path"], r["start_line"], r["task"]): (r["kind"], np.asarray(r["vector"]))
            for r in data}


def _check_every_row(root: Path, reference, dim: int) -> int:
    """Every stored row's vector is its chunk's embedding text under the document prefix of its
    task: code with the code prefix, each doc chunk twice (answer, comment). Returns the doc
    chunks checked."""
    rows = _rows(root)
    prefixes = {"nl2code": CODE_DOC, "qa": ANSWER_DOC, "code2nl": COMMENT_DOC}
    docs = 0
    for path in sorted({p for p, _, _ in rows}):
        text = (root / path).read_text()
        language = "markdown" if path.endswith(".md") else (
            "restructuredtext" if path.endswith(".rst") else "python")
        for chunk in chunk_source(text, path, language):
            tasks = ("qa", "code2nl") if chunk.kind == "doc" else ("nl2code",)
            docs += chunk.kind == "doc"
            for task in tasks:
                kind, vector = rows[(path, chunk.start_line, task)]
                assert kind == chunk.kind
                expected = reference(embedding_text(chunk), prefixes[task], dim)
                np.testing.assert_allclose(vector, expected, atol=3e-5, err_msg=f"{path} {task}")
    assert len(rows) == sum(1 for _ in rows)
    return docs


@pytest.mark.slow
def test_every_doc_row_has_the_exact_prefix_of_its_side(doc_repo: Path, tiny_model_dir: Path,
                                                        reference) -> None:
    """The first index (progressive: vectors in phase 2) and an incremental edit (embedded in
    place) both store each doc chunk's qa and code2nl sides with the card's document prefixes;
    code keeps the code prefix; the edit re-embeds only the edited section's two rows."""
    first = json.loads(cs("index", str(doc_repo), "--model", str(tiny_model_dir), "--json")
                       .stdout)
    dim = first["dim"]
    assert _check_every_row(doc_repo, reference, dim) == 6  # README 3, faq.rst 3
    assert first["chunks_total"] == first["chunks_embedded"] == len(_rows(doc_repo))

    faq = doc_repo / "docs/faq.rst"
    faq.write_text(faq.read_text().replace("drops them", "skips them"))
    second = json.loads(cs("index", str(doc_repo), "--json").stdout)
    assert second["chunks_embedded"] == 2  # the edited section's answer and comment sides
    _check_every_row(doc_repo, reference, dim)

    clone = doc_repo.parent / "clone"
    shutil.copytree(doc_repo, clone)
    third = json.loads(cs("index", str(clone), "--model", str(tiny_model_dir), "--json").stdout)
    assert third["chunks_embedded"] == 0  # every side came from the embedding cache


@pytest.mark.slow
def test_query_sides_use_the_qa_and_code2nl_prefixes(doc_repo: Path, tiny_model_dir: Path,
                                                     reference) -> None:
    """A question's doc results score with the qa query prefix against the answer side; `cs
    docs` scores the definition with the code2nl query prefix against the comment side."""
    cs("index", str(doc_repo), "--model", str(tiny_model_dir), "--json")
    searcher = Searcher.open(IndexSettings().locate(doc_repo))
    dim = searcher.manifest.dim
    rows = _rows(doc_repo)
    question = "How do I compute the mean of a column?"
    hits = searcher.find(question, SearchOptions(k=3, mode="semantic", kinds=("doc",)))
    assert hits and {h.kind for h in hits} == {"doc"}
    query = reference(question, QA_QUERY, dim)
    for hit in hits:
        answer = rows[(hit.path, hit.start_line, "qa")][1]
        assert hit.score == pytest.approx(float(np.dot(answer, query)), abs=1e-4)

    stats = doc_repo / "datatools/stats.py"
    chunk = next(c for c in chunk_source(stats.read_text(), "datatools/stats.py", "python")
                 if c.symbol == "mean_of_column")
    hits = searcher.docs(f"{stats}:{chunk.start_line + 1}", SearchOptions(k=3, mode="semantic"))
    assert hits and {h.kind for h in hits} == {"doc"}
    name_and_code = embedding_text(chunk).split("\n", 1)
    code_query = reference(f"{name_and_code[0].split(' | ', 1)[1]}\n{name_and_code[1]}",
                           CODE2NL_QUERY, dim)
    # The score is the code2nl cosine plus the own-subject check (ranking.prefer_own_subject):
    # SUBJECT_WEIGHT x (cosine to this definition's stored row - to the nearest other code).
    own = rows[("datatools/stats.py", chunk.start_line, "nl2code")][1]
    others = [v for (path, line, _), (kind, v) in rows.items()
              if kind != "doc" and (path, line) != ("datatools/stats.py", chunk.start_line)]
    for hit in hits:
        comment = rows[(hit.path, hit.start_line, "code2nl")][1]
        subject = float(np.dot(comment, own)) - max(float(np.dot(comment, v)) for v in others)
        assert hit.score == pytest.approx(
            float(np.dot(comment, code_query)) + SUBJECT_WEIGHT * subject, abs=1e-4)


@pytest.mark.slow
def test_find_merges_code_and_docs_and_restricts_to_either(doc_repo: Path,
                                                           tiny_model_dir: Path) -> None:
    """A question lists code and docs in one list (`kind` says which); the code rows are the
    `--code` ranking, unchanged; `--docs` keeps only docs; a non-question too merges both."""
    cs("index", str(doc_repo), "--model", str(tiny_model_dir), "--json")
    question = "how do I compute the mean of a column?"

    def find(*args: str) -> list[dict[str, object]]:
        result = cs("find", question, "--path", str(doc_repo), "-k", "30", "--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    both, code, docs = find(), find("--code"), find("--docs")
    assert {h["kind"] for h in docs} == {"doc"} and len(docs) == 6
    assert "doc" not in {h["kind"] for h in code}
    assert {h["kind"] for h in both} >= {"doc", "function"}
    code_rows = [(h["path"], h["start_line"]) for h in both if h["kind"] != "doc"]
    assert code_rows == [(h["path"], h["start_line"]) for h in code][:len(code_rows)]
    assert find("--docs", "--code") == both
    grep = cs("find", question, "--path", str(doc_repo), "--docs", "--grep", "-k", "1")
    assert grep.exit_code == 0 and grep.stdout.count("\n") == 1
    assert grep.stdout.split(":")[0].endswith(("docs/faq.rst", "README.md"))


@pytest.mark.slow
def test_cs_docs_cli(doc_repo: Path, tiny_model_dir: Path) -> None:
    cs("index", str(doc_repo), "--model", str(tiny_model_dir), "--json")
    target = str(doc_repo / "datatools/stats.py") + ":14"
    result = cs("docs", target, "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and {h["kind"] for h in hits} == {"doc"}
    grep = cs("docs", target, "--grep", "-k", "3")
    assert [line.rsplit(":", 2)[0].endswith(h["path"]) and
            line.rsplit(":", 2)[1] == str(h["start_line"])
            for line, h in zip(grep.stdout.splitlines(), hits, strict=True)] == [True] * 3
    missing = cs("docs", str(doc_repo / "datatools/stats.py") + ":9999")
    assert missing.exit_code == 2 and "out of range" in missing.stderr


def test_questions_are_told_from_descriptions_and_code() -> None:
    from codesearch.query.ranking import find_task, side_tasks

    assert find_task("How do I add a custom command?") == "qa"
    assert find_task("why does the cache expire after an hour") == "qa"
    assert find_task("does it support retries?") == "qa"
    assert find_task("parse a CSV file and compute the mean") == "nl2code"
    assert find_task("def mean(xs): return sum(xs) / len(xs)") == "code2code"
    assert side_tasks("qa") == side_tasks("nl2code") == ("nl2code", "qa")
    assert side_tasks("code2code") == ("code2code", "code2nl")


def test_the_embedder_reads_a_doc_section_without_its_markup() -> None:
    """What the model reads of a Markdown or reST section: the words, not heading markers, link
    targets, emphasis, roles or backticks; identifiers such as ``__init__`` stay whole."""
    markdown = ("## Retries\n\nSee [the _retry_ guide](docs/retry.md#limits) and **always** set "
                "<b>max</b> in `__init__` (snake_case_name, *args).\n")
    text = embedding_text(chunk_source(markdown, "docs/guide.md", "markdown")[0])
    assert text.endswith("Retries\n\nSee the retry guide and always set max in __init__ "
                         "(snake_case_name, *args).")
    rst = "Retries\n=======\n\nSee :ref:`the guide <retry-guide>`, ``__init__`` and `docs`_.\n"
    text = embedding_text(chunk_source(rst, "docs/guide.rst", "restructuredtext")[0])
    assert text.endswith("Retries\n\nSee the guide, __init__ and docs.")


@pytest.mark.slow
def test_minilm_answers_a_question_from_the_docs(doc_repo: Path) -> None:
    """Meaning: with MiniLM (no prefixes: one vector per doc chunk) the FAQ entry answers its
    question, and `cs docs` on mean_of_column finds the docs that describe it."""
    index_root(doc_repo, options=IndexOptions(model="minilm"))
    searcher = Searcher.open(IndexSettings().locate(doc_repo))
    assert {r[2] for r in _rows(doc_repo)} == {"nl2code", "qa"}  # one row per doc chunk
    hits = searcher.find("Why are blank rows skipped?", SearchOptions(k=1, kinds=("doc",)))
    assert (hits[0].path, hits[0].symbol) == ("docs/faq.rst", "FAQ > Why are empty lines skipped?")
    docs = searcher.docs(f"{doc_repo / 'datatools/stats.py'}:14", SearchOptions(k=2))
    assert "docs/faq.rst" in {h.path for h in docs} or "README.md" in {h.path for h in docs}


SETTINGS_PY = '''\
class Command:
    def disable_colored_help(self, yes):
        if yes:
            self.global_setting(Settings.DISABLE_COLORED_HELP)
        else:
            self.unset_global_setting(Settings.DISABLE_COLORED_HELP)
        return self

    def is_disable_colored_help_set(self):
        return self.is_set(Settings.DISABLE_COLORED_HELP)
'''

SETTINGS_MD = """\
# Settings

## Plain help

Disables colorized help messages.

## Checking a setting

Report whether disable_colored_help is set.
"""


@pytest.mark.slow
def test_cs_docs_prefers_the_docs_whose_subject_is_this_code(tmp_path: Path) -> None:
    """A doc that names a function but describes another one (the getter's line names the
    setter) ranks below the doc whose subject the function is: the own-subject check
    (ranking.prefer_own_subject). Without it, MiniLM ranks the getter's line first here."""
    (tmp_path / "command.py").write_text(SETTINGS_PY)
    (tmp_path / "SETTINGS.md").write_text(SETTINGS_MD)
    index_root(tmp_path, options=IndexOptions(model="minilm"))
    searcher = Searcher.open(IndexSettings().locate(tmp_path))
    setter = searcher.docs(f"{tmp_path / 'command.py'}:2", SearchOptions(k=2))
    getter = searcher.docs(f"{tmp_path / 'command.py'}:9", SearchOptions(k=2))
    assert setter[0].symbol == "Settings > Plain help"
    assert getter[0].symbol == "Settings > Checking a setting"


def test_the_own_subject_check_reranks_by_the_cosine_margin() -> None:
    from codesearch.query.ranking import prefer_own_subject
    from codesearch.store.records import StoredChunk

    def row(name: str) -> StoredChunk:
        return StoredChunk(id=name, path=f"{name}.md", language="markdown", kind="doc",
                           symbol=name, start_line=1, end_line=2, text="", hash=name)

    ranked = [(0.9, row("about_other")), (0.8, row("about_this")), (0.7, row("no_code"))]
    out = prefer_own_subject(ranked, own=[0.5, 0.6, 0.1], other=[0.7, 0.4, None], weight=1.0)
    assert [(round(s, 3), r.id) for s, r in out] == [
        (1.0, "about_this"), (0.7, "about_other"), (0.7, "no_code")]


def test_token_match_weighs_the_words_only_some_candidates_hold() -> None:
    """idf over the candidates: a token every doc holds (here 1, e.g. a special token or the
    project's name) weighs nothing, so the doc holding the rarer question token (2) wins."""
    from codesearch.query.ranking import token_match

    e = np.eye(4)
    query = (np.array([1, 2]), e[[1, 2]])
    docs = [(np.array([1, 3]), e[[1, 3]]), (np.array([1, 2]), e[[1, 2]]),
            (np.array([1]), e[[1]]), (np.array([], dtype=np.int64), np.empty((0, 4)))]
    scores = token_match(query, docs)
    assert scores[1] > scores[0] == scores[2] > scores[3] == 0.0
    # Token 1 is in 3 of 4 candidates (weight log(5/4)); token 2 in 1 (log(5/2)).
    w1, w2 = np.log(5 / 4) + 1e-3, np.log(5 / 2) + 1e-3
    assert scores[0] == pytest.approx(w1 / (w1 + w2))


def test_token_matches_rerank_without_raising_the_top_score() -> None:
    from codesearch.query.ranking import prefer_token_matches
    from codesearch.store.records import StoredChunk

    def row(name: str) -> StoredChunk:
        return StoredChunk(id=name, path=f"{name}.md", language="markdown", kind="doc",
                           symbol=name, start_line=1, end_line=2, text="", hash=name)

    ranked = [(0.8, row("sibling")), (0.76, row("answer")), (0.4, row("far"))]
    out = prefer_token_matches(ranked, [0.5, 1.0, 0.9], weight=0.5)
    assert [r.id for _, r in out] == ["answer", "sibling", "far"]
    assert out[0][0] == pytest.approx(0.8 * (0.76 / 0.8 + 0.5) / 1.5) and out[0][0] <= 0.8
    assert prefer_token_matches(ranked, [0.0, 0.0, 0.0]) == ranked


@pytest.mark.slow
def test_a_question_s_docs_are_reranked_by_token_matches_with_a_text_model_only(
        doc_repo: Path, tiny_model_dir: Path, cs_home: Path) -> None:
    """MiniLM (no task prefixes): a question's doc hits carry their token match; in lexical mode,
    for a description, and with a prefixed model (the tiny jina-shaped one, whose qa task asks
    for the answer) they do not."""
    index_root(doc_repo, options=IndexOptions(model="minilm"))
    searcher = Searcher.open(IndexSettings().locate(doc_repo))
    question = "Why are blank rows skipped?"
    hits = searcher.find(question, SearchOptions(k=3, kinds=("doc",)))
    assert hits[0].symbol == "FAQ > Why are empty lines skipped?"
    assert all(0 < h.signals["token_match"] <= 1 for h in hits)
    for query, mode in ((question, "lexical"), ("skip blank rows", "hybrid")):
        hits = searcher.find(query, SearchOptions(k=3, kinds=("doc",), mode=mode))
        assert hits and not any("token_match" in h.signals for h in hits)
    other = doc_repo.parent / "prefixed"
    shutil.copytree(doc_repo, other)
    index_root(other, options=IndexOptions(model=str(tiny_model_dir)))
    hits = Searcher.open(IndexSettings().locate(other)).find(
        question, SearchOptions(k=3, kinds=("doc",)))
    assert hits and not any("token_match" in h.signals for h in hits)

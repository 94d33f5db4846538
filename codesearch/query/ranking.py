"""The ranking, as pure functions: candidate rows -> ranked rows, no IO and no model.

- :func:`detect_task`: which side of the model a query is (``nl2code`` or ``code2code``);
- :func:`build_where`: ``--lang`` and ``--glob`` as the SQL prefilter every candidate search uses;
- :func:`hybrid_rank`: the hybrid ranking of the candidates both searches found (semantic and
  BM25): max-normalised linear fusion (:func:`fuse`), the find priors (:func:`prior`: name
  coverage, test code) or the similar one (:func:`namesake_priors`), the kind prior
  (:func:`kind_weight`), then one piece per split definition (:func:`one_per_definition`);
- documentation beside code: :func:`find_task` (a question is ``qa``), :func:`side_tasks` (the
  task each kind is ranked with), :func:`doc_weight` and :func:`merge_kinds` (one list of both),
  and the docs' rerankers: :func:`prefer_token_matches` (a question's, by :func:`token_match`)
  and :func:`prefer_own_subject` (a piece of code's).

Every constant here was measured on the shared eval (bench/quality.py,
bench/results/quality-log.md). :func:`hybrid_rank` takes them as keyword arguments too, so
bench/replica.py sweeps them over stored query inputs with this very code instead of a copy.
Where the candidates come from (the store's searches) is query.searcher's job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from codesearch.documents import own_name_words
from codesearch.errors import UsageError
from codesearch.query.evidence import (
    LEVERS,
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
from codesearch.store.records import StoredChunk, sql_in
from codesearch.vocabulary import ABBREVIATIONS, identifier_words

# The defaults, from ../shared/eval dev (bench/quality.py measures every mode;
# bench/results/quality.md). find: hybrid beats semantic and lexical on every language.
# similar: hybrid beats semantic on every language; lexical scores higher overall there (the
# benchmark pairs two versions of one package, so most answers share their identifiers) but loses
# on Python, and a code model's vectors should matter more than MiniLM's.
DEFAULT_MODE = "hybrid"
DEFAULT_SIMILAR_MODE = "hybrid"
# Weight of the (max-normalised) semantic score in hybrid mode; the rest goes to BM25.
SEMANTIC_WEIGHT = 0.8
# Chunks that are not definitions of functions or types (top-level glue code, prose sections, line
# windows, a Go variable holding a struct of callbacks, the lines of a Rust impl block outside its
# methods, a method implementing a trait, which the trait documents: `impl Display for Error.fmt`)
# answer a query less directly than the function or type it describes: their scores are
# multiplied by this.
# Definitions keep their score, so on a benchmark whose answers are definitions the prior can only
# move answers up. Applied exactly: each group is ranked under the same prefilter, then merged.
SECONDARY_KINDS = ("module", "section", "window", "variable", "impl", "trait_impl")
SECONDARY_WEIGHT = 0.85
# How many candidates each side contributes to a hybrid ranking, per requested hit.
HYBRID_POOL = 5
HYBRID_MIN_POOL = 50
# Hybrid ranking priors (measured on ../shared/eval dev with bench/quality.py, see
# bench/results/quality-log.md). A definition whose own name is spelled out by the query
# ("Returns the number of flags set" -> NumFlags) gains up to NAME_BOOST; test code loses
# TEST_PENALTY unless the query asks for tests, because a description of behaviour is answered by
# the code that implements it, not by the test that exercises it.
# The three constants were re-fitted jointly (a listwise linear ranker over the same features,
# trained leaving one package out, agreed with a coarse grid): every language gained, and any test
# penalty from 0.3 up scores the same (test code simply ranks below implementations).
NAME_BOOST = 0.15
TEST_PENALTY = 0.3
# `similar`: a definition with the query chunk's own name is most often its counterpart (the same
# function in another version or copy of the code, a port, another implementation of the same
# method), so it gains NAMESAKE_BOOST, split over the n candidates of that name (/ sqrt(n)): a
# name many candidates share (`new`, `run`, `fmt`) says little. Shared eval, MiniLM, similar
# hybrid: dev .938 -> .987, pairs below 0.6 similarity .725 -> .951 (quality-log.md row 15).
NAMESAKE_BOOST = 0.2
# Chunks whose symbol is not a definition's name (a Markdown heading path, or none): no namesakes.
UNNAMED_KINDS = ("module", "section", "window", "doc")


_CODE_PUNCT = re.compile(r"[{};]|=>|->|::|==|!=|&&|\|\||\w\(|\)\s*:|^\s*[@#]\w")
_CODE_START = re.compile(
    r"^\s*(def|fn|func|function|class|struct|impl|interface|enum|import|from|package|public|"
    r"private|protected|static|const|let|var|return|async|pub|template|#include)\s+[\w$<*&]+"
    r".*[(:=<{\[]"
)


def detect_task(query: str) -> str:
    """``code2code`` when the query looks like code (several lines, code punctuation, a call, a
    definition), else ``nl2code``. Prose that merely mentions "function" stays nl2code."""
    text = query.strip()
    if "\n" in text or _CODE_PUNCT.search(text) or _CODE_START.match(text):
        return "code2code"
    return "nl2code"



def glob_to_regex(pattern: str) -> str:
    """A path glob -> an anchored regex over POSIX paths relative to the root. Like ripgrep's
    ``--glob``: a pattern without ``/`` matches the file name in any directory; ``*`` stays within
    one directory level, ``**`` crosses levels, ``?`` is one character, ``[...]`` a class; a
    pattern ending in ``/`` matches everything below that directory."""
    pat = pattern.strip()
    if not pat:
        raise UsageError("empty --glob pattern")
    anchored = "/" in pat.rstrip("/")
    pat = pat.lstrip("/")
    if pat.endswith("/"):
        pat += "**"
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pat.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pat.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pat[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    prefix = "^" if anchored else "(?:^|/)"
    return prefix + "".join(out) + "$"


def build_where(languages: Sequence[str] = (), globs: Sequence[str] = (),
                extra: Sequence[str] = ()) -> str | None:
    """The SQL prefilter for ``--lang`` and ``--glob`` (``!pattern`` excludes), ANDed with
    ``extra`` clauses; None when there is nothing to filter."""
    clauses = [f"({c})" for c in extra if c]
    if languages:
        clauses.append(sql_in("language", [lang.lower() for lang in languages]))
    include = [g for g in globs if not g.startswith("!")]
    exclude = [g[1:] for g in globs if g.startswith("!")]
    if include:
        clauses.append("(" + " OR ".join(_regex_clause(g) for g in include) + ")")
    for g in exclude:
        clauses.append(f"NOT {_regex_clause(g)}")
    return " AND ".join(clauses) or None


def _regex_clause(glob: str) -> str:
    regex = glob_to_regex(glob).replace("'", "''")
    return f"regexp_like(path, '{regex}')"


def fuse(semantic: Mapping[str, float], lexical: Mapping[str, float],
         weight: float = SEMANTIC_WEIGHT) -> dict[str, float]:
    """Linear fusion of max-normalised scores: ``weight * s/max(s) + (1-weight) * l/max(l)``.
    A candidate missing from one side scores 0 there; negative scores count as 0."""
    def normalised(scores: Mapping[str, float]) -> dict[str, float]:
        top = max((v for v in scores.values()), default=0.0)
        if top <= 0:
            return dict.fromkeys(scores, 0.0)
        return {key: max(value, 0.0) / top for key, value in scores.items()}

    sem, lex = normalised(semantic), normalised(lexical)
    keys = dict.fromkeys([*semantic, *lexical])
    return {key: weight * sem.get(key, 0.0) + (1 - weight) * lex.get(key, 0.0) for key in keys}


def unembedded_semantic(lexical: float, top_lexical: float, top_semantic: float) -> float:
    """The semantic score hybrid fusion gives a chunk that has no vector yet (a progressive index
    still embedding): its lexical score carried onto the semantic scale (``lexical/top_lexical``
    of the best candidate cosine ``top_semantic``, or of 1 when no candidate has a vector), so
    that after :func:`fuse` normalises each side the chunk scores the same on both and ranks as
    it would lexically. Hence at 0% vectors hybrid ranks as lexical (plus the priors), and at
    100% nothing is imputed: today's hybrid exactly."""
    if top_lexical <= 0:
        return 0.0
    scale = top_semantic if top_semantic > 0 else 1.0
    return max(lexical, 0.0) / top_lexical * scale


def kind_weight(kind: str, secondary_weight: float | None = None) -> float:
    """The ranking prior of a chunk kind (see SECONDARY_WEIGHT; ``secondary_weight`` replaces
    it)."""
    if kind not in SECONDARY_KINDS:
        return 1.0
    return SECONDARY_WEIGHT if secondary_weight is None else secondary_weight


def one_per_definition(ranked: Sequence[tuple[float, StoredChunk]]
                       ) -> list[tuple[float, StoredChunk]]:
    """``ranked`` (best first) with only the best piece of each split definition: a long
    function cut into pieces is one answer, not several slots of the top k."""
    seen: set[tuple[str, int]] = set()
    out = []
    for score, row in ranked:
        if row.definition not in seen:
            seen.add(row.definition)
            out.append((score, row))
    return out


_STEM_SUFFIXES = ("ing", "es", "ed", "s")


def _stem(word: str) -> str:
    """A crude English stem, enough to match ``returns``/``return``, ``flags``/``flag``."""
    for suffix in _STEM_SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def query_terms(query: str) -> frozenset[str]:
    """The stemmed, lower-cased words of a query, identifiers split (``parseCsv`` -> parse, csv),
    with their usual code abbreviations."""
    words = identifier_words(query)
    words.extend(a for w in list(words) for a in ABBREVIATIONS.get(w, ()))
    return frozenset(_stem(w) for w in words)


def name_key(symbol: str, kind: str) -> frozenset[str]:
    """The words of a chunk's own name, as a set: what two namesakes share (``get_action`` and
    ``getAction`` do; ``arg`` and ``args``, two identifiers, do not: no stemming). Empty for the
    UNNAMED_KINDS, whose symbol is no definition's name."""
    return frozenset() if kind in UNNAMED_KINDS else frozenset(own_name_words(symbol))


def namesake_priors(query_key: frozenset[str], keys: Mapping[str, frozenset[str]], *,
                    boost: float | None = None) -> dict[str, float]:
    """What hybrid ``similar`` adds to the fused score of each candidate (id -> its
    :func:`name_key`): for the n candidates named like the query chunk (``query_key``),
    NAMESAKE_BOOST (or ``boost``) / sqrt(n); nothing when the query chunk has no name."""
    if not query_key:
        return {}
    same = [cid for cid, key in keys.items() if key == query_key]
    boost = NAMESAKE_BOOST if boost is None else boost
    return {cid: boost / math.sqrt(len(same)) for cid in same}


def name_coverage(terms: frozenset[str], symbol: str) -> float:
    """The share of the words of a chunk's own name (:func:`own_name_words`) that the query
    contains: 1.0 when the query spells out the whole name."""
    words = [_stem(w) for w in own_name_words(symbol)]
    if not words:
        return 0.0
    return sum(1 for w in words if w in terms) / len(words)


_TEST_PATH = re.compile(
    r"(^|/)(tests?|__tests__|__mocks__|spec|specs|testing|testdata|benches|benchmarks?"
    r"|examples?)(/|$)"
    r"|(^|/)(test_[^/]*|[^/]*_(test|benchmark)\.\w+|conftest\.py|[^/]*\.(test|spec)\.\w+"
    r"|[A-Z]\w*(Tests?|Spec|Benchmark)\.(java|kt|cs|scala|swift|groovy|php))$"
)
_WORD = re.compile(r"[A-Za-z0-9]+")
_TEST_WORDS = frozenset({"test", "tests", "testing", "spec", "specs", "example", "examples",
                         "benchmark", "benchmarks", "bench", "fixture", "fixtures", "mock"})


def is_test_path(path: str) -> bool:
    """Whether ``path`` holds tests, examples or benchmarks by the usual layout conventions. The
    rule behind TEST_PENALTY, and so also behind the order a progressive index embeds in
    (index.order.embed_order: test code last, as it ranks last)."""
    return bool(_TEST_PATH.search(path))


def wants_tests(query: str) -> bool:
    """Whether a query asks about tests or examples themselves (then they are not penalised)."""
    return any(w.lower() in _TEST_WORDS for w in _WORD.findall(query))


def prior(terms: frozenset[str] | None, tests_wanted: bool, symbol: str, path: str, *,
          name_boost: float | None = None, test_penalty: float | None = None) -> float:
    """What hybrid find adds to a fused score: NAME_BOOST x :func:`name_coverage`, minus
    TEST_PENALTY for test code unless the query asks for tests. ``terms=None`` (``similar``): 0.
    ``name_boost``, ``test_penalty``: replace the constants."""
    if terms is None:
        return 0.0
    bonus = (NAME_BOOST if name_boost is None else name_boost) * name_coverage(terms, symbol)
    if not tests_wanted and is_test_path(path):
        bonus -= TEST_PENALTY if test_penalty is None else test_penalty
    return bonus


def hybrid_pool(k: int) -> int:
    """How many candidates each search (semantic and BM25) contributes to a hybrid ranking of
    ``k`` hits."""
    return max(k * HYBRID_POOL, HYBRID_MIN_POOL)


def hybrid_rank(vector: np.ndarray, sem_rows: Sequence[StoredChunk],
                lex_rows: Sequence[StoredChunk], k: int, *, query: str | None = None,
                namesake: frozenset[str] | None = None,
                semantic_weight: float | None = None, name_boost: float | None = None,
                test_penalty: float | None = None, namesake_boost: float | None = None,
                secondary_weight: float | None = None,
                extra_prior: Callable[[StoredChunk], float] | None = None,
                levers: Levers | None = None,
                explain: dict[str, dict[str, float]] | None = None,
                ) -> list[tuple[float, StoredChunk]]:
    """The best ``k`` of both candidate lists as (score, row), best first: linear fusion of the
    semantic and BM25 scores (:func:`fuse`; rows need their vectors, ``lex_rows`` their BM25
    scores), plus the find priors (:func:`prior` and query.evidence, only when ``query`` is
    given: :func:`find_scores`) or the similar one (:func:`namesake_priors`, only when
    ``namesake``, the query chunk's :func:`name_key`, is given), times the kind prior; one piece
    per split definition, files diversified (:func:`select`).

    The keyword levers replace the module's constants (None: the constant; ``levers``: the find
    evidence's weights), and ``extra_prior`` adds a term per candidate before the kind prior: for
    bench/replica.py's sweeps. ``explain``, when given, receives each returned row's signals."""
    lv = (levers or LEVERS).for_shape(query_shape(query) if query is not None else "")
    rows: dict[str, StoredChunk] = {r.id: r for r in sem_rows}
    for r in lex_rows:
        rows.setdefault(r.id, r)
    # Exact cosine for every candidate, including lexical-only ones; a chunk still without a
    # vector (zeros; the vector search never returns one) is scored by its lexical side.
    semantic = {key: float(np.dot(r.vector, vector)) for key, r in rows.items()
                if r.vector is not None and r.vector.any()}
    lexical = {r.id: r.score for r in lex_rows}
    top_semantic = max(semantic.values(), default=0.0)
    top_lexical = max(lexical.values(), default=0.0)
    for key in rows.keys() - semantic.keys():
        semantic[key] = unembedded_semantic(lexical.get(key, 0.0), top_lexical, top_semantic)
    if semantic_weight is not None:
        weight = semantic_weight
    elif query is not None and symbol_query(query):
        weight = lv.symbol_semantic_weight
    else:
        weight = lv.semantic_weight
    if query is None:
        namesakes = (namesake_priors(namesake, {key: name_key(r.symbol, r.kind)
                                                for key, r in rows.items()},
                                     boost=namesake_boost) if namesake else {})
        extra = {key: namesakes.get(key, 0.0) + (extra_prior(r) if extra_prior else 0.0)
                 for key, r in rows.items()}
        fused = {key: (score + extra[key]) * kind_weight(rows[key].kind, secondary_weight)
                 for key, score in fuse(semantic, lexical, weight).items()}
        signals: dict[str, dict[str, float]] = {
            key: {"namesake": value} for key, value in namesakes.items() if value}
    else:
        base = fuse(semantic, lexical, weight)
        fused, signals = find_scores(
            query, base, rows, lv, name_boost=name_boost, test_penalty=test_penalty,
            secondary_weight=secondary_weight, extra_prior=extra_prior)
    best = select(fused, rows, k, lv.file_decay if query is not None else 1.0)
    if explain is not None:
        # Each side's score on its own scale (the best candidate: 1), for the returned rows only.
        sem_n, lex_n = max(top_semantic, 1e-12), max(top_lexical, 1e-12)
        for _, row in best:
            explain[row.id] = {**signals.get(row.id, {}),
                               "semantic": max(semantic.get(row.id, 0.0), 0.0) / sem_n,
                               "lexical": max(lexical.get(row.id, 0.0), 0.0) / lex_n}
    return best


def find_scores(query: str, base: Mapping[str, float], rows: Mapping[str, StoredChunk],
                levers: Levers | None = None, *, name_boost: float | None = None,
                test_penalty: float | None = None, secondary_weight: float | None = None,
                extra_prior: Callable[[StoredChunk], float] | None = None,
                ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """A find query's final score of each candidate from its ``base`` score (fused, or one
    side's max-normalised score in a single mode), and the signals behind it: the name prior
    and test penalty (:func:`prior`), a definition of the symbol the query names
    (evidence.defines), the file's name spelling the query (evidence.path_match), the kind prior,
    prose and configuration below code (evidence.is_prose), then the evidence of the candidate's
    file (the sum of its candidates' scores: several hits in one file point at that file) added
    to the file's best candidate."""
    lv = levers or LEVERS
    terms = query_terms(query)
    tests_wanted = wants_tests(query)
    prose_ok = wants_prose(query)
    symbol = symbol_query(query)
    names = [symbol] if symbol else embedded_identifiers(query)
    boost = lv.definition_boost if symbol else lv.embedded_definition_boost
    words = content_words(symbol or query)
    scores: dict[str, float] = {}
    signals: dict[str, dict[str, float]] = {}
    for key, value in base.items():
        r = rows[key]
        sig = {"name": (NAME_BOOST if name_boost is None else name_boost)
               * name_coverage(terms, r.symbol)}
        if not tests_wanted and is_test_path(r.path):
            sig["test"] = -(TEST_PENALTY if test_penalty is None else test_penalty)
        if boost and names and any(defines(n, r.symbol, r.text) for n in names):
            sig["definition"] = boost
        if lv.path_boost and words:
            if (match := path_match(words, r.path)) > 0:
                sig["path"] = lv.path_boost * match
        if extra_prior is not None:
            sig["extra"] = extra_prior(r)
        weight = kind_weight(r.kind, secondary_weight)
        if not prose_ok and lv.prose_weight != 1.0 and is_prose(r.path):
            weight *= lv.prose_weight
            sig["prose"] = lv.prose_weight
        scores[key] = (value + sum(sig.values()) - sig.get("prose", 0.0)) * weight
        signals[key] = sig
    if lv.file_boost and scores:
        top = max(scores.values())
        by_file: dict[str, float] = {}
        best_of: dict[str, str] = {}
        for key, value in scores.items():
            path = rows[key].path
            by_file[path] = by_file.get(path, 0.0) + max(value, 0.0)
            if path not in best_of or value > scores[best_of[path]]:
                best_of[path] = key
        most = max(by_file.values())
        if most > 0:
            for path, key in best_of.items():
                gain = lv.file_boost * top * by_file[path] / most
                scores[key] += gain
                signals[key]["file"] = gain
    return scores, signals


def best_first(pairs: Iterable[tuple[float, StoredChunk]]) -> list[tuple[float, StoredChunk]]:
    """(score, row) pairs best first; equal scores by path, then line, so that an order never
    depends on the order the candidates came in."""
    return sorted(pairs, key=lambda pair: (-pair[0], pair[1].path, pair[1].start_line))


def select(scores: Mapping[str, float], rows: Mapping[str, StoredChunk], k: int,
           file_decay: float = 1.0) -> list[tuple[float, StoredChunk]]:
    """The best ``k`` (score, row), best first, one piece per split definition; each further
    hit from a file already listed scores ``file_decay`` times less per hit before it (1: no
    change), so one long file does not fill the list when other files answer too."""
    ranked = one_per_definition(best_first((score, rows[key]) for key, score in scores.items()))
    if file_decay == 1.0:
        return ranked[:k]
    seen: dict[str, int] = {}
    decayed = []
    for score, row in ranked:
        n = seen.get(row.path, 0)
        seen[row.path] = n + 1
        decayed.append((score * file_decay ** n if score > 0 else score, row))
    return best_first(decayed)[:k]


def single_rank(candidates: Sequence[StoredChunk], k: int, query: str,
                levers: Levers | None = None,
                explain: dict[str, dict[str, float]] | None = None, source: str = "score",
                ) -> list[tuple[float, StoredChunk]]:
    """``--mode semantic`` or ``lexical`` find: one search's candidates (their ``score``: cosine
    or BM25), max-normalised, with the same find evidence as hybrid (:func:`find_scores`) and
    the same selection (:func:`select`), scaled back by the best score. ``explain``: as in
    :func:`hybrid_rank` (signals on the normalised scale; ``source`` names the search's own,
    ``semantic`` or ``lexical``)."""
    lv = (levers or LEVERS).for_shape(query_shape(query))
    rows = {r.id: r for r in candidates}
    top = max((r.score for r in rows.values()), default=0.0)
    base = {key: max(r.score, 0.0) / top if top > 0 else 0.0 for key, r in rows.items()}
    scores, signals = find_scores(query, base, rows, lv)
    for key, sig in signals.items():
        sig[source] = base[key]
    # Back on the search's own scale (cosine, BM25), so --min-score means what it meant.
    scale = top if top > 0 else 1.0
    best = [(score * scale, row) for score, row in select(scores, rows, k, lv.file_decay)]
    if explain is not None:
        for _, row in best:
            explain[row.id] = signals.get(row.id, {})
    return best


# --- documentation beside code (cs find over both kinds; issue 29) -------------------------------

# A doc result beside code results weighs what prose weighs in a code answer (evidence.Levers
# .prose_weight: a question about how code behaves is answered by the code first; semble dev, 10
# repositories, hybrid: doc rows at 1.0 for questions and 0.85 otherwise .887, at this weight
# .920), unless the query asks for documentation or is a usage question ("how do I ...?", "how to
# ..."): those weigh the same as code.
_USAGE_QUESTION = re.compile(
    r"^\s*(how (do|can|should|would|could) (i|we|you)|how to|can (i|we|you)|should (i|we)|"
    r"is (it|there) (possible|a way))\b", re.I)
# Semantic weight of the doc side of a find (code: SEMANTIC_WEIGHT): prose is matched by meaning
# more than by shared words. qa sets, MiniLM hybrid: dev .619 -> .627, check .644 -> .670
# (bench/docs_quality.py). `cs docs` keeps SEMANTIC_WEIGHT (code2nl dev: .637 at 0.8, .629 at 0.9).
DOC_SEMANTIC_WEIGHT = 0.9
_QUESTION_START = re.compile(r"^\s*(how|why|what|when|where|which|who|whom|whose)\b", re.I)


def is_question(query: str) -> bool:
    """Whether a natural-language query is a question ("How do I add a command?", "why does
    the cache expire"): a find query with task ``qa``."""
    text = query.strip()
    return "\n" not in text and (text.endswith("?") or bool(_QUESTION_START.match(text)))


def find_task(query: str) -> str:
    """The task of a find query: ``qa`` for a question, else :func:`detect_task`."""
    task = detect_task(query)
    return "qa" if task == "nl2code" and is_question(query) else task


def side_tasks(task: str) -> tuple[str, str]:
    """(code task, doc task) of a find query of ``task``: code is ranked for natural language
    with nl2code (a question too) and for code with the code task; documentation with ``qa``
    for natural language and ``code2nl`` for code."""
    if task in ("nl2code", "qa"):
        return "nl2code", "qa"
    return ("code2code" if task == "code2nl" else task), "code2nl"


def doc_weight(query: str) -> float:
    """What a doc result's score is multiplied by beside code results for a find of ``query``:
    1 when it asks for documentation (evidence.wants_prose) or how to use something, else the
    weight of prose in a code answer."""
    if wants_prose(query) or _USAGE_QUESTION.match(query):
        return 1.0
    return LEVERS.prose_weight


def merge_kinds(parts: Sequence[tuple[float, Sequence[tuple[float, StoredChunk]]]], k: int
                ) -> list[tuple[float, StoredChunk]]:
    """Ranked lists of each kind, each with its weight, as one list of the best ``k`` by weighted
    score (ties: path, line)."""
    return best_first((weight * score, row)
                      for weight, ranked in parts for score, row in ranked)[:k]


# `cs docs`: how far down the list the own-subject check reaches, and its weight. A doc that
# resembles some other code more than this code is most likely about that code ("Report whether
# disable_colored_help is set" names a setter but documents its getter). code2nl dev set with the
# stripped code indexed beside the docs (bench/docs_quality.py), MiniLM hybrid: .645 -> .714 at
# 4 (1 .696, 2 .707, 3 .713, 6 .717); reranking the top 30 only.
SUBJECT_POOL = 30
SUBJECT_WEIGHT = 4.0


def prefer_own_subject(ranked: Sequence[tuple[float, StoredChunk]],
                       own: Sequence[float], other: Sequence[float | None],
                       weight: float | None = None) -> list[tuple[float, StoredChunk]]:
    """Docs for a piece of code reranked by whether it is their subject: each score plus
    ``weight`` (None: SUBJECT_WEIGHT) x (its cosine to the code, ``own``, minus its cosine to the
    nearest other code, ``other``; None where there is none: unchanged)."""
    weight = SUBJECT_WEIGHT if weight is None else weight
    return best_first((score + (weight * (mine - best) if best is not None else 0.0), row)
                      for (score, row), mine, best in zip(ranked, own, other, strict=True))


# A question's docs, with a text model (no task prefixes: nothing tells it a question seeks its
# answer): the top TOKEN_MATCH_POOL reranked by soft token matching, each question token's best
# cosine among a doc's contextual token vectors (BERTScore's recall; the same model's last hidden
# states over the section's first TOKEN_MATCH_TOKENS tokens, the length MiniLM was trained at).
# A bi-encoder's one vector per section scores sibling FAQ answers alike; which one holds the
# question's own words, or their near synonyms, tells them apart. qa sets, MiniLM hybrid, replayed
# (bench/docs_quality.py's sets): dev .646 -> .672, check .582 -> .621; the top 20 at 256 tokens
# (4x the model time): .662 / .615; weight 1.0 there: .651 / .626.
TOKEN_MATCH_POOL = 10
TOKEN_MATCH_TOKENS = 128
TOKEN_MATCH_WEIGHT = 0.5


def token_match(query: tuple[np.ndarray, np.ndarray],
                docs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Each doc's soft match of the query's tokens: every query token's best cosine among the
    doc's token vectors, averaged with idf weights taken over these candidates, so a token
    every candidate holds (special tokens, the project's name) weighs nothing. ``query`` and each
    doc: (token ids, L2-normalised token vectors)."""
    query_ids, query_vectors = query
    held = [set(ids.tolist()) for ids, _ in docs]
    n = len(docs)
    weights = np.array([math.log((n + 1) / (sum(t in h for h in held) + 1)) for t in
                        query_ids.tolist()]) + 1e-3
    weights /= weights.sum()
    return [float((query_vectors @ vectors.T).max(axis=1) @ weights) if len(vectors) else 0.0
            for _, vectors in docs]


def prefer_token_matches(ranked: Sequence[tuple[float, StoredChunk]], matches: Sequence[float],
                         weight: float = TOKEN_MATCH_WEIGHT) -> list[tuple[float, StoredChunk]]:
    """``ranked`` reordered by score/top + ``weight`` x match/top match, rescaled so the best
    possible stays the top score (the merged list compares it with code scores)."""
    top_score = max((score for score, _ in ranked), default=0.0)
    top_match = max(matches, default=0.0)
    if top_score <= 0 or top_match <= 0:
        return list(ranked)
    return best_first((top_score * (score / top_score + weight * match / top_match)
                       / (1 + weight), row)
                      for (score, row), match in zip(ranked, matches, strict=True))

"""Find and similar: a query (or a FILE:LINE) -> ranked :class:`Hit` s.

Three modes over the same index:
- ``semantic``: the query's embedding (nl2code for natural language, code2code for code; a text
  model's find query with its short views folded in, :func:`query_views`) against chunk vectors,
  cosine similarity.
- ``lexical``: BM25 over ``search_text`` (:func:`lexical_text`: the chunk's text, its symbol and
  path, identifiers also split into words, ``parseCsv`` -> ``parse csv``, and abbreviations
  written out, ``pos`` -> ``position``). Needs no model.
- ``hybrid``: both candidate lists, each max-normalised, combined linearly (:func:`fuse`). A plain
  reciprocal-rank fusion was measured to lose to semantic alone; a weighted linear fusion keeps the
  semantic gains.

Filters (``--lang``, ``--glob``) become a SQL prefilter applied before ranking, never after top-k.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codesearch.errors import IndexMissingError, UsageError
from codesearch.hits import Hit
from codesearch.location import IndexLocation, parse_location
from codesearch.query.request import SearchOptions
from codesearch.store.records import REBUILD_HINT, Coverage, Manifest, StoredChunk, sql_in, sql_str
from codesearch.store.store import Store
from codesearch.vocabulary import (
    ABBREVIATIONS,
    IDENTIFIER_RE,
    identifier_words,
    is_compound_identifier,
    written_out_words,
)

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.embed import Embedder
    from codesearch.index.indexer import EmbedderHandle
    from codesearch.source.chunk import Chunk

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
UNNAMED_KINDS = ("module", "section", "window")
# A find query's short views for a general text model (:func:`query_views`), folded into its
# vector with these weights (the query's own vector weighs 1), as a chunk's views are folded into
# its vector (chunk.views, indexer.VIEW_WEIGHTS): like is compared with like. Query time only, so
# indexes are unchanged. Shared eval, MiniLM, find hybrid: dev .624 -> .633, check split .525 ->
# .536 (bench/results/quality-log.md row 14).
QUERY_VIEW_WEIGHTS = (0.25, 0.2)


# --- pure helpers ------------------------------------------------------------------------------

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


_WORD = re.compile(r"[A-Za-z0-9]+")


def _subwords(text: str) -> list[str]:
    """Sub-words of the compound identifiers in ``text`` (the full-text tokenizer already splits on
    ``_`` and punctuation, but not on case changes)."""
    out: list[str] = []
    seen: set[str] = set()
    for m in IDENTIFIER_RE.finditer(text):
        ident = m.group(0)
        if ident in seen:
            continue
        seen.add(ident)
        if is_compound_identifier(ident):
            out.extend(identifier_words(ident))
    return out


def own_name_words(symbol: str) -> list[str]:
    """The words of a chunk's own name: the last part of ``Class.method``, ``impl Type.fn``,
    ``Type::fn`` (``impl Arg.get_action`` -> [get, action])."""
    return identifier_words(re.split(r"\.|::|\s", symbol.strip())[-1])


def lexical_text(path: str, symbol: str, text: str) -> str:
    """What the full-text index sees for a chunk: the path's words, the symbol (also as words),
    the definition's own name words three times (a name field weight: a query that spells out a
    name should find it first), the text, the sub-words of its compound identifiers, and the usual
    abbreviations among its words written out (``pos`` -> ``position``, vocabulary.WRITTEN_OUT)."""
    name = " ".join(own_name_words(symbol))
    head = " ".join([" ".join(identifier_words(path)), symbol, " ".join(identifier_words(symbol)),
                     name, name, name])
    written = " ".join(written_out_words(sorted(set(identifier_words(f"{path} {symbol} {text}")))))
    return f"{head}\n{text}\n{' '.join(_subwords(text))}\n{written}"


def lexical_query(query: str) -> str:
    """A full-text query from free text: its words plus the sub-words of its identifiers (BM25
    OR-semantics; operators and punctuation are dropped so nothing is parsed as syntax)."""
    words = [w.lower() for w in _WORD.findall(query)]
    words.extend(_subwords(query))
    return " ".join(dict.fromkeys(words))


# Words that carry no meaning on their own in a description; a query's name view leaves them out.
_STOPWORDS = frozenset(
    "a an the of to in on for from by with and or is are be this that it its as at if into any "
    "all given which when".split())


def query_views(query: str) -> tuple[str, str]:
    """A find query's short views, the query-side twins of a chunk's views (chunk.views): its
    content words headed by ``function``, shaped like a chunk's name line ("Returns the number of
    flags set" -> "function returns number flags set"), and its first five words, the verb and
    object that name what is asked for ("Returns the number of flags")."""
    words = [w for w in re.findall(r"[A-Za-z0-9_]+", query.lower()) if w not in _STOPWORDS]
    return "function " + " ".join(words), " ".join(query.split()[:5])


def fold(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """``vectors[0] + sum(weights[i] * vectors[i + 1])``, L2-normalised."""
    folded = vectors[0] + sum(w * v for w, v in zip(weights, vectors[1:], strict=True))
    return folded / max(float(np.linalg.norm(folded)), 1e-12)


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


def kind_weight(kind: str) -> float:
    """The ranking prior of a chunk kind (see SECONDARY_WEIGHT)."""
    return SECONDARY_WEIGHT if kind in SECONDARY_KINDS else 1.0


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


def namesake_priors(query_key: frozenset[str], keys: Mapping[str, frozenset[str]]
                    ) -> dict[str, float]:
    """What hybrid ``similar`` adds to the fused score of each candidate (id -> its
    :func:`name_key`): for the n candidates named like the query chunk (``query_key``),
    NAMESAKE_BOOST / sqrt(n); nothing when the query chunk has no name."""
    if not query_key:
        return {}
    same = [cid for cid, key in keys.items() if key == query_key]
    return {cid: NAMESAKE_BOOST / math.sqrt(len(same)) for cid in same}


def name_coverage(terms: frozenset[str], symbol: str) -> float:
    """The share of the words of a chunk's own name (:func:`own_name_words`) that the query
    contains: 1.0 when the query spells out the whole name."""
    words = [_stem(w) for w in own_name_words(symbol)]
    if not words:
        return 0.0
    return sum(1 for w in words if w in terms) / len(words)


_TEST_PATH = re.compile(
    r"(^|/)(tests?|__tests__|__mocks__|spec|specs|testing|testdata|benches|examples?)(/|$)"
    r"|(^|/)(test_[^/]*|[^/]*_test\.\w+|conftest\.py|[^/]*\.(test|spec)\.\w+)$"
)
_TEST_WORDS = frozenset({"test", "tests", "testing", "spec", "specs", "example", "examples",
                         "benchmark", "benchmarks", "bench", "fixture", "fixtures", "mock"})


def is_test_path(path: str) -> bool:
    """Whether ``path`` holds tests, examples or benchmarks by the usual layout conventions."""
    return bool(_TEST_PATH.search(path))


def wants_tests(query: str) -> bool:
    """Whether a query asks about tests or examples themselves (then they are not penalised)."""
    return any(w.lower() in _TEST_WORDS for w in _WORD.findall(query))


def prior(terms: frozenset[str] | None, tests_wanted: bool, symbol: str, path: str) -> float:
    """What hybrid find adds to a fused score: NAME_BOOST x :func:`name_coverage`, minus
    TEST_PENALTY for test code unless the query asks for tests. ``terms=None`` (``similar``): 0."""
    if terms is None:
        return 0.0
    bonus = NAME_BOOST * name_coverage(terms, symbol)
    if not tests_wanted and is_test_path(path):
        bonus -= TEST_PENALTY
    return bonus


def enclosing_chunk(chunks: Sequence[Chunk], line: int) -> Chunk | None:
    """The smallest chunk containing ``line``; when none does (a blank line between definitions),
    the nearest one."""
    containing = [c for c in chunks if c.start_line <= line <= c.end_line]
    if containing:
        return min(containing, key=lambda c: (c.end_line - c.start_line, c.start_line))
    if not chunks:
        return None
    return min(chunks, key=lambda c: min(abs(c.start_line - line), abs(c.end_line - line)))


# --- the searcher ------------------------------------------------------------------------------


class Searcher:
    """Queries one root's index. Open with :meth:`open`; the model loads on the first semantic
    query only (lexical queries never load it)."""

    def __init__(self, root: Path, store: Store, manifest: Manifest,
                 handle: EmbedderHandle, scope: str | None = None) -> None:
        self.root = root.resolve()
        self.store = store
        self.manifest = manifest
        self.handle = handle
        # A subdirectory (POSIX, relative to root) that every query is limited to: set when the
        # user asked for a directory inside an indexed root.
        self.scope = scope

    @classmethod
    def open(cls, location: IndexLocation, *, model: str | None = None,
             device: str | None = None, loader: Callable[..., Embedder] | None = None,
             notify: Callable[[str], None] | None = None) -> Searcher:
        """Open the index at ``location`` and check it can be searched: IndexMissingError when
        there is none, IndexMismatchError when it was built by another format, chunker or (when
        ``model`` is given) model."""
        from codesearch import config
        from codesearch.errors import IndexMismatchError
        from codesearch.index.indexer import handle_for, model_spec
        from codesearch.source.chunk import CHUNKER_VERSION

        root = location.root
        store = Store.open(location.uri, storage_options=location.storage_options)
        manifest = store.read_manifest()
        if manifest is None:
            raise IndexMissingError(f"no index for {root.resolve()}",
                                    hint=f"run `cs index {root}` first")
        if manifest.format_version != config.INDEX_FORMAT_VERSION:
            raise IndexMismatchError(
                f"the index has format {manifest.format_version}, "
                f"this cs reads {config.INDEX_FORMAT_VERSION}", hint=REBUILD_HINT)
        if manifest.chunker_version != CHUNKER_VERSION:
            raise IndexMismatchError(
                f"the index was chunked by an older cs (chunker {manifest.chunker_version!r}, "
                f"this cs has {CHUNKER_VERSION!r})",
                hint=f"run `cs index {root}` to chunk it again (cached vectors are reused)")
        handle = handle_for(manifest, model_spec(model) if model else None, root.resolve(),
                            device=device, loader=loader, notify=notify)
        return cls(root, store, manifest, handle, location.scope)

    # queries --------------------------------------------------------------------------------

    def coverage(self) -> Coverage:
        """How many chunks have their vector (cheap: two row counts); below 100% while a
        progressive ``cs index`` is still embedding, or after one was stopped."""
        return self.store.coverage_info()

    def find(self, query: str, options: SearchOptions | None = None) -> list[Hit]:
        """Rank chunks for ``query`` (see the module doc for modes); empty query is a UsageError."""
        opts = options or SearchOptions()
        opts.validate()
        opts = replace(opts, mode=opts.mode or DEFAULT_MODE)
        if not query.strip():
            raise UsageError("empty query", hint='e.g. cs find "parse a CSV file"')
        task = opts.task or detect_task(query)
        where = self._where(opts)

        def embed() -> np.ndarray:
            from codesearch.source.chunk import WORDS_STYLE, document_style

            embedder = self.handle.get()
            if document_style(self.manifest.prefix_scheme) != WORDS_STYLE:
                return embedder.embed_queries([query], task=task)[0]
            # A text model's index folds views into every chunk vector; the query folds its own.
            texts = [self._written(t) for t in (query, *query_views(query))]
            return fold(embedder.embed_queries(texts, task=task), QUERY_VIEW_WEIGHTS)

        return self._rank(embed, lexical_query(query), where, opts, query=query)

    def similar(self, location: str, options: SearchOptions | None = None, *,
                cwd: Path | None = None) -> list[Hit]:
        """Chunks like the one enclosing ``FILE:LINE`` (code2code), excluding itself. The file is
        chunked now, so an unindexed or edited file works too."""
        from codesearch.source.chunk import chunk_source

        opts = options or SearchOptions()
        opts.validate()
        opts = replace(opts, mode=opts.mode or DEFAULT_SIMILAR_MODE)
        rel, line, text, language = self._resolve_location(location, cwd or Path.cwd())
        chunks = chunk_source(text, rel, language)
        chunk = enclosing_chunk(chunks, line)
        if chunk is None:
            raise UsageError(f"{rel}:{line} has no code to compare")
        # Exclude every stored chunk of this file around the chosen one (itself, possibly at
        # shifted lines if the file changed since indexing, and the other pieces of its
        # definition when it is one piece of a long one).
        pieces = ([c for c in chunks if c.definition_line == chunk.definition_line]
                  if chunk.definition_line else [chunk])
        spans = " OR ".join(f"(start_line <= {c.end_line} AND end_line >= {c.start_line})"
                            for c in pieces)
        own = f"NOT (path = {sql_str(rel)} AND ({spans}))"
        where = self._where(opts, extra=[own])
        task = opts.task or "code2code"

        def embed() -> np.ndarray:
            # The chunk's short views fold into the query as into every stored vector (a text
            # model's, see indexer.VIEW_WEIGHTS): like is compared with like.
            from codesearch.index.indexer import embed_documents
            from codesearch.source.chunk import document_style, views

            embedder = self.handle.get()
            extra = views(chunk, document_style(self.manifest.prefix_scheme))

            def queries(texts: Sequence[str], progress: object = None) -> np.ndarray:
                return embedder.embed_queries(list(texts), task=task)

            return embed_documents(queries, [(self._written(chunk.text), extra)])[0]

        return self._rank(embed, lexical_query(f"{chunk.symbol} {chunk.text}"), where, opts,
                          namesake=name_key(chunk.symbol, chunk.kind))

    # internals ------------------------------------------------------------------------------

    def _written(self, text: str) -> str:
        """A query written the way this index's documents were (see chunk.WORDS_STYLE)."""
        from codesearch.source.chunk import WORDS_STYLE, document_style, in_words

        if document_style(self.manifest.prefix_scheme) == WORDS_STYLE:
            return in_words(text)
        return text

    def _where(self, opts: SearchOptions, extra: Sequence[str] = ()) -> str | None:
        if opts.languages:
            known = self.store.languages()
            unknown = [lang for lang in opts.languages if lang.lower() not in known]
            if unknown:
                raise UsageError(
                    f"no indexed files in language '{unknown[0]}'",
                    hint="indexed languages: " + (", ".join(known) or "none"))
        if self.scope:
            extra = [*extra, f"starts_with(path, {sql_str(self.scope + '/')})"]
        return build_where(opts.languages, opts.globs, extra)

    def _rank(self, embed: Callable[[], np.ndarray], text_query: str, where: str | None,
              opts: SearchOptions, query: str | None = None,
              namesake: frozenset[str] | None = None) -> list[Hit]:
        k = opts.k
        if opts.mode == "hybrid":
            hits = self._hybrid(embed(), text_query, where, k, query, namesake)
        else:
            if opts.mode == "semantic":
                vector = embed()

                def search(flt: str | None, n: int) -> list[StoredChunk]:
                    return self.store.vector_search(vector, n, where=flt)
            else:
                def search(flt: str | None, n: int) -> list[StoredChunk]:
                    return self.store.text_search(text_query, n, where=flt)

            # Pieces of one long definition collapse into one hit, so fetch more than k until k
            # definitions are found or the candidates run out.
            n = 2 * k + 10
            while True:
                rows = self._by_kind(search, where, n)
                best = one_per_definition(rows)
                if len(best) >= k or len(rows) < n:
                    break
                n *= 2
            hits = [Hit.from_stored(r, score) for score, r in best[:k]]
        if opts.min_score is not None:
            hits = [h for h in hits if h.score >= opts.min_score]
        return hits[:k]

    @staticmethod
    def _by_kind(search: Callable[[str | None, int], list[StoredChunk]], where: str | None,
                 k: int) -> list[tuple[float, StoredChunk]]:
        """The top ``k`` with the kind prior applied exactly: definitions and secondary chunks are
        ranked separately under the same prefilter, then merged on weighted scores."""
        if SECONDARY_WEIGHT == 1.0:
            return [(r.score, r) for r in search(where, k)]
        secondary = sql_in("kind", list(SECONDARY_KINDS))
        primary = search(build_where(extra=[where or "", f"NOT ({secondary})"]), k)
        others = search(build_where(extra=[where or "", secondary]), k)
        scored = [(r.score, r) for r in primary] + [(r.score * SECONDARY_WEIGHT, r) for r in others]
        scored.sort(key=lambda pair: (-pair[0], pair[1].path, pair[1].start_line))
        return scored[:k]

    def _hybrid(self, vector: np.ndarray, text_query: str, where: str | None,
                k: int, query: str | None = None, namesake: frozenset[str] | None = None
                ) -> list[Hit]:
        """Linear fusion of both candidate lists (:func:`fuse`), plus the find priors
        (:func:`prior`, only when ``query`` is given) or the similar one (:func:`namesake_priors`,
        only when ``namesake``, the query chunk's :func:`name_key`, is given), times the kind
        prior."""
        pool = max(k * HYBRID_POOL, HYBRID_MIN_POOL)
        sem_rows = self.store.vector_search(vector, pool, where=where, with_vectors=True)
        lex_rows = self.store.text_search(text_query, pool, where=where, with_vectors=True)
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
        terms = query_terms(query) if query is not None else None
        tests_wanted = query is not None and wants_tests(query)
        namesakes = (namesake_priors(namesake, {key: name_key(r.symbol, r.kind)
                                                for key, r in rows.items()})
                     if namesake else {})
        fused = {key: (score + prior(terms, tests_wanted, rows[key].symbol, rows[key].path)
                       + namesakes.get(key, 0.0)) * kind_weight(rows[key].kind)
                 for key, score in fuse(semantic, lexical).items()}
        order = sorted(fused, key=lambda key: (-fused[key], rows[key].path,
                                               rows[key].start_line))
        best = one_per_definition([(fused[key], rows[key]) for key in order])
        return [Hit.from_stored(row, score) for score, row in best[:k]]

    def _resolve_location(self, location: str, cwd: Path) -> tuple[str, int, str, str | None]:
        from codesearch.source.discover import SourceFile, read_source
        from codesearch.source.languages import language_for_path

        file, line = parse_location(location)
        path = Path(file).expanduser()
        path = (path if path.is_absolute() else cwd / path).resolve()
        if not path.exists():
            raise UsageError(f"no such file: {file}")
        if not path.is_file():
            raise UsageError(f"not a file: {file}")
        try:
            rel = path.relative_to(self.root).as_posix()
        except ValueError:
            raise UsageError(f"{file} is outside the indexed root {self.root}",
                             hint="pass --path ROOT for the root that contains it") from None
        st = path.stat()
        try:
            text = read_source(SourceFile(path, rel, st.st_size, st.st_mtime_ns, None))
        except OSError as err:
            raise UsageError(f"cannot read {file}: {err.strerror or err}") from err
        n_lines = len(text.splitlines())
        if line < 1 or line > n_lines:
            raise UsageError(f"line {line} is out of range: {file} has {n_lines} lines")
        first = text.split("\n", 1)[0][:200]
        return rel, line, text, language_for_path(rel, first)

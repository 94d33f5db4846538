"""Find, similar and docs: a query (or a FILE:LINE) -> ranked :class:`Hit` s.

Code and documentation (``doc`` chunks) are ranked apart, each against the rows of its own
document side (documents.row_tasks; code rows ``kind != 'doc'``, doc rows by their ``task``):
``find`` ranks both and merges them (ranking.merge_kinds), ``similar`` ranks the kind of the
chunk it starts from, ``docs`` ranks documentation for a piece of code (code2nl). Two rerankers
look past one vector per chunk: a question's docs, with a text model, by the model's token
vectors (ranking.token_match); ``docs`` by whether the code is their subject
(ranking.prefer_own_subject).

Three modes over the same index:
- ``semantic``: the query's embedding (nl2code for natural language, code2code for code; a text
  model's find query with its short views folded in, documents.query_vector) against chunk
  vectors, cosine similarity.
- ``lexical``: BM25 over ``search_text`` (documents.lexical_text: the chunk's text, its symbol and
  path, identifiers also split into words, ``parseCsv`` -> ``parse csv``, and abbreviations
  written out, ``pos`` -> ``position``). Needs no model.
- ``hybrid``: both candidate lists, each max-normalised, combined linearly, with priors
  (ranking.hybrid_rank). A plain reciprocal-rank fusion was measured to lose to semantic alone; a
  weighted linear fusion keeps the semantic gains.

Filters (``--lang``, ``--glob``) become a SQL prefilter applied before ranking, never after top-k.
What the model and BM25 read is codesearch.documents; how candidates are ranked, query.ranking;
whether the index fits this cs and model, embed.handle. This module runs the searches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codesearch import config
from codesearch.documents import (
    DOC_KIND,
    chunk_query_vector,
    code_doc_query_vector,
    doc_query_vector,
    doc_rows_task,
    has_prefixes,
    lexical_query,
    prose,
    query_vector,
    written,
)
from codesearch.embed.handle import EmbedderHandle, check_readable, handle_for
from codesearch.errors import IndexMissingError, UsageError
from codesearch.hits import Hit
from codesearch.location import IndexLocation, file_at
from codesearch.query.ranking import (
    DEFAULT_MODE,
    DEFAULT_SIMILAR_MODE,
    DOC_SEMANTIC_WEIGHT,
    SECONDARY_KINDS,
    SECONDARY_WEIGHT,
    SUBJECT_POOL,
    TOKEN_MATCH_POOL,
    TOKEN_MATCH_TOKENS,
    best_first,
    build_where,
    doc_weight,
    find_task,
    hybrid_pool,
    hybrid_rank,
    merge_kinds,
    name_key,
    one_per_definition,
    prefer_own_subject,
    prefer_token_matches,
    side_tasks,
    single_rank,
    token_match,
)
from codesearch.query.request import KINDS, SearchOptions
from codesearch.source.chunk import Chunk, chunk_source
from codesearch.source.discover import REASON_TEXT, Discovery, Skip, SourceFile, read_source
from codesearch.source.languages import language_for_path
from codesearch.store.records import Coverage, Manifest, StoredChunk, sql_in, sql_str
from codesearch.store.store import Store

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.embed import Embedder


# Every row of a code chunk (a doc chunk's rows are found by their task: Searcher._doc_rows).
CODE_ROWS = f"kind != {sql_str(DOC_KIND)}"


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
        root = location.root
        store = Store.at(location)
        manifest = store.read_manifest()
        if manifest is None:
            raise IndexMissingError(f"no index for {root.resolve()}",
                                    hint=f"run `cs index {root}` first")
        check_readable(manifest, root)
        handle = handle_for(manifest, config.model_spec(model) if model else None, root.resolve(),
                            device=device, loader=loader, notify=notify)
        return cls(root, store, manifest, handle, location.scope)

    # queries --------------------------------------------------------------------------------

    def coverage(self) -> Coverage:
        """How many chunks have their vector (cheap: two row counts); below 100% while a
        progressive ``cs index`` is still embedding, or after one was stopped."""
        return self.store.coverage_info()

    def find(self, query: str, options: SearchOptions | None = None) -> list[Hit]:
        """Rank chunks for ``query`` (see the module doc for modes); empty query is a UsageError.
        Code and documentation are ranked apart, each with its own task (ranking.side_tasks: a
        question's docs with ``qa``, its code with ``nl2code``), then merged
        (ranking.merge_kinds); ``options.kinds`` keeps one of them."""
        opts = options or SearchOptions()
        opts.validate()
        opts = replace(opts, mode=opts.mode or DEFAULT_MODE)
        if not query.strip():
            raise UsageError("empty query", hint='e.g. cs find "parse a CSV file"')
        task = opts.task or find_task(query)
        code_task, doc_task = side_tasks(task)
        scheme = self.manifest.prefix_scheme
        kinds = opts.kinds or KINDS
        text_query = lexical_query(query)
        parts = []
        signals: dict[str, dict[str, float]] = {}  # why each code result ranked
        if "code" in kinds:
            def embed() -> np.ndarray:  # only when a mode needs it: lexical never loads the model
                return query_vector(self.handle.get(), query, code_task, scheme)

            parts.append((1.0, self._ranked(embed, text_query, self._where(opts, [CODE_ROWS]),
                                            opts, query=query, explain=signals)))
        if "doc" in kinds:
            def embed_doc() -> np.ndarray:
                return doc_query_vector(self.handle.get(), query, doc_task, scheme)

            # Without the find priors: a heading path's last word is no definition's name, and
            # a docs path is no test (qa sets, MiniLM hybrid: dev .568 -> .619, check .619 ->
            # .644; bench/docs_quality.py).
            doc_rows = self._doc_rows(doc_task)
            weight = doc_weight(query)
            # A question (not a description, whose docs are ranked with qa too) with a text
            # model: its top docs reranked by token matches (ranking.TOKEN_MATCH_POOL).
            match_tokens = task == "qa" and opts.mode != "lexical" and not has_prefixes(scheme)
            doc_opts = replace(opts, k=max(opts.k, TOKEN_MATCH_POOL)) if match_tokens else opts
            ranked_docs = self._ranked(embed_doc, text_query, self._where(opts, [doc_rows]),
                                       doc_opts, semantic_weight=DOC_SEMANTIC_WEIGHT,
                                       explain=signals)
            if match_tokens:
                ranked_docs = self._prefer_token_matches(query, ranked_docs, signals)[:opts.k]
            for _, row in ranked_docs:
                signals.setdefault(row.id, {})["doc"] = weight
            parts.append((weight, ranked_docs))
        return self._hits(merge_kinds(parts, opts.k), opts, signals)

    def similar(self, location: str, options: SearchOptions | None = None, *,
                cwd: Path | None = None) -> list[Hit]:
        """Code like the chunk enclosing ``FILE:LINE`` (code2code), excluding itself; for a line
        of documentation, documentation like it. The file is chunked now, so an unindexed or
        edited file works too."""
        opts = options or SearchOptions()
        opts.validate()
        opts = replace(opts, mode=opts.mode or DEFAULT_SIMILAR_MODE)
        chunk, own = self._chunk_at(location, cwd or Path.cwd())
        same_kind = self._doc_rows("qa") if chunk.kind == DOC_KIND else CODE_ROWS
        where = self._where(opts, extra=[f"NOT {own}", same_kind])
        task = opts.task or "code2code"

        def embed() -> np.ndarray:
            return chunk_query_vector(self.handle.get(), chunk, task,
                                      self.manifest.prefix_scheme)

        ranked = self._ranked(embed, lexical_query(f"{chunk.symbol} {chunk.text}"), where, opts,
                              namesake=name_key(chunk.symbol, chunk.kind))
        return self._hits(ranked, opts)

    def docs(self, location: str, options: SearchOptions | None = None, *,
             cwd: Path | None = None) -> list[Hit]:
        """Documentation about the code enclosing ``FILE:LINE`` (task code2nl: its definition as
        the query, doc chunks as the candidates), the chunk itself excluded."""
        chunk, own = self._chunk_at(location, cwd or Path.cwd())
        return self.docs_for(chunk, options, own=own)

    def docs_for(self, chunk: Chunk, options: SearchOptions | None = None, *,
                 own: str | None = None) -> list[Hit]:
        """:meth:`docs` for a chunk in hand (``own``: an SQL clause matching its stored rows,
        which are left out of the candidates). Outside lexical mode the top SUBJECT_POOL are
        reranked by whether this code is their subject (ranking.prefer_own_subject)."""
        opts = options or SearchOptions()
        opts.validate()
        opts = replace(opts, mode=opts.mode or DEFAULT_SIMILAR_MODE)
        task = opts.task or "code2nl"
        where = self._where(opts, extra=[f"NOT {own}" if own else "", self._doc_rows(task)])
        vector: list[np.ndarray] = []

        def embed() -> np.ndarray:
            if not vector:
                vector.append(code_doc_query_vector(self.handle.get(), chunk, task,
                                                    self.manifest.prefix_scheme))
            return vector[0]

        pool = replace(opts, k=max(opts.k, SUBJECT_POOL))
        ranked = self._ranked(embed, lexical_query(f"{chunk.symbol} {chunk.text}"), where, pool)
        if opts.mode != "lexical" and ranked:
            ranked = self._prefer_own_subject(ranked, embed(), own)
        return self._hits(ranked, opts)

    # internals ------------------------------------------------------------------------------

    def _doc_rows(self, doc_task: str) -> str:
        """The SQL filter for the doc rows a query of ``doc_task`` compares with."""
        return f"task = {sql_str(doc_rows_task(doc_task, self.manifest.prefix_scheme))}"

    def _prefer_own_subject(self, ranked: Sequence[tuple[float, StoredChunk]],
                            query_vector: np.ndarray, own: str | None
                            ) -> list[tuple[float, StoredChunk]]:
        """``ranked`` docs reranked by ranking.prefer_own_subject: each doc's cosine to this
        code (its stored rows when indexed, else the query vector) against its cosine to the
        nearest other code of the index (one batched search)."""
        vectors: dict[str, np.ndarray] = {row.id: row.vector for _, row in ranked
                                          if row.vector is not None}
        if missing := [row.id for _, row in ranked if row.id not in vectors]:
            vectors.update((r.id, r.vector) for r in self.store.chunks(sql_in("id", missing),
                                                                        with_vectors=True)
                           if r.vector is not None)
        zeros = np.zeros_like(query_vector)
        doc_vectors = np.stack([vectors.get(row.id, zeros) for _, row in ranked])
        mine = [r.vector for r in self.store.chunks(own, with_vectors=True)
                if r.vector is not None and r.vector.any()] if own else []
        mine = mine or [query_vector]
        own_cosine = (doc_vectors @ np.stack(mine).T).max(axis=1)
        embedded = np.flatnonzero(doc_vectors.any(axis=1))  # a row still without its vector: as is
        nearest = self.store.nearest_similarities(
            doc_vectors[embedded], 1,
            where=build_where(extra=[CODE_ROWS, f"NOT {own}" if own else ""]))
        other: list[float | None] = [None] * len(ranked)
        for i, sims in zip(embedded, nearest, strict=True):
            other[i] = sims[0] if sims else None
        return prefer_own_subject(ranked, own_cosine.tolist(), other)

    def _prefer_token_matches(self, query: str, ranked: Sequence[tuple[float, StoredChunk]],
                              explain: dict[str, dict[str, float]]
                              ) -> list[tuple[float, StoredChunk]]:
        """A question's ``ranked`` docs reranked by ranking.prefer_token_matches (the model's
        token vectors of the question and of each section's prose); as they are when the engine
        yields only pooled vectors."""
        if not ranked:
            return []
        scheme = self.manifest.prefix_scheme
        texts = [written(query, scheme), *(written(prose(row.text, row.language == "markdown"),
                                                   scheme) for _, row in ranked)]
        # Only for a model without prefixes (see find), which reads both sides alike: one call.
        tokens = self.handle.get().token_vectors(texts, "qa", "document", TOKEN_MATCH_TOKENS)
        if tokens is None:
            return list(ranked)
        matches = token_match(tokens[0], tokens[1:])
        for (_, row), match in zip(ranked, matches, strict=True):
            explain.setdefault(row.id, {})["token_match"] = match
        return prefer_token_matches(ranked, matches)

    def _chunk_at(self, location: str, cwd: Path) -> tuple[Chunk, str]:
        """The chunk enclosing ``FILE:LINE`` as the file is now, and the SQL clause that matches
        every stored chunk of it (itself, possibly at shifted lines if the file changed since
        indexing, and the other pieces of its definition when it is one piece of a long
        one)."""
        rel, line, text, language = self._resolve_location(location, cwd)
        chunks = chunk_source(text, rel, language)
        chunk = enclosing_chunk(chunks, line)
        if chunk is None:
            raise UsageError(f"{rel}:{line} has no code to compare")
        pieces = ([c for c in chunks if c.definition_line == chunk.definition_line]
                  if chunk.definition_line else [chunk])
        spans = " OR ".join(f"(start_line <= {c.end_line} AND end_line >= {c.start_line})"
                            for c in pieces)
        return chunk, f"(path = {sql_str(rel)} AND ({spans}))"

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

    @staticmethod
    def _hits(ranked: Sequence[tuple[float, StoredChunk]], opts: SearchOptions,
              signals: dict[str, dict[str, float]] | None = None) -> list[Hit]:
        hits = [Hit.from_stored(row, score, (signals or {}).get(row.id))
                for score, row in ranked[:opts.k]]
        if opts.min_score is not None:
            hits = [h for h in hits if h.score >= opts.min_score]
        return hits

    def _ranked(self, embed: Callable[[], np.ndarray], text_query: str, where: str | None,
                opts: SearchOptions, query: str | None = None,
                namesake: frozenset[str] | None = None, semantic_weight: float | None = None,
                explain: dict[str, dict[str, float]] | None = None,
                ) -> list[tuple[float, StoredChunk]]:
        """The best ``opts.k`` (score, row) among rows matching ``where``, in ``opts.mode``
        (``semantic_weight``: hybrid's, None for the ranking's own); with ``query`` (find) every
        mode applies the find evidence, whose signals go into ``explain``."""
        k = opts.k
        if opts.mode == "hybrid":
            return self._hybrid(embed(), text_query, where, k, query, namesake, semantic_weight,
                                explain)
        if opts.mode == "semantic":
            vector = embed()

            def search(flt: str | None, n: int) -> list[StoredChunk]:
                return self.store.vector_search(vector, n, where=flt)
        else:
            def search(flt: str | None, n: int) -> list[StoredChunk]:
                return self.store.text_search(text_query, n, where=flt)

        if query is not None:
            # find: the kind-weighted top candidates, then the same find evidence as hybrid.
            pool = [r for _, r in self._by_kind(search, where, hybrid_pool(k))]
            return single_rank(pool, k, query, explain=explain, source=opts.mode or "score")
        # Pieces of one long definition collapse into one hit, so fetch more than k until k
        # definitions are found or the candidates run out.
        n = 2 * k + 10
        while True:
            rows = self._by_kind(search, where, n)
            best = one_per_definition(rows)
            if len(best) >= k or len(rows) < n:
                break
            n *= 2
        return best[:k]

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
        return best_first([(r.score, r) for r in primary]
                          + [(r.score * SECONDARY_WEIGHT, r) for r in others])[:k]

    def _hybrid(self, vector: np.ndarray, text_query: str, where: str | None,
                k: int, query: str | None = None, namesake: frozenset[str] | None = None,
                semantic_weight: float | None = None,
                explain: dict[str, dict[str, float]] | None = None,
                ) -> list[tuple[float, StoredChunk]]:
        """Both candidate lists (``hybrid_pool(k)`` each) ranked by ranking.hybrid_rank, with the
        find priors when ``query`` is given, the similar one when ``namesake`` is."""
        pool = hybrid_pool(k)
        sem_rows = self.store.vector_search(vector, pool, where=where, with_vectors=True)
        lex_rows = self.store.text_search(text_query, pool, where=where, with_vectors=True)
        return hybrid_rank(vector, sem_rows, lex_rows, k, query=query, namesake=namesake,
                           semantic_weight=semantic_weight, explain=explain)

    def _check_indexable(self, file: str, rel: str) -> None:
        """UsageError for a file this index does not hold and discovery would leave out (binary,
        ignored, too large...): no chunk of it can be compared. A file not indexed yet but
        indexable is compared as it is now."""
        if self.store.count_chunks(f"path = {sql_str(rel)}"):
            return
        verdict = Discovery(self.root).check(rel)
        if isinstance(verdict, Skip):
            where = "" if verdict.rel == rel else f" ({verdict.rel} is left out)"
            raise UsageError(
                f"{file} is not indexed: {REASON_TEXT.get(verdict.reason, verdict.reason)}"
                f"{where}",
                hint="cs similar compares source code that cs indexes; "
                     "`cs index --verbose` lists the files it skips and why")

    def _resolve_location(self, location: str, cwd: Path) -> tuple[str, int, str, str | None]:
        path, line, file = file_at(location, cwd)
        try:
            rel = path.relative_to(self.root).as_posix()
        except ValueError:
            raise UsageError(f"{file} is outside the indexed root {self.root}",
                             hint="pass --path ROOT for the root that contains it") from None
        self._check_indexable(file, rel)
        st = path.stat()
        try:
            text = read_source(SourceFile(path, rel, st.st_size, st.st_mtime_ns, None))
        except OSError as err:
            raise UsageError(f"cannot read {file}: {err.strerror or err}") from err
        n_lines = len(text.splitlines())
        if line < 1 or line > n_lines:
            raise UsageError(f"line {line} is out of range: {file} has {n_lines} lines",
                             hint=f"pick a line from 1 to {n_lines}, e.g. "
                                  f"cs similar {file}:{max(1, min(line, n_lines))}"
                             if n_lines else f"{file} is empty")
        first = text.split("\n", 1)[0][:200]
        return rel, line, text, language_for_path(rel, first)

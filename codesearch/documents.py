"""What the model and the full-text index read: a chunk's documents, and their query-side twins.

One module, so that changing what is embedded or indexed means editing one place:

- the **writing** (:data:`CODE_STYLE` or :data:`WORDS_STYLE`) a model gets, from its prefix scheme;
- a chunk's **document** for the embedder (:func:`embedding_text` and its short :func:`views`),
  its :func:`content_hash` (the embedding cache key), and how its vector is made from those texts
  (:func:`embed_documents`, folding the views in with :data:`VIEW_WEIGHTS`);
- a chunk's **lexical text** for BM25 (:func:`lexical_text`) and a query's (:func:`lexical_query`);
- the **query side**: a find query's vector (:func:`query_vector`: the query written like the
  documents, with its own views folded in) and a similar query's (:func:`chunk_query_vector`).

Pure (no IO) apart from calling the embedder it is given. Any change to a text written here
changes stored vectors or full-text entries: bump ``source.chunk.CHUNKER_VERSION`` with it (indexes
are chunked again; the embedding cache keeps whatever did not change).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from codesearch.source.chunk import DOC_KIND  # every other kind is code
from codesearch.vocabulary import (
    IDENTIFIER_RE,
    identifier_words,
    is_compound_identifier,
    write_out_abbreviations,
    written_out_words,
)

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.embed import Embedder
    from codesearch.source.chunk import Chunk


# --- the writing ---------------------------------------------------------------------------------

# How a chunk is written for the embedder (recorded in the index manifest with the prefix scheme,
# so a change here cannot mix vectors of two writings):
# - "code": the code as is; code models (jina-code) read identifiers natively.
# - "words5": compound identifiers split into lower-case words everywhere (``getArgConflicts`` ->
#   ``get arg conflicts``), then the usual abbreviations written out (``get argument
#   conflicts``, vocabulary.WRITTEN_OUT), for general text models without code prompts (MiniLM):
#   their uncased WordPiece vocabulary turns a camelCase identifier into meaningless pieces and
#   knows "argument" far better than "arg". Each chunk also has two short views (:func:`views`:
#   its name with its first line of code, and with its last return statement) whose vectors
#   are folded into the chunk's (VIEW_WEIGHTS): a mean-pooled text model otherwise lets a
#   long body drown what the chunk is called, takes and gives back. Measured on the shared eval
#   (bench/results/quality-log.md). Bump the number when :func:`in_words`, :func:`views` or the
#   fold change.
CODE_STYLE = "code"
WORDS_STYLE = "words5"


def document_style(prefix_scheme: str) -> str:
    """The writing (CODE_STYLE or WORDS_STYLE) for a model with this prefix scheme: models with
    task prompts are code models; a model without prompts ("none") is a general text model.
    Accepts a recorded scheme too (``none+words5``)."""
    scheme, _, style = prefix_scheme.partition("+")
    if style:
        return style
    return WORDS_STYLE if scheme == "none" else CODE_STYLE


def recorded_scheme(prefix_scheme: str) -> str:
    """What an index records for a model's prefix scheme: the scheme plus the writing when it is
    not plain code (``none`` -> ``none+words5``), so the manifest check and the embedding cache
    tell the writings apart."""
    if "+" in prefix_scheme:
        return prefix_scheme
    style = document_style(prefix_scheme)
    return prefix_scheme if style == CODE_STYLE else f"{prefix_scheme}+{style}"


def split_compound_identifiers(text: str) -> str:
    """Every identifier with an inner capital written as lower-case words (``parseCSVFile`` ->
    ``parse csv file``); snake_case and plain words are left alone (tokenizers split on ``_``)."""

    def words(match: re.Match[str]) -> str:
        ident = match.group(0)
        return " ".join(identifier_words(ident)) if is_compound_identifier(ident) else ident

    return IDENTIFIER_RE.sub(words, text)


def in_words(text: str) -> str:
    """``text`` written for a general text model (WORDS_STYLE): compound identifiers as words,
    usual abbreviations written out. Documents and queries alike."""
    return write_out_abbreviations(split_compound_identifiers(text))


def written(text: str, prefix_scheme: str) -> str:
    """``text`` (a query, or a chunk's code used as one) written the way an index with this
    prefix scheme wrote its documents."""
    return in_words(text) if document_style(prefix_scheme) == WORDS_STYLE else text


# --- a chunk's document ---------------------------------------------------------------------------

# A line that is only a Rust attribute (`#[must_use]`, `#[cfg(feature = "x")]`): it belongs to the
# definition's span but tells a natural-language query nothing.
_ATTRIBUTE_LINE_RE = re.compile(r"^\s*#!?\[.*\]\s*$")


def embedding_text(chunk: Chunk, style: str = CODE_STYLE) -> str:
    """The text embedded for a chunk: one line naming the file and the definition (identifiers
    split into words, which helps natural-language queries; a Rust method reads ``Type.method``,
    not ``impl Type.method``), the header if any, then the code without attribute-only lines.
    A documentation chunk (DOC_KIND) reads ``path | Heading > Path`` and its text.
    ``style``: see WORDS_STYLE."""
    if chunk.kind == DOC_KIND:
        head = f"{chunk.path} | {chunk.symbol}" if chunk.symbol else chunk.path
        text = f"{head}\n{prose(chunk.text, chunk.language == 'markdown')}"
        return in_words(text) if style == WORDS_STYLE else text
    symbol = chunk.symbol[5:] if chunk.symbol.startswith("impl ") else chunk.symbol
    head = chunk.path
    if symbol:
        head += f" | {chunk.kind} {symbol}"
        words = " ".join(identifier_words(symbol))
        if words and words != symbol.lower():
            head += f" ({words})"
    elif chunk.kind not in ("module", "window"):
        head += f" | {chunk.kind}"
    parts = [head]
    if chunk.header:
        parts.append(chunk.header)
    code = chunk.text
    if "#" in code:
        kept = [line for line in code.split("\n") if not _ATTRIBUTE_LINE_RE.match(line)]
        code = "\n".join(kept) if any(line.strip() for line in kept) else code
    parts.append(code)
    text = "\n".join(parts)
    return in_words(text) if style == WORDS_STYLE else text


_ADORNMENT_LINE_RE = re.compile(r"^\s*([=\-~^\"'`#*+:.<>_])\1{2,}\s*$", re.M)
_ROLE_RE = re.compile(r":[\w:.-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
_LABEL_RE = re.compile(r"^\.\. _[^:\n]+:\s*$", re.M)
# Markdown: heading markers, links and images (their text kept), emphasis around words (not the
# underscores of identifiers such as __init__), HTML tags.
_MD_HEADING_RE = re.compile(r"^#{1,6}[ \t]+", re.M)
_MD_LINK_RE = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_MD_EMPHASIS_RE = re.compile(r"(?<![\w*])(\*\*|[*_])([A-Za-z][^*_\n]*?[\w.!?)])\1(?![\w*])")
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][^>\n]*>")


def prose(text: str, markdown: bool = False) -> str:
    """A doc section's text with the markup that carries no meaning taken out, so the
    embedder's window holds words: title underlines, reST roles (``:ref:`text <target>``` ->
    ``text``), link labels and backticks; for Markdown (``markdown``) also heading markers, link
    targets, emphasis and HTML tags. Measured on the qa dev set (bench/docs_quality.py, MiniLM
    semantic): reST .575 -> .591; Markdown .312 -> .417 (bf16; int8 .302 -> .418)."""
    if markdown:
        text = _MD_HEADING_RE.sub("", _MD_LINK_RE.sub(r"\1", _HTML_TAG_RE.sub("", text)))
        text = _MD_EMPHASIS_RE.sub(r"\2", text)
    text = _LABEL_RE.sub("", _ADORNMENT_LINE_RE.sub("", _ROLE_RE.sub(r"\1", text)))
    text = re.sub(r"`__?(?!\w)", "", text)  # a reST link's end (`text`_), not `__init__`
    text = text.replace("`", "")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def content_hash(chunk: Chunk, task: str | None = None) -> str:
    """sha256 hex of what a code model sees (``embedding_text`` in CODE_STYLE, whatever the
    index's writing: the cache is keyed by the writing too): equal hashes mean equal vectors for
    one model and writing. The chunk's row id and the embedding cache key derive from it.

    A documentation chunk's rows are embedded for other tasks than code (:func:`row_tasks`), so
    its hash names the task too (default: its first, ``qa``): the cache never hands a doc row a
    vector made with another document prefix."""
    text = embedding_text(chunk)
    if chunk.kind == DOC_KIND:
        text = f"{task or DOC_TASKS[0]}\n{text}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- documentation chunks -------------------------------------------------------------------------

# The document sides a doc chunk is stored for with a model that has task prefixes, one row each:
# ``qa`` answers questions (cs find), ``code2nl`` answers a piece of code (cs docs). The first is
# its main row. A model without prefixes embeds every side alike: one row, one vector.
DOC_TASKS = ("qa", "code2nl")


def has_prefixes(prefix_scheme: str) -> bool:
    """Whether a (possibly recorded, ``none+words5``) prefix scheme gives tasks their own
    prefixes."""
    return prefix_scheme.partition("+")[0] != "none"


def row_tasks(chunk: Chunk, prefix_scheme: str) -> tuple[str, ...]:
    """The document-side tasks ``chunk`` is stored for, one index row (and vector) each: code
    chunks one (DOCUMENT_TASK); doc chunks DOC_TASKS with a prefixed model, else just ``qa``."""
    if chunk.kind != DOC_KIND:
        return (DOCUMENT_TASK,)
    return DOC_TASKS if has_prefixes(prefix_scheme) else DOC_TASKS[:1]


def doc_rows_task(query_task: str, prefix_scheme: str) -> str:
    """Which doc rows a query of ``query_task`` is compared with: ``code2nl`` rows for a code
    query (cs docs, a code snippet given to cs find) when the model has prefixes, else the main
    ``qa`` rows."""
    code_query = query_task in ("code2code", "code2nl", "code2completion")
    return DOC_TASKS[1] if code_query and has_prefixes(prefix_scheme) else DOC_TASKS[0]


_RETURN_RE = re.compile(r"(?:return|yield)\b")
_PUNCTUATION_ONLY = "{}()[];, "


def views(chunk: Chunk, style: str) -> tuple[str, ...]:
    """The chunk's short views for a general text model (WORDS_STYLE), each headed by its name
    (the first line of :func:`embedding_text` without the path, which the text already has): its
    first line of code (usually the signature), and its last ``return``/``yield`` statement, else
    its last line of code (what it gives back). ``()`` for code models, which embed the text
    alone, and for documentation chunks (prose has no signature or return)."""
    if style != WORDS_STYLE or chunk.kind == DOC_KIND:
        return ()
    first, *rest = embedding_text(chunk, style).split("\n")
    name = first.split(" | ", 1)[1] if " | " in first else first  # a chunk without a name: path
    code = [line.strip() for line in rest if line.strip()]
    body = [line for line in code[1:] if line.strip(_PUNCTUATION_ONLY) and line != "end"]
    result = next((line for line in reversed(body) if _RETURN_RE.match(line)),
                  body[-1] if body else "")
    return tuple(f"{name}\n{line}" if line else name for line in (code[0] if code else "", result))


class Document(NamedTuple):
    """What the embedder sees for one index row: its text, its short views (none for a code model
    or a doc chunk), and the task whose document side it is embedded with."""

    text: str
    views: tuple[str, ...] = ()
    task: str = "nl2code"


def chunk_documents(chunks: Iterable[Chunk], prefix_scheme: str,
                    into: dict[str, Document] | None = None) -> dict[str, Document]:
    """row hash -> :class:`Document` for every row of ``chunks`` (:func:`row_tasks`) in an index
    with this (recorded) prefix scheme; added to ``into`` when given."""
    docs = {} if into is None else into
    style = document_style(prefix_scheme)
    for c in chunks:
        for task in row_tasks(c, prefix_scheme):
            h = content_hash(c, task)
            if h not in docs:
                docs[h] = Document(embedding_text(c, style), views(c, style), task)
    return docs


# --- a chunk's vector -----------------------------------------------------------------------------

# The task whose document side is stored. Every code task of the jina models shares the document
# prefix "Candidate code snippet:\n", so these vectors answer both nl2code and code2code queries.
DOCUMENT_TASK = "nl2code"

# A general text model's chunk vector is its text's vector plus, with these weights, the vectors
# of its short views (:func:`views`: name + first line of code, name + last return), all
# normalised: what a chunk is called, takes and gives back counts even when a long body dominates
# its mean-pooled text vector. Shared eval, MiniLM, find hybrid: dev .610 -> .623, holdout .508 ->
# .525 (bench/results/quality-log.md rows 11-12). Part of WORDS_STYLE's recipe.
VIEW_WEIGHTS = (0.2, 0.1)


class EmbedFn(Protocol):
    """The embedding step as a batch function: document texts -> (n, dim) float32 L2-normalised
    vectors, in order, with the document side of ``task``; ``progress(k)`` as k more texts
    finish. :func:`embed_batch` over a loaded model, or whatever an Indexer is given instead
    (``embed_fn``: a benchmark's stand-in)."""

    def __call__(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                 task: str = DOCUMENT_TASK) -> np.ndarray: ...


def embed_batch(embedder: Embedder, texts: Sequence[str],
                progress: Callable[[int], None] | None = None,
                task: str = DOCUMENT_TASK) -> np.ndarray:
    """The pure embedding step: document texts -> (n, dim) float32 L2-normalised vectors."""
    return embedder.embed_documents(list(texts), task=task, progress=progress)


def embed_documents(embed: EmbedFn, docs: Sequence[Document],
                    progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Row vectors for ``docs`` from a batch function over texts (progress counts the row texts),
    one call per task: the text vectors, with the views folded in for the documents that have
    them."""
    docs = [Document(*d) for d in docs]
    out = np.zeros((len(docs), 0), dtype=np.float32)
    for task in dict.fromkeys(d.task for d in docs):
        rows = [i for i, d in enumerate(docs) if d.task == task]
        part = _embed_task(embed, [docs[i] for i in rows], task, progress)
        if out.shape[1] != part.shape[1]:
            out = np.zeros((len(docs), part.shape[1]), dtype=np.float32)
        out[rows] = part
    return out


def _embed_task(embed: EmbedFn, docs: Sequence[Document], task: str,
                progress: Callable[[int], None] | None) -> np.ndarray:
    """:func:`embed_documents` for documents of one task."""
    vectors = np.asarray(embed([d.text for d in docs], progress, task=task), dtype=np.float32)
    viewed = [i for i, d in enumerate(docs) if len(d.views) == len(VIEW_WEIGHTS)]
    if not viewed:
        return vectors
    folded: np.ndarray = (1 - sum(VIEW_WEIGHTS)) * vectors[viewed]
    for j, weight in enumerate(VIEW_WEIGHTS):
        folded += weight * np.asarray(embed([docs[i].views[j] for i in viewed], None, task=task),
                                      dtype=np.float32)
    norms = np.linalg.norm(folded, axis=1, keepdims=True)
    vectors[viewed] = folded / np.maximum(norms, 1e-12)
    return vectors.astype(np.float32)


# --- the full-text side --------------------------------------------------------------------------

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
    ``Type::fn`` (``impl Arg.get_action`` -> [get, action]). The lexical text's name field, and
    what the ranking's name priors compare (query.ranking)."""
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


# --- the query side ------------------------------------------------------------------------------

# A find query's short views for a general text model (:func:`query_views`), folded into its
# vector with these weights (the query's own vector weighs 1), as a chunk's views are folded into
# its vector (VIEW_WEIGHTS): like is compared with like. Query time only, so indexes are
# unchanged. Shared eval, MiniLM, find hybrid: dev .624 -> .633, check split .525 -> .536
# (bench/results/quality-log.md row 14).
QUERY_VIEW_WEIGHTS = (0.25, 0.2)

# Words that carry no meaning on their own in a description; a query's name view leaves them out.
_STOPWORDS = frozenset(
    "a an the of to in on for from by with and or is are be this that it its as at if into any "
    "all given which when".split())


def query_views(query: str) -> tuple[str, str]:
    """A find query's short views, the query-side twins of a chunk's :func:`views`: its content
    words headed by ``function``, shaped like a chunk's name line ("Returns the number of flags
    set" -> "function returns number flags set"), and its first five words, the verb and object
    that name what is asked for ("Returns the number of flags")."""
    words = [w for w in re.findall(r"[A-Za-z0-9_]+", query.lower()) if w not in _STOPWORDS]
    return "function " + " ".join(words), " ".join(query.split()[:5])


def fold(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """``vectors[0] + sum(weights[i] * vectors[i + 1])``, L2-normalised."""
    folded = vectors[0] + sum(w * v for w, v in zip(weights, vectors[1:], strict=True))
    return folded / max(float(np.linalg.norm(folded)), 1e-12)


def query_texts(query: str, prefix_scheme: str) -> list[str]:
    """The texts a find query is embedded as for an index with this prefix scheme: the query
    alone for a code model; for a text model (whose index folds views into every chunk vector)
    the query and its :func:`query_views`, each written like the documents."""
    if document_style(prefix_scheme) != WORDS_STYLE:
        return [query]
    return [written(t, prefix_scheme) for t in (query, *query_views(query))]


def query_vector(embedder: Embedder, query: str, task: str, prefix_scheme: str) -> np.ndarray:
    """A find query's vector for an index with this prefix scheme (:func:`query_texts`, their
    vectors folded with QUERY_VIEW_WEIGHTS when there are views)."""
    texts = query_texts(query, prefix_scheme)
    if len(texts) == 1:
        return embedder.embed_queries(texts, task=task)[0]
    return fold(embedder.embed_queries(texts, task=task), QUERY_VIEW_WEIGHTS)


def doc_query_vector(embedder: Embedder, query: str, task: str, prefix_scheme: str) -> np.ndarray:
    """A find query's vector for documentation rows: the query alone, written like the documents
    (doc chunks have no views to fold against), with the query side of ``task`` (``qa``)."""
    return embedder.embed_queries([written(query, prefix_scheme)], task=task)[0]


def code_doc_query_vector(embedder: Embedder, chunk: Chunk, task: str,
                          prefix_scheme: str) -> np.ndarray:
    """A piece of code as a query for documentation rows (``cs docs``, task ``code2nl``): its
    embedding text without the path (what it is called, then its code), written like the
    documents; for a text model its two short :func:`views` (name + signature, name + what it
    returns) folded in with CODE_DOC_VIEW_WEIGHTS, as a docstring mostly says what a function is
    called, takes and gives back."""
    style = document_style(prefix_scheme)
    first, _, rest = embedding_text(chunk, style).partition("\n")
    name = first.split(" | ", 1)[1] if " | " in first else ""
    text = f"{name}\n{rest}" if name else rest
    extra = views(chunk, style)
    vectors = embedder.embed_queries([text, *extra], task=task)
    return vectors[0] if not extra else fold(vectors, CODE_DOC_VIEW_WEIGHTS)


# The views' weights in a code2nl query of a text model (:func:`code_doc_query_vector`).
# code2nl dev set (bench/docs_quality.py code2nl), MiniLM hybrid: .619 -> .637.
CODE_DOC_VIEW_WEIGHTS = (0.5, 0.5)


def chunk_query_vector(embedder: Embedder, chunk: Chunk, task: str,
                       prefix_scheme: str) -> np.ndarray:
    """A similar query's vector: the chunk's code (written like the documents) embedded as a
    query, its short views folded in as into every stored vector (VIEW_WEIGHTS): like is
    compared with like."""
    extra = views(chunk, document_style(prefix_scheme))

    def queries(texts: Sequence[str], progress: Callable[[int], None] | None = None,
                task: str = task) -> np.ndarray:  # the query side of the outer task
        return embedder.embed_queries(list(texts), task=task)

    return embed_documents(queries, [Document(written(chunk.text, prefix_scheme), extra,
                                              task)])[0]

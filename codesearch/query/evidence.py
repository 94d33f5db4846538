"""What a find query says about a candidate beyond its chunk's scores, as pure functions: the
query's shape, whether a chunk defines a symbol the query names, whether its file's name says what
the query asks, whether it is prose or configuration rather than code, and how much evidence its
file gathers from several candidates.

query.ranking adds these to the fused score (:class:`Levers` holds their weights); each is also a
named signal in ``cs find --json``, so a reader can see why a result ranked. Measured on the
realistic questions of a peer's benchmark (bench/realistic.py, ../shared/eval/semble_bench.py)
and on the docstring benchmark (bench/quality.py); the lever log is in the README.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from codesearch.vocabulary import ABBREVIATIONS, identifier_words


@dataclass(frozen=True)
class Levers:
    """The weights of the find evidence (see each function below). ``semantic_weight``: the
    semantic share of a natural-language query's fusion; ``symbol_semantic_weight``: a bare
    identifier's (its name is exact text, so BM25 counts more). The ``question_`` levers apply
    to questions only (:func:`query_shape`): they ask which part of the code does something,
    which a file answers as well as a function; a description of one behaviour ("Returns the
    number of flags set") is answered by one function, and file evidence there promotes the
    wrong one."""

    semantic_weight: float = 0.8
    symbol_semantic_weight: float = 0.8
    definition_boost: float = 0.5
    embedded_definition_boost: float = 0.0
    path_boost: float = 0.2
    prose_weight: float = 0.5
    file_boost: float = 0.0
    file_decay: float = 1.0
    question_semantic_weight: float = 0.65
    question_embedded_definition_boost: float = 0.3
    question_path_boost: float = 0.3
    question_file_boost: float = 0.0
    question_file_decay: float = 0.7

    def for_shape(self, shape: str) -> Levers:
        """These levers as they apply to a query of this :func:`query_shape`."""
        if shape != "question":
            return self
        return replace(self, semantic_weight=self.question_semantic_weight,
                       embedded_definition_boost=self.question_embedded_definition_boost,
                       path_boost=self.question_path_boost, file_boost=self.question_file_boost,
                       file_decay=self.question_file_decay)


LEVERS = Levers()

# --- the query's shape -----------------------------------------------------------------------

# One identifier, maybe qualified (``Sinatra::Base``, ``http.Client``, ``$container->get``): what
# someone types to find where a name is defined.
_SYMBOL_QUERY = re.compile(
    r"^[A-Za-z_$][\w$]*(?:(?:::|\\|->|\.|#)[A-Za-z_$][\w$]*)*(?:\(\))?$")
# An identifier inside prose: joined by case (``parseParams``, ``HTTPAdapter``) or by ``_``
# (``read_config``); a plain word is prose.
_EMBEDDED_IDENT = re.compile(
    r"(?<![\w$])(?:[A-Za-z][a-z0-9]*[A-Z][\w]*|[A-Z]{2,}[a-z][\w]*|[a-z][a-z0-9]*_[\w]+|"
    r"_[A-Za-z][\w]*)(?![\w$])")


def symbol_query(query: str) -> str | None:
    """The identifier a bare symbol query names (its last part when qualified: ``Sinatra::Base``
    -> ``Base``), else None. A single lower-case word (``session``) is prose."""
    text = query.strip()
    if not _SYMBOL_QUERY.match(text):
        return None
    last = re.split(r"::|\\|->|\.|#", text.removesuffix("()"))[-1]
    has_shape = (any(c.isupper() for c in last) or "_" in last
                 or any(s in text for s in ("::", "\\", "->", ".", "#")))
    return last if has_shape else None


_QUESTION_WORDS = frozenset("how where what which why when who whose".split())


def query_shape(query: str) -> str:
    """``symbol`` (a bare identifier, :func:`symbol_query`), ``question`` (how/where/what/...
    or ending in ``?``: which part of the code does something) or ``description`` (any other
    prose: what one piece of code does)."""
    if symbol_query(query):
        return "symbol"
    text = query.strip()
    first = text.split(None, 1)[0].lower() if text else ""
    if text.endswith("?") or first in _QUESTION_WORDS:
        return "question"
    return "description"


def embedded_identifiers(query: str) -> list[str]:
    """The identifiers written inside a prose query (``how parseParams reads a spec`` ->
    [parseParams])."""
    return list(dict.fromkeys(_EMBEDDED_IDENT.findall(query)))


# --- what a candidate is ----------------------------------------------------------------------

_DEFINE_WORDS = (r"class|struct|interface|enum|trait|type|typedef|data|newtype|module|"
                 r"defmodule|object|record|protocol|namespace|def|defp|fn|fun|func|function|"
                 r"local function|sub|impl|extension|actor|union|macro|const|let|var|val")


def _definition_re(name: str) -> re.Pattern[str]:
    escaped = re.escape(name)
    return re.compile(
        rf"(?:^|[\s(])(?:{_DEFINE_WORDS})\s+(?:[\w.:<>*&]+(?:\.|::))?{escaped}"
        r"(?![\w$]|\.\w|::\w)"  # not Plug.Conn.WrapperError for Conn
        rf"|^\s*{escaped}\s*(?:::|=)\s"  # Haskell signature, Zig/JS const X = ...
        rf"|^\s*(?:pub\s+)?(?:const|var)\s+{escaped}\s*[=:]",
        re.MULTILINE)


def defines(name: str, symbol: str, text: str) -> bool:
    """Whether a chunk (its ``symbol`` and ``text``) is a definition of ``name``: its own name is
    ``name`` (the last part of ``Class.method``), or its text declares it (``class Name``,
    ``fn name``, ``data Name``, ``Name :: ...``): chunks without a grammar have no symbol."""
    if not name:
        return False
    own = re.split(r"\.|::|\s", symbol.strip())[-1] if symbol else ""
    if own == name:  # case counts: the type Timeout, not the property timeout
        return True
    return bool(_definition_re(name).search(text))


_PROSE_SUFFIXES = frozenset({".md", ".markdown", ".mdx", ".rst", ".txt", ".adoc", ".org",
                             ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".lock",
                             ".xml", ".html", ".htm", ".css", ".csv", ".svg"})
_PROSE_NAMES = frozenset({"license", "licence", "copying", "notice", "authors", "contributors",
                          "changelog", "changes", "history", "news", "readme", "codeowners"})
_DOC_QUERY_WORDS = frozenset({"doc", "docs", "documentation", "documented", "readme", "guide",
                              "tutorial", "changelog", "license", "config", "configuration",
                              "yaml", "json", "toml", "markdown", "manual", "workflow", "ci"})


def is_prose(path: str) -> bool:
    """Whether ``path`` is documentation or configuration rather than code (Markdown, reST,
    plain text, JSON/YAML/TOML, licence and changelog files): its chunks describe or configure
    code, so a question about how code behaves is answered by the code first."""
    p = PurePosixPath(path)
    if p.suffix.lower() in _PROSE_SUFFIXES:
        return True
    return p.stem.lower() in _PROSE_NAMES or p.name.startswith(".")


def wants_prose(query: str) -> bool:
    """Whether a query asks for documentation or configuration itself."""
    return any(w in _DOC_QUERY_WORDS for w in identifier_words(query))


_STOPWORDS = frozenset(
    "a an and are as at be by do does for from has have how if in is it its not of on or the "
    "to was what when where which who why with into via this that these those their used use "
    "uses using".split())


def content_words(query: str) -> list[str]:
    """The words of a query that can name a file (lower-case, identifiers split, stopwords and
    words under three letters dropped)."""
    return [w for w in dict.fromkeys(identifier_words(query))
            if len(w) > 2 and w not in _STOPWORDS]


def path_words(path: str) -> set[str]:
    """The words of a file's name and of its directory's name (``src/requests/cookies.py`` ->
    {cookies, requests}): what a module is called."""
    p = PurePosixPath(path)
    words = set(identifier_words(p.stem))
    if p.parent.name:
        words.update(identifier_words(p.parent.name))
    return words


def _word_match(word: str, names: Iterable[str]) -> bool:
    # The same word in another form (cookie/cookies, depend/dependencies) or the word's usual
    # abbreviation (arguments/args, configuration/config).
    for abbreviation in ABBREVIATIONS.get(word, ()):
        if abbreviation in names:
            return True
    for n in names:
        short = min(len(word), len(n))
        common = len(os.path.commonprefix([word, n]))
        # equal, or sharing all but the last two letters of the shorter word, at least 4:
        # quantize/quantization, parse/parsers
        if word == n or (common >= 4 and common >= short - 2):
            return True
    return False


def path_match(words: list[str], path: str) -> float:
    """The share of a query's :func:`content_words` that its file's :func:`path_words` spell
    (0 when none): "cookie storage and persistence" -> cookies.py 0.33."""
    if not words:
        return 0.0
    names = path_words(path)
    return sum(1 for word in words if _word_match(word, names)) / len(words)

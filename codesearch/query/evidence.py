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
    identifier's (its name is exact text, so BM25 counts more). The ``area_`` levers apply to
    questions and topics (:func:`query_shape`): they ask which part of the code does something or
    deals with a subject, which a file answers as well as a function; a description of one
    behaviour ("Returns the number of flags set") is answered by one function, and file evidence
    there promotes the wrong one (docstring benchmark, dev find: .630 -> .547 with them)."""

    semantic_weight: float = 0.8
    symbol_semantic_weight: float = 0.8
    definition_boost: float = 0.5
    embedded_definition_boost: float = 0.0
    path_boost: float = 0.2
    prose_weight: float = 0.5
    file_boost: float = 0.0
    file_decay: float = 1.0
    question_semantic_weight: float = 0.65
    area_embedded_definition_boost: float = 0.3
    area_path_boost: float = 0.3
    area_file_boost: float = 0.2
    area_file_decay: float = 0.7

    def for_shape(self, shape: str) -> Levers:
        """These levers as they apply to a query of this :func:`query_shape`."""
        if shape not in ("question", "topic"):
            return self
        return replace(self, semantic_weight=(self.question_semantic_weight
                                              if shape == "question" else self.semantic_weight),
                       embedded_definition_boost=self.area_embedded_definition_boost,
                       path_boost=self.area_path_boost, file_boost=self.area_file_boost,
                       file_decay=self.area_file_decay)


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
# What a sentence about one piece of code starts with, rather than a noun phrase naming a subject:
# a function word (an article, pronoun, conjunction, modal or adverb: "The name of the group",
# "If the flag is set ...") or a verb, imperative or third person ("parse a CSV file", "Returns
# the number of flags"; common verbs of code and its documentation, base forms).
_SENTENCE_STARTS = frozenset("""
    a an the this that these those it its if unless whether when while once only also always
    never often usually like unlike similar given used you we can could will would should must
    may might do does either both each every any all most some no not""".split())
_VERBS = frozenset("""
    accept access add adjust aggregate allocate allow append apply assert assign assume attach
    attempt avoid break build calculate call cancel capture cast catch change check clamp
    clean clear clone close collect combine compare compile compose compute concatenate
    configure connect construct contain convert copy count create decode defer define delete
    deserialize destroy detect determine disable display divide drop dump emit enable encode
    ensure enumerate escape evaluate execute exit expand export extend extract fetch fill
    filter find finish flatten flush follow force format free generate get give group handle
    hash hide ignore implement import increment indicate initialize insert inspect install
    instruct invoke is iterate join keep kill launch limit list load lock look make mark match
    merge mock modify move normalize notify open order output overwrite pad panic parse pass
    patch pause perform pick place poll pop prepare prepend preserve prevent print process
    produce prompt provide push put quote raise read receive record reduce refresh register
    reject release reload remove rename render repeat replace report represent request require
    reset resolve restore retry return reverse run save scan schedule search select send
    serialize set show shuffle skip sleep sort specify split start stop store strip submit
    subscribe swap take tell test throw toggle transform translate traverse trigger trim
    truncate try turn undo unlock unpack unregister unwrap update upload use validate verify
    visit wait walk warn watch wrap write yield zip""".split())


# A capitalised ordinary word, as a sentence starts (not an acronym, identifier or name-like
# word: JSON, JsonReader, absl::Status).
_SENTENCE_CASE = re.compile(r"^[A-Z][a-z]+[\s,]")


def _is_verb(word: str) -> bool:
    """A verb of :data:`_VERBS` in its base or third-person form (returns, matches, applies)."""
    if word in _VERBS:
        return True
    if word.endswith("ies") and word[:-3] + "y" in _VERBS:
        return True
    if word.endswith("es") and word[:-2] in _VERBS:
        return True
    return word.endswith("s") and word[:-1] in _VERBS


def query_shape(query: str) -> str:
    """``symbol`` (a bare identifier, :func:`symbol_query`), ``question`` (how/where/what/...
    or ending in ``?``: which part of the code does something), ``description`` (a sentence about
    one piece of code: it starts with a verb or a function word, "Returns the number of flags",
    "parse a CSV file", or is written as a capitalised sentence, as docstrings are: "Helper for
    the parser") or ``topic`` (any other prose, a noun phrase naming a subject: "cookie storage
    and persistence", "JSON element hierarchy", "absl::StrCat for concatenation"). A verb that is
    also a noun ("request body encoding") reads as a description: the function-level answer is
    the safer one."""
    if symbol_query(query):
        return "symbol"
    text = query.strip()
    first = text.split(None, 1)[0].lower() if text else ""
    if text.endswith("?") or first in _QUESTION_WORDS:
        return "question"
    if first in _SENTENCE_STARTS or _is_verb(first) or _SENTENCE_CASE.match(text):
        return "description"
    return "topic"


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

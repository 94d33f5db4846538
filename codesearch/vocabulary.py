"""Programming vocabulary shared by the ranking and by what text models are shown: the words code
usually abbreviates. General programming usage, not any one code base's (and not drawn from the
benchmark's packages).

- ABBREVIATIONS (word -> its usual abbreviations): a description says "argument" where the code
  says ``arg``. Used by the search's name prior, so a chunk named ``arg_len`` answers "the length
  of the argument list". Not added to the BM25 query: there an expansion counts a concept twice,
  and on ../shared/eval dev it cost lexical mode .419 -> .396 (bench/results/quality-log.md).
- WRITTEN_OUT (abbreviation -> words): what a general text model (MiniLM) reads instead of an
  abbreviation in code (documents.WORDS_STYLE); its vocabulary knows "argument" far better than
  "arg". Only abbreviations with one clear meaning. The full-text index gets these written-out words
  too (documents.lexical_text), so "the byte offset of this position" finds ``fn pos``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# An identifier in any of the supported languages (``$`` for JavaScript).
IDENTIFIER_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


# One word of an identifier: a run of capitals before a capitalised word (``CSV`` in ``CSVFile``),
# a (capitalised) lower-case word, a run of capitals, or digits.
_WORD_PART_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def identifier_words(text: str) -> list[str]:
    """The lower-case words of an identifier, or of every identifier in ``text`` (punctuation
    separates): ``parseCSVFile`` -> [parse, csv, file]; ``src/read_all.py`` -> [src, read, all,
    py]."""
    return [w.lower() for w in _WORD_PART_RE.findall(text)]


def is_compound_identifier(identifier: str) -> bool:
    """Whether an identifier joins words by case (``parseCsv``, ``HTTPServer``), which tokenizers
    do not split; snake_case and plain words are not."""
    return (any(c.isupper() for c in identifier[1:])
            and any(c.islower() for c in identifier))


ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "address": ("addr",), "allocate": ("alloc",), "allocation": ("alloc",),
    "application": ("app",), "argument": ("arg",), "arguments": ("args",),
    "attribute": ("attr",), "attributes": ("attrs",), "authentication": ("auth",),
    "authorization": ("auth",), "boolean": ("bool",), "buffer": ("buf",),
    "calculate": ("calc",), "character": ("char",), "characters": ("chars",),
    "column": ("col",), "command": ("cmd",), "compare": ("cmp",),
    "configuration": ("config", "cfg"),
    "connection": ("conn",), "context": ("ctx",), "count": ("cnt",), "current": ("cur", "curr"),
    "database": ("db",), "decrement": ("dec",), "default": ("def",), "definition": ("def",),
    "delete": ("del",), "description": ("desc",), "destination": ("dst", "dest"),
    "dictionary": ("dict",), "directory": ("dir",), "document": ("doc",), "element": ("elem",),
    "environment": ("env",), "error": ("err",), "evaluate": ("eval",), "execute": ("exec",),
    "expression": ("expr",), "extension": ("ext",), "function": ("fn", "func"),
    "generate": ("gen",), "identifier": ("id", "ident"), "increment": ("inc",),
    "index": ("idx",), "information": ("info",), "initialize": ("init",),
    "initialise": ("init",), "instance": ("inst",), "instruction": ("inst", "insn"),
    "instructions": ("insts",), "integer": ("int",), "iterator": ("iter",),
    "iterate": ("iter",), "length": ("len",), "library": ("lib",), "literal": ("lit",),
    "manager": ("mgr",), "maximum": ("max",), "message": ("msg",), "minimum": ("min",),
    "number": ("num",), "object": ("obj",), "operation": ("op",), "operator": ("op",),
    "option": ("opt",), "options": ("opts",), "package": ("pkg",), "parameter": ("param",),
    "parameters": ("params",), "pointer": ("ptr",), "position": ("pos",),
    "previous": ("prev",), "properties": ("props",), "property": ("prop",),
    "reference": ("ref",), "regular": ("regex",), "representation": ("repr",),
    "request": ("req",), "response": ("resp",), "result": ("res",), "separator": ("sep",),
    "sequence": ("seq",), "source": ("src",), "specification": ("spec",),
    "statement": ("stmt",), "string": ("str",), "synchronize": ("sync",),
    "temporary": ("tmp", "temp"), "utility": ("util",), "utilities": ("utils",),
    "value": ("val",), "values": ("vals",), "variable": ("var",),
}

WRITTEN_OUT: dict[str, str] = {
    "addr": "address", "alloc": "allocate", "app": "application", "arg": "argument",
    "args": "arguments", "attr": "attribute", "attrs": "attributes", "auth": "authentication",
    "bool": "boolean", "buf": "buffer", "calc": "calculate", "char": "character",
    "chars": "characters", "col": "column", "cmd": "command", "cmp": "compare",
    "cfg": "configuration", "config": "configuration", "conn": "connection", "ctx": "context",
    "cnt": "count", "cur": "current", "curr": "current", "db": "database",
    "desc": "description", "dst": "destination", "dest": "destination", "dict": "dictionary",
    "dir": "directory", "doc": "document", "elem": "element", "env": "environment",
    "err": "error", "eval": "evaluate", "exec": "execute", "expr": "expression",
    "ext": "extension", "fn": "function", "func": "function", "gen": "generate",
    "idx": "index", "info": "information", "init": "initialize", "insn": "instruction",
    "iter": "iterator", "len": "length", "lib": "library", "lit": "literal", "mgr": "manager",
    "msg": "message", "num": "number", "obj": "object", "opt": "option", "opts": "options",
    "pkg": "package", "param": "parameter", "params": "parameters", "ptr": "pointer",
    "pos": "position", "prev": "previous", "prop": "property", "props": "properties",
    "ref": "reference", "regex": "regular expression", "repr": "representation",
    "req": "request", "resp": "response", "sep": "separator", "seq": "sequence",
    "src": "source", "spec": "specification", "stmt": "statement", "str": "string",
    "sync": "synchronize", "tmp": "temporary", "temp": "temporary", "util": "utility",
    "utils": "utilities", "val": "value", "vals": "values", "var": "variable",
}

# A whole word: not inside a longer identifier or word (``_`` counts as a separator, so
# ``arg_len`` -> ``argument_length``).
_ABBREVIATION_RE = re.compile(
    r"(?<![A-Za-z0-9])(" + "|".join(sorted(WRITTEN_OUT, key=len, reverse=True))
    + r")(?![A-Za-z0-9])")


def written_out_words(words: Iterable[str]) -> list[str]:
    """The written-out forms of the abbreviations among ``words`` (lower-case words), once each:
    ``["pos", "len", "x"]`` -> ``["position", "length"]``."""
    return list(dict.fromkeys(WRITTEN_OUT[w] for w in words if w in WRITTEN_OUT))


def write_out_abbreviations(text: str) -> str:
    """Every lower-case abbreviation in ``text`` that :data:`WRITTEN_OUT` knows, written out."""
    return _ABBREVIATION_RE.sub(lambda m: WRITTEN_OUT[m.group(1)], text)

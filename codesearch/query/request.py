"""A query and its answer as plain values: what ``cs find`` / ``cs similar`` ask, whoever answers
(this process, a query server, the MCP server), and what comes back.

Standard library only (plus :mod:`codesearch.hits`): the warm client builds these on every query
without loading the search code, and sends them over the wire with :meth:`to_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from codesearch.errors import UsageError
from codesearch.hits import DupGroup, Hit
from codesearch.location import file_at

MODES = ("semantic", "lexical", "hybrid")
QUERY_TASKS = ("nl2code", "code2code", "qa", "code2nl", "code2completion")
# What a result is: code, or documentation (a chunk of kind "doc"). ``--code`` / ``--docs``.
KINDS = ("code", "doc")
Op = Literal["find", "similar", "docs", "dups"]
OPS = ("find", "similar", "docs", "dups")


@dataclass(frozen=True)
class SearchOptions:
    """What every query accepts: ``-k``, ``--lang``, ``--glob``, ``--min-score``, ``--mode``,
    ``--task`` (None: detected), ``kinds`` (``--code`` / ``--docs``; empty: both, for find).
    ``mode`` None: the operation's default (see query.ranking), so every front end (CLI,
    server, MCP) agrees."""

    k: int = 10
    languages: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()
    min_score: float | None = None
    mode: str | None = None
    task: str | None = None
    # `cs dups` only (query.dups): the smallest definition compared, the similarity a group
    # needs (None: the defaults there), and whether test code is compared too.
    min_lines: int | None = None
    threshold: float | None = None
    tests: bool = False
    kinds: tuple[str, ...] = ()

    def validate(self) -> None:
        """UsageError for values no query can satisfy."""
        if self.k < 1:
            raise UsageError(f"-k must be at least 1, got {self.k}")
        if self.mode is not None and self.mode not in MODES:
            raise UsageError(f"unknown mode '{self.mode}'", hint="use one of: " + ", ".join(MODES))
        if self.task is not None and self.task not in QUERY_TASKS:
            raise UsageError(f"unknown task '{self.task}'",
                             hint="use one of: " + ", ".join(QUERY_TASKS))
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise UsageError(f"--threshold must be in (0, 1], got {self.threshold}")
        for kind in self.kinds:
            if kind not in KINDS:
                raise UsageError(f"unknown kind '{kind}'", hint="use one of: " + ", ".join(KINDS))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchOptions:
        """The inverse of :meth:`to_dict`; TypeError for unknown fields."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.items()}
        return cls(**fields)


@dataclass(frozen=True)
class Query:
    """``find`` (``text`` is the query), ``similar`` or ``docs`` (``text`` is FILE:LINE,
    relative to ``cwd``) or ``dups`` (``text`` unused: the whole index, or its scope), with its
    options and the model asked for (None: the index's own)."""

    op: Op
    text: str
    options: SearchOptions = field(default_factory=SearchOptions)
    model: str | None = None
    cwd: Path | None = None

    def check(self) -> None:
        """UsageError for a query no index can answer (bad options, an empty query), raised the
        same way whoever answers."""
        self.options.validate()
        if self.op == "find" and not self.text.strip():
            raise UsageError("empty query", hint='e.g. cs find "parse a CSV file"')
        if self.op in ("similar", "docs"):
            self.check_file()

    def check_file(self) -> Path:
        """For ``similar`` and ``docs``: the file FILE:LINE names (relative to ``cwd``), checked
        before any index is looked up, so a typo is blamed on the location and not on a missing
        index."""
        return file_at(self.text, self.cwd or Path.cwd())[0]

    def to_dict(self) -> dict[str, Any]:
        """The wire form (see query.protocol)."""
        return {"op": self.op, "text": self.text, "options": self.options.to_dict(),
                "model": self.model, "cwd": str(self.cwd) if self.cwd is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Query:
        """The inverse of :meth:`to_dict`; ValueError or TypeError for a malformed one."""
        op = data.get("op")
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}")
        cwd = data.get("cwd")
        return cls(op, str(data["text"]), SearchOptions.from_dict(data.get("options") or {}),
                   data.get("model"), Path(cwd) if cwd else None)


@dataclass(frozen=True)
class Answer:
    """The hits of one query, the root their paths are relative to, and how much of the index
    had vectors (``store.Coverage.to_dict()``; None when unknown). ``groups``: what a ``dups``
    query found (its ``hits`` are empty)."""

    hits: list[Hit]
    root: Path
    coverage: dict[str, Any] | None = None
    groups: list[DupGroup] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field of every hit, scores unrounded (JSON floats round-trip exactly), so the
        client renders exactly what this process would."""
        out = {"hits": [asdict(h) for h in self.hits], "root": str(self.root),
               "coverage": self.coverage}
        if self.groups is not None:
            out["groups"] = [asdict(g) for g in self.groups]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answer:
        """The inverse of :meth:`to_dict`."""
        fields = Hit.__dataclass_fields__
        hits = [Hit(**{k: h[k] for k in fields if k in h}) for h in data["hits"]]
        groups = data.get("groups")
        return cls(hits, Path(str(data["root"])), data.get("coverage"),
                   None if groups is None else [DupGroup.from_dict(g) for g in groups])

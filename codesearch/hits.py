"""A search result, in a module that imports nothing heavy: the search code builds hits, the warm
client (:mod:`codesearch.query.client`) rebuilds them from a query server's answer, and both
render the same value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.store.records import StoredChunk


@dataclass(frozen=True)
class Hit:
    """One search result. ``path`` is POSIX, relative to the indexed root."""

    path: str
    start_line: int
    end_line: int
    symbol: str
    language: str
    kind: str
    score: float
    text: str
    # Why it ranked (``find``): each piece of evidence and what it added to the score, e.g.
    # {"semantic": 0.91, "lexical": 0.4, "name": 0.15, "definition": 0.5, "file": 0.1}; see
    # query.ranking.find_scores. Empty when the ranking records none (``similar``).
    signals: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (``cs find --json``; ``signals`` empty for ``similar``)."""
        return {
            "path": self.path, "start_line": self.start_line, "end_line": self.end_line,
            "symbol": self.symbol, "language": self.language, "kind": self.kind,
            "score": round(float(self.score), 6), "text": self.text,
            "signals": {k: round(float(v), 4) for k, v in self.signals.items()},
        }

    @classmethod
    def from_stored(cls, row: StoredChunk, score: float | None = None,
                    signals: dict[str, float] | None = None) -> Hit:
        return cls(row.path, row.start_line, row.end_line, row.symbol, row.language, row.kind,
                   float(row.score if score is None else score), row.text, dict(signals or {}))


@dataclass(frozen=True)
class DupGroup:
    """Near-duplicate definitions (``cs dups``): its ``locations`` (hits whose ``score`` is the
    similarity to the group's best match), the ``similarity`` that holds the group together (its
    weakest link), ``kind`` (``exact``: the same code; ``renamed``: the same code up to names;
    ``similar``: close by meaning) and ``lines`` (what merging would save: every location's lines
    but the longest's)."""

    similarity: float
    kind: str
    lines: int
    locations: tuple[Hit, ...]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (``cs dups --json``): locations without their text."""
        return {
            "similarity": round(float(self.similarity), 6), "kind": self.kind,
            "lines": self.lines,
            "locations": [{"path": h.path, "start_line": h.start_line, "end_line": h.end_line,
                           "symbol": h.symbol, "language": h.language} for h in self.locations],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DupGroup:
        """The wire form back (a query server sends :func:`dataclasses.asdict`)."""
        fields = Hit.__dataclass_fields__
        return cls(float(data["similarity"]), str(data["kind"]), int(data["lines"]),
                   tuple(Hit(**{k: h[k] for k in fields}) for h in data["locations"]))


# How many chunk hits a ``--files`` query asks for per file it lists: files are ranked from the
# chunks the search returns, so it needs more of them than files.
FILE_HITS_PER_FILE = 4


@dataclass(frozen=True)
class FileHit:
    """One file in ``cs find --files``: its path, the score of its best hit (which carries the
    file's own evidence, query.ranking.find_scores), and its hits best first."""

    path: str
    language: str
    score: float
    hits: list[Hit]

    def to_dict(self) -> dict[str, Any]:
        """The ``--files --json`` form: path, language, score, and per hit its lines, symbol,
        kind, score and signals (no text: ``cs find`` without ``--files`` has it)."""
        return {"path": self.path, "language": self.language,
                "score": round(float(self.score), 6),
                "hits": [{k: v for k, v in h.to_dict().items() if k not in ("path", "text",
                                                                                 "language")}
                         for h in self.hits]}


def group_files(hits: list[Hit], k: int) -> list[FileHit]:
    """The first ``k`` files of ``hits`` (ranked), each with its hits in rank order."""
    files: dict[str, list[Hit]] = {}
    for h in hits:
        files.setdefault(h.path, []).append(h)
    return [FileHit(path, group[0].language, group[0].score, group)
            for path, group in list(files.items())[:k]]

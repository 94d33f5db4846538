"""A search result, in a module that imports nothing heavy: the search code builds hits, the warm
client (:mod:`codesearch.query.client`) rebuilds them from a query server's answer, and both
render the same value."""

from __future__ import annotations

from dataclasses import dataclass
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

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (``cs find --json``)."""
        return {
            "path": self.path, "start_line": self.start_line, "end_line": self.end_line,
            "symbol": self.symbol, "language": self.language, "kind": self.kind,
            "score": round(float(self.score), 6), "text": self.text,
        }

    @classmethod
    def from_stored(cls, row: StoredChunk, score: float | None = None) -> Hit:
        return cls(row.path, row.start_line, row.end_line, row.symbol, row.language, row.kind,
                   float(row.score if score is None else score), row.text)


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

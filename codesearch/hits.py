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

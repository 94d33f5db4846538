"""Answering queries: :meth:`QueryService.answer` is the one route from a :class:`Query` to its
:class:`Answer`. ``cs find`` / ``cs similar`` in-process, every query server, ``cs watch`` and the
MCP server all end there, so they give the same hits and the same errors.

A service keeps models loaded between queries (through its loader, e.g. an
:class:`~codesearch.embed.pool.EmbedderPool`) and opens the index afresh for every query (cheap: a
few small reads), so commits by other processes, a rebuild included, are seen at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from codesearch import config
from codesearch.embed.pool import EmbedderPool, query_loader
from codesearch.errors import CodeSearchError, UsageError
from codesearch.index.status import index_status
from codesearch.location import IndexLocation, IndexSettings, is_index
from codesearch.query.dups import duplicates
from codesearch.query.request import Answer, Query
from codesearch.query.searcher import Searcher
from codesearch.store.store import Store

Notify = Callable[[str], None]


class QueryService:
    """Answers queries over indexes with models kept loaded. ``locations``: the indexes it serves
    by name (a query server's roots); ``index_set``: an index directory whose every index it
    also serves (an automatic server). ``model`` is used for queries naming none (it must fit
    each index, as ``cs find --model`` must); by default each index's own. ``pool``: loaded
    models to share (a server's, or a watcher's with its indexer); by default models load as
    ``cs find`` in-process loads them. Thread-safe."""

    def __init__(self, locations: Sequence[IndexLocation] = (), *,
                 index_set: Path | None = None, device: str | None = None,
                 model: str | None = None, pool: EmbedderPool | None = None,
                 notify: Notify | None = None) -> None:
        self.notify = notify
        self.device = device if device is not None else config.default_device()
        self.model = config.model_spec(model) if model else None
        self.pool = pool
        self._load = pool.load if pool is not None else query_loader(notify)
        self.locations: dict[Path, IndexLocation] = {loc.root: loc for loc in locations}
        self.index_set = index_set.expanduser().resolve() if index_set is not None else None
        self._lock = threading.Lock()

    # which indexes -----------------------------------------------------------------------------

    def served(self, root: Path) -> IndexLocation | None:
        """The served index of ``root`` (resolved), if any; for an automatic server, also any
        root with an index in its index directory (found by the layout, as the client finds it;
        remembered)."""
        resolved = root.expanduser().resolve()
        found = self.locations.get(resolved)
        if found is not None or self.index_set is None or not resolved.is_dir():
            return found
        location = IndexSettings(index_dir=self.index_set).for_root(resolved)
        if Path(location.uri).parent != self.index_set or not is_index(location.uri):
            return None
        with self._lock:
            return self.locations.setdefault(resolved, location)

    # queries -------------------------------------------------------------------------------------

    def searcher(self, location: IndexLocation, model: str | None = None) -> Searcher:
        """A Searcher over the latest committed version of the index at ``location``, sharing
        loaded models. Raises what :meth:`Searcher.open` raises."""
        return Searcher.open(location, model=model or self.model, device=self.device,
                             loader=self._load, notify=self.notify)

    def answer(self, location: IndexLocation, query: Query) -> Answer:
        """What ``cs find`` / ``cs similar`` / ``cs docs`` / ``cs dups`` print for ``query`` over
        the index at ``location`` (limited to its ``scope``), with the index's coverage."""
        query.check()
        searcher = self.searcher(location, query.model)
        if query.op == "dups":
            groups = duplicates(searcher.store, query.options, searcher._where(query.options))
            return Answer([], searcher.root, searcher.coverage().to_dict(), groups)
        if query.op == "find":
            hits = searcher.find(query.text, query.options)
        elif query.op == "docs":
            hits = searcher.docs(query.text, query.options, cwd=query.cwd)
        else:
            hits = searcher.similar(query.text, query.options, cwd=query.cwd)
        return Answer(hits, searcher.root, searcher.coverage().to_dict())

    def status(self, location: IndexLocation) -> dict[str, Any]:
        """What ``cs status --json`` prints for the index at ``location``."""
        store = Store.at(location)
        return index_status(location.root, store)

    def warm(self) -> None:
        """Load the model of every served index now, so the first query is fast. An index that
        is missing or unusable is reported through ``notify``, not raised: its queries get the
        same error the in-process path gives."""
        for location in list(self.locations.values()):
            try:
                self.searcher(location).handle.get()
            except CodeSearchError as err:
                if self.notify:
                    self.notify(f"warning: {location.root}: {err.message}"
                                + (f" ({err.hint})" if err.hint else ""))

    def info(self) -> dict[str, Any]:
        """Who serves what, with which models loaded (a server's ``ping`` answer)."""
        return {"pid": os.getpid(), "roots": [str(r) for r in list(self.locations)],
                "index_set": str(self.index_set) if self.index_set else None,
                "device": self.device, "models": self.pool.loaded() if self.pool else []}


def serve_roots(roots: Sequence[Path], settings: IndexSettings) -> list[IndexLocation]:
    """The indexes of ``roots`` as a server names them (each root exactly, not an ancestor)."""
    if not roots:
        raise UsageError("no root to serve")
    if settings.index_uri and len(roots) > 1:
        raise UsageError("--index-uri names one index, but several roots were given",
                         hint="serve one root per --index-uri, or use --index-dir")
    return [settings.for_root(root) for root in roots]

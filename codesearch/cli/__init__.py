"""The `cs` command line: each module parses one group of commands, calls one core function,
and renders (:mod:`codesearch.render`). Heavy libraries (torch, transformers, lancedb) are
imported inside commands so `cs --help` and a warm `cs find` stay fast.

- :mod:`~codesearch.cli.app`: the typer app and the one way out on error;
- :mod:`~codesearch.cli.options`: options several commands share;
- :mod:`~codesearch.cli.index`: index, watch;
- :mod:`~codesearch.cli.search`: find, similar, status;
- :mod:`~codesearch.cli.dups`: dups;
- :mod:`~codesearch.cli.serve`: serve, server, mcp;
- :mod:`~codesearch.cli.model`: model, embed, chunks.
"""

from __future__ import annotations

from codesearch.cli import dups, index, model, search, serve
from codesearch.cli.app import app

__all__ = ["app", "dups", "index", "main", "model", "search", "serve"]


def main() -> None:
    """Console-script entry point."""
    app()

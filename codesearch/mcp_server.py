"""``cs mcp``: a Model Context Protocol server over stdio, so AI coding tools can search an
indexed code base by meaning.

Built on the official ``mcp`` Python SDK (``pip install 'codesearch[mcp]'``): ``MCPServer`` in mcp
2.x, ``FastMCP`` in 1.x. Tools (all answers are structured, with a JSON schema):

- ``search_code(query, k, language, path_glob, kind)``: ``cs find`` (``kind``: ``code`` or
  ``doc`` is ``--code`` / ``--docs``; a question ranks documentation as answers).
- ``find_similar(file, line, k, language)``: ``cs similar FILE:LINE``; ``file`` relative to the
  root; ``language`` finds the equivalent in another language.
- ``find_docs(file, line, k)``: ``cs docs FILE:LINE``, the documentation about that code.
- ``find_duplicates(k, threshold, min_lines, language, path_glob, include_tests)``: ``cs dups``.
- ``index_status()``: ``cs status --json``.

One root per server (the working directory, or ``--path``). Queries take the one route,
:meth:`~codesearch.query.service.QueryService.answer`: the model stays loaded (it starts loading in
the background as soon as the server starts) and every call reads the latest committed index, so a
``cs watch`` or ``cs index`` in another process is seen at once. stdout carries the protocol:
notices go to stderr. Registration with Claude Code, Claude Desktop, Cursor and VS Code:
docs/mcp.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from typing_extensions import TypedDict

from codesearch.embed.pool import EmbedderPool
from codesearch.errors import CodeSearchError, UsageError
from codesearch.hits import Hit
from codesearch.location import IndexLocation, IndexSettings
from codesearch.query.request import Query, SearchOptions
from codesearch.query.service import QueryService

SERVER_NAME = "codesearch"
INSTRUCTIONS = (
    "Semantic code search over one local repository (cs). Use search_code with a description of "
    "what the code does (or a code snippet) to find the functions, methods and classes that do "
    "it, or a question to find the documentation sections that answer it (kind='doc' for docs "
    "only, kind='code' for code only); find_similar to find code like a given file:line (or "
    "its equivalent in another language, with language); find_docs to find the documentation "
    "describing the code at a file:line; find_duplicates to list near-duplicate code worth "
    "merging; index_status to see what is indexed and how stale it is. Paths are relative to "
    "the repository root."
)


class DuplicateGroups(TypedDict):
    """Groups of near-duplicate definitions, most worth merging first (``cs dups --json``)."""

    root: str
    groups: list[dict[str, Any]]


class SearchResults(TypedDict):
    """Results, best first; ``root`` is the repository the paths are relative to."""

    root: str
    hits: list[Hit]


def _hit(hit: Hit) -> Hit:
    """The hit as ``cs find --json`` prints it (the score rounded to 6 places, its signals to
    4)."""
    return replace(hit, score=round(float(hit.score), 6),
                   signals={k: round(float(v), 4) for k, v in hit.signals.items()})


def _sdk() -> tuple[type, type[Exception]]:
    """(server class, tool error class) of the installed SDK; UsageError naming the extra when
    it is missing."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
        return MCPServer, ToolError
    except ImportError:
        pass
    try:
        from mcp.server.fastmcp import FastMCP  # type: ignore[attr-defined,unused-ignore]
        from mcp.server.fastmcp.exceptions import ToolError as FastToolError
        return FastMCP, FastToolError
    except ImportError:
        raise UsageError("the MCP server needs the mcp package",
                         hint="pip install 'codesearch[mcp]'") from None


def build_server(service: QueryService, location: IndexLocation) -> Any:
    """An SDK server exposing the index at ``location`` as the tools above, not yet running."""
    import anyio

    server_cls, tool_error = _sdk()
    server = server_cls(SERVER_NAME, instructions=INSTRUCTIONS, log_level="WARNING")

    async def call(fn: Callable[[], Any]) -> Any:
        # The engine blocks (model, disk): keep it off the event loop; errors become the one line
        # the CLI would print, plus its hint, as a tool error the agent can read.
        try:
            return await anyio.to_thread.run_sync(fn)
        except CodeSearchError as err:
            raise tool_error(err.message + (f" ({err.hint})" if err.hint else "")) from None

    async def answer(query: Query) -> SearchResults:
        result = await call(lambda: service.answer(location, query))
        return SearchResults(root=str(result.root), hits=[_hit(h) for h in result.hits])

    @server.tool()
    async def search_code(
        query: Annotated[str, Field(description="What the code does, in words, or a code "
                                    "snippet to find code like it.")],
        k: Annotated[int, Field(description="How many results.", ge=1, le=100)] = 10,
        language: Annotated[str | None, Field(description="Only this language, e.g. python, "
                                              "typescript, go, rust.")] = None,
        path_glob: Annotated[str | None, Field(description="Only paths matching this glob, "
                                               "e.g. 'src/**/*.py'; '!tests/' excludes.")] = None,
        kind: Annotated[str | None, Field(description="Only 'code' or only 'doc' "
                                          "(documentation sections); both by default.")] = None,
    ) -> SearchResults:
        """Search the repository by meaning: the functions, methods, classes and documentation
        sections that best match the query, best first, each with its path, line range, symbol,
        kind ('doc' for documentation), score and text."""
        options = SearchOptions(k=k, languages=(language,) if language else (),
                                globs=(path_glob,) if path_glob else (),
                                kinds=(kind,) if kind else ())
        return await answer(Query("find", query, options))

    @server.tool()
    async def find_similar(
        file: Annotated[str, Field(description="A file of the repository (relative to its "
                                   "root, or absolute).")],
        line: Annotated[int, Field(description="A line inside the code to compare with "
                                   "(1-based).", ge=1)],
        k: Annotated[int, Field(description="How many results.", ge=1, le=100)] = 10,
        language: Annotated[str | None, Field(description="Only this language: e.g. go finds "
                                              "the Go equivalent of a Python function.")] = None,
    ) -> SearchResults:
        """Find code like the function or class enclosing file:line (itself excluded): near
        duplicates, other implementations of the same idea, its equivalent in another
        language."""
        options = SearchOptions(k=k, languages=(language,) if language else ())
        return await answer(Query("similar", f"{file}:{line}", options, cwd=location.root))

    @server.tool()
    async def find_duplicates(
        k: Annotated[int, Field(description="How many groups.", ge=1, le=200)] = 20,
        threshold: Annotated[float | None, Field(description="Similarity a group needs, 0-1 "
                                                 "(default 0.9).", gt=0, le=1)] = None,
        min_lines: Annotated[int | None, Field(description="Leave out shorter definitions "
                                               "(default 5).", ge=1)] = None,
        language: Annotated[str | None, Field(description="Only this language.")] = None,
        path_glob: Annotated[str | None, Field(description="Only paths matching this glob.")
                             ] = None,
        include_tests: Annotated[bool, Field(description="Compare test code too.")] = False,
    ) -> DuplicateGroups:
        """Groups of near-duplicate functions, methods and classes across the repository (exact
        copies, renamed copies, code doing the same thing), most worth merging first, each with
        its similarity, the lines merging would save and its locations."""
        options = SearchOptions(k=k, languages=(language,) if language else (),
                                globs=(path_glob,) if path_glob else (), threshold=threshold,
                                min_lines=min_lines, tests=include_tests)
        result = await call(lambda: service.answer(location, Query("dups", "", options)))
        return DuplicateGroups(root=str(result.root),
                               groups=[g.to_dict() for g in result.groups or []])

    @server.tool()
    async def find_docs(
        file: Annotated[str, Field(description="A file of the repository (relative to its "
                                   "root, or absolute).")],
        line: Annotated[int, Field(description="A line inside the code whose documentation "
                                   "to find (1-based).", ge=1)],
        k: Annotated[int, Field(description="How many results.", ge=1, le=100)] = 10,
    ) -> SearchResults:
        """Find the documentation sections that describe the function or class enclosing
        file:line: the pages to read, or to update after changing that code."""
        return await answer(Query("docs", f"{file}:{line}", SearchOptions(k=k),
                                  cwd=location.root))

    @server.tool()
    async def index_status() -> dict[str, Any]:
        """The repository's index: model, dim, files, chunks, when it was last updated, and how
        many files changed since (new, modified, removed)."""
        return dict(await call(lambda: service.status(location)))

    return server


def run_stdio(path: Path, settings: IndexSettings, *, model: str | None = None,
              device: str | None = None, notify: Callable[[str], None] | None = None) -> None:
    """Serve the index of ``path`` over stdio until the client closes the pipe. The model starts
    loading in the background at once; a query that arrives first waits for it."""
    location = settings.for_root(path)
    service = QueryService([location], device=device, model=model,
                           pool=EmbedderPool(notify=notify, queries_only=True), notify=notify)
    server = build_server(service, location)

    def warm() -> None:
        try:
            service.searcher(location).handle.get()
        except CodeSearchError as err:  # reported again, to the agent, on its first call
            if notify:
                notify(f"warning: {err.message}" + (f" ({err.hint})" if err.hint else ""))
        except Exception as err:  # noqa: BLE001 - never kill the server from a warm-up
            if notify:
                notify(f"warning: could not load the model: {err}")

    threading.Thread(target=warm, name="cs-mcp-warm", daemon=True).start()
    server.run("stdio")

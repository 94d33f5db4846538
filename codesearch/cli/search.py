"""``cs find``, ``cs similar`` and ``cs status``: parse, ask (a warm server or this process, see
:func:`codesearch.query.client.answer`), render. Like every command module, it imports the core
inside the commands: ``cs --help`` loads typer and this package's option types only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from codesearch.cli.app import app
from codesearch.cli.options import (
    Device,
    IndexDir,
    IndexUri,
    Json,
    Model,
    Precision,
    RootPath,
    StorageOpts,
    index_settings,
    notice,
    search_options,
)
from codesearch.errors import ExitCode

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.query.request import Op

K = Annotated[int, typer.Option("-k", "--top", help="How many results.")]
Lang = Annotated[list[str] | None, typer.Option("--lang", help="Only these languages "
                                                "(repeatable or comma-separated).",
                                                show_default=False)]
Glob = Annotated[list[str] | None, typer.Option("--glob", help="Only paths matching this glob "
                                                "(repeatable; !GLOB excludes).",
                                                show_default=False)]
MinScore = Annotated[float | None, typer.Option("--min-score", help="Drop results scoring "
                                                "below this.", show_default=False)]
# The defaults named here are query.ranking's DEFAULT_MODE / DEFAULT_SIMILAR_MODE (not imported:
# `cs --help` stays light; tests/test_cli_search.py checks they agree).
Mode = Annotated[str | None, typer.Option("--mode", help="semantic, lexical or hybrid "
                                          "(default: hybrid).", show_default=False)]
Task = Annotated[str | None, typer.Option("--task", help="nl2code, qa or code2code (default: "
                                          "detected from the query: a question is qa).",
                                          show_default=False)]
Docs = Annotated[bool, typer.Option("--docs", help="Only documentation (Markdown, reST, "
                                    "AsciiDoc and plain-text doc sections).")]
Code = Annotated[bool, typer.Option("--code", help="Only code.")]
SimilarTask = Annotated[str | None, typer.Option("--task", help="nl2code or code2code "
                                                 "(default: code2code).", show_default=False)]
Grep = Annotated[bool, typer.Option("--grep", help="path:line:symbol lines, for editors.")]
Files = Annotated[bool, typer.Option("--files", help="Rank files, not chunks: the -k files that "
                                     "answer best, each with its best hits.")]
NoServer = Annotated[bool, typer.Option("--no-server", help="Work in-process: use no query "
                                        "server and start none [env CS_NO_SERVER=1].")]


def _search(op: Op, text: str, path: Path, *, k: int, lang: list[str] | None,
            glob: list[str] | None, min_score: float | None, mode: str | None,
            task: str | None, as_json: bool, grep: bool, model: str | None,
            device: str | None, index_dir: Path | None, index_uri: str | None,
            storage_option: list[str] | None, no_server: bool,
            kinds: tuple[str, ...] = (), files: bool = False) -> None:
    from dataclasses import replace

    from codesearch.hits import FILE_HITS_PER_FILE
    from codesearch.query import client
    from codesearch.query.request import Query
    from codesearch.render import print_answer

    settings = index_settings(index_dir, index_uri, storage_option)
    # --files ranks the files of more chunk hits than it lists.
    chunks = k * FILE_HITS_PER_FILE if files else k
    options = replace(search_options(chunks, lang, glob, min_score, mode, task), kinds=kinds)
    query = Query(op, text, options, model, Path.cwd())
    if op in ("similar", "docs") and path == Path("."):
        # Run outside any indexed tree: search the tree that holds FILE.
        path = settings.root_for_file(text, Path.cwd())
    answer = client.answer(query, path, settings, device=device, no_server=no_server,
                           notify=notice)
    if not print_answer(answer, as_json=as_json, grep=grep, files=k if files else None):
        raise typer.Exit(int(ExitCode.NO_RESULTS))


@app.command("find")
def find_cmd(
    query: Annotated[str, typer.Argument(help="What the code does, or a piece of code.")],
    path: RootPath = Path("."),
    k: K = 10,
    lang: Lang = None,
    glob: Glob = None,
    min_score: MinScore = None,
    mode: Mode = None,
    task: Task = None,
    docs: Docs = False,
    code: Code = False,
    as_json: Json = False,
    grep: Grep = False,
    files: Files = False,
    model: Model = None,
    device: Device = None,
    precision: Precision = None,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
    no_server: NoServer = False,
) -> None:
    """Search the index of --path (default: the current directory) for QUERY: code and
    documentation in one list (a question ranks docs as answers).

    Exit 0 with results, 1 with none, 2 on error. A query server answers it warm: `cs serve`,
    `cs watch`, or the one the first query starts in the background (see `cs server`)."""
    kinds = tuple(kind for kind, wanted in (("code", code), ("doc", docs)) if wanted)
    _search("find", query, path, k=k, lang=lang, glob=glob, min_score=min_score, mode=mode,
            task=task, as_json=as_json, grep=grep, model=model, device=device,
            index_dir=index_dir, index_uri=index_uri, storage_option=storage_option,
            no_server=no_server, kinds=kinds, files=files)


@app.command("similar")
def similar_cmd(
    location: Annotated[str, typer.Argument(metavar="FILE:LINE",
                                            help="A line inside the code to compare with.")],
    path: RootPath = Path("."),
    k: K = 10,
    lang: Lang = None,
    glob: Glob = None,
    min_score: MinScore = None,
    mode: Mode = None,
    task: SimilarTask = None,
    as_json: Json = False,
    grep: Grep = False,
    model: Model = None,
    device: Device = None,
    precision: Precision = None,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
    no_server: NoServer = False,
) -> None:
    """Find code like the chunk enclosing FILE:LINE (itself excluded)."""
    _search("similar", location, path, k=k, lang=lang, glob=glob, min_score=min_score,
            mode=mode, task=task, as_json=as_json, grep=grep, model=model, device=device,
            index_dir=index_dir, index_uri=index_uri, storage_option=storage_option,
            no_server=no_server)


@app.command("docs")
def docs_cmd(
    location: Annotated[str, typer.Argument(metavar="FILE:LINE",
                                            help="A line inside the code to find the docs of.")],
    path: RootPath = Path("."),
    k: K = 10,
    lang: Lang = None,
    glob: Glob = None,
    min_score: MinScore = None,
    mode: Mode = None,
    as_json: Json = False,
    grep: Grep = False,
    model: Model = None,
    device: Device = None,
    precision: Precision = None,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
    no_server: NoServer = False,
) -> None:
    """Find the documentation that describes the code enclosing FILE:LINE (the pages to update
    after changing it)."""
    _search("docs", location, path, k=k, lang=lang, glob=glob, min_score=min_score,
            mode=mode, task=None, as_json=as_json, grep=grep, model=model, device=device,
            index_dir=index_dir, index_uri=index_uri, storage_option=storage_option,
            no_server=no_server)


@app.command("status")
def status_cmd(
    root: Annotated[Path, typer.Argument(help="The indexed root.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
) -> None:
    """Show the index of ROOT: model, dim, files, chunks, last run, files changed since."""
    from codesearch.query.service import QueryService
    from codesearch.render import print_status

    location = index_settings(index_dir, index_uri, storage_option).locate(root)
    print_status(QueryService().status(location), as_json=as_json)

"""``cs dups``: parse, ask (a warm server or this process, see
:func:`codesearch.query.client.answer`), render. The work is query.dups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codesearch.cli.app import app
from codesearch.cli.options import (
    Device,
    IndexDir,
    IndexUri,
    Model,
    Precision,
    StorageOpts,
    index_settings,
    notice,
    search_options,
)
from codesearch.cli.search import Glob, Grep, Lang, NoServer
from codesearch.errors import ExitCode

# The defaults named in the help are query.dups's DEFAULT_THRESHOLD / DEFAULT_MIN_LINES (not
# imported: `cs --help` stays light; tests/test_dups.py checks they agree).
Threshold = Annotated[float | None, typer.Option(
    "--threshold", help="How similar (cosine of the stored vectors, 0-1) definitions must be to "
    "be grouped (default: 0.9).", show_default=False)]
MinLines = Annotated[int | None, typer.Option(
    "--min-lines", help="Leave out definitions shorter than this many lines (default: 5).",
    show_default=False)]
Tests = Annotated[bool, typer.Option("--tests", help="Compare test code too (left out by "
                                     "default).")]
Top = Annotated[int, typer.Option("-k", "--top", help="How many groups, most worth merging "
                                  "first.")]


@app.command("dups")
def dups_cmd(
    path: Annotated[Path, typer.Argument(help="The indexed root, or a directory inside it.")] = (
        Path(".")),
    k: Top = 20,
    threshold: Threshold = None,
    min_lines: MinLines = None,
    tests: Tests = False,
    lang: Lang = None,
    glob: Glob = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of groups.")] = False,
    grep: Grep = False,
    model: Model = None,
    device: Device = None,
    precision: Precision = None,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
    no_server: NoServer = False,
) -> None:
    """List groups of near-duplicate definitions under PATH, most worth merging first (similarity
    x the lines merging would save): exact copies, renamed copies, and code that does the same
    thing. Uses the stored vectors: nothing is embedded.

    Exit 0 with groups, 1 with none, 2 on error."""
    from dataclasses import replace

    from codesearch.query import client
    from codesearch.query.request import Query
    from codesearch.render import print_dups

    settings = index_settings(index_dir, index_uri, storage_option)
    options = replace(search_options(k, lang, glob, None, None, None), threshold=threshold,
                      min_lines=min_lines, tests=tests)
    answer = client.answer(Query("dups", "", options, model, Path.cwd()), path, settings,
                           device=device, no_server=no_server, notify=notice)
    if not print_dups(answer, as_json=as_json, grep=grep):
        raise typer.Exit(int(ExitCode.NO_RESULTS))

"""The `cs` command line: parse arguments, call the core, render, map errors to exit codes. Nothing else.

Heavy libraries (torch, transformers, lancedb) are imported inside commands so `cs --help` stays fast.
Shared file: each command's body belongs to the issue that owns it; keep edits local to a command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from typer.core import TyperGroup

from codesearch.errors import CodeSearchError, ExitCode


class _Group(TyperGroup):
    """Turns CodeSearchError and Ctrl-C into one stderr line and a named exit code, for every command
    (also under typer's CliRunner, which bypasses main())."""

    def invoke(self, ctx: typer.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except CodeSearchError as err:
            _error(err)
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


app = typer.Typer(
    cls=_Group,
    name="cs",
    help="Search a code base by meaning. Index with `cs index`, then `cs find \"what it does\"`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(cls=_Group, help="List, download and describe embedding models.", no_args_is_help=True)
app.add_typer(model_app, name="model")


def _error(err: CodeSearchError) -> NoReturn:
    """Print one error line (and its hint) to stderr, then exit with its code."""
    from codesearch.render import print_error

    print_error(err)
    raise typer.Exit(int(err.exit_code))


@app.callback()
def _root() -> None:
    """Search a code base by meaning."""


# --- issue 2: chunks -------------------------------------------------------------------------


# --- issue 3: embed, model -------------------------------------------------------------------


# --- issue 4: index, find, similar, status ---------------------------------------------------


# --- issue 5: watch --------------------------------------------------------------------------


# --- issue 8: serve, mcp ---------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

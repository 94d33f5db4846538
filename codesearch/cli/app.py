"""The typer application every command registers on, and its one way out on error: a
CodeSearchError becomes one stderr line (and its hint) with its exit code; Ctrl-C prints
one line and exits 130."""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from codesearch.errors import CodeSearchError, ExitCode


class _Group(TyperGroup):
    """Turns CodeSearchError and Ctrl-C into one stderr line and a named exit code, for every
    command (also under typer's CliRunner, which bypasses main())."""

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors its own click)
        try:
            return super().invoke(ctx)
        except CodeSearchError as err:
            _error(err)
        except KeyboardInterrupt as err:
            # One line: the command's own account of what it kept, else this.
            print(str(err) or "Interrupted.", file=sys.stderr)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _error(err: CodeSearchError) -> NoReturn:
    """Print one error line (and its hint) to stderr, then exit with its code."""
    from codesearch.render import print_error

    print_error(err)
    raise typer.Exit(int(err.exit_code))


def sub_app(help_text: str) -> typer.Typer:
    """A command group (``cs model ...``, ``cs server ...``) with the same error handling."""
    return typer.Typer(cls=_Group, help=help_text, no_args_is_help=True,
                       rich_markup_mode=None)


app = typer.Typer(
    cls=_Group,
    name="cs",
    help="Search a code base by meaning. Index with `cs index`, then `cs find \"what it does\"`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help is plain text: brackets ('codesearch[ray]', [env CS_CACHE_URI]) are not markup.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from codesearch import __version__

        print(f"cs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Search a code base by meaning."""

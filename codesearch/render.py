"""Turn hits, stats and errors into terminal output: rich tables, JSON, grep-style lines.

The only module besides cli.py that talks to the terminal. Colour follows NO_COLOR, FORCE_COLOR and
whether the stream is a terminal (rich does this).
"""

from __future__ import annotations

import sys

from codesearch.errors import CodeSearchError


def print_error(err: CodeSearchError) -> None:
    """One line to stderr: 'error: <message>', then 'hint: <hint>' when there is one."""
    print(f"error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"hint: {err.hint}", file=sys.stderr)

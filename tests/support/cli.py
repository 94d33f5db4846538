"""`cs` through the real CLI inside the test process (typer's CliRunner): what each test file
uses instead of a runner of its own."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from codesearch.cli import app

runner = CliRunner()


def cs(*args: str) -> Result:
    """Run ``cs ARGS`` in this process; the result has ``exit_code``, ``stdout``, ``stderr`` and
    ``output``. Nothing is asserted: tests check the exit code they expect."""
    return runner.invoke(app, list(args))

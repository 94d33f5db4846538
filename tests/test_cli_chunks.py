"""`cs chunks PATH [--json] [--verbose]` through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from codesearch.documents import content_hash
from codesearch.source.chunk import chunk_source
from tests.support.cli import cs
from tests.test_discover import EXPECTED_FILES, EXPECTED_SKIPS, IGNORE_RULES, materialize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

JSON_KEYS = ["path", "language", "kind", "symbol", "start_line", "end_line", "text", "hash"]


def test_json_for_one_file(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "python" / "datatools" / "stats.py", tmp_path / "stats.py")
    result = cs("chunks", str(tmp_path / "stats.py"), "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert all(list(row) == JSON_KEYS for row in rows)
    mean = next(row for row in rows if row["symbol"] == "mean_of_column")
    assert (mean["path"], mean["language"], mean["kind"]) == ("stats.py", "python", "function")
    assert (mean["start_line"], mean["end_line"]) == (13, 30)
    assert mean["text"].startswith("def mean_of_column(csv_path, column):")
    expected = chunk_source((tmp_path / "stats.py").read_text(), "stats.py", "python")
    assert [row["hash"] for row in rows] == [content_hash(c) for c in expected]
    assert result.stderr.strip() == "6 chunks from 1 file"


def test_tree_json_follows_discovery_and_counts_skips(tmp_path: Path) -> None:
    repo = materialize(IGNORE_RULES, tmp_path / "repo")
    result = cs("chunks", str(repo), "--json")
    assert result.exit_code == 0, result.stderr
    paths = {row["path"] for row in json.loads(result.stdout)}
    assert paths <= set(EXPECTED_FILES)
    assert {"app/main.py", "app/util.py", "app/legacy.py", "docs/guide.md", "scripts/run"} <= paths
    summary = result.stderr.strip().splitlines()[-1]
    assert f"from {len(EXPECTED_FILES)} files; skipped {len(EXPECTED_SKIPS)} (" in summary
    assert "6 secret" in summary and "4 vendored" in summary
    assert summary.endswith("--verbose lists them")
    assert "skipped .env (secret)" not in result.stderr


def test_verbose_lists_every_skip(tmp_path: Path) -> None:
    repo = materialize(IGNORE_RULES, tmp_path / "repo")
    result = cs("chunks", str(repo), "--verbose", "--json")
    assert result.exit_code == 0, result.stderr
    for rel, reason in EXPECTED_SKIPS.items():
        assert f"skipped {rel} ({reason})" in result.stderr.splitlines()


def test_plain_output_shows_location_kind_symbol_and_text(tmp_path: Path) -> None:
    (tmp_path / "util.py").write_text('def greet(name):\n    return f"hello {name}"\n')
    result = cs("chunks", str(tmp_path / "util.py"))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("── util.py:1-2  function  greet  (python, ~")
    assert lines[1:3] == ["def greet(name):", '    return f"hello {name}"']


def test_an_explicit_file_is_chunked_even_if_ignored(tmp_path: Path) -> None:
    repo = materialize(IGNORE_RULES, tmp_path / "repo")
    result = cs("chunks", str(repo / "app" / "scratch.py"), "--json")
    assert result.exit_code == 0, result.stderr
    assert [row["path"] for row in json.loads(result.stdout)] == ["app/scratch.py"]


def test_bad_paths_are_one_line_errors(tmp_path: Path) -> None:
    result = cs("chunks", str(tmp_path / "missing.py"))
    assert result.exit_code == 2
    assert (
        result.stderr.splitlines()[0] == f"error: no such file or directory: {tmp_path}/missing.py"
    )

    (tmp_path / "blob.py").write_bytes(b"\x00\x01binary")
    result = cs("chunks", str(tmp_path / "blob.py"))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path}/blob.py is a binary file",
        "hint: cs chunks reads text files",
    ]

    (tmp_path / "huge.py").write_text("x = 1\n" * 50)
    result = cs("chunks", str(tmp_path / "huge.py"), "--max-file-bytes", "100")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path}/huge.py is too large (300 bytes")
    assert result.stdout == ""


def test_broken_utf8_file_is_chunked_with_replacement(tmp_path: Path) -> None:
    (tmp_path / "legacy.py").write_bytes(b"# caf\xe9\n\n\ndef price(item):\n    return 1\n")
    result = cs("chunks", str(tmp_path / "legacy.py"), "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["symbol"], r["start_line"], r["end_line"]) for r in rows] == [("price", 4, 5)]


def test_max_tokens_option_splits_long_definitions(tmp_path: Path) -> None:
    body = "\n".join(f"    total += step_{i}(value)" for i in range(150))
    (tmp_path / "long.py").write_text(
        f"def long(value):\n    total = 0\n{body}\n    return total\n"
    )
    default = json.loads(cs("chunks", str(tmp_path), "--json").stdout)
    small = cs("chunks", str(tmp_path), "--json", "--max-tokens", "100")
    assert small.exit_code == 0, small.stderr
    assert len(json.loads(small.stdout)) > len(default) >= 2

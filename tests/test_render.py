"""What cs prints (codesearch.render): the --json and --grep forms of hits, paths as the user can
open them, the coverage line, an answer's output and exit status, sizes, errors, the chunk summary
and the indexer's progress bar. Exact output, from real values; the commands that print them are
tested through the CLI in test_cli_*.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from codesearch.config import resolve_index_uri
from codesearch.errors import UsageError
from codesearch.hits import Hit
from codesearch.index.indexer import Indexer, IndexOptions
from codesearch.query.request import Answer
from codesearch.render import (
    coverage_line,
    display_path,
    format_bytes,
    hits_grep,
    hits_json,
    print_answer,
    print_chunk_summary,
    print_error,
)
from codesearch.source.chunk import chunk_source
from codesearch.source.discover import Skip
from codesearch.store.records import Coverage
from codesearch.store.store import Store

PARSE = Hit("pkg/a.py", 3, 9, "parse", "python", "function", 0.12345678, "def parse():\n    pass",
            {"semantic": 0.912345, "name": 0.15})
TITLE = Hit("README.md", 1, 4, "", "markdown", "section", 0.5, "# Title")

# --- hits -----------------------------------------------------------------------------------------


def test_hits_json_is_the_documented_array() -> None:
    assert hits_json([PARSE, TITLE]) == """[
  {
    "path": "pkg/a.py",
    "start_line": 3,
    "end_line": 9,
    "symbol": "parse",
    "language": "python",
    "kind": "function",
    "score": 0.123457,
    "text": "def parse():\\n    pass",
    "signals": {
      "semantic": 0.9123,
      "name": 0.15
    }
  },
  {
    "path": "README.md",
    "start_line": 1,
    "end_line": 4,
    "symbol": "",
    "language": "markdown",
    "kind": "section",
    "score": 0.5,
    "text": "# Title",
    "signals": {}
  }
]"""
    assert hits_json([]) == "[]"


def test_hits_grep_lines_name_the_symbol_or_else_the_kind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    monkeypatch.chdir(root)
    assert hits_grep([PARSE, TITLE], root) == "pkg/a.py:3:parse\nREADME.md:1:section"
    monkeypatch.chdir(root / "pkg")  # below the cwd: relative to it; elsewhere: absolute
    assert hits_grep([PARSE, TITLE], root) == f"a.py:3:parse\n{root}/README.md:1:section"
    assert hits_grep([], root) == ""


def test_display_path_is_relative_below_the_cwd_else_absolute(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    assert display_path(root, "pkg/a.py", cwd=root) == "pkg/a.py"
    assert display_path(root, "pkg/a.py", cwd=tmp_path) == "repo/pkg/a.py"
    assert display_path(root, "pkg/a.py", cwd=tmp_path / "other") == f"{root}/pkg/a.py"


# --- coverage and answers -------------------------------------------------------------------------


def test_coverage_line_says_how_far_the_vectors_are_and_why() -> None:
    assert coverage_line(Coverage(5, 5)) is None
    assert coverage_line(Coverage(5, 5).to_dict()) is None  # as a query server sends it
    assert coverage_line(Coverage(1234, 5678, writing=True)) == (
        "vectors for 1,234 of 5,678 chunks (21%): cs index is still embedding")
    stopped = ("vectors for 9,999 of 10,000 chunks (99%): embedding stopped; `cs index` resumes "
               "it (the rest ranks by words)")
    assert coverage_line(Coverage(9999, 10000, writing=False)) == stopped  # never rounds up
    assert coverage_line(Coverage(9999, 10000, writing=False).to_dict()) == stopped
    assert coverage_line(Coverage(0, 10)) == (
        "vectors for 0 of 10 chunks (0%): embedding stopped; `cs index` resumes it (the rest "
        "ranks by words)")


def test_print_answer_forms_and_exit_status(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    partial = Coverage(1, 2, writing=True).to_dict()
    assert print_answer(Answer([PARSE], tmp_path, partial), as_json=True, grep=False) is True
    out, err = capsys.readouterr()
    assert out == hits_json([PARSE]) + "\n"  # stdout stays one JSON array
    assert err == "vectors for 1 of 2 chunks (50%): cs index is still embedding\n"

    assert print_answer(Answer([], tmp_path), as_json=True, grep=False) is False
    assert capsys.readouterr() == ("[]\n", "")
    assert print_answer(Answer([], tmp_path), as_json=False, grep=True) is False
    assert capsys.readouterr() == ("", "")
    assert print_answer(Answer([], tmp_path, Coverage(2, 2).to_dict()), as_json=False,
                        grep=False) is False
    assert capsys.readouterr() == ("", "No results.\n")


# --- sizes, errors, chunks ------------------------------------------------------------------------


@pytest.mark.parametrize("n, text", [(None, "-"), (0, "0 B"), (999, "999 B"), (1000, "1 KB"),
                                     (1499, "1 KB"), (512_000, "512 KB"), (2_500_000, "2.5 MB"),
                                     (3_210_000_000, "3.2 GB"), (5 * 10**12, "5000.0 GB")])
def test_format_bytes(n: int | None, text: str) -> None:
    assert format_bytes(n) == text


def test_print_error_is_one_line_and_an_optional_hint(capsys: pytest.CaptureFixture[str]) -> None:
    print_error(UsageError("unknown mode 'fuzzy'", hint="use one of: semantic, lexical"))
    assert capsys.readouterr() == ("", "error: unknown mode 'fuzzy'\n"
                                       "hint: use one of: semantic, lexical\n")
    print_error(UsageError("empty query"))
    assert capsys.readouterr() == ("", "error: empty query\n")


def test_chunk_summary_counts_skips_by_reason(capsys: pytest.CaptureFixture[str]) -> None:
    chunks = chunk_source("def a():\n    return 1\n\n\ndef b():\n    return 2\n", "m.py",
                          "python")
    assert len(chunks) == 2
    skipped = [Skip("x.bin", "binary"), Skip(".env", "secret"), Skip("y.bin", "binary")]
    print_chunk_summary(1, chunks, skipped)
    assert capsys.readouterr() == (
        "", "2 chunks from 1 file; skipped 3 (2 binary, 1 secret); --verbose lists them\n")
    print_chunk_summary(3, chunks, skipped[:1], verbose=True)
    assert capsys.readouterr() == (
        "", "skipped x.bin (binary)\n2 chunks from 3 files; skipped 1 (1 binary)\n")
    print_chunk_summary(0, [], [])
    assert capsys.readouterr() == ("", "0 chunks from 0 files\n")


# --- progress -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("cpu_dtype_memo")
def test_the_progress_bar_names_the_phases_and_counts_chunks(
        repo: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codesearch.index.indexer import IndexProgress
    from codesearch.render import IndexProgressBar

    events: list[IndexProgress] = []
    with IndexProgressBar(enabled=True) as bar:
        def both(event: IndexProgress) -> None:
            events.append(event)
            bar(event)

        Indexer(repo, Store.open(resolve_index_uri(repo)), IndexOptions(model=str(tiny_model_dir)),
                progress=both).run()
    phases = list(dict.fromkeys(e.phase for e in events))
    assert phases == ["scan", "chunk", "optimize", "embed"]
    embeds = [e for e in events if e.phase == "embed"]
    total = embeds[0].chunks_to_embed
    assert total > 0 and all(e.chunks_to_embed == total for e in embeds)
    counts = [e.chunks_embedded for e in embeds]
    assert counts == sorted(counts) and counts[-1] == total


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def quiet_console() -> object:
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, width=120)


def test_the_progress_bar_eta_is_the_average_rate_since_progress_began() -> None:
    from codesearch.index.indexer import IndexProgress
    from codesearch.render import IndexProgressBar

    clock = FakeClock()
    with IndexProgressBar(enabled=True, console=quiet_console(), clock=clock) as bar:
        # chunking has an ETA too (issue 32: none for 2:40 over 954 files)
        bar(IndexProgress("chunk", files_done=0, files_total=100))
        clock.now += 10
        bar(IndexProgress("chunk", files_done=10, files_total=100))
        assert bar.shown["eta"] == "ETA 1:30" and bar.shown["rate"] == "1.0 files/s"
        bar(IndexProgress("embed", chunks_to_embed=1000))
        assert bar.shown["rate"] == "loading the model..."
        clock.now += 60  # loading the model: not part of the rate
        bar(IndexProgress("embed", chunks_embedded=0, chunks_to_embed=1000))
        clock.now += 10
        bar(IndexProgress("embed", chunks_embedded=100, chunks_to_embed=1000))  # 10/s
        clock.now += 2
        bar(IndexProgress("embed", chunks_embedded=200, chunks_to_embed=1000))  # a fast burst
        # the average since the first vector (200 in 12 s), not the last batch's 50/s
        assert bar.shown["rate"] == "16.7 chunks/s" and bar.shown["eta"] == "ETA 0:48"


def test_the_embedding_elapsed_time_survives_an_optimize_step() -> None:
    from codesearch.index.indexer import IndexProgress
    from codesearch.render import IndexProgressBar

    clock = FakeClock()
    with IndexProgressBar(enabled=True, console=quiet_console(), clock=clock) as bar:
        bar(IndexProgress("optimize"))  # the end of phase 1
        clock.now += 5
        bar(IndexProgress("embed", chunks_to_embed=1000))
        clock.now += 100
        bar(IndexProgress("embed", chunks_embedded=500, chunks_to_embed=1000))
        assert bar.shown["elapsed"] == "1:40"
        bar(IndexProgress("optimize"))  # a compaction amid phase 2
        clock.now += 30
        bar(IndexProgress("embed", chunks_embedded=600, chunks_to_embed=1000))
        assert bar.shown["elapsed"] == "2:10"  # counted from the phase's start, not reset
        assert bar.shown["rate"] == "4.6 chunks/s"  # 600 in 130 s: the pause is in the average


def test_durations_read_as_clock_times() -> None:
    from codesearch.render import format_duration

    assert format_duration(7358.8) == "2:02:38"
    assert format_duration(160.2) == "2:40"
    assert format_duration(42.25) == "42.2s"
    assert format_duration(42.25, short=False) == "0:42"


def test_the_index_summary_prints_its_duration_as_a_clock_time(
        capsys: pytest.CaptureFixture[str]) -> None:
    from codesearch.index.indexer import IndexStats
    from codesearch.render import print_index_stats

    stats = IndexStats(root="/r", index="/i", model="m", dim=8, seconds=7358.8)
    print_index_stats(stats, as_json=False, verbose=False)
    assert "(dim 8). 2:02:38" in capsys.readouterr().out


def test_a_notice_during_a_live_bar_gets_its_own_line() -> None:
    import io
    import re

    from rich.console import Console

    from codesearch.index.indexer import IndexProgress
    from codesearch.render import IndexProgressBar

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120)
    message = "Measuring fp32 vs bf16 speed on this CPU (once per model)..."
    with IndexProgressBar(enabled=True, console=console) as bar:
        bar(IndexProgress("embed", chunks_to_embed=1000))
        bar._progress.refresh()  # the bar is drawn
        bar.notice(message)
        bar(IndexProgress("embed", chunks_embedded=10, chunks_to_embed=1000))
    # what the terminal shows: control sequences dropped, carriage returns start a line afresh
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())
    lines = [line.rsplit("\r", 1)[-1].strip() for line in text.split("\n")]
    assert message in lines

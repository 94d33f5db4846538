"""Turn hits, stats and errors into terminal output: rich tables, JSON, grep-style lines.

The only module besides cli.py that talks to the terminal. Colour follows NO_COLOR, FORCE_COLOR and
whether the stream is a terminal (rich does this).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from codesearch.errors import CodeSearchError

if TYPE_CHECKING:
    from codesearch.source.chunk import Chunk
    from codesearch.source.discover import Skip


def print_error(err: CodeSearchError) -> None:
    """One line to stderr: 'error: <message>', then 'hint: <hint>' when there is one."""
    print(f"error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"hint: {err.hint}", file=sys.stderr)


# --- issue 4: hits, index summaries, progress, status -------------------------------------------

import json as _json  # noqa: E402 - kept inside this section of a shared file
from collections.abc import Sequence as _Sequence  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
from typing import TYPE_CHECKING as _TYPE_CHECKING  # noqa: E402
from typing import Any as _Any  # noqa: E402

if _TYPE_CHECKING:
    from codesearch.index.indexer import IndexProgress, IndexStats
    from codesearch.query.searcher import Hit

EXCERPT_LINES = 12


def display_path(root: _Path, rel: str, cwd: _Path | None = None) -> str:
    """A hit's path as the user can open it: relative to the working directory when the file is
    below it, else absolute."""
    full = root / rel
    base = cwd or _Path.cwd()
    try:
        return full.relative_to(base.resolve()).as_posix()
    except ValueError:
        return full.as_posix()


def hits_json(hits: _Sequence[Hit]) -> str:
    """The ``--json`` contract: an array of {path, start_line, end_line, symbol, language, kind,
    score, text}, paths relative to the indexed root."""
    return _json.dumps([h.to_dict() for h in hits], indent=2)


def hits_grep(hits: _Sequence[Hit], root: _Path) -> str:
    """``path:line:symbol`` lines for editors (quickfix lists)."""
    return "\n".join(
        f"{display_path(root, h.path)}:{h.start_line}:{h.symbol or h.kind}" for h in hits
    )


def print_hits(hits: _Sequence[Hit], root: _Path) -> None:
    """Rich output: ``path:line``, symbol and score, then a syntax-highlighted excerpt."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for i, h in enumerate(hits):
        if i:
            console.print()
        head = Text()
        head.append(f"{display_path(root, h.path)}:{h.start_line}", style="bold magenta")
        if h.symbol:
            head.append(f"  {h.symbol}", style="bold cyan")
        head.append(f"  {h.kind}", style="dim")
        head.append(f"  {h.score:.3f}", style="green")
        console.print(head)
        lines = h.text.split("\n")
        excerpt = "\n".join(lines[:EXCERPT_LINES])
        console.print(Syntax(excerpt, _lexer(h.language), line_numbers=True,
                             start_line=h.start_line, word_wrap=False, theme="ansi_dark",
                             background_color="default"))
        if len(lines) > EXCERPT_LINES:
            console.print(Text(f"  ... {len(lines) - EXCERPT_LINES} more lines", style="dim"))


_LEXERS = {"tsx": "tsx", "typescript": "typescript", "csharp": "csharp", "cpp": "cpp",
           "bash": "bash", "text": "text", "markdown": "markdown"}


def _lexer(language: str) -> str:
    return _LEXERS.get(language, language or "text")


def print_index_stats(stats: IndexStats, *, as_json: bool, verbose: bool) -> None:
    """The end-of-run summary: one JSON object, or a few lines (plus skips when verbose)."""
    if as_json:
        print(_json.dumps(stats.to_dict(verbose=verbose), indent=2))
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    if verbose:
        for path, reason in stats.skips:
            console.print(f"[yellow]skipped[/yellow] {path}: {reason}")
    rebuilt = " (rebuilt)" if stats.rebuilt else ""
    console.print(
        f"Indexed {stats.root}{rebuilt}: {stats.files_scanned} files scanned, "
        f"{stats.files_changed} changed ({stats.files_new} new), {stats.files_removed} removed, "
        f"{stats.files_skipped} skipped"
        + (f", [yellow]{stats.files_failed} failed[/yellow]" if stats.files_failed else "")
    )
    console.print(
        f"Chunks: {stats.chunks_embedded} embedded, {stats.chunks_reused} reused, "
        f"{stats.chunks_total} in the index. Model {stats.model} (dim {stats.dim}). "
        f"{stats.seconds:.1f}s"
    )
    if stats.chunks_with_vectors < stats.chunks_total:
        console.print(f"[yellow]Vectors for {stats.chunks_with_vectors:,} of "
                      f"{stats.chunks_total:,} chunks[/yellow]: searchable by words now, by "
                      "meaning as the vectors fill in.")
    if stats.files_failed and not verbose:
        console.print("[dim]Run with --verbose to see which files were skipped and why.[/dim]")


def coverage_line(coverage: _Any) -> str | None:
    """The line a result list carries while vectors are missing (a :class:`store.Coverage`);
    None at 100%."""
    # A Coverage in-process, its to_dict() from a query server (the warm client loads no store).
    data = coverage if isinstance(coverage, dict) else coverage.to_dict()
    if data["complete"]:
        return None
    head = (f"vectors for {data['embedded']:,} of {data['total']:,} chunks "
            f"({data['percent']}%)")
    if data["writing"]:
        return f"{head}: cs index is still embedding"
    return f"{head}: embedding stopped; `cs index` resumes it (the rest ranks by words)"


class IndexProgressBar:
    """A progress callback for the indexer, on stderr: one bar per phase, named (Scanning,
    Chunking, Embedding, Optimizing). Chunking counts files; embedding counts chunks embedded
    (the cost of the run), with the rate measured since the first vector and the ETA it implies.
    Silent when stderr is not a terminal (scripts, tests, --json)."""

    _NAMES = {"scan": "Scanning", "chunk": "Chunking", "embed": "Embedding",
              "optimize": "Optimizing"}

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: _Any = None
        self._task: _Any = None
        self._phase = ""
        self._embed_start: tuple[float, int] | None = None  # (time, count) at the first vector

    def __enter__(self) -> IndexProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description:<10}"), BarColumn(),
                TextColumn("{task.fields[count]}"), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"), console=Console(stderr=True), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("Scanning", total=None, count="", rate="",
                                                 eta="")
        return self

    def __call__(self, event: IndexProgress) -> None:
        if self._progress is None:
            return
        import time

        if event.phase != self._phase:
            if not (self._phase == "optimize" and event.phase == "embed"):
                self._embed_start = None  # a compaction amid phase 2 keeps its measured rate
            self._phase = event.phase
            self._progress.reset(self._task)
        fields = {"count": "", "rate": "", "eta": ""}
        if event.phase == "chunk":
            total, done = event.files_total or None, event.files_done
            fields["count"] = f"{done:,}/{event.files_total:,} files"
        elif event.phase == "embed":
            total, done = event.chunks_to_embed or None, event.chunks_embedded
            fields["count"] = f"{done:,}/{event.chunks_to_embed:,} chunks"
            now = time.monotonic()
            if self._embed_start is None:
                self._embed_start = (now, done)
                fields["rate"] = "loading the model..." if not done else ""
            start_time, start_done = self._embed_start
            if done > start_done and now > start_time:
                rate = (done - start_done) / (now - start_time)
                left = max(0, (event.chunks_to_embed or 0) - done) / rate
                fields["rate"] = f"{rate:.1f} chunks/s"
                fields["eta"] = f"ETA {_duration(left)}"
        else:
            total, done = None, 0
        self._progress.update(self._task, description=self._NAMES.get(event.phase, event.phase),
                              total=total, completed=done, **fields)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}:{seconds % 60:02d}"


def print_status(status: dict[str, _Any], *, as_json: bool) -> None:
    """``cs status``: model, dim, files, chunks, last run, files changed since."""
    if as_json:
        print(_json.dumps(status, indent=2))
        return
    import time as _time

    last = status.get("last_run_at")
    when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(last)) if last else "never"
    changed = status["changed_since"]
    rows = [
        ("root", status["root"]),
        ("index", status["index"]),
        ("model", f"{status['model']} ({status['model_id']}"
                  + (f"@{status['revision']}" if status.get("revision") else "") + ")"),
        ("dim", status["dim"]),
        ("files", status["files"]),
        ("chunks", status["chunks"]),
        ("last run", when),
        ("changed since", f"{changed['total']} files ({changed['new']} new, "
                          f"{changed['modified']} modified, {changed['removed']} removed)"),
    ]
    cov = status.get("coverage")
    if cov:
        rows.insert(6, ("vectors", f"{cov['embedded']:,} of {cov['total']:,} chunks "
                                   f"({cov['percent']}%)"
                        + ("" if cov["complete"] else
                           " - still embedding" if cov.get("writing") else
                           " - embedding stopped; `cs index` resumes it")))
    job = status.get("background")
    if job:
        state = "running" if job["running"] else "not running"
        rows.append(("background", f"pid {job['pid']} ({state}), log {job['log']}"))
    if status.get("indexes"):
        rows.append(("indexes", ", ".join(status["indexes"])))
    for key, value in rows:
        print(f"{key + ':':<15}{value}")


# --- chunks (issue 2) ----------------------------------------------------------------------------


def chunk_to_dict(chunk: Chunk) -> dict[str, object]:
    """The stable JSON shape of a chunk (`cs chunks --json`)."""
    from codesearch.documents import content_hash

    return {
        "path": chunk.path,
        "language": chunk.language,
        "kind": chunk.kind,
        "symbol": chunk.symbol,
        "start_line": chunk.start_line,
        "end_line": chunk.end_line,
        "text": chunk.text,
        "hash": content_hash(chunk),
    }


def print_chunks(chunks: list[Chunk], *, as_json: bool = False) -> None:
    """Chunks to stdout: a JSON array, or for each one a `path:start-end kind symbol` line, its
    header (when split or a type) and its text."""
    import json

    if as_json:
        print(json.dumps([chunk_to_dict(c) for c in chunks], indent=2, ensure_ascii=False))
        return
    from codesearch.documents import embedding_text
    from codesearch.source.chunk import estimate_tokens

    for chunk in chunks:
        title = f"{chunk.path}:{chunk.start_line}-{chunk.end_line}  {chunk.kind}"
        if chunk.symbol:
            title += f"  {chunk.symbol}"
        tokens = estimate_tokens(embedding_text(chunk))
        print(f"── {title}  ({chunk.language}, ~{tokens} tokens)")
        if chunk.header:
            print(f"   {chunk.header}")
        print(chunk.text)
        print()


def print_chunk_summary(
    file_count: int, chunks: list[Chunk], skipped: list[Skip], *, verbose: bool = False
) -> None:
    """To stderr: one line counting chunks, files and skips by reason; with ``verbose``, every
    skipped path and its reason first."""
    from collections import Counter

    if verbose:
        for skip in skipped:
            print(f"skipped {skip.rel} ({skip.reason})", file=sys.stderr)
    line = f"{len(chunks)} chunks from {file_count} file{'s' if file_count != 1 else ''}"
    if skipped:
        counts = Counter(s.reason for s in skipped)
        detail = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
        line += f"; skipped {len(skipped)} ({detail})"
        if not verbose:
            line += "; --verbose lists them"
    print(line, file=sys.stderr)

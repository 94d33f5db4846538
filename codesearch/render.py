"""Turn hits, stats and errors into terminal output: rich tables, JSON, grep-style lines.

The only module besides cli.py that talks to the terminal. Colour follows NO_COLOR, FORCE_COLOR and
whether the stream is a terminal (rich does this).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codesearch.embed.presets import PREFIX_SCHEMES
from codesearch.errors import CodeSearchError
from codesearch.hits import DupGroup, FileHit, Hit, group_files

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from codesearch.index.indexer import IndexProgress, IndexStats
    from codesearch.index.watch import BatchResult, WatchStatus
    from codesearch.query.client import ServerInfo
    from codesearch.query.request import Answer
    from codesearch.query.server import ServeResult
    from codesearch.source.chunk import Chunk
    from codesearch.source.discover import Skip


def print_error(err: CodeSearchError) -> None:
    """One line to stderr: 'error: <message>', then 'hint: <hint>' when there is one."""
    print(f"error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"hint: {err.hint}", file=sys.stderr)


# --- hits, index summaries, progress, status ---------------------------------------------------

EXCERPT_LINES = 12


def display_path(root: Path, rel: str, cwd: Path | None = None) -> str:
    """A hit's path as the user can open it: relative to the working directory when the file is
    below it, else absolute."""
    full = root / rel
    base = cwd or Path.cwd()
    try:
        return full.relative_to(base.resolve()).as_posix()
    except ValueError:
        return full.as_posix()


def hits_json(hits: Sequence[Hit]) -> str:
    """The ``--json`` contract: an array of {path, start_line, end_line, symbol, language, kind,
    score, text, signals}, paths relative to the indexed root."""
    return json.dumps([h.to_dict() for h in hits], indent=2)


def hits_grep(hits: Sequence[Hit], root: Path) -> str:
    """``path:line:symbol`` lines for editors (quickfix lists)."""
    return "\n".join(
        f"{display_path(root, h.path)}:{h.start_line}:{h.symbol or h.kind}" for h in hits
    )


def print_hits(hits: Sequence[Hit], root: Path) -> None:
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
        print(json.dumps(stats.to_dict(verbose=verbose), indent=2))
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
        f"{format_duration(stats.seconds)}"
    )
    if stats.chunks_with_vectors < stats.chunks_total:
        console.print(f"[yellow]Vectors for {stats.chunks_with_vectors:,} of "
                      f"{stats.chunks_total:,} chunks[/yellow]: searchable by words now, by "
                      "meaning as the vectors fill in.")
    if stats.stopped:
        console.print("[yellow]Stopped (SIGTERM)[/yellow] after the batch in progress: what is "
                      "above is kept; `cs index` resumes.")
    if stats.files_failed and not verbose:
        console.print("[dim]Run with --verbose to see which files were skipped and why.[/dim]")


def coverage_line(coverage: Any) -> str | None:
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
    Chunking, Embedding, Optimizing). Chunking counts files; embedding counts the distinct chunk
    texts this run embeds (the cost of the run: identical chunks share one vector, and vectors
    the cache holds are reused, so the index's chunk count can be higher). Rate and ETA are the
    average since the phase's first progress (model loading left out); the elapsed time counts
    from the phase's start, a compaction amid embedding included. Silent when stderr is not a
    terminal (scripts, tests, --json).

    :meth:`notice` prints a line above the live bar (a notice written to stderr past rich would
    land glued onto the bar's line); with no live bar, it calls ``notice``."""

    _NAMES = {"scan": "Scanning", "chunk": "Chunking", "embed": "Embedding",
              "optimize": "Optimizing"}

    def __init__(self, enabled: bool | None = None, *,
                 notice: Callable[[str], None] | None = None, console: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._notice = notice
        self._console = console
        self._clock = clock
        self._progress: Any = None
        self._task: Any = None
        self._phase = ""
        self._since: dict[str, float] = {}  # phase -> when it began (the elapsed time)
        self._first: dict[str, tuple[float, int]] = {}  # phase -> (time, count) before progress
        self.shown: dict[str, str] = {}  # what the bar shows now: count, rate, eta, elapsed

    def __enter__(self) -> IndexProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
            from rich.text import Text

            bar = self

            class Elapsed(ProgressColumn):
                def render(self, task: Any) -> Text:
                    return Text(bar.elapsed(), style="progress.elapsed")

            self._progress = Progress(
                TextColumn("{task.description:<10}"), BarColumn(),
                TextColumn("{task.fields[count]}"), TextColumn("{task.fields[rate]}"),
                Elapsed(), TextColumn("{task.fields[eta]}"),
                console=self._console or Console(stderr=True), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("Scanning", total=None, count="", rate="",
                                                 eta="")
        return self

    def elapsed(self) -> str:
        """How long the current phase has run, as m:ss (h:mm:ss past an hour)."""
        since = self._since.get(self._phase)
        return "" if since is None else format_duration(self._clock() - since, short=False)

    def notice(self, message: str) -> None:
        """A one-line notice: above the live bar, else through the ``notice`` given."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False,
                                         soft_wrap=True)
        elif self._notice is not None:
            self._notice(message)
        else:
            print(message, file=sys.stderr)

    def __call__(self, event: IndexProgress) -> None:
        if self._progress is None:
            return
        now = self._clock()
        if event.phase != self._phase:
            amid_embedding = self._phase == "optimize" and event.phase == "embed"
            if not amid_embedding or "embed" not in self._since:
                self._since[event.phase] = now  # a compaction amid phase 2 keeps its clock
                self._first.pop(event.phase, None)
            self._phase = event.phase
            self._progress.reset(self._task)
        fields = {"count": "", "rate": "", "eta": ""}
        total: int | None = None
        done = 0
        unit = ""
        if event.phase == "chunk":
            total, done, unit = event.files_total or None, event.files_done, "files"
            fields["count"] = f"{done:,}/{event.files_total:,} files"
        elif event.phase == "embed":
            total, done, unit = event.chunks_to_embed or None, event.chunks_embedded, "chunks"
            fields["count"] = f"{done:,}/{event.chunks_to_embed:,} distinct chunks"
        if unit:
            first = self._first.get(event.phase)
            if first is None or done <= first[1]:  # no progress yet (loading the model)
                self._first[event.phase] = first = (now, done)
                if event.phase == "embed" and not done:
                    fields["rate"] = "loading the model..."
            start_time, start_done = first
            if done > start_done and now > start_time:
                rate = (done - start_done) / (now - start_time)
                fields["rate"] = f"{rate:.1f} {unit}/s"
                left = max(0, (total or 0) - done) / rate
                fields["eta"] = f"ETA {format_duration(left, short=False)}"
        self.shown = {**fields, "elapsed": self.elapsed()}
        self._progress.update(self._task, description=self._NAMES.get(event.phase, event.phase),
                              total=total, completed=done, **fields)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def format_duration(seconds: float, *, short: bool = True) -> str:
    """A duration as a person reads it: ``42.3s`` under a minute (``short``; else ``0:42``),
    ``2:05`` under an hour, ``2:02:39`` past one."""
    if short and seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, minutes, secs = whole // 3600, whole % 3600 // 60, whole % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def print_status(status: dict[str, Any], *, as_json: bool) -> None:
    """``cs status``: model, dim, files, chunks, last run, files changed since, size on disk
    and versions."""
    if as_json:
        print(json.dumps(status, indent=2))
        return
    last = status.get("last_run_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)) if last else "never"
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
    if "size_bytes" in status:
        versions = status.get("versions") or {}
        rows.append(("on disk", f"{format_bytes(status['size_bytes'])}, "
                                f"{sum(versions.values())} versions ("
                                + ", ".join(f"{k} {v}" for k, v in versions.items()) + ")"))
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


def print_answer(answer: Answer, *, as_json: bool, grep: bool, files: int | None = None) -> bool:
    """A query's answer as ``cs find`` / ``cs similar`` print it: the coverage line (stderr, so
    --json stays an array) while the index lacks vectors, then the hits as JSON, grep lines or
    rich excerpts ("No results." on stderr when there are none); with ``files`` (``--files``),
    the first ``files`` files of the hits instead (:func:`print_files`). Returns whether there
    were hits (the exit code)."""
    line = coverage_line(answer.coverage) if answer.coverage is not None else None
    if line:
        print(line, file=sys.stderr)
    hits = answer.hits
    if files is not None:
        return print_files(group_files(hits, files), answer.root, as_json=as_json, grep=grep)
    if as_json:
        print(hits_json(hits))
    elif grep:
        if hits:
            print(hits_grep(hits, answer.root))
    elif hits:
        print_hits(hits, answer.root)
    else:
        print("No results.", file=sys.stderr)
    return bool(hits)


def print_dups(answer: Answer, *, as_json: bool, grep: bool) -> bool:
    """``cs dups``: the coverage line (stderr) while the index lacks vectors, then the groups as
    a JSON array, grep lines (``path:line:symbol [group N, similarity]``) or a rich list (each
    group's locations, then an excerpt of its first). Returns whether there were groups."""
    line = coverage_line(answer.coverage) if answer.coverage is not None else None
    if line:
        print(line + " (exact and renamed copies are found without vectors)", file=sys.stderr)
    groups = answer.groups or []
    if as_json:
        print(json.dumps([g.to_dict() for g in groups], indent=2))
    elif grep:
        for n, g in enumerate(groups, 1):
            for h in g.locations:
                print(f"{display_path(answer.root, h.path)}:{h.start_line}:{h.symbol or h.kind}"
                      f" [group {n}, {g.similarity:.3f}]")
    elif groups:
        _print_groups(groups, answer.root)
    else:
        print("No duplicates.", file=sys.stderr)
    return bool(groups)


def _print_groups(groups: Sequence[DupGroup], root: Path) -> None:
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for n, g in enumerate(groups, 1):
        if n > 1:
            console.print()
        head = Text()
        head.append(f"#{n}  {g.kind}", style="bold")
        head.append(f"  similarity {g.similarity:.3f}", style="green")
        head.append(f"  {len(g.locations)} places, {g.lines} lines to save", style="dim")
        console.print(head)
        for h in g.locations:
            line = Text("  ")
            line.append(f"{display_path(root, h.path)}:{h.start_line}-{h.end_line}",
                        style="bold magenta")
            if h.symbol:
                line.append(f"  {h.symbol}", style="bold cyan")
            line.append(f"  {h.end_line - h.start_line + 1} lines", style="dim")
            console.print(line)
        first = g.locations[0]
        excerpt = "\n".join(first.text.split("\n")[:EXCERPT_LINES // 2])
        console.print(Syntax(excerpt, _lexer(first.language), line_numbers=True,
                             start_line=first.start_line, word_wrap=False, theme="ansi_dark",
                             background_color="default"))


def print_files(files: Sequence[FileHit], root: Path, *, as_json: bool, grep: bool) -> bool:
    """``cs find --files``: the ranked files as a JSON array of {path, language, score, hits}
    (hits without text), ``path:line:symbol`` of each file's best hit, or one line per file
    with its score and the names of its hits. Returns whether there were any."""
    if as_json:
        print(json.dumps([f.to_dict() for f in files], indent=2))
    elif grep:
        if files:
            print("\n".join(f"{display_path(root, f.path)}:{f.hits[0].start_line}:"
                            f"{f.hits[0].symbol or f.hits[0].kind}" for f in files))
    elif files:
        from rich.console import Console
        from rich.text import Text

        console = Console(highlight=False, soft_wrap=True)
        for f in files:
            line = Text()
            line.append(display_path(root, f.path), style="bold magenta")
            line.append(f"  {f.score:.3f}", style="green")
            names = [f"{h.symbol or h.kind}:{h.start_line}" for h in f.hits]
            line.append("  " + ", ".join(names), style="cyan")
            console.print(line)
    else:
        print("No results.", file=sys.stderr)
    return bool(files)


def print_vectors(vectors: np.ndarray, *, as_json: bool) -> None:
    """``cs embed``: one vector per line (6 decimals), or a JSON array of vectors."""
    if as_json:
        print(json.dumps([[float(x) for x in row] for row in vectors]))
        return
    for row in vectors:
        print(" ".join(f"{x:.6f}" for x in row))


def format_bytes(n: int | None) -> str:
    """``1.2 GB``, ``512 KB``; ``-`` for unknown."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def print_models(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    """``cs model list``: a table of presets (or JSON), and the licence note."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'NAME':<16} {'PARAMS':>6} {'DIMS':<28} {'LICENCE':<19} {'SIZE':>8}  "
          f"{'CHUNKS/S':>8}  STATE")
    for r in rows:
        dims = ",".join(str(d) for d in r["dims"])
        size = (format_bytes(r["size_bytes"]) if r["cached"]
                else "~" + format_bytes(r["size_bytes"]))
        name = r["name"] + (" *" if r["default"] else "")
        licence = r["licence"] + ("" if r.get("commercial_use", True) else " (NC)")
        measured = r.get("measured")
        rate = f"{r['chunks_per_s']:.1f}" if r.get("chunks_per_s") is not None else "-"
        state = r["source"] + (f", {measured['precision']} on {measured['device']}"
                               if measured else "")
        print(f"{name:<16} {r['params']:>6} {dims:<28} {licence:<19} {size:>8}  {rate:>8}  "
              f"{state}")
    print("* default. (NC): no commercial use; for work pick --model qwen3-0.6b (Apache-2.0) or "
          "set CS_MODEL. CHUNKS/S: measured by the last `cs index` here.")


def print_model_info(info: dict[str, Any], *, as_json: bool) -> None:
    """``cs model info``: one ``key: value`` line each (or JSON), then the task prefixes."""
    if as_json:
        print(json.dumps(info, indent=2))
        return
    width = max(len(key) for key in info) + 2  # the longest key still leaves a space
    for key, value in info.items():
        if key == "size_bytes":
            value = format_bytes(value if isinstance(value, int) else None)
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        print(f"{key + ':':<{width}}{value}")
    scheme = PREFIX_SCHEMES.get(str(info["prefix_scheme"]))
    if scheme:
        print("prefixes:")
        for task, (query, document) in scheme.items():
            print(f"  {task:<16} query {query!r}  document {document!r}")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def print_servers(servers: Sequence[ServerInfo], *, current_build: str) -> None:
    """``cs server status``: each server's pid, kind, age, idle time, requests, build, roots,
    device and models."""
    now = time.time()
    for s in servers:
        info = s.info
        if info is None:
            print(f"{s.socket}: not answering (busy, or starting)")
            continue
        current = "" if info.get("build") == current_build else " (another build: unused)"
        print(f"pid {info.get('pid')}  {info.get('kind', '?')}  "
              f"up {_age(now - float(info.get('started_at') or now))}  "
              f"idle {_age(float(info.get('idle_s') or 0))}  "
              f"{info.get('requests', 0)} requests  cs {info.get('build')}{current}")
        if info.get("index_set"):
            print(f"  indexes in {info['index_set']}")
        for root in info.get("roots") or []:
            print(f"  root {root}")
        models = info.get("models") or []
        print(f"  device {info.get('device') or 'auto'}; models: "
              + (", ".join(models) or "none loaded yet"))
        print(f"  socket {s.socket}")


class WatchDisplay:
    """What `cs watch` shows: a live status line on a terminal (stderr) with one log line per
    batch above it; plain log lines on stderr otherwise; with --json, JSON lines on stdout
    (events "ready", "serve", "batch", "stopped")."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.live_enabled = sys.stderr.isatty() and not as_json
        self._console: Any = None
        self._live: Any = None
        self._ready = False
        self._last_batch: Any = None
        self._status: Any = None

    def __enter__(self) -> WatchDisplay:
        from rich.console import Console

        self._console = Console(stderr=True, highlight=False)
        if self.live_enabled:
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text("starting..."), console=self._console,
                              refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _log(self, line: str) -> None:
        if self.as_json:
            return
        if self._console is not None:
            self._console.print(line, markup=False)

    def _emit(self, event: str, **data: Any) -> None:
        if self.as_json:
            print(json.dumps({"event": event, **data}), flush=True)

    def _show(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(text))

    def progress(self, event: IndexProgress) -> None:
        if self._ready:
            self._show(f"indexing {event.files_done}/{event.files_total} files · "
                       f"{event.chunks_embedded} chunks embedded")
        elif event.phase == "chunk" and event.files_total:
            self._show(f"catching up: {event.files_done}/{event.files_total} files · "
                       f"{event.chunks_embedded} chunks embedded, {event.chunks_reused} reused")
        elif event.phase == "optimize":
            self._show("catching up: optimizing the index...")

    def status(self, s: WatchStatus) -> None:
        self._status = s
        if s.phase == "watching" and not self._ready and s.catch_up is not None:
            self._ready = True
            c = s.catch_up
            self._emit("ready", root=s.root, index=s.index, files=s.files, chunks=s.chunks,
                       catch_up=c.to_dict())
            self._log(f"Watching {s.root}: {s.files} files, {s.chunks} chunks "
                      f"(caught up in {c.seconds:.1f}s: {c.files_changed} changed, "
                      f"{c.files_removed} removed, {c.chunks_embedded} chunks embedded). "
                      "Ctrl-C to stop.")
        if s.last_batch is not None and s.last_batch is not self._last_batch:
            self._last_batch = b = s.last_batch
            self._emit("batch", files=s.files, chunks=s.chunks, **b.to_dict())
            self._log(self._describe(b))
        self._show(self._line(s))

    def served(self, result: ServeResult) -> None:
        self._emit("serve", serving=result.serving, socket=result.socket, reason=result.reason)
        if result.serving:
            self._log(f"Serving find and similar at {result.socket}.")
        else:
            self._log(f"Not serving queries: {result.reason}")

    def stopped(self, s: WatchStatus) -> None:
        self._emit("stopped", files=s.files, chunks=s.chunks, batches=s.batches,
                   commits=s.commits, optimizations=s.optimizations)
        self._log(f"Stopped: {s.batches} updates, {s.commits} commits this session; "
                  f"{s.files} files, {s.chunks} chunks in the index.")

    @staticmethod
    def _describe(b: BatchResult) -> str:
        parts = []
        if b.files_changed:
            parts.append(f"{b.files_changed} updated" + (f" ({b.files_new} new)"
                                                         if b.files_new else ""))
        if b.files_removed:
            parts.append(f"{b.files_removed} removed")
        if b.files_touched:
            parts.append(f"{b.files_touched} touched")
        if b.files_failed:
            parts.append(f"{b.files_failed} skipped (unreadable)")
        line = (f"{time.strftime('%H:%M:%S', time.localtime(b.finished_at))}  "
                f"{', '.join(parts) or 'no change'} · {b.chunks_embedded} chunks embedded, "
                f"{b.chunks_reused} reused · {b.seconds:.2f}s")
        if not b.complete:
            line += " (stopped midway; the next run finishes it)"
        return line

    @staticmethod
    def _line(s: WatchStatus) -> str:
        if s.phase in ("starting", "catch-up"):
            return "catching up..."
        last = (time.strftime("%H:%M:%S", time.localtime(s.last_update))
                if s.last_update else "-")
        head = {"indexing": "indexing", "optimizing": "compacting", "stopping": "stopping",
                "stopped": "stopped"}.get(s.phase, "watching")
        return (f"{head} · {s.files} files, {s.chunks} chunks · last update {last} · "
                f"queue {s.queued}")

"""Keep an index current while files change: filesystem events -> debounced path sets -> indexer.

A :class:`Watcher` owns one root's index for its whole session:

1. It takes the writer lock and keeps it until it stops. Watch is *the* writer of that index while
   it runs: a ``cs index`` (or ``--rebuild`` with another model) between two of its batches would
   change the manifest under it, and the watcher would then write vectors of the wrong model. So a
   second writer gets a clear busy message instead ("another cs process (pid N) is writing this
   index ... stop `cs watch`"). Readers (``cs find``) never take the lock.
2. It starts a watchdog observer on the root, then catches up with an incremental pass over the
   whole tree (stats only for unchanged files), so edits made while it was not running, or while
   it catches up, are all seen.
3. Events are reduced to root-relative paths and coalesced into one set. A batch starts once the
   tree has been quiet for ``debounce`` seconds (or ``max_delay`` after the first event of a steady
   stream): an editor's atomic save (temp file, rename over) or a branch switch touching thousands
   of files becomes one batch.
4. A batch judges each path with discovery's rules: files that are offered and whose stat differs
   from the index are re-checked (content hash first, so only changed chunks are embedded, and
   only chunks never seen before reach the model); indexed paths that are gone or now ignored are
   removed; a directory that appeared is walked; a directory that vanished drops everything
   under it. A changed ``.gitignore``/``.csignore`` re-evaluates the directory it governs (a full
   incremental pass for the root's, or for ``.git/info/exclude``), and so does a lost-events
   signal from the observer.
5. Each batch is committed through :meth:`codesearch.index.indexer.Indexer.sync` in slices of
   ``batch_files`` files; every commit replaces whole files atomically, so a reader never sees half
   a file. A stop request (Ctrl-C, SIGTERM, :meth:`Watcher.stop`) is honoured between slices: the
   running commit finishes, and what was not committed yet still differs from the index by stat,
   so the next run's catch-up redoes it. A kill -9 is recovered the same way.
6. At a quiet moment (``optimize_quiet`` seconds without an event or a commit), else every
   ``optimize_every`` commits, or ``optimize_interval`` seconds after the first commit since the
   last one, when the queue is empty, the store is compacted and old LanceDB versions pruned
   (:meth:`~codesearch.store.store.Store.optimize`; those kept for readers go once the grace
   window has passed), so the index keeps its size and speed after a day of small commits.

Progress and state reach the caller through callbacks (``progress`` for the indexer's
:class:`~codesearch.index.indexer.IndexProgress`, ``on_status`` for :class:`WatchStatus`); nothing
here touches the terminal.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codesearch import config
from codesearch.config import is_remote
from codesearch.errors import CodeSearchError, StorageError
from codesearch.index.indexer import (
    EmbedFn,
    Indexer,
    IndexOptions,
    IndexProgress,
    IndexStats,
    plan,
)
from codesearch.location import IndexSettings, require_directory
from codesearch.source.discover import VCS_DIRS, VENDORED_DIRS, Discovery, Skip, SourceFile
from codesearch.store.records import FileRecord
from codesearch.store.store import Store

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.embed import Embedder

log = logging.getLogger(__name__)

IGNORE_FILES = frozenset({".gitignore", ".csignore"})
GIT_EXCLUDE = ".git/info/exclude"  # when the root is the repository's top
# How often the loop wakes with nothing to do, to notice stop requests made from signal handlers
# (which must not take locks) and due compactions.
_POLL = 0.1
# Batches naming more than this share of the indexed files re-walk the whole tree instead: a
# walk costs about as much per file as judging one path, without the bookkeeping.
_FULL_PASS_SHARE = 0.5
_FULL_PASS_MIN = 256


@dataclass(frozen=True)
class WatchOptions:
    """Timing knobs of a watch session."""

    debounce: float = 0.25  # quiet time before a batch starts
    max_delay: float = 3.0  # the longest a steady stream of events can hold a batch back
    # Compaction (bench/watch_latency.py, 5,000 files): top-10 queries take ~20 ms compacted,
    # ~60 ms after 100 single-file commits, ~500 ms after 1,000; each compaction also drops the
    # versions no reader needs any more (store/versions.py), so the index keeps its size
    # (bench/index_growth.py). At a quiet moment it costs the user nothing; during a steady
    # stream of edits it waits for this many commits (each one a version of every table).
    optimize_every: int = 10  # commits between compactions
    optimize_interval: float = 600.0  # ...and at least this often (seconds) while commits happen
    optimize_quiet: float = 5.0  # ...and once no event nor commit came for this many seconds
    preload_model: bool = True  # load the model before watching, so the first edit is not slow


@dataclass(frozen=True)
class BatchResult:
    """What one batch (or the catch-up) did."""

    paths: int  # distinct paths the events named (0 for a full pass)
    full_pass: bool  # the whole tree was re-walked
    files_changed: int = 0  # (re)chunked and written
    files_new: int = 0
    files_touched: int = 0  # stat changed, content did not
    files_removed: int = 0
    files_failed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    commits: int = 0
    seconds: float = 0.0
    finished_at: float = 0.0  # wall-clock time
    complete: bool = True  # False when a stop request cut it short (the next run catches up)

    @property
    def updated(self) -> bool:
        """True when the index changed."""
        return bool(self.files_changed or self.files_removed or self.files_touched)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass(frozen=True)
class WatchStatus:
    """A snapshot for a live status line."""

    # "starting", "catch-up", "watching", "indexing", "optimizing", "stopping", "stopped"
    phase: str
    root: str
    index: str
    files: int = 0  # files in the index
    chunks: int = 0  # chunks in the index
    queued: int = 0  # paths waiting for the next batch
    batches: int = 0  # batches that changed the index (catch-up excluded)
    commits: int = 0  # indexer commits this session (catch-up included)
    optimizations: int = 0
    last_update: float | None = None  # wall-clock time the index last changed
    last_batch: BatchResult | None = None
    catch_up: BatchResult | None = None


StatusFn = Callable[[WatchStatus], None]


class _Stop(Exception):
    """Raised inside a batch when a stop request cuts it short."""


# --- events -> paths ---------------------------------------------------------------------------


class _Events:
    """The watchdog handler: reduces events to root-relative paths and queues them. Runs on the
    observer's thread; never raises."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: Any) -> None:
        try:
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if raw:
                    self._watcher._queue(os.fsdecode(raw), bool(event.is_directory))
        except Exception:  # noqa: BLE001 - an observer thread that dies stops all watching
            log.exception("cs watch: could not queue %r", event)
            self._watcher._queue_full_pass()


class _LostEvents(logging.Handler):
    """watchdog reports a kernel queue overflow only as a log warning; events were lost, so the
    next batch re-walks the tree."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__(logging.WARNING)
        self._watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._watcher._queue_full_pass()


def _observer_error(err: OSError) -> CodeSearchError:
    if err.errno in (errno.ENOSPC, errno.EMFILE):
        return CodeSearchError(
            f"cannot watch this tree: the system's limit on watched directories was reached "
            f"({err.strerror or err})",
            hint="raise it, e.g. `sudo sysctl fs.inotify.max_user_watches=524288` "
            "(and fs.inotify.max_user_instances)")
    return CodeSearchError(f"cannot watch this tree: {err.strerror or err}")


# --- the watcher -------------------------------------------------------------------------------


class Watcher:
    """Keeps the index of ``root`` in ``store`` current until :meth:`stop` (see the module doc).

    Call :meth:`run` (blocking) in the thread that should do the indexing; :meth:`stop` may be
    called from any thread or a signal handler. ``options`` are the indexer's (model, dim,
    device, rebuild, batch sizes); ``loader`` and ``embed_fn`` are passed to the indexer.
    ``on_ready(watcher)`` runs in the watcher's thread once the catch-up is done and events are
    followed (e.g. to start serving queries).
    """

    def __init__(self, root: Path, store: Store, options: IndexOptions | None = None,
                 watch_options: WatchOptions | None = None, *,
                 on_status: StatusFn | None = None,
                 progress: Callable[[IndexProgress], None] | None = None,
                 notify: Callable[[str], None] | None = None,
                 loader: Callable[..., Embedder] | None = None,
                 embed_fn: EmbedFn | None = None,
                 on_ready: Callable[[Watcher], None] | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.store = store
        self.options = options or IndexOptions()
        self.watch_options = watch_options or WatchOptions()
        self._on_status = on_status or (lambda s: None)
        self._on_ready = on_ready
        self._notify = notify
        self._embed_fn = embed_fn
        self.indexer = Indexer(self.root, store, self.options, progress=progress,
                               embed_fn=embed_fn, loader=loader, notify=notify)
        # Our own writes must never feed back as events: skip the index and the embedding cache
        # when they live inside the root.
        own = [self.options.cache_uri or str(config.embedding_cache_dir())]
        if not is_remote(store.uri):
            own.append(store.uri)
        self._own_dirs = tuple(
            Path(p).expanduser().resolve().as_posix() + "/" for p in own if not is_remote(p))
        self._root_prefix = self.root.as_posix() + "/"

        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._full = False
        self._first_event = 0.0
        self._last_event = 0.0
        self._stop_requested = False
        self._ready = threading.Event()
        self._done = threading.Event()
        self.error: BaseException | None = None

        self._status = WatchStatus("starting", str(self.root), store.uri)
        self._commits_since_optimize = 0
        self._first_commit_since_optimize: float | None = None
        self._last_commit = 0.0
        self._prune_at: float | None = None  # the versions a compaction kept for readers go
        self._vectors_missing = False  # chunks without a vector wait for an idle loop

    # public ---------------------------------------------------------------------------------

    @property
    def status(self) -> WatchStatus:
        """The latest status snapshot."""
        return replace(self._status, queued=len(self._pending) + int(self._full))

    def stop(self) -> None:
        """Ask the watcher to stop after the commit in progress. Safe from any thread and from a
        signal handler (it takes no lock; the loop polls the flag)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop_requested

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the catch-up is done and events are being followed; False on timeout or if
        :meth:`run` ended first (see :attr:`error`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.is_set() and not self._done.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._ready.wait(_POLL if left is None else min(_POLL, left))
        return self._ready.is_set()

    def run(self) -> WatchStatus:
        """Lock the index, catch up, then follow events until :meth:`stop`; returns the final
        status. Raises IndexBusyError when another writer holds the index, IndexMismatchError
        when it was built differently (unless ``rebuild``), CodeSearchError when the tree cannot
        be watched."""
        try:
            require_directory(self.root)
            with self.indexer.lock():
                self.indexer.prepare()
                self._set(phase="catch-up", files=self.store.count_files(),
                          chunks=self.store.count_chunks())
                with self._observing():
                    catch_up = self._process(set(), full=True)
                    # Chunks a stopped `cs index` left without a vector are embedded by the
                    # loop while it is idle, yielding to edits.
                    embedded, total = self.store.coverage()
                    self._vectors_missing = embedded < total
                    if self._vectors_missing and self._notify is not None:
                        self._notify(f"{total - embedded:,} of {total:,} chunks have no vector "
                                     "yet: embedding them while watching")
                    if self._commits_since_optimize or self.store.needs_indexes():
                        self._optimize()
                    self._set(catch_up=catch_up)
                    if (self.watch_options.preload_model and self._embed_fn is None
                            and self.indexer.handle is not None and not self._stop_requested):
                        self.indexer.handle.get()
                    self._set(phase="watching")
                    self._ready.set()
                    if self._on_ready is not None and not self._stop_requested:
                        self._on_ready(self)
                    self._loop()
                    self._set(phase="stopping")
                # Leave the index compact for the readers that outlive us (a session shorter
                # than optimize_every would otherwise never compact).
                if self._commits_since_optimize:
                    self._optimize()
                self._set(phase="stopped")
            return self.status
        except BaseException as err:
            self.error = err
            raise
        finally:
            self._done.set()

    # the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        queued = -1
        while not self._stop_requested:
            batch = self._take()
            if batch is not None:
                paths, full = batch
                self._set(phase="indexing")
                result = self._process(paths, full=full)
                if result.updated:  # one snapshot: back to watching, with this batch's report
                    self._set(phase="watching", batches=self._status.batches + 1,
                              last_batch=result)
                else:
                    self._set(phase="watching")
            elif self._optimize_due(idle=not self._pending and not self._full):
                self._optimize()
            elif (self._prune_at is not None and time.monotonic() >= self._prune_at
                  and not self._pending and not self._full):
                with contextlib.suppress(StorageError):  # best effort, like compaction
                    self.store.prune_versions()
                self._prune_at = None
            elif self._vectors_missing and not self._pending and not self._full:
                self._fill_vectors()
            status = self.status
            if status.queued != queued:
                queued = status.queued
                self._on_status(status)

    def _take(self) -> tuple[set[str], bool] | None:
        """The next batch once the tree has been quiet for ``debounce`` (or ``max_delay`` passed
        since its first event); None after a short wait when there is none yet."""
        opts = self.watch_options
        with self._cond:
            if not self._pending and not self._full:
                self._cond.wait(_POLL)
                return None
            now = time.monotonic()
            wait = min(self._last_event + opts.debounce, self._first_event + opts.max_delay) - now
            if wait > 0:
                self._cond.wait(min(wait, _POLL))
                return None
            paths, full = self._pending, self._full
            self._pending, self._full = set(), False
            return paths, full

    def _queue(self, path: str, is_dir: bool) -> None:
        """Called by the observer thread for each path an event names."""
        if not path.startswith(self._root_prefix):
            if path == self.root.as_posix():
                self._queue_full_pass()
            return  # moved out of the root: its source path is queued too
        if any(path.startswith(d) or path + "/" == d for d in self._own_dirs):
            return
        rel = path[len(self._root_prefix):]
        if rel == GIT_EXCLUDE:
            self._queue_full_pass()
            return
        if _never_indexed(rel, is_dir):
            return
        with self._cond:
            now = time.monotonic()
            if not self._pending and not self._full:
                self._first_event = now
            self._last_event = now
            self._pending.add(rel)
            self._cond.notify_all()

    def _queue_full_pass(self) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._pending and not self._full:
                self._first_event = now
            self._last_event = now
            self._full = True
            self._cond.notify_all()

    @contextlib.contextmanager
    def _observing(self) -> Iterator[None]:
        from watchdog.events import (
            DirCreatedEvent,
            DirDeletedEvent,
            DirMovedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
        )
        from watchdog.observers import Observer

        observer = Observer()
        # Opens, reads and attribute changes are left out: our own reads of the files must not
        # come back as events, and a touch changes no content.
        kinds = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent,
                 FileMovedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
        lost = _LostEvents(self)
        wd_log = logging.getLogger("watchdog.observers")
        wd_log.addHandler(lost)
        # watchdog warns when a moved directory's inotify watch is re-registered: harmless
        # bookkeeping of its own that would only garble the status line.
        warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning,
                                module=r"watchdog\.")
        try:
            try:
                observer.schedule(_Events(self), str(self.root), recursive=True,  # type: ignore[arg-type]
                                  event_filter=kinds)
                observer.start()
            except OSError as err:
                raise _observer_error(err) from err
            yield
        finally:
            wd_log.removeHandler(lost)
            if observer.is_alive():
                observer.stop()
                observer.join(timeout=5)

    # batches --------------------------------------------------------------------------------

    def _process(self, paths: set[str], *, full: bool, defer: bool = False) -> BatchResult:
        start = time.monotonic()
        records = self.store.file_records()
        if not full:
            full = _ignore_file_at_root(paths) or "" in paths or (
                len(paths) > max(_FULL_PASS_MIN, _FULL_PASS_SHARE * len(records)))
        discovery = Discovery(self.root, max_file_bytes=self.options.max_file_bytes)
        if full:
            the_plan = plan(discovery, records)
            candidates, removed = the_plan.candidates, the_plan.removed
        else:
            candidates, removed = _resolve(self.root, discovery, paths, records)
        totals, commits, complete = self._commit(candidates, removed, defer=defer)
        result = BatchResult(
            paths=0 if full else len(paths), full_pass=full,
            files_changed=sum(s.files_changed for s in totals),
            files_new=sum(s.files_new for s in totals),
            files_touched=sum(s.files_touched for s in totals),
            files_removed=sum(s.files_removed for s in totals),
            files_failed=sum(s.files_failed for s in totals),
            chunks_embedded=sum(s.chunks_embedded for s in totals),
            chunks_reused=sum(s.chunks_reused for s in totals),
            commits=commits, seconds=time.monotonic() - start, finished_at=time.time(),
            complete=complete,
        )
        if commits:
            self._set(files=self.store.count_files(),
                      chunks=totals[-1].chunks_total if totals else self._status.chunks,
                      last_update=result.finished_at if result.updated else
                      self._status.last_update)
        return result

    def _commit(self, candidates: Sequence[SourceFile], removed: Sequence[str], *,
                defer: bool = False) -> tuple[list[IndexStats], int, bool]:
        """Apply through the indexer in slices of ``batch_files``, honouring stop requests
        between slices (the rest still differs by stat, so the next run picks it up)."""
        step = max(1, self.options.batch_files)
        totals: list[IndexStats] = []
        commits = 0
        if not candidates and not removed:
            return totals, commits, True
        slices = [candidates[i:i + step] for i in range(0, len(candidates), step)] or [[]]
        for i, part in enumerate(slices):
            if i and self._stop_requested:
                return totals, commits, False
            stats = self.indexer.sync(part, removed if i == 0 else [], defer=defer)
            totals.append(stats)
            commits += stats.batches
            self._count_commits(stats.batches)
        return totals, commits, True

    def _fill_vectors(self) -> None:
        """Embed chunks still without a vector (left by an interrupted ``cs index`` or this
        watch's catch-up), one batch at a time, yielding to edits: it returns as soon as an event
        is queued or a stop is asked for, and the loop calls it again when idle."""
        before = self.indexer.stats.batches

        def interrupted() -> bool:
            return self._stop_requested or bool(self._pending) or self._full

        self.indexer.fill_vectors(should_stop=interrupted)
        self._count_commits(self.indexer.stats.batches - before)
        if not interrupted():
            embedded, total = self.store.coverage()
            self._vectors_missing = embedded < total and self.indexer.stats.batches > before

    def _count_commits(self, n: int) -> None:
        if n and self._first_commit_since_optimize is None:
            self._first_commit_since_optimize = time.monotonic()
        self._commits_since_optimize += n
        if n:
            self._last_commit = time.monotonic()
        self._set(commits=self._status.commits + n)

    def _optimize_due(self, *, idle: bool) -> bool:
        """Compaction is due at a quiet moment (``optimize_quiet`` seconds without an event or
        a commit), after ``optimize_every`` commits (even while events wait: the versions they
        leave must not pile up), or ``optimize_interval`` seconds; while events wait for their
        batch, only at twice that interval (compaction delays the batch)."""
        if not self._commits_since_optimize:
            return False
        opts = self.watch_options
        if idle and time.monotonic() - max(self._last_event, self._last_commit) >= \
                opts.optimize_quiet:
            return True
        factor = 1 if idle else 2
        if self._commits_since_optimize >= self.watch_options.optimize_every:
            return True
        first = self._first_commit_since_optimize
        return first is not None and (
            time.monotonic() - first >= factor * self.watch_options.optimize_interval)

    def _optimize(self) -> None:
        """Compact, prune old versions, refresh the indexes (and the embedding cache's)."""
        phase = self._status.phase
        self._set(phase="optimizing")
        try:
            self.store.optimize(ann_threshold=self.options.ann_threshold)
            self._prune_at = time.monotonic() + self.store.version_grace.total_seconds() + 1
        except StorageError as err:
            # Best effort (e.g. a commit conflict with a compaction run elsewhere): the index
            # stays correct, only slower; the next due compaction tries again.
            if self._notify is not None:
                self._notify(f"warning: could not compact the index: {err.message}")
        if self.indexer.cache is not None:
            self.indexer.cache.optimize()
        self._commits_since_optimize = 0
        self._first_commit_since_optimize = None
        self._set(phase=phase, optimizations=self._status.optimizations + 1)

    def _set(self, **changes: Any) -> None:
        self._status = replace(self._status, **changes)
        self._on_status(self.status)


# --- judging a path set ------------------------------------------------------------------------


def _never_indexed(rel: str, is_dir: bool) -> bool:
    """Cheap event-time filter: paths inside directories discovery skips by name alone (VCS
    metadata, vendored trees), whatever the ignore files say. Everything else is judged at batch
    time by discovery itself."""
    parts = rel.split("/")
    dirs = parts if is_dir else parts[:-1]
    return any(p in VCS_DIRS or p in VENDORED_DIRS or p.endswith(".egg-info") for p in dirs) or (
        parts[-1] in VCS_DIRS)


def _ignore_file_at_root(paths: Iterable[str]) -> bool:
    return any(p in IGNORE_FILES for p in paths)


def _under(keys: Sequence[str], prefix: str) -> list[str]:
    """The sorted ``keys`` that start with ``prefix``."""
    i = bisect.bisect_left(keys, prefix)
    out = []
    while i < len(keys) and keys[i].startswith(prefix):
        out.append(keys[i])
        i += 1
    return out


def _resolve(root: Path, discovery: Discovery, paths: set[str],
             records: dict[str, FileRecord]) -> tuple[list[SourceFile], list[str]]:
    """What a set of changed paths means for the index: files to re-check (new, or stat changed)
    and indexed paths to drop. Directories are expanded; a changed ignore file re-evaluates the
    directory it governs."""
    keys = sorted(records)
    found: dict[str, SourceFile] = {}
    gone: set[str] = set()
    skipped_dirs: list[str] = []
    todo = set(paths)
    for p in paths:  # an ignore file governs its directory
        head, _, name = p.rpartition("/")
        if name in IGNORE_FILES and head:
            todo.add(head)
    walked: list[str] = []
    # Sorted, so a directory comes before its contents and prunes them when ignored.
    for rel in sorted(todo):
        if any(rel.startswith(d) for d in skipped_dirs):
            continue
        verdict = discovery.check(rel)
        if isinstance(verdict, SourceFile):
            found[rel] = verdict
        elif isinstance(verdict, Skip) and verdict.rel.endswith("/"):
            # rel is, or lies inside, a directory discovery skips: nothing under it is indexed.
            skipped_dirs.append(verdict.rel)
            gone.update(_under(keys, verdict.rel))
        else:
            if rel in records:  # gone, or now skipped
                gone.add(rel)
            if verdict is None and (root / rel).is_dir():
                if not any(rel.startswith(w + "/") for w in walked):
                    walked.append(rel)
                    found.update(_walk(root, discovery, rel))
                    gone.update(_under(keys, rel + "/"))
            else:  # a directory that vanished (or became a file or a link)
                gone.update(_under(keys, rel + "/"))
    gone.difference_update(found)
    the_plan = plan(found.values(), {r: records[r] for r in found if r in records})
    return the_plan.candidates, sorted(gone)


def _walk(root: Path, discovery: Discovery, rel: str) -> dict[str, SourceFile]:
    """The files discovery offers under the directory ``rel`` (judged path by path, pruning
    skipped directories)."""
    out: dict[str, SourceFile] = {}
    base = root / rel
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath).relative_to(root).as_posix()
        keep = []
        for d in sorted(dirnames):
            if discovery.check(f"{here}/{d}") is None:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            verdict = discovery.check(f"{here}/{name}")
            if isinstance(verdict, SourceFile):
                out[verdict.rel] = verdict
    return out


# --- running it --------------------------------------------------------------------------------


@contextlib.contextmanager
def stop_on_signals(watcher: Watcher) -> Iterator[None]:
    """While inside: SIGINT (Ctrl-C) and SIGTERM ask ``watcher`` to stop after its current
    commit; a second SIGINT interrupts at once (KeyboardInterrupt; the index stays consistent,
    the next run catches up). Only the main thread can install handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and watcher.stopping:
            raise KeyboardInterrupt
        watcher.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def watch_root(root: Path, settings: IndexSettings | None = None, *,
               options: IndexOptions | None = None, watch_options: WatchOptions | None = None,
               on_status: StatusFn | None = None,
               progress: Callable[[IndexProgress], None] | None = None,
               notify: Callable[[str], None] | None = None,
               loader: Callable[..., Embedder] | None = None,
               on_ready: Callable[[Watcher], None] | None = None) -> WatchStatus:
    """``cs watch``: keep the index of ``root`` current, in this thread, until SIGINT/SIGTERM.
    ``loader`` and ``on_ready`` as :class:`Watcher` takes them (``cs watch`` also serves queries
    through them: :func:`codesearch.query.server.watch_and_serve`)."""
    location = (settings or IndexSettings()).for_root(root, hint="cs watch takes a directory")
    # A long-lived writer: always start from the latest committed version, whoever made it.
    store = Store.at(location, read_consistency_interval=timedelta(0))
    watcher = Watcher(location.root, store, options, watch_options, on_status=on_status,
                      progress=progress, notify=notify, loader=loader, on_ready=on_ready)
    with stop_on_signals(watcher):
        return watcher.run()

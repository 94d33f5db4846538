"""One ``cs index`` run, start to end: which engine embeds (local or Ray), how SIGTERM and Ctrl-C
end it (after the batch in progress; what was committed stays), and ``--background`` (phase 2 in
a detached process, :mod:`codesearch.index.background`). The CLI only parses and renders.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from codesearch.errors import UsageError
from codesearch.index import background
from codesearch.index.indexer import Indexer, IndexOptions, IndexStats, ProgressFn
from codesearch.location import IndexLocation, IndexSettings
from codesearch.store.store import Store

ENGINES = ("local", "ray")
DIRECTORY_HINT = "cs index takes a directory"
Notify = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """How a run embeds: ``engine`` (local or ray; ``ray_address``, ``ray_workers`` for Ray),
    and ``background`` (return once searchable, embed the rest in a detached process)."""

    engine: str = "local"
    ray_address: str | None = None
    ray_workers: int | None = None
    background: bool = False

    def check(self) -> None:
        """UsageError for a combination no run can do."""
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine '{self.engine}'",
                             hint="use one of: " + ", ".join(ENGINES))
        if self.background and self.engine != "local":
            raise UsageError("--background works with --engine local only")


def index_root(root: Path, *, settings: IndexSettings | None = None,
               options: IndexOptions | None = None, progress: ProgressFn | None = None,
               notify: Notify | None = None, should_stop: Callable[[], bool] | None = None,
               on_searchable: Callable[[IndexStats], None] | None = None) -> IndexStats:
    """Index ``root`` into its index (see :class:`codesearch.location.IndexSettings`) on this
    machine; ``should_stop`` and ``on_searchable`` as in :meth:`Indexer.run`."""
    location = (settings or IndexSettings()).for_root(root, hint=DIRECTORY_HINT)
    return Indexer(location.root, Store.at(location), options, progress=progress,
                   notify=notify).run(should_stop=should_stop, on_searchable=on_searchable)


def run_index(root: Path, settings: IndexSettings, options: IndexOptions, run: RunOptions, *,
              progress: ProgressFn | None = None, notify: Notify | None = None) -> IndexStats:
    """``cs index ROOT``: index with the chosen engine; SIGTERM ends the run after the batch in
    progress (``stats.stopped``). With ``run.background``, phase 2 goes on in a detached process.
    Ctrl-C before the tree is searchable interrupts at once; after, the first one also ends the
    run after its batch, the second at once; either way KeyboardInterrupt carries the one line
    to print: how far the committed vectors got."""
    run.check()
    location = settings.for_root(root, hint=DIRECTORY_HINT)
    searchable = False

    def mark_searchable(_: IndexStats) -> None:
        nonlocal searchable
        searchable = True

    try:
        with _stop_on_signals(interruptible=lambda: not searchable, notify=notify) as stop:
            if run.engine == "ray":
                from codesearch.index.ray import RayOptions, index_root_ray

                stats = index_root_ray(location, options=options, progress=progress,
                                       notify=notify, ray_options=RayOptions(
                                           address=run.ray_address, workers=run.ray_workers))
            else:
                options = replace(options, embed=not run.background)
                stats = index_root(root, settings=settings, options=options, progress=progress,
                                   notify=notify, should_stop=stop.asked,
                                   on_searchable=mark_searchable)
            stats.stopped = stop.asked()
    except KeyboardInterrupt:
        if searchable:
            # A second Ctrl-C: the batch being embedded is not committed.
            raise KeyboardInterrupt(
                f"Interrupted: kept {coverage_text(location)} (the batch in progress is redone "
                "next time); the tree is searchable, and `cs index` resumes the embedding"
            ) from None
        raise
    if stop.signal == signal.SIGINT:
        # A first Ctrl-C: the run ended after committing its batch, like SIGTERM, but the
        # user pressed Ctrl-C, so the exit is the interrupt's (130).
        raise KeyboardInterrupt(
            f"Interrupted: kept {coverage_text(location)} (the batch in progress was "
            "committed); the tree is searchable, and `cs index` resumes the embedding")
    if (run.background and not stats.stopped
            and stats.chunks_with_vectors < stats.chunks_total):
        args = background.child_args(settings, replace(options, model=stats.model or None))
        job = background.start(location.root, location.uri, args)
        if notify is not None:
            notify(f"embedding in the background (pid {job.pid}, log {job.log}); `cs status` "
                   "shows progress, `cs index --stop` stops it")
    return stats


def run_background_child(root: Path, settings: IndexSettings, options: IndexOptions, *,
                         notify: Notify | None = None) -> IndexStats:
    """The detached phase 2 of ``cs index --background``: records itself, embeds until done or
    SIGTERM (after its batch; ``stats.stopped``)."""
    location = settings.for_root(root)
    job = background.job_for(location.uri)
    if job is None or job.pid != os.getpid():  # started by hand: record ourselves
        background.record(background.BackgroundJob(os.getpid(), str(location.root),
                                                    location.uri, job.log if job else "",
                                                    time.time()))
    try:
        with _stop_on_signals() as stop:
            options = replace(options, lock_wait=600.0)
            stats = index_root(root, settings=settings, options=options, notify=notify,
                               should_stop=stop.asked)
            stats.stopped = stop.asked()
            return stats
    finally:
        background.forget(location.uri, os.getpid())


def stop_background(location: IndexLocation) -> str:
    """``cs index --stop``: what happened, in one line."""
    job = background.stop(location.uri)
    if job is None:
        return "no background indexing is running for this index"
    state = "stopped" if not job.running() else "is still finishing its batch"
    return f"background indexing (pid {job.pid}) {state}; {coverage_text(location)}; " \
           "`cs index` resumes"


def coverage_text(location: IndexLocation) -> str:
    """``vectors for N of M chunks`` of the index at ``location``."""
    embedded, total = Store.at(location).coverage()
    return f"vectors for {embedded:,} of {total:,} chunks"


class _StopRequest:
    """What a stop signal asked: ``signal`` is the first one received (None: none yet)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def asked(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def _stop_on_signals(*, interruptible: Callable[[], bool] = lambda: False,
                     notify: Notify | None = None) -> Iterator[_StopRequest]:
    """While inside, SIGTERM and a first Ctrl-C ask the run to stop after its batch (so the
    vectors it is computing are committed, not thrown away); a second Ctrl-C, or a Ctrl-C while
    ``interruptible()`` (before anything is worth finishing), interrupts at once."""
    request = _StopRequest()

    def on_sigint(signum: int, _frame: object) -> None:
        if interruptible() or request.signal == signal.SIGINT:
            raise KeyboardInterrupt
        if request.signal is None:
            request.signal = signum
            if notify is not None:
                notify("Ctrl-C: stopping after the batch in progress (Ctrl-C again to stop now)")

    def on_sigterm(signum: int, _frame: object) -> None:
        if request.signal is None:
            request.signal = signum

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
                signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

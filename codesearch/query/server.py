"""Warm queries: a long-lived process keeps the model loaded and answers find and similar over a
local Unix socket; ``cs find`` and ``cs similar`` use it when it is there (the client side,
:mod:`codesearch.query.client`, imports nothing heavy) and work in-process when it is not, with
identical results.

Three kinds of server, all in the user's private runtime directory (0700, sockets 0600, nothing on
a network port), each holding a ``.lock`` (flock) beside its socket for its whole life:

- ``cs serve ROOT...`` and ``cs watch``: one socket per served (root, index) pair,
  ``<key>.sock``; they answer for those roots only;
- the automatic server (:func:`run_auto_server`, ``cs server run``), started in the background by
  the first ``cs find`` / ``cs similar`` of an index directory that finds none:
  ``auto-<key>.sock`` per (index directory, device). It answers for every root indexed in that
  directory, loads each model once for all of them, and exits after ``CS_SERVER_IDLE`` seconds
  without a request, on ``cs server stop``, or when a client of another build asks it anything.

A second server for the same socket fails fast; a socket file whose lock is free was left by a
crashed server, and the next server removes it. Clients that meet such a stale file get
"connection refused" and work in-process (and start a fresh automatic server).

Protocol (version :data:`PROTOCOL_VERSION`): newline-delimited JSON, one request and one response
per line, any number per connection. Requests (every one may carry ``"build"``, the client's
:func:`codesearch.query.client.build_id`)::

    {"v": 1, "op": "find", "root": ABS, "scope": SUBDIR|null, "query": Q,
     "options": {...SearchOptions}, "model": M|null, "device": D|null}
    {"v": 1, "op": "similar", "root": ABS, "scope": SUBDIR|null, "location": "FILE:LINE",
     "cwd": ABS, "options": {...}, "model": M|null, "device": D|null}
    {"v": 1, "op": "status", "root": ABS}
    {"v": 1, "op": "ping"}
    {"v": 1, "op": "shutdown"}

Responses: ``{"v": 1, "ok": true, "hits": [Hit fields...]}`` (or ``"status"`` / ``"server"``);
a new field (a coverage note, say) can be added beside ``hits``: the client hands the whole
response to the CLI (:class:`codesearch.query.client.Answer`). ``{"v": 1, "ok": false, "error": {"type",
"message", "hint", "exit_code"}}`` for an error the in-process path would raise the same way (the
client re-raises it); ``{"v": 1, "ok": false, "decline": REASON}`` when this server cannot answer
faithfully (another protocol version or build, another device, a root it does not serve, an
internal failure): the client then works in-process.

The server opens the index afresh for every request, so it sees every commit made by ``cs index``
or ``cs watch`` in other processes (a rebuild with another model included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import selectors
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from codesearch import config
from codesearch.errors import CodeSearchError, UsageError
from codesearch.query.client import (
    MAX_SOCKET_PATH,
    PROTOCOL_VERSION,
    auto_socket_path,
    build_id,
    is_index,
    request,
    runtime_dir,
    socket_path,
)
from codesearch.query.client import private_dir as _private_dir

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from codesearch.embed import Embedder
    from codesearch.query.searcher import Hit, Searcher, SearchOptions

# A request is a query or a FILE:LINE plus options; anything this large is not one.
MAX_REQUEST_BYTES = 1 << 20
# How long a starting automatic server waits for the lock of one that is exiting.
LOCK_WAIT = 10.0

Notify = Callable[[str], None]


class ServerBusyError(CodeSearchError):
    """Another server already serves this root."""


# --- models shared by threads -------------------------------------------------------------------


class _ModelThread:
    """An embedder whose calls all run, one at a time, on one long-lived thread of its own.

    One at a time: fast tokenizers fail ("Already borrowed") when one instance is used by two
    threads at once, and one forward pass at a time is what a CPU does best anyway. One thread:
    torch's first operations on a new thread are slow (its intra-op thread pool starts again:
    ~800 ms for a MiniLM query on a loaded 2-core machine, against 20-30 ms on a thread that has
    run one before), and the server answers each connection on a new thread."""

    def __init__(self, inner: Embedder) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._inner = inner
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cs-model")
        self.model_id = inner.model_id
        self.revision = inner.revision
        self.dim = inner.dim
        self.prefix_scheme = inner.prefix_scheme
        self.max_length = inner.max_length

    def embed_queries(self, texts: Sequence[str], task: str = "nl2code") -> np.ndarray:
        return self._thread.submit(self._inner.embed_queries, texts, task=task).result()

    def embed_documents(self, texts: Sequence[str], task: str = "nl2code",
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self._thread.submit(self._inner.embed_documents, texts, task=task,
                                   progress=progress).result()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class EmbedderPool:
    """Loaded models, shared by every request (and by a watcher's indexer): ``pool.load`` has the
    signature of the ``loader`` that :class:`codesearch.query.searcher.Searcher` and
    :class:`codesearch.index.indexer.Indexer` accept. Each model loads once, even when several threads
    ask for it at the same time; calls into one model run one at a time on its own thread."""

    def __init__(self, notify: Notify | None = None,
                 load: Callable[..., Embedder] | None = None, *,
                 queries_only: bool = False) -> None:
        """``queries_only``: this process embeds queries only (a query server, not ``cs watch``,
        which indexes too): models run on :func:`limit_model_threads` threads, as ``cs find``
        in-process does (:func:`query_loader`), so both compute the same vectors."""
        self._notify = notify
        self._load = load
        self._queries_only = queries_only
        self._lock = threading.Lock()
        self._models: dict[tuple[str, int | None, str | None, str | None], _ModelThread] = {}
        self._loading: dict[tuple[str, int | None, str | None, str | None], threading.Lock] = {}

    def load(self, model: str, *, dim: int | None = None, device: str | None = None,
             precision: str | None = None, **_: Any) -> Embedder:
        """The embedder for (model, dim, device, precision), loading it on first use
        (``precision`` as :func:`codesearch.embed.load_embedder` takes it: an index's own kind,
        float or int8, so one server answers float and int8 indexes alike)."""
        key = (model, dim, device, precision)
        with self._lock:
            if key in self._models:
                return self._models[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one loader per key; the others wait for it instead of loading a copy
            with self._lock:
                if key in self._models:
                    return self._models[key]
            if self._load is not None:
                inner = self._load(model, dim=dim, device=device, precision=precision)
            elif self._queries_only:
                inner = query_loader(self._notify)(model, dim=dim, device=device,
                                                   precision=precision)
            else:
                from codesearch.embed import load_embedder

                inner = load_embedder(model, dim=dim, device=device, precision=precision,
                                      notify=self._notify)
            wrapped = _ModelThread(inner)
            # The model thread's first forward pass is the slow one: pay it now, not in a query.
            wrapped.embed_queries(["warm up"])
            with self._lock:
                self._models[key] = wrapped
            return wrapped

    def loaded(self) -> list[str]:
        """``model (dim)`` for every loaded model."""
        with self._lock:
            return [f"{m} (dim {e.dim})" for (m, _, _, _), e in self._models.items()]


# --- the engine: requests -> hits ----------------------------------------------------------------


@dataclass(frozen=True)
class ServedRoot:
    """One root a server answers for, and where its index lives."""

    root: Path
    index_uri: str
    storage_options: Mapping[str, str]

    @property
    def socket(self) -> Path:
        return socket_path(self.root, self.index_uri)


def options_to_dict(options: SearchOptions) -> dict[str, Any]:
    """SearchOptions as JSON-ready values."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(options).items()}


def options_from_dict(data: Mapping[str, Any]) -> SearchOptions:
    """The inverse of :func:`options_to_dict`; TypeError for unknown fields."""
    from codesearch.query.searcher import SearchOptions

    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return SearchOptions(**fields)


def hit_to_wire(hit: Hit) -> dict[str, Any]:
    """Every field of a hit, score unrounded (JSON floats round-trip exactly), so the client
    renders exactly what the in-process path renders."""
    return dataclasses.asdict(hit)


class QueryEngine:
    """Answers find, similar and status for a set of roots with models kept loaded. The index is
    opened for every request (cheap: a few small reads), so commits by other processes, a rebuild
    included, are seen at once. ``model`` is used for requests naming none (it must fit each
    index, as ``cs find --model`` must); by default each index's own model. Thread-safe. Used by
    :class:`QueryServer`, ``cs watch`` and the MCP server."""

    def __init__(self, roots: Sequence[Path], *, index_dir: str | Path | None = None,
                 index_uri: str | None = None, storage_options: Mapping[str, str] | None = None,
                 device: str | None = None, model: str | None = None,
                 pool: EmbedderPool | None = None, notify: Notify | None = None,
                 index_set: Path | None = None) -> None:
        from codesearch.config import model_spec
        from codesearch.store.store import resolve_index_uri

        if not roots and index_set is None:
            raise UsageError("no root to serve")
        if index_uri and len(roots) > 1:
            raise UsageError("--index-uri names one index, but several roots were given",
                             hint="serve one root per --index-uri, or use --index-dir")
        self.notify = notify
        self.device = device if device is not None else config.default_device()
        # For requests that name no model (like `cs find` without --model): None means each
        # index's own model.
        self.model = model_spec(model) if model else None
        self.pool = pool or EmbedderPool(notify=notify, queries_only=True)
        self.roots: dict[Path, ServedRoot] = {}
        for root in roots:
            root = root.expanduser()
            if not root.is_dir():
                raise UsageError(f"{root} is not a directory" if root.exists()
                                 else f"{root} does not exist")
            resolved = root.resolve()
            uri = resolve_index_uri(resolved, index_dir=index_dir, index_uri=index_uri)
            self.roots[resolved] = ServedRoot(resolved, uri, dict(storage_options or {}))
        # An automatic server's index directory: it also serves every other root indexed there
        # (found by the directory layout, as the client finds them), added on first request.
        self.index_set = index_set.expanduser().resolve() if index_set is not None else None
        self._roots_lock = threading.Lock()

    def served(self, root: Path) -> ServedRoot | None:
        """The served root equal to ``root`` (resolved), if any; for an automatic server, also
        any root with an index in its index directory."""
        from codesearch.store.store import resolve_index_uri

        resolved = root.expanduser().resolve()
        found = self.roots.get(resolved)
        if found is not None or self.index_set is None:
            return found
        uri = resolve_index_uri(resolved, index_dir=self.index_set)
        if not (resolved.is_dir() and Path(uri).parent == self.index_set and is_index(uri)):
            return None
        with self._roots_lock:
            return self.roots.setdefault(resolved, ServedRoot(resolved, uri, {}))

    def _served(self, root: Path) -> ServedRoot:
        served = self.served(root)
        if served is None:
            raise UsageError(f"{root} is not served here",
                             hint="served: " + ", ".join(str(r) for r in self.roots))
        return served

    def searcher(self, root: Path, model: str | None = None) -> Searcher:
        """A Searcher over the latest committed version of ``root``'s index, sharing loaded
        models. Raises what :meth:`Searcher.open` raises."""
        from codesearch.query.searcher import Searcher
        from codesearch.store.store import Store

        served = self._served(root)
        store = Store.open(served.index_uri, storage_options=served.storage_options)
        return Searcher.open(served.root, store=store, model=model or self.model,
                             device=self.device,
                             loader=self.pool.load, notify=self.notify)

    def find(self, root: Path, query: str, options: SearchOptions, *,
             model: str | None = None, scope: str | None = None) -> list[Hit]:
        """What ``cs find`` prints for ``query`` over ``root`` (limited to its subdirectory
        ``scope``, as when ``--path`` names a directory inside an indexed root)."""
        return self._scoped(self.searcher(root, model), scope).find(query, options)

    def similar(self, root: Path, location: str, options: SearchOptions, *,
                model: str | None = None, cwd: Path | None = None,
                scope: str | None = None) -> list[Hit]:
        """What ``cs similar`` prints for ``location`` (relative to ``cwd``) over ``root``."""
        return self._scoped(self.searcher(root, model), scope).similar(location, options,
                                                                      cwd=cwd)

    @staticmethod
    def _scoped(searcher: Searcher, scope: str | None) -> Searcher:
        if scope:
            parts = Path(scope).parts
            if Path(scope).is_absolute() or ".." in parts or not (searcher.root / scope).is_dir():
                raise _Decline(f"bad scope {scope!r}")
            # What Searcher.open sets when it finds the index in an ancestor of --path.
            searcher.scope = Path(scope).as_posix()
        return searcher

    def coverage(self, root: Path) -> dict[str, Any]:
        """How much of ``root``'s index has vectors (store.Coverage.to_dict): the client prints
        the same coverage line as an in-process search."""
        from codesearch.store.store import Store

        served = self._served(root)
        store = Store.open(served.index_uri, storage_options=served.storage_options)
        return store.coverage_info().to_dict()

    def status(self, root: Path) -> dict[str, Any]:
        """What ``cs status --json`` prints for ``root``."""
        from codesearch.index.indexer import index_status
        from codesearch.store.store import Store

        served = self._served(root)
        store = Store.open(served.index_uri, storage_options=served.storage_options)
        return index_status(served.root, store)

    def warm(self) -> None:
        """Load the model of every served index now, so the first query is fast. A root without
        an index yet (or with an unusable one) is reported through ``notify``, not raised: its
        queries get the same error the in-process path gives."""
        for served in self.roots.values():
            try:
                self.searcher(served.root).handle.get()
            except CodeSearchError as err:
                if self.notify:
                    self.notify(f"warning: {served.root}: {err.message}"
                                + (f" ({err.hint})" if err.hint else ""))

    # protocol -----------------------------------------------------------------------------

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One protocol request -> one response (see the module doc). Never raises."""
        try:
            return {"v": PROTOCOL_VERSION, "ok": True, **self._dispatch(request)}
        except _Decline as decline:
            return {"v": PROTOCOL_VERSION, "ok": False, "decline": str(decline)}
        except CodeSearchError as err:
            return {"v": PROTOCOL_VERSION, "ok": False, "error": {
                "type": type(err).__name__, "message": err.message, "hint": err.hint,
                "exit_code": int(err.exit_code)}}
        except Exception as err:  # noqa: BLE001 - the client works in-process instead
            if self.notify:
                self.notify(f"warning: request failed: {type(err).__name__}: {err}")
            return {"v": PROTOCOL_VERSION, "ok": False,
                    "decline": f"internal error: {type(err).__name__}"}

    def _dispatch(self, req: Mapping[str, Any]) -> dict[str, Any]:
        if req.get("v") != PROTOCOL_VERSION:
            raise _Decline(f"protocol version {req.get('v')!r} (this server speaks "
                           f"{PROTOCOL_VERSION})")
        op = req.get("op")
        if op == "ping":
            return {"server": self.info()}
        root = Path(str(req.get("root", "")))
        if not root.is_absolute() or self.served(root) is None:
            raise _Decline(f"root {root} is not served here")
        if op == "status":
            return {"status": self.status(root)}
        device = req.get("device")
        if device is not None and device != self.device:
            raise _Decline(f"device {device} asked, this server runs on {self.device or 'auto'}")
        precision = config.default_precision()
        if req.get("precision") != precision:  # it loads models at its own precision only
            raise _Decline(f"precision {req.get('precision') or 'auto'} asked, this server "
                           f"loads {precision or 'auto'}")
        try:
            options = options_from_dict(req.get("options") or {})
        except TypeError as err:
            raise _Decline(f"bad options: {err}") from None
        options.validate()  # the client sends what the user typed; same error as in-process
        model, scope = req.get("model"), req.get("scope")
        if op == "find":
            hits = self.find(root, str(req["query"]), options, model=model, scope=scope)
        elif op == "similar":
            cwd = Path(str(req.get("cwd") or root))
            hits = self.similar(root, str(req["location"]), options, model=model, cwd=cwd,
                                scope=scope)
        else:
            raise _Decline(f"unknown op {op!r}")
        return {"hits": [hit_to_wire(h) for h in hits], "coverage": self.coverage(root)}

    def info(self) -> dict[str, Any]:
        """What ``ping`` answers: who serves what, with which models loaded."""
        from codesearch import __version__

        return {"pid": os.getpid(), "protocol": PROTOCOL_VERSION, "version": __version__,
                "build": build_id(), "roots": [str(r) for r in list(self.roots)],
                "index_set": str(self.index_set) if self.index_set else None,
                "device": self.device, "models": self.pool.loaded()}


class _Decline(Exception):
    """This server cannot answer the request faithfully; the client should work in-process."""


# --- the socket server -------------------------------------------------------------------------


@dataclass
class _Listener:
    path: Path
    sock: socket.socket
    lock_fd: int
    inode: int


class QueryServer:
    """Serves a :class:`QueryEngine` on one Unix socket per root, a thread per connection.

    ``start()`` binds (raising ServerBusyError when another server has a root) and returns at
    once; ``serve_forever()`` blocks until ``stop()`` or SIGTERM/SIGINT; ``stop()`` closes every
    socket and removes its file. Usable as a context manager. ``cs watch`` runs one in the
    background: ``server = serve_in_background(engine)`` ... ``server.stop()``.
    """

    def __init__(self, engine: QueryEngine, *, log: Notify | None = None,
                 sockets: Sequence[Path] | None = None, kind: str = "serve",
                 stoppable: bool = False, lock_wait: float = 0.0) -> None:
        """``sockets``: where to listen (default: each served root's own socket). ``kind``
        names the server in ``cs server status`` (serve, watch, auto). ``stoppable``: a
        ``shutdown`` request (``cs server stop``) stops it; an automatic server also stops when
        a client of another build asks it anything. ``lock_wait``: seconds to wait for the
        socket's lock while another server is exiting."""
        self.engine = engine
        self.log = log
        self.kind = kind
        self.stoppable = stoppable
        self.lock_wait = lock_wait
        self.build = build_id()  # what this process loaded, even if the files change later
        self._sockets = list(sockets) if sockets is not None else None
        self.started_at = time.time()
        self.requests = 0
        self._active = 0
        self._last_activity = time.monotonic()
        self.ready = threading.Event()  # set once warm() has loaded the models
        self._listeners: list[_Listener] = []
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._stopped = False
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._mutex = threading.Lock()

    @property
    def socket_paths(self) -> list[Path]:
        """The socket of each served root (or each of ``sockets``), in order."""
        return [lst.path for lst in self._listeners]

    def idle_for(self) -> float:
        """Seconds since the last request ended (0 while one is being answered, or while the
        models load)."""
        with self._mutex:
            if self._active or not self.ready.is_set():
                return 0.0
            return time.monotonic() - self._last_activity

    def info(self) -> dict[str, Any]:
        """What ``ping`` answers: the engine's facts plus this server's."""
        return {**self.engine.info(), "kind": self.kind, "build": self.build,
                "started_at": self.started_at, "requests": self.requests,
                "idle_s": round(self.idle_for(), 1), "ready": self.ready.is_set()}

    def start(self) -> QueryServer:
        """Bind every socket and start accepting. Idempotent."""
        if self._accept_thread is not None:
            return self
        paths = self._sockets if self._sockets is not None else [
            served.socket for served in self.engine.roots.values()]
        labels = [str(p) for p in paths] if self._sockets is not None else [
            str(r) for r in self.engine.roots]
        try:
            for path, label in zip(paths, labels, strict=True):
                self._listeners.append(_bind(path, label, wait=self.lock_wait))
        except BaseException:
            self._close_listeners()
            raise
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        for lst in self._listeners:
            self._selector.register(lst.sock, selectors.EVENT_READ, lst)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="cs-serve-accept",
                                               daemon=True)
        self._accept_thread.start()
        return self

    def warm(self) -> None:
        """Load the models now (see :meth:`QueryEngine.warm`), then mark the server ready."""
        self.engine.warm()
        with self._mutex:  # idle time counts from here: loading a model is not idling
            self._last_activity = time.monotonic()
        self.ready.set()

    def serve_forever(self, *, handle_signals: bool = True,
                      idle_timeout: float | None = None,
                      while_true: Callable[[], bool] | None = None) -> None:
        """Block until :meth:`stop` is called (from another thread) or, with ``handle_signals``
        and on the main thread, SIGTERM/SIGINT/SIGHUP arrive, or (with ``idle_timeout``) no
        request came for that many seconds, or ``while_true()`` turns false; then stop
        cleanly."""
        self.start()
        previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                previous[sig] = signal.signal(sig, lambda *_: self._stop_requested.set())
        try:
            while not self._stop_requested.wait(0.5):
                if idle_timeout and idle_timeout > 0 and self.idle_for() > idle_timeout:
                    if self.log:
                        self.log(f"no request for {idle_timeout:.0f}s; exiting")
                    break
                if while_true is not None and not while_true():
                    break
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to return (safe from a signal handler)."""
        self._stop_requested.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections, remove the socket files. Idempotent.
        Requests in flight get up to ``timeout`` seconds to finish."""
        with self._mutex:
            if self._stopped:
                return
            self._stopped = True
        self._stop_requested.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        self._close_listeners()
        with self._mutex:
            conns, workers = list(self._conns), list(self._workers)
        for conn in conns:  # wakes handlers blocked reading an idle connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        if self._selector is not None:
            self._selector.close()

    def __enter__(self) -> QueryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # internals ------------------------------------------------------------------------------

    def _close_listeners(self) -> None:
        for lst in self._listeners:
            lst.sock.close()
            path = lst.path
            with contextlib.suppress(OSError):
                # Only our own file: never another server's that replaced it.
                if path.stat().st_ino == lst.inode:
                    path.unlink()
            os.close(lst.lock_fd)  # releases the flock; the lock file itself stays (see _bind)
        self._listeners = []

    def _accept_loop(self) -> None:
        assert self._selector is not None
        while not self._stop_requested.is_set():
            for key, _ in self._selector.select(timeout=1.0):
                if key.data is None:  # the wake-up pair
                    return
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                if not _same_user(conn):
                    conn.close()
                    continue
                worker = threading.Thread(target=self._serve_connection, args=(conn,),
                                          name="cs-serve-conn", daemon=True)
                with self._mutex:
                    self._conns.add(conn)
                    self._workers.add(worker)
                worker.start()

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as reader:
                while True:
                    line = reader.readline(MAX_REQUEST_BYTES + 1)
                    if not line:
                        return
                    if len(line) > MAX_REQUEST_BYTES:
                        _send(conn, {"v": PROTOCOL_VERSION, "ok": False,
                                     "decline": "request too large"})
                        return
                    start = time.perf_counter()
                    try:
                        request = json.loads(line)
                        if not isinstance(request, dict):
                            raise ValueError("not an object")
                    except ValueError as err:
                        _send(conn, {"v": PROTOCOL_VERSION, "ok": False,
                                     "decline": f"bad request: {err}"})
                        continue
                    with self._mutex:
                        self._active += 1
                    try:
                        response = self._handle(request)
                    finally:
                        with self._mutex:
                            self._active -= 1
                            self._last_activity = time.monotonic()
                    if self.log and request.get("op") != "ping":  # before answering, so a
                        # client that got its answer sees the line
                        self.log(_describe(request, response, time.perf_counter() - start))
                    _send(conn, response)
                    if response.get("stopping"):
                        self.request_stop()
        except OSError:
            pass  # the client went away
        finally:
            with self._mutex:
                self._conns.discard(conn)
                self._workers.discard(threading.current_thread())


    def _handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Server-level requests (ping, shutdown, a client of another build); the rest goes to
        the engine."""
        op = request.get("op")
        if op == "ping" and request.get("v") == PROTOCOL_VERSION:
            return {"v": PROTOCOL_VERSION, "ok": True, "server": self.info()}
        if op == "shutdown" and request.get("v") == PROTOCOL_VERSION:
            if not self.stoppable:
                return {"v": PROTOCOL_VERSION, "ok": False,
                        "decline": f"this server is part of `cs {self.kind}`: stop that"}
            return {"v": PROTOCOL_VERSION, "ok": True, "stopping": True}
        build = request.get("build")
        if build is not None and build != self.build:
            # Another cs: its options, ranking or wire format may differ from ours.
            return {"v": PROTOCOL_VERSION, "ok": False, "build_mismatch": True,
                    "decline": f"build {build} asked, this server runs {self.build}",
                    "stopping": self.kind == "auto"}
        self.requests += 1
        return self.engine.handle(request)


def serve_in_background(engine: QueryEngine, *, warm: bool = True,
                        log: Notify | None = None, kind: str = "watch") -> QueryServer:
    """Start a :class:`QueryServer` for ``engine`` on background threads and return it (stop it
    with ``.stop()``; ``cs server stop`` cannot). With ``warm``, models load on a background
    thread too (``.ready`` is set when done); queries arriving before then wait for the model
    instead of failing."""
    server = QueryServer(engine, log=log, kind=kind).start()
    if warm:
        threading.Thread(target=server.warm, name="cs-serve-warm", daemon=True).start()
    else:
        server.ready.set()
    return server


def _describe(request: Mapping[str, Any], response: Mapping[str, Any], seconds: float) -> str:
    """One log line per request: op, argument, outcome, time."""
    arg = request.get("query") or request.get("location") or ""
    if response.get("ok"):
        outcome = f"{len(response['hits'])} hits" if "hits" in response else "ok"
    else:
        outcome = str(response.get("decline") or response.get("error", {}).get("message"))
    return f"{request.get('op')} {arg!r} -> {outcome} in {1000 * seconds:.0f} ms"


def _send(conn: socket.socket, message: Mapping[str, Any]) -> None:
    conn.sendall(json.dumps(message, ensure_ascii=False).encode() + b"\n")


def _same_user(conn: socket.socket) -> bool:
    """Linux: the peer runs as our user (the 0600 socket in a 0700 directory already ensures it;
    this holds even if someone loosens the directory)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _, uid, _ = struct.unpack("3i", creds)
    return uid == os.getuid()


def _bind(path: Path, label: str, *, wait: float = 0.0) -> _Listener:
    """Lock, then bind the socket at ``path`` (serving ``label``) with mode 0600.

    The socket is bound under a temporary name, made 0600, listening, and only then renamed into
    place, so a client never sees it half-ready or with looser permissions. The ``.lock`` file is
    never removed: removing it could let two servers lock two different files of the same name.
    """
    import fcntl

    _private_dir(path.parent)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise CodeSearchError(f"the socket path {path} is too long for a Unix socket",
                              hint="set XDG_RUNTIME_DIR (or CS_HOME) to a shorter directory")
    lock_path = path.with_suffix(".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as err:
            busy = err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
            if busy and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            other = _read_pid(fd)
            os.close(fd)
            if not busy:
                raise
            raise ServerBusyError(
                f"{label} is already served" + (f" by process {other}" if other else ""),
                hint="cs find and cs similar use it already; stop it first to serve again",
            ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        # Whatever is at `path` now is stale: its server held this lock and is gone.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            sock.listen(64)
            os.replace(tmp, path)
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return _Listener(path, sock, fd, path.stat().st_ino)
    except BaseException:
        os.close(fd)
        raise


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


# --- the client (codesearch/client.py has the light part) -----------------------------------


def find_server(root: Path, *, index_dir: str | Path | None = None,
                index_uri: str | None = None) -> Path | None:
    """The socket of a live ``cs serve`` / ``cs watch`` server for ``root``, or None."""
    from codesearch.query import client
    target = client.locate(root, index_dir=index_dir, index_uri=index_uri)
    if target is None or client.ping(target.socket) is None:
        return None
    return target.socket


def ping(root: Path, *, index_dir: str | Path | None = None,
         index_uri: str | None = None) -> dict[str, Any] | None:
    """The ``ping`` answer of the ``cs serve`` / ``cs watch`` server for ``root`` (pid, roots,
    device, models), or None."""
    from codesearch.query import client
    target = client.locate(root, index_dir=index_dir, index_uri=index_uri)
    return client.ping(target.socket) if target is not None else None


def search_via_server_or_local(
    op: Literal["find", "similar"], root: Path, arg: str, options: SearchOptions, *,
    model: str | None = None, device: str | None = None, index_dir: str | Path | None = None,
    index_uri: str | None = None, storage_options: Mapping[str, str] | None = None,
    use_server: bool = True, cwd: Path | None = None, notify: Notify | None = None,
) -> tuple[list[Hit], Path]:
    """Run ``cs find`` (``arg`` is the query) or ``cs similar`` (``arg`` is FILE:LINE) for
    ``root``: through a server when one answers (:func:`codesearch.query.client.query`, which may
    start the automatic one), else in-process. Returns the hits and the resolved root to render
    them against; both paths give the same hits and raise the same errors."""
    from codesearch.query import client
    cwd = cwd or Path.cwd()
    if use_server and client.servers_enabled():
        answer = client.query(op, root, arg, options_to_dict(options), model=model,
                              device=device, index_dir=index_dir, index_uri=index_uri,
                              storage_options=storage_options, cwd=cwd, notify=notify)
        if answer is not None:
            return answer.hits, answer.root
    from codesearch.query.searcher import Searcher

    searcher = Searcher.open(root, index_uri=index_uri, index_dir=index_dir,
                             storage_options=dict(storage_options or {}) or None, model=model,
                             device=device, notify=notify, loader=query_loader(notify))
    if op == "find":
        return searcher.find(arg, options), searcher.root
    return searcher.similar(arg, options, cwd=cwd), searcher.root


def run_auto_server(index_set: Path, *, roots: Sequence[Path] = (), device: str | None = None,
                    after_pid: int | None = None, idle_timeout: float | None = None,
                    log: Notify | None = None) -> int:
    """The automatic server (``cs server run``, started by :func:`codesearch.query.client.query`):
    serve every root indexed under ``index_set`` on its socket until idle for
    ``idle_timeout`` seconds, ``cs server stop``, SIGTERM, a client of another build, or the
    index directory disappearing. Binds first; loads the models of ``roots`` once ``after_pid``
    (the client that started it, answering its own query meanwhile) has exited, or after 30 s,
    or at the first request. Returns the exit status (0 also when another server won the
    socket)."""
    sock = auto_socket_path(index_set, device)
    engine = QueryEngine(list(roots), index_dir=index_set, device=device, notify=log,
                         index_set=index_set)
    server = QueryServer(engine, log=log, sockets=[sock], kind="auto", stoppable=True,
                         lock_wait=LOCK_WAIT)
    try:
        server.start()
    except ServerBusyError as err:
        if log:
            log(f"not starting: {err.message}")
        return 0
    with contextlib.suppress(OSError):
        sock.with_suffix(".starting").unlink()  # see client.start_auto_server
    if log:
        log(f"pid {os.getpid()} serving the indexes in {engine.index_set} on {sock} "
            f"(build {server.build}); exits after {idle_timeout or 0:.0f}s idle")

    def warm_later() -> None:
        deadline = time.monotonic() + 30.0
        while (after_pid and _alive(after_pid) and not server.requests
               and time.monotonic() < deadline and not server._stop_requested.is_set()):
            time.sleep(0.1)
        server.warm()
        if log:
            log(f"ready: {', '.join(engine.pool.loaded()) or 'no model loaded'}")

    threading.Thread(target=warm_later, name="cs-auto-warm", daemon=True).start()
    server.serve_forever(idle_timeout=idle_timeout,
                         while_true=lambda: engine.index_set is not None
                         and engine.index_set.is_dir())
    if log:
        log("stopped")
    return 0


def query_loader(notify: Notify | None = None) -> Callable[..., Embedder]:
    """A model loader for a process that only embeds queries (``cs find``, ``cs similar``
    in-process): the same thread count as a query server (:func:`limit_model_threads`), so both
    paths compute the same query vectors (in bf16, one thread and two differ in the third
    decimal) and print the same results."""

    def load(model: str, *, dim: int | None = None, device: str | None = None,
             precision: str | None = None, **_: Any) -> Embedder:
        from codesearch.embed import load_embedder

        limit_model_threads()
        return load_embedder(model, dim=dim, device=device, precision=precision, notify=notify)

    return load


def limit_model_threads() -> None:
    """Run a query server's forward passes on ``CS_SERVER_THREADS`` cores (default 1). A query
    is a few tokens: more threads save little, and each forward pass then waits for every
    thread of the pool to be scheduled, which on a busy machine cost ~1 s per MiniLM query
    against ~40 ms on one thread (measured on the shared 2-core machine, load 7)."""
    try:
        threads = max(1, int(os.environ.get("CS_SERVER_THREADS", "1")))
    except ValueError:
        threads = 1
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(threads)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running(engine: QueryEngine, *, warm: bool = True) -> Iterator[QueryServer]:
    """``with running(engine) as server:`` a background server for the block."""
    server = serve_in_background(engine, warm=warm)
    try:
        yield server
    finally:
        server.stop()


__all__ = [
    "PROTOCOL_VERSION",
    "EmbedderPool",
    "QueryEngine",
    "QueryServer",
    "ServedRoot",
    "ServerBusyError",
    "find_server",
    "ping",
    "request",
    "runtime_dir",
    "search_via_server_or_local",
    "serve_in_background",
    "socket_path",
    "running",
]

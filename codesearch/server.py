"""Warm queries: a long-lived process keeps the model loaded and answers find and similar over a
local Unix socket; ``cs find`` and ``cs similar`` use it when it is there and work in-process when
it is not, with identical results.

Discovery: one socket per served (root, index) pair, named by a hash of both, in the user's runtime
directory (:func:`runtime_dir`): ``<runtime>/<key>.sock``, mode 0600, in a 0700 directory. A client
finds the index its ``--path`` would search in-process (its own, else the nearest indexed ancestor,
limited to ``--path``) by looking for index directories, and computes the key from that root and
index location, so it finds exactly the server for its index and nothing else. Next to each
socket, ``<key>.lock`` is held (flock) by the live server for its whole life: a second server for
the same root fails fast, and a socket file whose lock is free was left by a crashed server, so
the next server removes it. Clients that meet such a stale file get "connection refused" and work
in-process.

Protocol (version :data:`PROTOCOL_VERSION`): newline-delimited JSON, one request and one response
per line, any number per connection. Requests::

    {"v": 1, "op": "find", "root": ABS, "scope": SUBDIR|null, "query": Q,
     "options": {...SearchOptions}, "model": M|null, "device": D|null}
    {"v": 1, "op": "similar", "root": ABS, "scope": SUBDIR|null, "location": "FILE:LINE",
     "cwd": ABS, "options": {...}, "model": M|null, "device": D|null}
    {"v": 1, "op": "status", "root": ABS}
    {"v": 1, "op": "ping"}

Responses: ``{"v": 1, "ok": true, "hits": [Hit fields...]}`` (or ``"status"`` / ``"server"``);
``{"v": 1, "ok": false, "error": {"type", "message", "hint", "exit_code"}}`` for an error the
in-process path would raise the same way (the client re-raises it); ``{"v": 1, "ok": false,
"decline": REASON}`` when this server cannot answer faithfully (another protocol version, another
device, a root it does not serve, an internal failure): the client then works in-process.

The server opens the index afresh for every request, so it sees every commit made by ``cs index``
or ``cs watch`` in other processes (a rebuild with another model included).

Nothing on the client path imports torch, transformers or lancedb.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import selectors
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from codesearch import config
from codesearch.errors import CodeSearchError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from codesearch.embed import Embedder
    from codesearch.search import Hit, Searcher, SearchOptions

PROTOCOL_VERSION = 1
# A request is a query or a FILE:LINE plus options; anything this large is not one.
MAX_REQUEST_BYTES = 1 << 20
CONNECT_TIMEOUT = 2.0
# How long a client waits for an answer before working in-process (a server may be loading a
# model another client asked for).
RESPONSE_TIMEOUT = 600.0
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS), NUL included.
MAX_SOCKET_PATH = 100

Notify = Callable[[str], None]


class ServerBusyError(CodeSearchError):
    """Another server already serves this root."""


# --- where sockets live ------------------------------------------------------------------------


def runtime_dir() -> Path:
    """The private directory holding the sockets: ``CS_HOME/run`` when CS_HOME is set (tests),
    else ``$XDG_RUNTIME_DIR/codesearch``, else ``<cache>/run``."""
    if os.environ.get("CS_HOME"):
        return config.cache_dir() / "run"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "codesearch"
    return config.cache_dir() / "run"


def server_key(root: Path, index_uri: str) -> str:
    """The name shared by a server and its clients: a hash of the resolved root and its index."""
    ident = f"{root.expanduser().resolve()}\n{index_uri}"
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def socket_path(root: Path, index_uri: str) -> Path:
    """Where the server for ``root`` (with its index at ``index_uri``) listens."""
    return runtime_dir() / f"{server_key(root, index_uri)}.sock"


def _private_dir(path: Path) -> Path:
    """Create ``path`` (0700) or check an existing one is ours, and tighten it to 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise CodeSearchError(f"{path} belongs to another user",
                              hint="set XDG_RUNTIME_DIR or CS_HOME to a directory of yours")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


# --- models shared by threads -------------------------------------------------------------------


class _LockedEmbedder:
    """An embedder whose calls are serialised: fast tokenizers fail ("Already borrowed") when one
    instance is used by two threads at once, and one forward pass at a time is what a CPU does
    best anyway."""

    def __init__(self, inner: Embedder, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock
        self.model_id = inner.model_id
        self.revision = inner.revision
        self.dim = inner.dim
        self.prefix_scheme = inner.prefix_scheme
        self.max_length = inner.max_length

    def embed_queries(self, texts: Sequence[str], task: str = "nl2code") -> np.ndarray:
        with self._lock:
            return self._inner.embed_queries(texts, task=task)

    def embed_documents(self, texts: Sequence[str], task: str = "nl2code",
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
        with self._lock:
            return self._inner.embed_documents(texts, task=task, progress=progress)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class EmbedderPool:
    """Loaded models, shared by every request (and by a watcher's indexer): ``pool.load`` has the
    signature of the ``loader`` that :class:`codesearch.search.Searcher` and
    :class:`codesearch.indexer.Indexer` accept. Each model loads once, even when several threads
    ask for it at the same time; calls into one model are serialised."""

    def __init__(self, notify: Notify | None = None,
                 load: Callable[..., Embedder] | None = None) -> None:
        self._notify = notify
        self._load = load
        self._lock = threading.Lock()
        self._models: dict[tuple[str, int | None, str | None], _LockedEmbedder] = {}
        self._loading: dict[tuple[str, int | None, str | None], threading.Lock] = {}

    def load(self, model: str, *, dim: int | None = None, device: str | None = None,
             **_: Any) -> Embedder:
        """The embedder for (model, dim, device), loading it on first use."""
        key = (model, dim, device)
        with self._lock:
            if key in self._models:
                return self._models[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one loader per key; the others wait for it instead of loading a copy
            with self._lock:
                if key in self._models:
                    return self._models[key]
            if self._load is not None:
                inner = self._load(model, dim=dim, device=device)
            else:
                from codesearch.embed import load_embedder

                inner = load_embedder(model, dim=dim, device=device, notify=self._notify)
            locked = _LockedEmbedder(inner, threading.Lock())
            with self._lock:
                self._models[key] = locked
            return locked

    def loaded(self) -> list[str]:
        """``model (dim)`` for every loaded model."""
        with self._lock:
            return [f"{m} (dim {e.dim})" for (m, _, _), e in self._models.items()]


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
    from codesearch.search import SearchOptions

    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return SearchOptions(**fields)


def hit_to_wire(hit: Hit) -> dict[str, Any]:
    """Every field of a hit, score unrounded (JSON floats round-trip exactly), so the client
    renders exactly what the in-process path renders."""
    return dataclasses.asdict(hit)


def hit_from_wire(data: Mapping[str, Any]) -> Hit:
    from codesearch.search import Hit

    return Hit(**data)


class QueryEngine:
    """Answers find, similar and status for a set of roots with models kept loaded. The index is
    opened for every request (cheap: a few small reads), so commits by other processes, a rebuild
    included, are seen at once. ``model`` is used for requests naming none (it must fit each
    index, as ``cs find --model`` must); by default each index's own model. Thread-safe. Used by
    :class:`QueryServer`, ``cs watch`` and the MCP server."""

    def __init__(self, roots: Sequence[Path], *, index_dir: str | Path | None = None,
                 index_uri: str | None = None, storage_options: Mapping[str, str] | None = None,
                 device: str | None = None, model: str | None = None,
                 pool: EmbedderPool | None = None, notify: Notify | None = None) -> None:
        from codesearch.indexer import model_spec
        from codesearch.store import resolve_index_uri

        if not roots:
            raise UsageError("no root to serve")
        if index_uri and len(roots) > 1:
            raise UsageError("--index-uri names one index, but several roots were given",
                             hint="serve one root per --index-uri, or use --index-dir")
        self.notify = notify
        self.device = device if device is not None else config.default_device()
        # For requests that name no model (like `cs find` without --model): None means each
        # index's own model.
        self.model = model_spec(model) if model else None
        self.pool = pool or EmbedderPool(notify=notify)
        self.roots: dict[Path, ServedRoot] = {}
        for root in roots:
            root = root.expanduser()
            if not root.is_dir():
                raise UsageError(f"{root} is not a directory" if root.exists()
                                 else f"{root} does not exist")
            resolved = root.resolve()
            uri = resolve_index_uri(resolved, index_dir=index_dir, index_uri=index_uri)
            self.roots[resolved] = ServedRoot(resolved, uri, dict(storage_options or {}))

    def served(self, root: Path) -> ServedRoot | None:
        """The served root equal to ``root`` (resolved), if any."""
        return self.roots.get(root.expanduser().resolve())

    def _served(self, root: Path) -> ServedRoot:
        served = self.served(root)
        if served is None:
            raise UsageError(f"{root} is not served here",
                             hint="served: " + ", ".join(str(r) for r in self.roots))
        return served

    def searcher(self, root: Path, model: str | None = None) -> Searcher:
        """A Searcher over the latest committed version of ``root``'s index, sharing loaded
        models. Raises what :meth:`Searcher.open` raises."""
        from codesearch.search import Searcher
        from codesearch.store import Store

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

    def status(self, root: Path) -> dict[str, Any]:
        """What ``cs status --json`` prints for ``root``."""
        from codesearch.indexer import index_status
        from codesearch.store import Store

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
        try:
            options = options_from_dict(req.get("options") or {})
        except TypeError as err:
            raise _Decline(f"bad options: {err}") from None
        model, scope = req.get("model"), req.get("scope")
        if op == "find":
            hits = self.find(root, str(req["query"]), options, model=model, scope=scope)
        elif op == "similar":
            cwd = Path(str(req.get("cwd") or root))
            hits = self.similar(root, str(req["location"]), options, model=model, cwd=cwd,
                                scope=scope)
        else:
            raise _Decline(f"unknown op {op!r}")
        return {"hits": [hit_to_wire(h) for h in hits]}

    def info(self) -> dict[str, Any]:
        """What ``ping`` answers: who serves what, with which models loaded."""
        return {"pid": os.getpid(), "protocol": PROTOCOL_VERSION,
                "roots": [str(r) for r in self.roots], "device": self.device,
                "models": self.pool.loaded()}


class _Decline(Exception):
    """This server cannot answer the request faithfully; the client should work in-process."""


# --- the socket server -------------------------------------------------------------------------


@dataclass
class _Listener:
    served: ServedRoot
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

    def __init__(self, engine: QueryEngine, *, log: Notify | None = None) -> None:
        self.engine = engine
        self.log = log
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
        """The socket of each served root, in order."""
        return [lst.served.socket for lst in self._listeners]

    def start(self) -> QueryServer:
        """Bind every root's socket and start accepting. Idempotent."""
        if self._accept_thread is not None:
            return self
        try:
            for served in self.engine.roots.values():
                self._listeners.append(_bind(served))
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
        self.ready.set()

    def serve_forever(self, *, handle_signals: bool = True) -> None:
        """Block until :meth:`stop` is called (from another thread) or, with ``handle_signals``
        and on the main thread, SIGTERM/SIGINT/SIGHUP arrive; then stop cleanly."""
        self.start()
        previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                previous[sig] = signal.signal(sig, lambda *_: self._stop_requested.set())
        try:
            while not self._stop_requested.wait(0.5):
                pass
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
            path = lst.served.socket
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
                    response = self.engine.handle(request)
                    if self.log:  # before answering, so a client that got its answer sees it
                        self.log(_describe(request, response, time.perf_counter() - start))
                    _send(conn, response)
        except OSError:
            pass  # the client went away
        finally:
            with self._mutex:
                self._conns.discard(conn)
                self._workers.discard(threading.current_thread())


def serve_in_background(engine: QueryEngine, *, warm: bool = True,
                        log: Notify | None = None) -> QueryServer:
    """Start a :class:`QueryServer` for ``engine`` on background threads and return it (stop it
    with ``.stop()``). With ``warm``, models load on a background thread too (``.ready`` is set
    when done); queries arriving before then wait for the model instead of failing."""
    server = QueryServer(engine, log=log).start()
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


def _bind(served: ServedRoot) -> _Listener:
    """Lock, then bind ``served``'s socket with mode 0600.

    The socket is bound under a temporary name, made 0600, listening, and only then renamed into
    place, so a client never sees it half-ready or with looser permissions. The ``.lock`` file is
    never removed: removing it could let two servers lock two different files of the same name.
    """
    import fcntl

    path = served.socket
    _private_dir(path.parent)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise CodeSearchError(f"the socket path {path} is too long for a Unix socket",
                              hint="set XDG_RUNTIME_DIR (or CS_HOME) to a shorter directory")
    lock_path = path.with_suffix(".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        other = _read_pid(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ServerBusyError(
                f"{served.root} is already served" + (f" by process {other}" if other else ""),
                hint="cs find and cs similar use it already; stop it first to serve again",
            ) from None
        raise
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
        return _Listener(served, sock, fd, path.stat().st_ino)
    except BaseException:
        os.close(fd)
        raise


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


# --- the client ----------------------------------------------------------------------------------


class _Unavailable(Exception):
    """No server answered faithfully; work in-process."""


def request(path: Path, payload: Mapping[str, Any], *,
            timeout: float = RESPONSE_TIMEOUT) -> dict[str, Any]:
    """Send one request to the server at ``path`` and return its response object. Raises
    OSError (no server, stale socket: connection refused, timeout) or ValueError (a reply that
    is not JSON)."""
    st = path.stat()
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        raise ConnectionRefusedError(f"{path} is not our socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(str(path))
        sock.settimeout(timeout)
        sock.sendall(json.dumps({"v": PROTOCOL_VERSION, **payload}).encode() + b"\n")
        with sock.makefile("rb") as reader:
            line = reader.readline()
    if not line:
        raise ConnectionResetError("the server closed the connection")
    response = json.loads(line)
    if not isinstance(response, dict):
        raise ValueError("not a response object")
    return response


def find_server(root: Path, *, index_dir: str | Path | None = None,
                index_uri: str | None = None) -> Path | None:
    """The socket of a live server for ``root``, or None (no file, or a stale one)."""
    path = _socket_for(root, index_dir=index_dir, index_uri=index_uri)
    if path is None:
        return None
    try:
        request(path, {"op": "ping"}, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError):
        return None
    return path


def ping(root: Path, *, index_dir: str | Path | None = None,
         index_uri: str | None = None) -> dict[str, Any] | None:
    """The ``ping`` answer of the server for ``root`` (pid, roots, device, models), or None."""
    path = _socket_for(root, index_dir=index_dir, index_uri=index_uri)
    if path is None:
        return None
    try:
        response = request(path, {"op": "ping"}, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError):
        return None
    server = response.get("server")
    return server if response.get("ok") and isinstance(server, dict) else None


@dataclass(frozen=True)
class _Target:
    root: Path  # the indexed root the in-process path would search
    socket: Path
    scope: str | None  # the subdirectory asked for, when it is inside that root


def _locate(root: Path, *, index_dir: str | Path | None,
            index_uri: str | None) -> _Target | None:
    """Which index the in-process path would search for ``root`` and where its server would
    listen, found the way :meth:`codesearch.search.Searcher.open` finds it (``root``'s own index,
    else the nearest indexed ancestor, limited to ``root``) but by looking for index directories
    only: no index is opened, so nothing heavy is imported. None when ``root`` is not a directory
    (the in-process path reports that) or the socket path would be too long."""
    from codesearch.store import is_remote, resolve_index_uri

    root = root.expanduser()
    if not root.is_dir():
        return None
    resolved = root.resolve()
    uri = resolve_index_uri(resolved, index_dir=index_dir, index_uri=index_uri)
    target = _Target(resolved, socket_path(resolved, uri), None)
    explicit = index_uri or os.environ.get("CS_INDEX_URI")
    if not (explicit or is_remote(uri) or Path(uri).is_dir()):
        for parent in resolved.parents:
            parent_uri = resolve_index_uri(parent, index_dir=index_dir)
            if Path(parent_uri).is_dir():
                target = _Target(parent, socket_path(parent, parent_uri),
                                 resolved.relative_to(parent).as_posix())
                break
    return target if len(os.fsencode(target.socket)) <= MAX_SOCKET_PATH else None


def _socket_for(root: Path, *, index_dir: str | Path | None,
                index_uri: str | None) -> Path | None:
    target = _locate(root, index_dir=index_dir, index_uri=index_uri)
    return target.socket if target is not None else None


def _search_via_server(op: str, root: Path, payload: dict[str, Any], *,
                       index_dir: str | Path | None, index_uri: str | None,
                       notify: Notify | None) -> tuple[list[Hit], Path]:
    target = _locate(root, index_dir=index_dir, index_uri=index_uri)
    if target is None:
        raise _Unavailable
    try:
        response = request(target.socket, {"op": op, "root": str(target.root),
                                           "scope": target.scope, **payload})
    except FileNotFoundError:
        raise _Unavailable from None
    except TimeoutError:
        if notify:
            notify(f"The server at {target.socket} did not answer in time; searching "
                   "in-process.")
        raise _Unavailable from None
    except (OSError, ValueError):  # refused (stale socket), reset, garbage
        raise _Unavailable from None
    if response.get("v") != PROTOCOL_VERSION:
        raise _Unavailable
    if response.get("ok"):
        return [hit_from_wire(h) for h in response["hits"]], target.root
    error = response.get("error")
    if isinstance(error, dict) and error.get("type") != "IndexMissingError":
        raise _rebuild_error(error)
    # No index yet (a server started before `cs index`): the in-process path words that error
    # with the path as the user typed it.
    raise _Unavailable


def _rebuild_error(error: Mapping[str, Any]) -> CodeSearchError:
    """The server's error as the exception the in-process path would have raised (same class
    where errors.py has it, same message, hint and exit code)."""
    from codesearch import errors
    from codesearch.errors import ExitCode

    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, CodeSearchError)):
        cls = CodeSearchError
    try:
        code: ExitCode | None = ExitCode(int(error.get("exit_code", ExitCode.ERROR)))
    except ValueError:
        code = None
    return cls(str(error.get("message")), hint=error.get("hint"), exit_code=code)


def search_via_server_or_local(
    op: Literal["find", "similar"], root: Path, arg: str, options: SearchOptions, *,
    model: str | None = None, device: str | None = None, index_dir: str | Path | None = None,
    index_uri: str | None = None, storage_options: Mapping[str, str] | None = None,
    use_server: bool = True, cwd: Path | None = None, notify: Notify | None = None,
) -> tuple[list[Hit], Path]:
    """Run ``cs find`` (``arg`` is the query) or ``cs similar`` (``arg`` is FILE:LINE) for
    ``root``: through the server for that root when one answers, else in-process. Returns the
    hits and the resolved root to render them against; both paths give the same hits and raise
    the same errors. The server path imports no model code."""
    cwd = cwd or Path.cwd()
    if use_server:
        from codesearch.indexer import model_spec

        payload: dict[str, Any] = {
            "options": options_to_dict(options),
            # Relative model directories and FILE:LINE mean what they mean here, not there.
            "model": model_spec(model) if model else None,
            "device": device if device is not None else config.default_device(),
        }
        if op == "find":
            payload["query"] = arg
        else:
            payload["location"] = arg
            payload["cwd"] = str(cwd)
        with contextlib.suppress(_Unavailable):
            return _search_via_server(op, root, payload, index_dir=index_dir,
                                      index_uri=index_uri, notify=notify)
    from codesearch.search import Searcher

    searcher = Searcher.open(root, index_uri=index_uri, index_dir=index_dir,
                             storage_options=dict(storage_options or {}) or None, model=model,
                             device=device, notify=notify)
    if op == "find":
        return searcher.find(arg, options), searcher.root
    return searcher.similar(arg, options, cwd=cwd), searcher.root


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

"""Warm queries, the socket side: a long-lived process keeps models loaded and answers queries
over a private Unix socket through a :class:`~codesearch.query.service.QueryService` (the same
route ``cs find`` takes in-process, so the answers are identical). Where sockets live and what
goes over them: :mod:`codesearch.query.protocol`; the asking side: :mod:`codesearch.query.client`.

Three kinds of server, each holding a ``.lock`` (flock) beside its socket for its whole life:

- ``cs serve ROOT...`` and ``cs watch`` (:func:`watch_and_serve`): one socket per served (root,
  index) pair; they answer for those roots only;
- the automatic server (:func:`run_auto_server`, ``cs server run``), started in the background by
  the first ``cs find`` / ``cs similar`` of an index directory that finds none. It answers for
  every root indexed in that directory, loads each model once for all of them, and exits after
  ``CS_SERVER_IDLE`` seconds without a request, on ``cs server stop``, or when a client of
  another build asks it anything.

A second server for the same socket fails fast; a socket file whose lock is free was left by a
crashed server, and the next server removes it. Clients that meet such a stale file get
"connection refused" and work in-process (and start a fresh automatic server).
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codesearch import __version__, config
from codesearch.embed.pool import EmbedderPool
from codesearch.errors import CodeSearchError
from codesearch.index.indexer import IndexOptions, ProgressFn
from codesearch.index.watch import StatusFn, Watcher, WatchOptions, WatchStatus, watch_root
from codesearch.location import IndexSettings
from codesearch.query.protocol import (
    MAX_SOCKET_PATH,
    PROTOCOL_VERSION,
    auto_socket_path,
    build_id,
    error_to_wire,
    private_dir,
    socket_path,
)
from codesearch.query.request import Query
from codesearch.query.service import QueryService

# A request is a query or a FILE:LINE plus options; anything this large is not one.
MAX_REQUEST_BYTES = 1 << 20
# How long a starting automatic server waits for the lock of one that is exiting.
LOCK_WAIT = 10.0

Notify = Callable[[str], None]


class ServerBusyError(CodeSearchError):
    """Another server already serves this root."""


# --- requests -> responses -----------------------------------------------------------------------


def handle(service: QueryService, req: Mapping[str, Any]) -> dict[str, Any]:
    """One protocol request -> one response (see query.protocol), answered by ``service``.
    Never raises."""
    try:
        return {"v": PROTOCOL_VERSION, "ok": True, **_dispatch(service, req)}
    except _Decline as decline:
        return {"v": PROTOCOL_VERSION, "ok": False, "decline": str(decline)}
    except CodeSearchError as err:
        return {"v": PROTOCOL_VERSION, "ok": False, "error": error_to_wire(err)}
    except Exception as err:  # noqa: BLE001 - the client works in-process instead
        if service.notify:
            service.notify(f"warning: request failed: {type(err).__name__}: {err}")
        return {"v": PROTOCOL_VERSION, "ok": False,
                "decline": f"internal error: {type(err).__name__}"}


def _dispatch(service: QueryService, req: Mapping[str, Any]) -> dict[str, Any]:
    if req.get("v") != PROTOCOL_VERSION:
        raise _Decline(f"protocol version {req.get('v')!r} (this server speaks "
                       f"{PROTOCOL_VERSION})")
    op = req.get("op")
    if op == "ping":
        return {"server": service.info()}
    root = Path(str(req.get("root", "")))
    location = service.served(root) if root.is_absolute() else None
    if location is None:
        raise _Decline(f"root {root} is not served here")
    if op == "status":
        return {"status": service.status(location)}
    if op != "answer":
        raise _Decline(f"unknown op {op!r}")
    device = req.get("device")
    if device is not None and device != service.device:
        raise _Decline(f"device {device} asked, this server runs on {service.device or 'auto'}")
    precision = config.default_precision()
    if req.get("precision") != precision:  # it loads models at its own precision only
        raise _Decline(f"precision {req.get('precision') or 'auto'} asked, this server "
                       f"loads {precision or 'auto'}")
    try:
        query = Query.from_dict(req.get("query") or {})
    except (KeyError, TypeError, ValueError) as err:
        raise _Decline(f"bad query: {err}") from None
    scope = req.get("scope")
    if scope:
        parts = Path(scope).parts
        if Path(scope).is_absolute() or ".." in parts or not (location.root / scope).is_dir():
            raise _Decline(f"bad scope {scope!r}")
        location = replace(location, scope=Path(scope).as_posix())
    return {"answer": service.answer(location, query).to_dict()}


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
    """Serves a :class:`QueryService` on one Unix socket per root, a thread per connection.

    ``start()`` binds (raising ServerBusyError when another server has a root) and returns at
    once; ``serve_forever()`` blocks until ``stop()`` or SIGTERM/SIGINT; ``stop()`` closes every
    socket and removes its file. Usable as a context manager. ``cs watch`` runs one in the
    background: ``server = serve_in_background(service)`` ... ``server.stop()``.
    """

    def __init__(self, service: QueryService, *, log: Notify | None = None,
                 sockets: Sequence[Path] | None = None, kind: str = "serve",
                 stoppable: bool = False, lock_wait: float = 0.0) -> None:
        """``sockets``: where to listen (default: each served root's own socket). ``kind``
        names the server in ``cs server status`` (serve, watch, auto). ``stoppable``: a
        ``shutdown`` request (``cs server stop``) stops it; an automatic server also stops when
        a client of another build asks it anything. ``lock_wait``: seconds to wait for the
        socket's lock while another server is exiting."""
        self.service = service
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
        """What ``ping`` answers: the service's facts plus this server's."""
        return {**self.service.info(), "protocol": PROTOCOL_VERSION, "version": __version__,
                "kind": self.kind, "build": self.build,
                "started_at": self.started_at, "requests": self.requests,
                "idle_s": round(self.idle_for(), 1), "ready": self.ready.is_set()}

    def start(self) -> QueryServer:
        """Bind every socket and start accepting. Idempotent."""
        if self._accept_thread is not None:
            return self
        paths = self._sockets if self._sockets is not None else [
            socket_path(loc.root, loc.uri) for loc in self.service.locations.values()]
        labels = [str(p) for p in paths] if self._sockets is not None else [
            str(r) for r in self.service.locations]
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
        """Load the models now (see :meth:`QueryService.warm`), then mark the server ready."""
        self.service.warm()
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
                    # A ping (`cs server status`, a client looking for a server) is not work:
                    # counted, it would always answer "idle 0s" about itself and keep an idle
                    # server alive.
                    work = request.get("op") != "ping"
                    if work:
                        with self._mutex:
                            self._active += 1
                    try:
                        response = self._handle(request)
                    finally:
                        if work:
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
        the service."""
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
        return handle(self.service, request)


def serve_in_background(service: QueryService, *, warm: bool = True,
                        log: Notify | None = None, kind: str = "watch") -> QueryServer:
    """Start a :class:`QueryServer` for ``service`` on background threads and return it (stop it
    with ``.stop()``; ``cs server stop`` cannot). With ``warm``, models load on a background
    thread too (``.ready`` is set when done); queries arriving before then wait for the model
    instead of failing."""
    server = QueryServer(service, log=log, kind=kind).start()
    if warm:
        threading.Thread(target=server.warm, name="cs-serve-warm", daemon=True).start()
    else:
        server.ready.set()
    return server


def _describe(request: Mapping[str, Any], response: Mapping[str, Any], seconds: float) -> str:
    """One log line per request: op (find, similar, status...), argument, outcome, time."""
    query = request.get("query")
    op, arg = request.get("op"), ""
    if isinstance(query, dict):
        op, arg = query.get("op", op), query.get("text", "")
    if response.get("ok"):
        answer = response.get("answer")
        outcome = f"{len(answer['hits'])} hits" if isinstance(answer, dict) else "ok"
    else:
        outcome = str(response.get("decline") or response.get("error", {}).get("message"))
    return f"{op} {arg!r} -> {outcome} in {1000 * seconds:.0f} ms"


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

    private_dir(path.parent)
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
    settings = IndexSettings(index_dir=index_set)
    service = QueryService([settings.for_root(root) for root in roots], index_set=index_set,
                           device=device, pool=EmbedderPool(notify=log, queries_only=True),
                           notify=log)
    server = QueryServer(service, log=log, sockets=[sock], kind="auto", stoppable=True,
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
        log(f"pid {os.getpid()} serving the indexes in {service.index_set} on {sock} "
            f"(build {server.build}); exits after {idle_timeout or 0:.0f}s idle")

    def warm_later() -> None:
        deadline = time.monotonic() + 30.0
        while (after_pid and _alive(after_pid) and not server.requests
               and time.monotonic() < deadline and not server._stop_requested.is_set()):
            time.sleep(0.1)
        server.warm()
        if log:
            log(f"ready: {', '.join(service.info()['models']) or 'no model loaded'}")

    threading.Thread(target=warm_later, name="cs-auto-warm", daemon=True).start()
    server.serve_forever(idle_timeout=idle_timeout,
                         while_true=lambda: index_set.is_dir())
    if log:
        log("stopped")
    return 0


@dataclass
class ServeResult:
    """Whether ``cs watch`` answers queries over its socket, and why not when not."""

    serving: bool = False
    socket: str | None = None
    reason: str | None = None


def watch_and_serve(root: Path, settings: IndexSettings, *, options: IndexOptions,
                    watch_options: WatchOptions | None = None,
                    on_status: StatusFn | None = None, progress: ProgressFn | None = None,
                    notify: Notify | None = None,
                    on_serve: Callable[[ServeResult], None] | None = None) -> WatchStatus:
    """``cs watch`` with queries served: keep the index of ``root`` current
    (:func:`codesearch.index.watch.watch_root`) and, from the end of its catch-up on, answer find
    and similar over its socket with the watcher's loaded model. When that is not possible
    (another server already serves the root, ...) watching goes on without it; ``on_serve``
    says which."""
    # The same device name on both sides, so indexing and queries share one loaded model.
    options = replace(options, device=options.device or config.default_device())
    pool = EmbedderPool(notify=notify)
    servers: list[QueryServer] = []

    def on_ready(_: Watcher) -> None:
        # From the end of the catch-up on: earlier answers would come from a stale index, and
        # until then cs find works in-process.
        result = ServeResult()
        try:
            location = settings.for_root(root)
            service = QueryService([location], device=options.device, pool=pool, notify=notify)
            servers.append(serve_in_background(service, warm=False))
        except (CodeSearchError, OSError) as err:  # ServerBusyError: another one serves
            result.reason = str(err)
        else:
            result.serving, result.socket = True, str(socket_path(location.root, location.uri))
        if on_serve is not None:
            on_serve(result)

    try:
        return watch_root(root, settings, options=options, watch_options=watch_options,
                          on_status=on_status, progress=progress, notify=notify,
                          loader=pool.load, on_ready=on_ready)
    finally:
        for server in servers:
            server.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running(service: QueryService, *, warm: bool = True) -> Iterator[QueryServer]:
    """``with running(service) as server:`` a background server for the block."""
    server = serve_in_background(service, warm=warm)
    try:
        yield server
    finally:
        server.stop()

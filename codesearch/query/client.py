"""The client side of warm queries, and the one route of a query from the command line: ask the
query server that can answer it, else answer in-process (:func:`answer`); start the automatic
server in the background when there is none.

This module is on the path of every query, so it imports the standard library and the light
modules (config, errors, location, query.request, query.protocol) only: no torch, transformers,
lancedb, pyarrow or numpy. The in-process answer (:mod:`codesearch.query.service`) is imported
only when no server answers.

Two kinds of server answer queries (see :mod:`codesearch.query.protocol` for where they live):
one started by ``cs serve`` or ``cs watch`` for one (root, index) pair, and the automatic server
of an index set, started by the first ``cs find`` / ``cs similar`` that finds none
(:func:`start_auto_server`), which answers its own query in-process meanwhile so it is no slower
than without a server. It serves every root indexed in its index directory, loads each model
once for all of them, and exits after ``CS_SERVER_IDLE`` seconds without a request (default 900).

Switches: ``--no-server`` or ``CS_NO_SERVER=1``: work in-process, use no server;
``CS_SERVER_AUTOSTART=0``: use running servers but start none (the test suite's default).

Every request carries this cs's build id; a server of another build declines (the client then
works in-process), and an automatic one exits so the next query starts a current one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codesearch import config
from codesearch.location import IndexLocation, IndexSettings
from codesearch.query.protocol import (
    AUTO_PREFIX,
    CONNECT_TIMEOUT,
    PROTOCOL_VERSION,
    auto_socket_path,
    error_from_wire,
    fits_socket,
    lock_is_held,
    private_dir,
    request,
    runtime_dir,
    socket_path,
)
from codesearch.query.request import Answer, Query

Notify = Callable[[str], None]
# How long a query waits for an automatic server that an earlier query started and that has not
# bound its socket yet (it waits up to 30 s for that query to end, then imports and binds); its
# model load is then waited for like any request's. Waiting costs about what loading the model
# in-process would (the first query's process and the server's load compete for the CPU either
# way), without a second copy of the model in memory.
STARTING_WAIT = 45.0


# --- switches -----------------------------------------------------------------------------------


def _flag(name: str) -> str:
    return os.environ.get(name, "").strip().lower()


def servers_enabled(no_server: bool = False) -> bool:
    """False with ``--no-server`` or ``CS_NO_SERVER=1``: work in-process."""
    return not (no_server or _flag("CS_NO_SERVER") in ("1", "true", "yes", "on"))


def autostart_enabled() -> bool:
    """False with ``CS_SERVER_AUTOSTART=0``: use running servers, start none."""
    return _flag("CS_SERVER_AUTOSTART") not in ("0", "false", "no", "off")


# --- the route ----------------------------------------------------------------------------------


def answer(query: Query, path: Path, settings: IndexSettings, *, device: str | None = None,
           no_server: bool = False, notify: Notify | None = None) -> Answer:
    """Answer ``query`` over the index serving ``path`` (:meth:`IndexSettings.locate`): through
    a query server when one answers faithfully (:func:`ask`, which may start the automatic one
    for next time), else in-process through the same :meth:`QueryService.answer` a server runs.
    Both give the same hits and raise the same errors."""
    query.check()  # before the index lookup: a bad FILE:LINE is not blamed on a missing index
    location = settings.locate(path)
    if servers_enabled(no_server):
        served = ask(location, query, device=device, notify=notify)
        if served is not None:
            return served
    from codesearch.query.service import QueryService

    return QueryService(device=device, notify=notify).answer(location, query)


class _Unavailable(Exception):
    """This server cannot answer; ``reason`` says why (missing, refused, build, declined)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ask(location: IndexLocation, query: Query, *, device: str | None = None,
        notify: Notify | None = None, autostart: bool | None = None) -> Answer | None:
    """``query`` answered by a server: the one serving exactly ``location``'s root (``cs
    serve``, ``cs watch``), else the automatic server of its index set. None when no server
    answers faithfully: the caller then works in-process. With no automatic server running (or a
    stale one, or one of another build), start one in the background first (unless
    ``autostart`` is False or ``CS_SERVER_AUTOSTART=0``); this query does not wait for it. A
    server's error (a line out of range) is raised as the in-process path raises it."""
    own_socket = socket_path(location.root, location.uri)
    if not fits_socket(own_socket):
        return None
    device = device if device is not None else config.default_device()
    payload = {"op": "answer", "root": str(location.root), "scope": location.scope,
               # Relative model directories and FILE:LINE mean what they mean here, not there.
               "query": _absolute(query).to_dict(),
               "device": device, "precision": config.default_precision()}
    with contextlib.suppress(_Unavailable):
        return _ask(own_socket, payload, notify)
    index_set = location.index_set
    if index_set is None:
        return None  # explicit index URIs and object stores: only servers started by hand
    auto_socket = auto_socket_path(index_set, device)
    try:
        return _ask(auto_socket, payload, notify)
    except _Unavailable as why:
        reason = why.reason
    if reason in ("missing", "refused") and _wait_for_starting_server(auto_socket):
        # A server started by an earlier query is on its way (see STARTING_WAIT).
        with contextlib.suppress(_Unavailable):
            return _ask(auto_socket, payload, notify)
    if (autostart if autostart is not None else autostart_enabled()) and reason in (
            "missing", "refused", "build"):
        # A server of another build is exiting now; the new one waits for its lock.
        start_auto_server(index_set, device=device, roots=[location.root], notify=notify,
                          replacing=reason == "build")
    return None


def _absolute(query: Query) -> Query:
    return replace(query, model=config.model_spec(query.model) if query.model else None,
                   cwd=query.cwd or Path.cwd())


def _ask(sock: Path, payload: dict[str, Any], notify: Notify | None) -> Answer:
    try:
        response = request(sock, payload)
    except FileNotFoundError:
        raise _Unavailable("missing") from None
    except TimeoutError:
        if notify:
            notify(f"The server at {sock} did not answer in time; searching in-process.")
        raise _Unavailable("timeout") from None
    except (OSError, ValueError):  # refused (stale socket), reset, garbage
        raise _Unavailable("refused") from None
    if response.get("v") != PROTOCOL_VERSION:
        raise _Unavailable("protocol")
    if response.get("ok"):
        try:
            return Answer.from_dict(response["answer"])
        except (KeyError, TypeError, ValueError):
            raise _Unavailable("protocol") from None
    if response.get("build_mismatch"):
        raise _Unavailable("build")
    error = response.get("error")
    if isinstance(error, dict) and error.get("type") != "IndexMissingError":
        raise error_from_wire(error)
    # Declined, or no index yet (a server started before `cs index`): the in-process path words
    # that error with the path as the user typed it.
    raise _Unavailable("declined")


def ping(sock: Path) -> dict[str, Any] | None:
    """What the server at ``sock`` says about itself (pid, kind, roots, models, build, idle), or
    None when nothing answers there."""
    try:
        response = request(sock, {"op": "ping"}, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError):
        return None
    server = response.get("server")
    return server if response.get("ok") and isinstance(server, dict) else None


def find_server(location: IndexLocation) -> Path | None:
    """The socket of a live ``cs serve`` / ``cs watch`` server for ``location``, or None."""
    sock = socket_path(location.root, location.uri)
    return sock if ping(sock) is not None else None


# --- starting and stopping automatic servers ------------------------------------------------------


def start_auto_server(index_set: Path, *, device: str | None = None,
                      roots: Sequence[Path] = (), notify: Notify | None = None,
                      replacing: bool = False) -> int | None:
    """Start the automatic server for ``index_set`` as a detached process (its own session, no
    terminal, output to ``auto-<key>.log`` in the runtime directory) and return its pid, without
    waiting for it; None when one is already starting or running (unless ``replacing`` one that
    is exiting). It waits for this process to exit (at most 30 s) before it imports anything,
    so it never competes with the query this process is answering in-process."""
    import subprocess

    sock = auto_socket_path(index_set, device)
    marker = sock.with_suffix(".starting")
    if not replacing and (lock_is_held(sock) or _starting(marker)):
        return None  # running (and busy), or started by another query that is still running
    private_dir(sock.parent)
    log_path = sock.with_suffix(".log")
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > 1 << 20:
            log_path.unlink()
    # A stub that imports nothing waits for this process to exit, then becomes the server: the
    # server's own imports and model load never compete with the query answered here.
    command = [sys.executable, "-c", _WAIT_THEN_EXEC, str(os.getpid()),
               "-m", "codesearch", "server", "run",
               "--index-dir", str(index_set), "--after-pid", str(os.getpid())]
    if device:
        command += ["--device", device]
    for root in roots:
        command += ["--root", str(root)]
    env = dict(os.environ)
    # The same code as this client, wherever it was imported from.
    package_parent = str(Path(__file__).resolve().parent.parent.parent)
    if Path(package_parent).name not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = os.pathsep.join(
            [package_parent, *filter(None, [env.get("PYTHONPATH")])])
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                cwd="/", env=env, start_new_session=True, close_fds=True)
    except OSError as err:
        if notify:
            notify(f"warning: could not start a query server: {err}")
        return None
    finally:
        os.close(fd)
    _children.append(proc)
    with contextlib.suppress(OSError):
        marker.write_text(f"{proc.pid} {os.getpid()}\n", encoding="utf-8")
    return proc.pid


_WAIT_THEN_EXEC = """import os, sys, time
pid, deadline = int(sys.argv[1]), time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    except PermissionError:
        pass
    time.sleep(0.05)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def _marker_pids(marker: Path) -> tuple[int, int | None] | None:
    """(the starting server's pid, the query it waits for) from ``marker``, while the server
    is alive and has not bound its socket yet (it removes the marker then); else None."""
    try:
        pids = [int(p) for p in marker.read_text(encoding="utf-8").split()]
        os.kill(pids[0], 0)
    except (OSError, ValueError, IndexError):
        return None
    return pids[0], pids[1] if len(pids) > 1 else None


def _starting(marker: Path) -> bool:
    """A server started by another query is waiting for that query to end, or importing."""
    return _marker_pids(marker) is not None


def _wait_for_starting_server(sock: Path, timeout: float = STARTING_WAIT) -> bool:
    """When a server for ``sock`` is starting (it waits for the query that started it to end,
    then imports and binds), wait up to ``timeout`` seconds for it to bind; True once it has."""
    marker = sock.with_suffix(".starting")
    if _marker_pids(marker) is None:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_is_held(sock) and sock.exists():
            return True
        if _marker_pids(marker) is None and not lock_is_held(sock):
            return False  # it exited without binding (another server won, or it failed)
        time.sleep(0.05)
    return False




# Started servers, kept so this process can reap them (a long-lived caller, such as a test run).
_children: list[Any] = []


@dataclass(frozen=True)
class ServerInfo:
    """One socket in the runtime directory and what its server says (None: nothing answers)."""

    socket: Path
    info: dict[str, Any] | None

    @property
    def auto(self) -> bool:
        return self.socket.name.startswith(AUTO_PREFIX)


def list_servers(*, clean: bool = True) -> list[ServerInfo]:
    """Every server socket of this user; with ``clean``, stale ones (no live server holds their
    lock) are removed instead of listed."""
    directory = runtime_dir()
    out = []
    for sock in sorted(directory.glob("*.sock")) if directory.is_dir() else []:
        info = ping(sock)
        if info is None and clean and not lock_is_held(sock):
            with contextlib.suppress(OSError):
                sock.unlink()
            continue
        out.append(ServerInfo(sock, info))
    return out


def stop_server(sock: Path, *, timeout: float = 10.0) -> str:
    """Ask the server at ``sock`` to exit and wait until it has (its lock is free). Returns
    ``stopped``, ``gone`` (nothing was serving) or the server's reason for declining."""
    try:
        response = request(sock, {"op": "shutdown"}, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError):
        return "gone"
    if not response.get("ok"):
        return str(response.get("decline") or "declined")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not lock_is_held(sock):
            _reap()
            return "stopped"
        time.sleep(0.05)
    return "still running"


def _reap() -> None:
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)

"""The client side of warm queries: find the server that can answer ``cs find`` / ``cs similar``
for an index, ask it, and start one in the background when there is none.

This module is on the path of every query, so it imports the standard library, ``codesearch.config``
and ``codesearch.errors`` only: no torch, transformers, lancedb, pyarrow or numpy. Indexes are
found by their directory layout (a LanceDB database is a directory holding ``manifest.lance``),
never by opening them.

Two kinds of server answer queries, both in the user's private runtime directory
(:func:`runtime_dir`, 0700, sockets 0600):

- a server for one (root, index) pair, started by hand (``cs serve``) or by ``cs watch``:
  ``<runtime>/<key>.sock``;
- the automatic server of an index set (every index under one index directory, one device):
  ``<runtime>/auto-<key>.sock``, started by the first ``cs find`` / ``cs similar`` that finds
  none (:func:`start_auto_server`), which answers its own query in-process meanwhile so it is no
  slower than without a server. It serves every root indexed in its index directory, loads each
  model once for all of them, and exits after ``CS_SERVER_IDLE`` seconds without a request
  (default 900). Its output goes to ``auto-<key>.log`` beside the socket.

Beside each socket, ``<name>.lock`` is held (flock) by the live server: a socket whose lock is
free was left by a crashed server (stale) and is replaced by the next one.

Switches: ``--no-server`` or ``CS_NO_SERVER=1``: work in-process, use no server;
``CS_SERVER_AUTOSTART=0``: use running servers but start none (the test suite's default).

Every request carries this cs's :func:`build_id`; a server of another build declines (the client
then works in-process), and an automatic one exits so the next query starts a current one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesearch import __version__, config
from codesearch.errors import CodeSearchError, ExitCode
from codesearch.hits import Hit

PROTOCOL_VERSION = 1
CONNECT_TIMEOUT = 2.0
# How long a client waits for an answer before working in-process (a server may be loading a
# model another client asked for).
RESPONSE_TIMEOUT = 600.0
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS), NUL included.
MAX_SOCKET_PATH = 100
DEFAULT_IDLE_SECONDS = 900.0
AUTO_PREFIX = "auto-"
# The file that marks a directory as a LanceDB database holding a cs index (its manifest table).
INDEX_MARKER = "manifest.lance"

Notify = Callable[[str], None]


# --- switches -----------------------------------------------------------------------------------


def _flag(name: str) -> str:
    return os.environ.get(name, "").strip().lower()


def servers_enabled(no_server: bool = False) -> bool:
    """False with ``--no-server`` or ``CS_NO_SERVER=1``: work in-process."""
    return not (no_server or _flag("CS_NO_SERVER") in ("1", "true", "yes", "on"))


def autostart_enabled() -> bool:
    """False with ``CS_SERVER_AUTOSTART=0``: use running servers, start none."""
    return _flag("CS_SERVER_AUTOSTART") not in ("0", "false", "no", "off")


def idle_seconds() -> float:
    """How long an automatic server waits for a request before exiting: ``CS_SERVER_IDLE``
    seconds (default 900; 0 or less: never)."""
    raw = os.environ.get("CS_SERVER_IDLE", "").strip()
    try:
        return float(raw) if raw else DEFAULT_IDLE_SECONDS
    except ValueError:
        return DEFAULT_IDLE_SECONDS


_BUILD: str | None = None


def build_id() -> str:
    """This cs: its version plus a fingerprint of its source files (size and mtime), so a server
    left running by an older or edited install is never used."""
    global _BUILD
    if _BUILD is None:
        package = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for path in sorted(package.rglob("*.py")):
            with contextlib.suppress(OSError):
                st = path.stat()
                digest.update(f"{path.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}\n"
                              .encode())
        _BUILD = f"{__version__}+{digest.hexdigest()[:12]}"
    return _BUILD


# --- where servers live --------------------------------------------------------------------------


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


def auto_socket_path(index_set: Path, device: str | None) -> Path:
    """Where the automatic server for the indexes under ``index_set`` on ``device`` (None: the
    automatic choice) listens, for the precision CS_PRECISION forces (or auto): a server loads
    its models at one precision, so each precision asked for gets its own."""
    precision = config.default_precision() or "auto"
    ident = f"auto\n{index_set.expanduser().resolve()}\n{device or 'auto'}\n{precision}"
    return runtime_dir() / f"{AUTO_PREFIX}{hashlib.sha256(ident.encode()).hexdigest()[:20]}.sock"


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) or check an existing one is ours, and tighten it to 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise CodeSearchError(f"{path} belongs to another user",
                              hint="set XDG_RUNTIME_DIR or CS_HOME to a directory of yours")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def is_index(uri: str) -> bool:
    """A local directory laid out as a cs index (without opening it)."""
    return (Path(uri) / INDEX_MARKER).is_dir()


def lock_is_held(sock: Path) -> bool:
    """Whether a live server holds the lock beside ``sock``."""
    import fcntl

    try:
        fd = os.open(sock.with_suffix(".lock"), os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Target:
    """Which index a query for some ``--path`` searches, and which servers could answer it."""

    root: Path  # the indexed root the in-process path would search
    index_uri: str
    scope: str | None  # the subdirectory asked for, when it is inside that root
    socket: Path  # a `cs serve` / `cs watch` server for exactly this root and index
    index_set: Path | None  # the index directory an automatic server may serve it from


def locate(path: Path, *, index_dir: str | Path | None = None, index_uri: str | None = None,
           storage_options: Mapping[str, str] | None = None) -> Target | None:
    """Find the index the in-process path would search for ``path`` the way
    :meth:`codesearch.query.searcher.Searcher.open` does (``path``'s own index, else the nearest indexed
    ancestor, limited to ``path``), by the directory layout only. None when ``path`` is not a
    directory (the in-process path says so) or a socket path would be too long. ``index_set`` is
    set only for a local index in the per-root layout (no ``--index-uri``, no storage options):
    the indexes an automatic server serves."""
    path = path.expanduser()
    if not path.is_dir():
        return None
    resolved = path.resolve()
    explicit = index_uri or os.environ.get("CS_INDEX_URI")
    uri = config.resolve_index_uri(resolved, index_dir=index_dir, index_uri=index_uri)
    root, scope = resolved, None
    if not (explicit or config.is_remote(uri) or is_index(uri)):
        for parent in resolved.parents:
            parent_uri = config.resolve_index_uri(parent, index_dir=index_dir)
            if is_index(parent_uri):
                root, uri, scope = parent, parent_uri, resolved.relative_to(parent).as_posix()
                break
    index_set = None
    if not (explicit or storage_options) and is_index(uri):
        index_set = Path(uri).parent
    target = Target(root, uri, scope, socket_path(root, uri), index_set)
    # The automatic socket's name is as long as any (a fixed prefix and hash).
    longest = max(target.socket, runtime_dir() / f"{AUTO_PREFIX}{'0' * 20}.sock",
                  key=lambda p: len(os.fsencode(p)))
    return target if len(os.fsencode(longest)) <= MAX_SOCKET_PATH else None


def root_for_location(location: str, cwd: Path, *, index_dir: str | Path | None = None) -> Path:
    """:func:`codesearch.query.searcher.root_for_location` by the directory layout: ``cwd`` when it lies
    in an indexed tree, else the indexed root holding FILE, else ``cwd``."""

    def indexed_ancestor(path: Path, include_self: bool) -> Path | None:
        path = path.resolve()
        for parent in ([path] if include_self else []) + list(path.parents):
            if is_index(config.resolve_index_uri(parent, index_dir=index_dir)):
                return parent
        return None

    if indexed_ancestor(cwd, True) is not None:
        return cwd
    file, sep, line = location.rpartition(":")
    if not sep or not file or not line.strip().isdigit():
        return cwd
    target = Path(file).expanduser()
    return indexed_ancestor(target if target.is_absolute() else cwd / target, False) or cwd


# --- the wire -------------------------------------------------------------------------------------


def request(path: Path, payload: Mapping[str, Any], *,
            timeout: float = RESPONSE_TIMEOUT) -> dict[str, Any]:
    """Send one request to the server at ``path`` and return its response object. Raises
    OSError (no server, stale socket: connection refused, timeout, a socket not ours) or
    ValueError (a reply that is not JSON)."""
    st = path.stat()
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        raise ConnectionRefusedError(f"{path} is not our socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(str(path))
        if peer_uid(sock) not in (None, os.getuid()):
            raise ConnectionRefusedError(f"{path} is served by another user")
        sock.settimeout(timeout)
        sock.sendall(json.dumps({"v": PROTOCOL_VERSION, "build": build_id(), **payload})
                     .encode() + b"\n")
        with sock.makefile("rb") as reader:
            line = reader.readline()
    if not line:
        raise ConnectionResetError("the server closed the connection")
    response = json.loads(line)
    if not isinstance(response, dict):
        raise ValueError("not a response object")
    return response


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux), else None."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def ping(path: Path) -> dict[str, Any] | None:
    """What the server at ``path`` says about itself (pid, kind, roots, models, build, idle), or
    None when nothing answers there."""
    try:
        response = request(path, {"op": "ping"}, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError):
        return None
    server = response.get("server")
    return server if response.get("ok") and isinstance(server, dict) else None


@dataclass(frozen=True)
class Answer:
    """A server's answer to find or similar: the hits, the root to render them against, and the
    whole response (a field added to it by a newer server, such as a coverage note, is there)."""

    hits: list[Hit]
    root: Path
    response: dict[str, Any] = field(default_factory=dict)
    server: Path | None = None


class _Unavailable(Exception):
    """This server cannot answer; ``reason`` says why (missing, refused, build, declined)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ask(sock: Path, target: Target, op: str, payload: Mapping[str, Any],
         notify: Notify | None) -> Answer:
    try:
        response = request(sock, {"op": op, "root": str(target.root), "scope": target.scope,
                                  **payload})
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
        hits = [Hit(**{k: h[k] for k in Hit.__dataclass_fields__}) for h in response["hits"]]
        return Answer(hits, target.root, response, sock)
    if response.get("build_mismatch"):
        raise _Unavailable("build")
    error = response.get("error")
    if isinstance(error, dict) and error.get("type") != "IndexMissingError":
        raise rebuild_error(error)
    # Declined, or no index yet (a server started before `cs index`): the in-process path words
    # that error with the path as the user typed it.
    raise _Unavailable("declined")


def rebuild_error(error: Mapping[str, Any]) -> CodeSearchError:
    """The server's error as the exception the in-process path would have raised (same class
    where errors.py has it, same message, hint and exit code)."""
    from codesearch import errors

    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, CodeSearchError)):
        cls = CodeSearchError
    try:
        code: ExitCode | None = ExitCode(int(error.get("exit_code", ExitCode.ERROR)))
    except ValueError:
        code = None
    return cls(str(error.get("message")), hint=error.get("hint"), exit_code=code)


def options_dict(k: int = 10, languages: Sequence[str] = (), globs: Sequence[str] = (),
                 min_score: float | None = None, mode: str | None = None,
                 task: str | None = None) -> dict[str, Any]:
    """:class:`codesearch.query.searcher.SearchOptions` as the server reads it (``options_to_dict``)."""
    return {"k": k, "languages": list(languages), "globs": list(globs), "min_score": min_score,
            "mode": mode, "task": task}


def query(op: str, path: Path, arg: str, options: Mapping[str, Any], *,
          model: str | None = None, device: str | None = None,
          index_dir: str | Path | None = None, index_uri: str | None = None,
          storage_options: Mapping[str, str] | None = None, cwd: Path | None = None,
          notify: Notify | None = None, autostart: bool | None = None) -> Answer | None:
    """Answer ``cs find`` (``arg`` is the query) or ``cs similar`` (``arg`` is FILE:LINE) for
    ``path`` through a server: the one serving exactly that root (``cs serve``, ``cs watch``),
    else the automatic server of its index set. None when no server answers faithfully: the
    caller then works in-process, which gives the same hits and errors. With no automatic server
    running (or a stale one, or one of another build), start one in the background first (unless
    ``autostart`` is False or ``CS_SERVER_AUTOSTART=0``); this query does not wait for it. A
    server's error (a bad option, a line out of range) is raised as the in-process path raises it.
    """
    target = locate(path, index_dir=index_dir, index_uri=index_uri,
                    storage_options=storage_options)
    if target is None:
        return None
    device = device if device is not None else config.default_device()
    payload: dict[str, Any] = {
        "options": dict(options),
        # Relative model directories and FILE:LINE mean what they mean here, not there.
        "model": config.model_spec(model) if model else None,
        "device": device,
        "precision": config.default_precision(),
    }
    if op == "find":
        payload["query"] = arg
    else:
        payload["location"] = arg
        payload["cwd"] = str(cwd or Path.cwd())
    with contextlib.suppress(_Unavailable):
        return _ask(target.socket, target, op, payload, notify)
    if target.index_set is None:
        return None  # explicit index URIs and object stores: only servers started by hand
    try:
        return _ask(auto_socket_path(target.index_set, device), target, op, payload, notify)
    except _Unavailable as why:
        reason = why.reason
    if (autostart if autostart is not None else autostart_enabled()) and reason in (
            "missing", "refused", "build"):
        # A server of another build is exiting now; the new one waits for its lock.
        start_auto_server(target.index_set, device=device, roots=[target.root], notify=notify,
                          replacing=reason == "build")
    return None


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
        marker.write_text(f"{proc.pid}\n", encoding="utf-8")
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


def _starting(marker: Path) -> bool:
    """A server started by another query is waiting for that query to end (its pid is in
    ``marker`` until it has bound its socket)."""
    try:
        pid = int(marker.read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


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

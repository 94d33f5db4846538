"""The warm-query wire, shared by the client (:mod:`codesearch.query.client`) and the servers
(:mod:`codesearch.query.server`): where sockets live, who may use them, and what goes over them.

Standard library only: every ``cs find`` imports this.

Sockets live in the user's private runtime directory (:func:`runtime_dir`, 0700, sockets 0600):

- ``<key>.sock``: a server for one (root, index) pair, started by ``cs serve`` or ``cs watch``;
- ``auto-<key>.sock``: the automatic server of an index set (every index under one index
  directory) for one device and precision, started by the first ``cs find`` / ``cs similar``
  that finds none.

Beside each socket, ``<name>.lock`` is held (flock) by the live server: a socket whose lock is
free was left by a crashed server (stale) and is replaced by the next one.

Protocol (version :data:`PROTOCOL_VERSION`): newline-delimited JSON, one request and one response
per line, any number per connection. Every request carries ``"v"`` and ``"build"`` (the client's
:func:`build_id`)::

    {"op": "answer", "root": ABS, "scope": SUBDIR|null, "query": Query.to_dict(),
     "device": D|null, "precision": P|null}
    {"op": "status", "root": ABS}
    {"op": "ping"}
    {"op": "shutdown"}

Responses: ``{"v", "ok": true, "answer": Answer.to_dict()}`` (or ``"status"`` / ``"server"``);
``{"v", "ok": false, "error": {"type", "message", "hint", "exit_code"}}`` for an error the
in-process path would raise the same way (:func:`error_from_wire` raises it again on the client);
``{"v", "ok": false, "decline": REASON}`` when the server cannot answer faithfully (another
protocol version or build, device, precision, a root it does not serve, an internal failure): the
client then works in-process.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from codesearch import __version__, config, errors
from codesearch.errors import CodeSearchError, ExitCode

PROTOCOL_VERSION = 2
CONNECT_TIMEOUT = 2.0
# How long a client waits for an answer before working in-process (a server may be loading a
# model another client asked for).
RESPONSE_TIMEOUT = 600.0
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS), NUL included.
MAX_SOCKET_PATH = 100
DEFAULT_IDLE_SECONDS = 900.0
AUTO_PREFIX = "auto-"


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


def socket_path(root: Path, index_uri: str) -> Path:
    """Where the server for ``root`` (with its index at ``index_uri``) listens."""
    ident = f"{root.expanduser().resolve()}\n{index_uri}"
    return runtime_dir() / f"{hashlib.sha256(ident.encode()).hexdigest()[:20]}.sock"


def auto_socket_path(index_set: Path, device: str | None) -> Path:
    """Where the automatic server for the indexes under ``index_set`` on ``device`` (None: the
    automatic choice) listens, for the precision CS_PRECISION forces (or auto): a server loads
    its models at one precision, so each precision asked for gets its own."""
    precision = config.default_precision() or "auto"
    ident = f"auto\n{index_set.expanduser().resolve()}\n{device or 'auto'}\n{precision}"
    return runtime_dir() / f"{AUTO_PREFIX}{hashlib.sha256(ident.encode()).hexdigest()[:20]}.sock"


def fits_socket(path: Path) -> bool:
    """Whether ``path`` (and the automatic socket beside it) is short enough for AF_UNIX."""
    longest = max(path, runtime_dir() / f"{AUTO_PREFIX}{'0' * 20}.sock",
                  key=lambda p: len(os.fsencode(p)))
    return len(os.fsencode(longest)) <= MAX_SOCKET_PATH


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


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux), else None."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


# --- messages -------------------------------------------------------------------------------------


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


def error_to_wire(err: CodeSearchError) -> dict[str, Any]:
    """An error as a server sends it."""
    return {"type": type(err).__name__, "message": err.message, "hint": err.hint,
            "exit_code": int(err.exit_code)}


def error_from_wire(error: Mapping[str, Any]) -> CodeSearchError:
    """A server's error as the exception the in-process path would have raised (same class where
    errors.py has it, same message, hint and exit code)."""
    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, CodeSearchError)):
        cls = CodeSearchError
    try:
        code: ExitCode | None = ExitCode(int(error.get("exit_code", ExitCode.ERROR)))
    except ValueError:
        code = None
    return cls(str(error.get("message")), hint=error.get("hint"), exit_code=code)

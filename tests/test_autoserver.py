"""The automatic query server: the first `cs find` starts it in the background and answers itself,
later ones are answered by it (real `cs` processes, the tiny model, CS_HOME and XDG_RUNTIME_DIR in
tmp dirs). Every test that can start a server stops it at teardown and checks nothing is left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codesearch import config
from codesearch.location import IndexSettings
from codesearch.query import client, protocol
from codesearch.query.request import Query, SearchOptions
from codesearch.query.server import handle
from codesearch.query.service import QueryService
from tests.support.cli import cs
from tests.support.wait import wait_for

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
REPO_ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"torch", "transformers", "lancedb", "pyarrow", "numpy", "pandas"}
DEADLINE = 120.0  # a server loading its model on a loaded 2-core machine


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The environment of a user with auto-start on; at teardown every server in the runtime
    directory is stopped (and, should one not stop, killed and reported)."""
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("CS_SERVER_AUTOSTART")
    monkeypatch.setenv("CS_SERVER_IDLE", "300")  # a leaked server would not outlive the run
    environ = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    yield environ
    leaked = []
    for s in client.list_servers(clean=False):
        if client.stop_server(s.socket) not in ("stopped", "gone"):
            pid = (s.info or {}).get("pid")
            leaked.append(pid)
            if pid:
                os.kill(pid, signal.SIGKILL)
    client._reap()
    assert not leaked, f"servers that would not stop: {leaked}"
    assert not [s for s in client.list_servers() if s.info], "a server outlived its test"


def cs_process(env: dict[str, str], *args: str, importtime: bool = False,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *flags, "-m", "codesearch", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def imported(importtime_stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip().split(".")[0]
            for line in importtime_stderr.splitlines() if line.startswith("import time:")}


def auto_servers() -> list[client.ServerInfo]:
    return [s for s in client.list_servers() if s.auto and s.info]


def ready_auto_server() -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        servers = auto_servers()
        return servers[0].info if servers and servers[0].info.get("ready") else None

    return wait_for("the automatic server to load its model", ready, deadline=DEADLINE)


def log_text() -> str:
    return "".join(p.read_text(errors="replace") for p in protocol.runtime_dir().glob("*.log"))


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_second_query_is_answered_by_the_server_the_first_started(
        env: dict[str, str], indexed_repo: Path) -> None:
    expected = cs("find", "moving average", "--path", str(indexed_repo), "--json", "--no-server")
    assert expected.exit_code == 0
    first = cs_process(env, "find", "parse a CSV file", "--path", str(indexed_repo), "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout), "the first query answers in-process, with hits"
    info = ready_auto_server()
    assert info["kind"] == "auto" and info["requests"] == 0
    assert info["roots"] == [str(indexed_repo.resolve())] and info["build"] == protocol.build_id()

    second = cs_process(env, "find", "moving average", "--path", str(indexed_repo), "--json",
                        importtime=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout == expected.stdout  # byte for byte what the in-process path prints
    (server,) = auto_servers()
    assert server.info is not None and server.info["requests"] == 1
    assert server.info["pid"] == info["pid"]
    assert "find 'moving average' -> " in log_text()
    modules = imported(second.stderr)
    assert "codesearch" in modules and "typer" in modules  # the listing works...
    assert not modules & HEAVY, modules & HEAVY  # ...and the warm client imports nothing heavy

    # similar from inside the tree (the root found from FILE), and cs server status / stop.
    sim = cs_process(env, "similar", "datatools/stats.py:5", "--json", "-k", "3", cwd=indexed_repo)
    assert sim.returncode == 0, sim.stderr[-2000:]
    status = cs_process(env, "server", "status", "--json")
    (listed,) = json.loads(status.stdout)
    assert listed["requests"] == 2 and listed["auto"] and listed["idle_s"] >= 0
    stop = cs_process(env, "server", "stop")
    assert stop.returncode == 0 and f"Stopped pid {info['pid']}" in stop.stderr
    assert not auto_servers()


@pytest.mark.slow
def test_a_served_answer_says_how_complete_the_index_is(
        env: dict[str, str], tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path) -> None:
    from codesearch.config import resolve_index_uri
    from codesearch.index.indexer import Indexer, IndexOptions
    from codesearch.store.store import Store

    root = tmp_path / "lexical-only"
    shutil.copytree(fixtures_dir / "python", root)
    stats = Indexer(root, Store.open(resolve_index_uri(root)),
                    IndexOptions(model=str(tiny_model_dir), embed=False)).run()  # phase 1 only
    line = f"vectors for 0 of {stats.chunks_total} chunks (0%)"
    first = cs_process(env, "find", "mean", "--path", str(root), "--json")
    assert first.returncode == 0 and line in first.stderr, first.stderr[-2000:]
    ready_auto_server()
    second = cs_process(env, "find", "mean", "--path", str(root), "--json")
    assert second.returncode == 0 and json.loads(second.stdout) == json.loads(first.stdout)
    (server,) = auto_servers()
    assert server.info is not None and server.info["requests"] == 1  # the server answered...
    assert line in second.stderr  # ...and its answer carried the coverage line


@pytest.mark.slow
def test_idle_server_exits_by_itself(env: dict[str, str], indexed_repo: Path) -> None:
    env["CS_SERVER_IDLE"] = "2"
    assert cs_process(env, "find", "parse csv", "--path", str(indexed_repo), "--mode", "lexical",
                      "--json").returncode == 0
    wait_for("the server to load its model", lambda: "ready: " in log_text(), deadline=DEADLINE)
    wait_for("the idle server to exit", lambda: "no request for 2s; exiting" in log_text(),
             deadline=DEADLINE)
    wait_for("the server to stop", lambda: "stopped" in log_text(), deadline=DEADLINE)
    (sock,) = protocol.runtime_dir().glob("auto-*.lock")
    wait_for("its lock to be released", lambda: not protocol.lock_is_held(sock),
             deadline=DEADLINE)
    assert not list(protocol.runtime_dir().glob("*.sock"))


@pytest.mark.slow
def test_a_query_while_the_server_starts_waits_for_it(
        env: dict[str, str], indexed_repo: Path) -> None:
    """Back to back: the second query comes while the first is still running, so the server it
    started has no socket yet; the second waits for that server instead of loading a second copy
    of the model in-process."""
    expected = cs("find", "moving average", "--path", str(indexed_repo), "--json", "--no-server")
    first = subprocess.Popen([sys.executable, "-m", "codesearch", "find", "parse a CSV file",
                              "--path", str(indexed_repo), "--json"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the first query to start a server", lambda: list(
            protocol.runtime_dir().glob("auto-*.starting")) if protocol.runtime_dir().is_dir()
            else [], deadline=DEADLINE)
        second = cs_process(env, "find", "moving average", "--path", str(indexed_repo), "--json")
        assert first.wait(timeout=DEADLINE) == 0
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout == expected.stdout
    (server,) = auto_servers()
    assert server.info is not None and server.info["requests"] == 1, "answered in-process"
    assert "find 'moving average' -> " in log_text()


@pytest.mark.slow
def test_a_stale_socket_or_another_build_is_replaced(env: dict[str, str],
                                                     indexed_repo: Path) -> None:
    query = ("find", "parse csv", "--path", str(indexed_repo), "--json")
    assert cs_process(env, *query).returncode == 0
    first = ready_auto_server()
    # A client of another build: the server declines and exits; the next query starts another.
    (server,) = auto_servers()
    answer = protocol.request(server.socket, {"op": "answer", "root": str(indexed_repo.resolve()),
                                              "query": Query("find", "x").to_dict(),
                                              "build": "0.0.0+other"})
    assert answer["build_mismatch"] and not answer["ok"]
    wait_for("the old build to exit", lambda: not protocol.lock_is_held(server.socket),
             deadline=DEADLINE)
    assert cs_process(env, *query).returncode == 0
    second = ready_auto_server()
    assert second["pid"] != first["pid"]
    # kill -9 leaves the socket behind; the next query works in-process and starts a fresh one.
    os.kill(second["pid"], signal.SIGKILL)
    wait_for("the killed server's lock", lambda: not protocol.lock_is_held(server.socket),
             deadline=DEADLINE)
    assert server.socket.exists()
    assert cs_process(env, *query).returncode == 0
    third = ready_auto_server()
    assert third["pid"] not in (first["pid"], second["pid"])


@pytest.mark.slow
def test_no_server_switches_start_nothing(env: dict[str, str], indexed_repo: Path) -> None:
    query = ("find", "parse csv", "--path", str(indexed_repo), "--json", "--mode", "lexical")
    assert cs_process(env, *query, "--no-server").returncode == 0
    assert cs_process(dict(env, CS_NO_SERVER="1"), *query).returncode == 0
    assert cs_process(dict(env, CS_SERVER_AUTOSTART="0"), *query).returncode == 0
    time.sleep(1.0)  # a started server binds its socket within a fraction of that
    assert not list(protocol.runtime_dir().glob("*.sock"))
    status = cs_process(env, "server", "status")
    assert status.returncode == 0 and "No query server is running" in status.stderr


# --- what a query imports ------------------------------------------------------------------------


def test_lexical_queries_and_status_never_import_the_model(indexed_repo: Path) -> None:
    """Without a server (CS_SERVER_AUTOSTART=0 here): in-process, but no torch."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    lexical = cs_process(env, "find", "parse csv", "--path", str(indexed_repo), "--mode", "lexical",
                         "--json", importtime=True)
    status = cs_process(env, "status", str(indexed_repo), importtime=True)
    for proc in (lexical, status):
        assert proc.returncode == 0, proc.stderr[-2000:]
        modules = imported(proc.stderr)
        assert "lancedb" in modules  # the listing works: the index was read in-process
        assert not modules & {"torch", "transformers"}


# --- security ------------------------------------------------------------------------------------


def test_the_automatic_server_serves_indexed_roots_only(indexed_repo: Path, tmp_path: Path,
                                                        tiny_model_dir: Path) -> None:
    """An automatic server answers for any root indexed in its index directory, and declines
    every other root."""
    other = tmp_path / "other"
    shutil.copytree(indexed_repo, other)
    result = cs("index", str(other), "--model", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    plain = tmp_path / "plain"
    plain.mkdir()
    index_set = Path(config.index_root_dir())
    service = QueryService([IndexSettings().for_root(indexed_repo)], index_set=index_set)
    find = {"v": protocol.PROTOCOL_VERSION, "op": "answer", "precision": None,
            "query": Query("find", "parse csv", SearchOptions(k=2, mode="lexical")).to_dict()}
    assert handle(service, {**find, "root": str(other.resolve())})["ok"]
    assert str(other.resolve()) in service.info()["roots"]
    for root in (plain, tmp_path, Path("/")):
        answer = handle(service, {**find, "root": str(root.resolve())})
        assert "not served" in answer["decline"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="needs root to act as a second user")
def test_another_user_cannot_connect(env: dict[str, str], indexed_repo: Path) -> None:
    assert cs_process(env, "find", "parse csv", "--path", str(indexed_repo), "--json",
                      "--mode", "lexical").returncode == 0
    ready_auto_server()
    (server,) = auto_servers()
    assert os.stat(server.socket).st_mode & 0o777 == 0o600

    def as_nobody() -> str:
        """connect, send a ping and read the answer as uid/gid 65534 (nobody)."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no Python-level cleanup, only os._exit
            outcome = "answered"
            try:
                # From inside the runtime directory, so only its own permissions and the
                # socket's matter (not those of the test's private tmp dirs above it).
                os.chdir(server.socket.parent)
                os.setgid(65534)
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(10)
                    sock.connect(server.socket.name)
                    sock.sendall(b'{"v": 1, "op": "ping"}\n')
                    if not sock.recv(65536):
                        outcome = "closed"
            except PermissionError:
                outcome = "permission denied"
            except OSError as err:
                outcome = f"closed ({err.__class__.__name__})"
            os.write(write, outcome.encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as f:
            return f.read()

    assert as_nobody() == "permission denied"  # the 0700 directory and 0600 socket
    # Even with the permissions loosened by hand, the server hangs up on another uid.
    os.chmod(server.socket.parent, 0o755)
    os.chmod(server.socket, 0o777)
    try:
        assert as_nobody().startswith("closed")
    finally:
        os.chmod(server.socket.parent, 0o700)
        os.chmod(server.socket, 0o600)
    assert client.ping(server.socket) is not None  # and still serves its user


def test_nothing_listens_on_a_network_port() -> None:
    """Every socket the server code creates is a Unix socket."""
    for name in ("server.py", "client.py", "protocol.py"):
        text = (REPO_ROOT / "codesearch" / "query" / name).read_text(encoding="utf-8")
        assert "AF_INET" not in text and "AF_INET6" not in text
    assert "AF_UNIX" in (REPO_ROOT / "codesearch" / "query" / "protocol.py").read_text()


"""The warm-query client (codesearch.query.client): its switches, the values it sends and rebuilds,
the route of a query when no server answers, and the servers it lists and stops. Real sockets in
the test's runtime directory; the servers themselves are in test_server.py and
test_autoserver.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from codesearch.errors import UsageError
from codesearch.hits import Hit
from codesearch.location import IndexSettings
from codesearch.query import client, protocol
from codesearch.query.request import Answer, Query, SearchOptions
from tests.support.cli import cs

# --- the light client mirrors the core -----------------------------------------------------------


def test_answers_and_queries_survive_the_wire() -> None:
    # What a server sends (through JSON) is what the client rebuilds and renders: every hit
    # field, the score unrounded.
    hit = Hit("a/b.py", 3, 9, "f", "python", "function", 0.123456789, "def f():\n    pass")
    answer = Answer([hit], Path("/repo"), {"embedded": 1, "total": 2})
    back = Answer.from_dict(json.loads(json.dumps(answer.to_dict())))
    assert back == answer and back.hits[0].to_dict() == hit.to_dict()
    full = SearchOptions(k=3, languages=("go", "rust"), globs=("src/*", "!*_test.go"),
                         min_score=0.2, mode="lexical", task="code2code")
    query = Query("similar", "a.py:3", full, "/models/m", Path("/work"))
    assert Query.from_dict(json.loads(json.dumps(query.to_dict()))) == query
    with pytest.raises(ValueError, match="unknown op"):
        Query.from_dict({"op": "delete", "text": "x"})


def test_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CS_SERVER_AUTOSTART")
    assert client.servers_enabled() and client.autostart_enabled()
    assert not client.servers_enabled(no_server=True)
    monkeypatch.setenv("CS_NO_SERVER", "1")
    assert not client.servers_enabled()
    monkeypatch.setenv("CS_SERVER_AUTOSTART", "0")
    assert not client.autostart_enabled()
    monkeypatch.setenv("CS_SERVER_IDLE", "42")
    assert protocol.idle_seconds() == 42
    monkeypatch.setenv("CS_SERVER_IDLE", "soon")
    assert protocol.idle_seconds() == protocol.DEFAULT_IDLE_SECONDS


@pytest.mark.parametrize("value, servers", [("true", False), ("YES", False), (" on ", False),
                                            ("0", True), ("no", True), ("", True)])
def test_cs_no_server_spellings(value: str, servers: bool,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_NO_SERVER", value)
    assert client.servers_enabled() is servers
    assert client.servers_enabled(no_server=True) is False  # --no-server wins either way


@pytest.mark.parametrize("value, autostart", [("false", False), ("No", False), ("off", False),
                                              ("1", True), ("yes", True), ("", True)])
def test_cs_server_autostart_spellings(value: str, autostart: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_SERVER_AUTOSTART", value)
    assert client.autostart_enabled() is autostart


# --- the route of a query -----------------------------------------------------------------------


def test_a_bad_query_is_refused_before_any_index_is_looked_for(tmp_path: Path) -> None:
    # tmp_path holds no index: the query's own error comes first, as in-process.
    with pytest.raises(UsageError, match="empty query"):
        client.answer(Query("find", "   "), tmp_path, IndexSettings())
    with pytest.raises(UsageError, match="-k must be at least 1"):
        client.answer(Query("find", "x", SearchOptions(k=0)), tmp_path, IndexSettings())


def test_with_no_server_the_query_is_answered_in_process_and_none_is_started(
        indexed_repo: Path) -> None:
    """Servers on, auto-start off (the suite's default): nothing answers on either socket, so the
    answer is the in-process one, exactly what `cs find --no-server --json` prints."""
    query = Query("find", "parse csv", SearchOptions(k=5, mode="lexical"))
    location = IndexSettings().locate(indexed_repo)
    assert client.servers_enabled() and not client.autostart_enabled()
    assert client.find_server(location) is None
    assert client.ask(location, query) is None

    answer = client.answer(query, indexed_repo, IndexSettings())
    expected = cs("find", "parse csv", "--path", str(indexed_repo), "--mode", "lexical",
                  "-k", "5", "--json", "--no-server")
    assert expected.exit_code == 0, expected.output
    assert answer.hits and [h.to_dict() for h in answer.hits] == json.loads(expected.stdout)
    assert answer.root == indexed_repo.resolve()
    runtime = protocol.runtime_dir()
    assert not (runtime.is_dir() and list(runtime.glob("*.sock")))  # no server was started


# --- servers in the runtime directory -----------------------------------------------------------


def _left_behind(path: Path) -> Path:
    """A socket file nothing listens on any more (what a crashed server leaves)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    return path


def test_stale_sockets_are_listed_raw_and_removed_when_cleaning() -> None:
    runtime = protocol.private_dir(protocol.runtime_dir())
    own = _left_behind(runtime / "0123abcd.sock")
    auto = _left_behind(runtime / f"{protocol.AUTO_PREFIX}4567cdef.sock")

    listed = client.list_servers(clean=False)
    assert [(s.socket, s.info, s.auto) for s in listed] == [(own, None, False), (auto, None, True)]
    assert client.ping(own) is None and client.stop_server(own) == "gone"
    assert own.exists() and auto.exists()  # stop_server leaves a dead socket alone

    assert client.list_servers() == []  # clean: no live server holds their locks
    assert not own.exists() and not auto.exists()


def test_a_socket_whose_lock_is_held_is_kept() -> None:
    """A server still starting (its lock held, not answering yet) is listed, never removed."""
    import fcntl

    runtime = protocol.private_dir(protocol.runtime_dir())
    starting = _left_behind(runtime / "89abcdef.sock")
    with open(starting.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert protocol.lock_is_held(starting)
        assert client.list_servers() == [client.ServerInfo(starting, None)]
        assert starting.exists()
    assert client.list_servers() == []  # the lock released: stale now
    assert not starting.exists()

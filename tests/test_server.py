"""`cs serve` and the client in `cs find` / `cs similar`: a real server (a thread of the test
process, or a `cs serve` subprocess) on a fixture repository indexed with the tiny model; the CLI
output through the server must equal `--no-server` output byte for byte."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codesearch.config import resolve_index_uri
from codesearch.embed.pool import EmbedderPool
from codesearch.hits import Hit
from codesearch.location import IndexSettings
from codesearch.query import client
from codesearch.query.protocol import PROTOCOL_VERSION, request, runtime_dir, socket_path
from codesearch.query.request import Query, SearchOptions
from codesearch.query.server import QueryServer, ServerBusyError, serve_in_background
from codesearch.query.service import QueryService
from tests.support.cli import cs
from tests.support.wait import wait_for

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
REPO_ROOT = Path(__file__).resolve().parent.parent


def service_for(roots: list[Path]) -> QueryService:
    """What `cs serve ROOTS` runs."""
    return QueryService([IndexSettings().for_root(r) for r in roots],
                        pool=EmbedderPool(queries_only=True))


def ping(root: Path) -> dict[str, Any] | None:
    """The ping answer of the `cs serve` / `cs watch` server of ``root``, or None."""
    location = IndexSettings().for_root(root)
    return client.ping(socket_path(location.root, location.uri))


def find(root: Path, query: str, options: SearchOptions, **kwargs: Any) -> list[Hit]:
    """`cs find` as the CLI runs it (through a server when one answers), as hits."""
    return client.answer(Query("find", query, options), root, IndexSettings(), **kwargs).hits


class Served:
    """A server on a background thread of this process, recording the requests it answers."""

    def __init__(self, roots: list[Path]) -> None:
        self.log: list[str] = []
        self.server = serve_in_background(service_for(roots), log=self.log.append)
        assert self.server.ready.wait(60)

    def answered(self) -> int:
        return len(self.log)


@pytest.fixture
def served(indexed_repo: Path) -> Iterator[Served]:
    s = Served([indexed_repo])
    yield s
    s.server.stop()


def both(*args: str) -> tuple[Any, Any]:
    """The same command through the server and with --no-server."""
    return cs(*args), cs(*args, "--no-server")


FIND_CASES = [
    ("find", "parse a CSV file and compute the mean", "--json"),
    ("find", "retry an HTTP request", "--json", "-k", "3", "--mode", "hybrid"),
    ("find", "moving average", "--json", "--mode", "lexical", "--glob", "datatools/*.py"),
    ("find", "def mean(xs): return sum(xs) / len(xs)", "--grep", "--lang", "python"),
    ("find", "hash a file", "--json", "--min-score", "0.3"),
]


@pytest.mark.parametrize("args", FIND_CASES, ids=lambda a: a[1][:20])
def test_find_through_server_equals_in_process(served: Served, indexed_repo: Path,
                                                args: tuple[str, ...]) -> None:
    via, local = both(*args, "--path", str(indexed_repo))
    assert served.answered() == 1, "the first command must have gone through the server"
    assert (via.exit_code, via.stdout, via.stderr) == (local.exit_code, local.stdout,
                                                       local.stderr)
    assert via.exit_code in (0, 1)
    if "--json" in args and via.exit_code == 0:
        hits = json.loads(via.stdout)
        assert hits and set(hits[0]) == {"path", "start_line", "end_line", "symbol", "language",
                                         "kind", "score", "text", "signals"}


def test_similar_through_server_resolves_paths_from_the_client_cwd(
        served: Served, indexed_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(indexed_repo / "datatools")
    via, local = both("similar", "stats.py:5", "--path", "..", "--json", "-k", "4")
    assert served.answered() == 1
    assert via.exit_code == 0, via.output
    assert via.stdout == local.stdout
    assert all(not (h["path"] == "datatools/stats.py" and h["start_line"] <= 5 <= h["end_line"])
               for h in json.loads(via.stdout))


def test_find_from_a_subdirectory_uses_the_server_of_the_indexed_root(
        served: Served, indexed_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Like git: inside an indexed tree, --path . searches the enclosing index, limited to the
    subdirectory; the server of that root answers, limited the same way."""
    monkeypatch.chdir(indexed_repo / "datatools")
    via, local = both("find", "parse a CSV file", "--json", "-k", "50")
    assert served.answered() == 1
    assert via.exit_code == 0, via.output
    assert via.stdout == local.stdout
    assert {h["path"].split("/")[0] for h in json.loads(via.stdout)} == {"datatools"}


@pytest.mark.parametrize(
    ("args", "asked"),
    [
        (("find", "anything", "--lang", "cobol"), 1),  # UsageError raised inside the search
        (("similar", "datatools/stats.py:9999"), 1),  # line out of range
        (("similar", "no/such/file.py:3"), 0),  # checked before any index or server is asked
    ],
)
def test_errors_through_server_are_the_in_process_errors(
        served: Served, indexed_repo: Path, monkeypatch: pytest.MonkeyPatch,
        args: tuple[str, ...], asked: int) -> None:
    monkeypatch.chdir(indexed_repo)
    via, local = both(*args, "--path", str(indexed_repo))
    assert served.answered() == asked
    assert via.exit_code == local.exit_code == 2
    assert via.stderr == local.stderr and via.stderr.startswith("error: ")


def test_a_server_started_before_the_first_index_gives_the_in_process_error(
        tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    (root / "a.py").write_text("def f():\n    return 1\n", encoding="utf-8")
    s = Served([root])
    try:
        via, local = both("find", "anything", "--path", str(root))
        assert s.answered() == 1
        assert via.exit_code == local.exit_code == 2
        assert via.stderr == local.stderr and "no index for" in via.stderr
    finally:
        s.server.stop()


def test_server_sees_a_reindex_from_another_writer(served: Served, indexed_repo: Path) -> None:
    query = ("find", "convert degrees celsius to fahrenheit", "--json", "-k", "50",
             "--path", str(indexed_repo))
    before = json.loads(cs(*query).stdout)
    assert all(h["path"] != "datatools/units.py" for h in before)
    (indexed_repo / "datatools" / "units.py").write_text(
        "def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32\n", encoding="utf-8")
    (indexed_repo / "datatools" / "hashing.py").unlink()
    assert cs("index", str(indexed_repo), "--json").exit_code == 0
    via, local = both(*query)
    after = json.loads(via.stdout)
    assert via.stdout == local.stdout
    assert any(h["path"] == "datatools/units.py" for h in after)
    assert all(h["path"] != "datatools/hashing.py" for h in after)
    assert served.answered() == 2


def test_server_follows_a_rebuild_with_another_dim(served: Served, indexed_repo: Path,
                                                   tiny_model_dir: Path) -> None:
    query = ("find", "parse csv", "--json", "--path", str(indexed_repo))
    assert cs(*query).exit_code == 0
    result = cs("index", str(indexed_repo), "--rebuild", "--dim", "32", "--model",
                str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    via, local = both(*query)
    assert via.exit_code == 0, via.output
    assert via.stdout == local.stdout
    assert served.answered() == 2
    assert any("dim 32" in m for m in served.server.service.info()["models"])


def test_socket_is_private(served: Served, indexed_repo: Path) -> None:
    (path,) = served.server.socket_paths
    assert path == socket_path(indexed_repo, resolve_index_uri(indexed_repo))
    assert path.parent == runtime_dir()
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    served.server.stop()
    assert not path.exists()
    assert ping(indexed_repo) is None


def test_a_second_server_for_the_same_root_is_refused(served: Served, indexed_repo: Path) -> None:
    with pytest.raises(ServerBusyError, match="already served by process"):
        QueryServer(service_for([indexed_repo])).start()
    result = cs("serve", str(indexed_repo))
    assert result.exit_code == 2
    assert "already served" in result.stderr
    assert ping(indexed_repo) is not None  # the first one is untouched


def test_concurrent_clients_get_their_own_answers(served: Served, indexed_repo: Path) -> None:
    queries = ["parse csv", "moving average", "fetch json over http", "hash a file",
               "parse dates", "tokenize text"]
    expected = {q: find(indexed_repo, q, SearchOptions(k=5), no_server=True) for q in queries}
    failures: list[str] = []

    def client(i: int) -> None:
        for j in range(4):
            q = queries[(i + j) % len(queries)]
            hits = find(indexed_repo, q, SearchOptions(k=5))
            if hits != expected[q]:
                failures.append(q)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures
    assert served.answered() == 32


def test_protocol(served: Served, indexed_repo: Path) -> None:
    (path,) = served.server.socket_paths
    info = request(path, {"op": "ping"})
    assert info["ok"] and info["server"]["roots"] == [str(indexed_repo.resolve())]
    assert info["server"]["pid"] == os.getpid()

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        reader = sock.makefile("rb")

        def ask(line: bytes) -> dict[str, Any]:
            sock.sendall(line + b"\n")
            return json.loads(reader.readline())

        assert "protocol version" in ask(json.dumps({"v": 99, "op": "ping"}).encode())["decline"]
        assert "bad request" in ask(b"{not json")["decline"]
        query = {"op": "find", "text": "parse csv", "options": {"k": 2}}
        other = {"v": PROTOCOL_VERSION, "op": "answer", "root": "/elsewhere", "query": query}
        assert "not served" in ask(json.dumps(other).encode())["decline"]
        find_request = {"v": PROTOCOL_VERSION, "op": "answer", "root": str(indexed_repo.resolve()),
                "query": query}
        answer = ask(json.dumps(find_request).encode())  # the same connection still works
        assert answer["ok"] and len(answer["answer"]["hits"]) == 2
        wrong_device = dict(find_request, device="cuda:7")
        assert "device" in ask(json.dumps(wrong_device).encode())["decline"]
        # It loads models at one precision (CS_PRECISION, unset here): int8 is another server's.
        wrong_precision = dict(find_request, precision="int8")
        assert "precision int8 asked" in ask(json.dumps(wrong_precision).encode())["decline"]
        reader.close()
    # A declined request (this server runs on the automatic device, the client asks for "cpu")
    # makes the client work in-process, with the same answer.
    before = served.answered()
    hits = find(indexed_repo, "parse csv", SearchOptions(k=2), device="cpu")
    assert served.answered() == before + 1 and "device cpu asked" in served.log[-1]
    assert [h.path for h in hits] == [h["path"] for h in answer["answer"]["hits"]]


def test_serve_rejects_a_missing_root(tmp_path: Path) -> None:
    result = cs("serve", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


# --- a real `cs serve` process -------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _start_serve(repo: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", str(repo)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for("cs serve to load its model",
                 lambda: (ping(repo) or {}).get("models") or proc.poll() is not None)
    except AssertionError:
        proc.kill()
        raise
    assert proc.poll() is None, proc.communicate()[1]
    return proc


def _client_find(repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`cs find` as a fresh process, with -X importtime listing every module it imports."""
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "codesearch", "find",
                           "parse a CSV file", "--path", str(repo), "--json", *extra],
                          env=_env(), capture_output=True, text=True, timeout=300)


def _imported(importtime_stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip().split(".")[0]
            for line in importtime_stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.slow
def test_serve_process_lifecycle(indexed_repo: Path) -> None:
    """A `cs serve` process answers a fresh `cs find` process that never imports torch; after a
    kill -9 its socket file stays, clients work in-process, and the next `cs serve` removes the
    stale file, serves, and on SIGTERM exits 0 and removes its socket."""
    local = cs("find", "parse a CSV file", "--path", str(indexed_repo), "--json", "--no-server")
    assert local.exit_code == 0
    sock = socket_path(indexed_repo, resolve_index_uri(indexed_repo))

    server = _start_serve(indexed_repo)
    warm = _client_find(indexed_repo)
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert warm.stdout == local.stdout
    modules = _imported(warm.stderr)
    assert "codesearch" in modules and "typer" in modules  # the listing works...
    assert not modules & {"torch", "transformers", "lancedb", "pyarrow", "numpy"}  # ...none

    server.kill()  # kill -9: no cleanup at all
    server.wait(30)
    assert stat.S_ISSOCK(sock.stat().st_mode), "a crashed server leaves its socket behind"
    assert ping(indexed_repo) is None
    # refused: in-process
    cold = cs("find", "parse a CSV file", "--path", str(indexed_repo), "--json")
    assert (cold.exit_code, cold.stdout) == (0, local.stdout)

    # The next server, here `cs serve` run by this (main) thread so it handles the signal itself.
    seen: dict[str, Any] = {}

    def then_sigterm() -> None:
        try:
            wait_for("the second server", lambda: (ping(indexed_repo) or {}).get("models"))
            seen["pid"] = (ping(indexed_repo) or {}).get("pid")
            # Not through CliRunner: it swaps sys.stdout, and `cs serve` holds it meanwhile.
            seen["hits"] = find(indexed_repo, "parse a CSV file", SearchOptions())
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Timer(0.1, then_sigterm)
    timer.start()
    result = cs("serve", str(indexed_repo))
    timer.join(60)
    assert result.exit_code == 0, result.output
    assert "Stopped." in result.stderr
    assert seen["pid"] == os.getpid()
    assert [h.to_dict() for h in seen["hits"]] == json.loads(local.stdout)
    assert not sock.exists()


def test_server_status_shows_the_time_since_the_last_query(served: Served,
                                                           indexed_repo: Path) -> None:
    """A ping (`cs server status` itself) is no activity: idle time counts from the last query
    and goes on growing while only pings arrive."""
    result = cs("find", "moving average", "--path", str(indexed_repo), "--json")
    assert result.exit_code == 0 and served.answered() == 1, result.output
    time.sleep(1.2)

    def idle() -> float:
        status = cs("server", "status", "--json")
        assert status.exit_code == 0, status.output
        (listed,) = [s for s in json.loads(status.stdout) if s["pid"] == os.getpid()]
        return float(listed["idle_s"])

    first = idle()
    assert first >= 1.0
    time.sleep(0.3)
    assert idle() >= first + 0.2

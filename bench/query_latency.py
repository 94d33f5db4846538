"""Query latency as a new user meets it: the first `cs find` in a fresh shell (no server running;
it starts the automatic server in the background and answers itself), the second, the tenth, and
lexical queries cold, against today's cold `cs find --no-server`.

On a repository made of every sample repository under fixtures/ (15 languages), indexed once per
model (MiniLM, and ``qwen05b``: the real jina-code-0.5b architecture with random weights, what the
default model costs; ``tiny``: the test model), with CS_HOME and XDG_RUNTIME_DIR in a temp dir:

- cold: `cs find QUERY --json --no-server`, a fresh process each time (interpreter, imports,
  model load, index open, query): every query without a server;
- rounds: stop every server, then run ten `cs find` processes in a row: the first (no server:
  in-process, and starts one), then - once the server has loaded its model, whose time after the
  first query returned is recorded as ``ready_after_first`` - the second to the tenth, each
  checked byte for byte against the cold output of the same query;
- lexical cold: `cs find --mode lexical` in-process (no server, auto-start off), and lexical
  through the running server;
- round trip: the request sent from an already running Python process (the floor for an editor
  plugin or agent).

    python bench/query_latency.py                      # ~5-10 minutes on 2 CPU cores
    python bench/query_latency.py --models minilm,qwen05b --rounds 5
    python bench/query_latency.py --models tiny --rounds 2 --cold 3

Prints a table of p50/p95 per model and path, and writes bench/results/query_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUERIES = [
    "parse a CSV file and compute the mean of a column",
    "moving average of a time series",
    "fetch JSON over HTTP with retries",
    "hash the contents of a file",
    "parse a date string",
    "split text into words",
    "push a value onto a stack",
    "add an item to the shopping cart",
    "run queued jobs with a worker",
    "ring buffer read and write",
    "back up a directory to an archive",
    "handle an HTTP request and write a response",
    "compute the total price of the items",
    "generic queue of jobs with priorities",
    "pop the last element from a stack",
    "React component that renders a list",
    "convert a record to a string",
    "check whether the buffer is full",
    "define an interface with a default method",
    "main entry point of the program",
]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [1000 * s for s in seconds]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1), "min_ms": round(min(ms), 1),
            "max_ms": round(max(ms), 1)}


def run_cs(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "codesearch", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    return time.perf_counter() - start, proc


def build_repo(dest: Path) -> Path:
    for lang_dir in sorted((REPO / "fixtures").iterdir()):
        if lang_dir.is_dir() and lang_dir.name != "ignore-rules":
            shutil.copytree(lang_dir, dest / lang_dir.name)
    return dest


def auto_server_ready() -> dict[str, Any] | None:
    from codesearch.query import client
    for s in client.list_servers():
        if s.auto and s.info and s.info.get("ready"):
            return s.info
    return None


def wait_auto_ready(deadline: float = 600.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < deadline:
        if auto_server_ready():
            return time.perf_counter() - start
        time.sleep(0.05)
    raise RuntimeError("the automatic server did not become ready")


def stop_all_servers(env: dict[str, str]) -> None:
    run_cs(["server", "stop", "--all"], env)


def bench_model(name: str, model: str, work: Path, env: dict[str, str],
                queries: list[str], rounds: int, n_cold: int) -> dict[str, Any]:
    from codesearch.query import client, protocol
    from codesearch.query.request import Query

    root = build_repo(work / f"repo-{name}")
    seconds, proc = run_cs(["index", str(root), "--model", model, "--json"], env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    stats = json.loads(proc.stdout)
    print(f"{name}: indexed {stats['files_scanned']} files, {stats['chunks_total']} chunks "
          f"in {seconds:.1f}s", file=sys.stderr)

    def find(q: str, *extra: str, environ: dict[str, str] = env
             ) -> tuple[float, subprocess.CompletedProcess[str]]:
        return run_cs(["find", q, "--path", str(root), "--json", *extra], environ)

    no_auto = dict(env, CS_SERVER_AUTOSTART="0")
    find(queries[0], "--no-server")  # page cache, not timed
    cold, expected = [], {}
    for q in queries[:max(n_cold, 10)]:  # also what every round must print
        t, p = find(q, "--no-server")
        if len(cold) < n_cold:
            cold.append(t)
        expected[q] = p.stdout
    lexical_cold = [find(q, "--mode", "lexical", environ=no_auto)[0] for q in queries[:n_cold]]

    first, second, tenth, later, ready_after = [], [], [], [], []
    differ: list[str] = []
    for r in range(rounds):
        stop_all_servers(env)
        assert auto_server_ready() is None
        order = queries[r % len(queries):] + queries[:r % len(queries)]
        order = [q for q in order if q in expected][:10]
        for i, q in enumerate(order):
            t, p = find(q)
            if p.returncode != 0 or p.stdout != expected[q]:
                differ.append(q)
            if i == 0:
                first.append(t)
                ready_after.append(wait_auto_ready())
            elif i == 1:
                second.append(t)
            else:
                later.append(t)
                if i == 9:
                    tenth.append(t)
        info = auto_server_ready() or {}
        if info.get("requests") != len(order) - 1:
            raise RuntimeError(f"round {r}: the server answered {info.get('requests')} of "
                               f"{len(order) - 1} queries")
        print(f"{name}: round {r + 1}/{rounds}: first {first[-1]:.2f}s, ready "
              f"{ready_after[-1]:.1f}s later, second {second[-1]:.2f}s", file=sys.stderr)

    lexical_warm = [find(q, "--mode", "lexical")[0] for q in queries[:10]]
    (sock,) = [s.socket for s in client.list_servers() if s.auto]
    round_trip = []
    for q in queries:
        payload = {"op": "answer", "root": str(root.resolve()),
                   "query": Query("find", q).to_dict(), "device": None, "precision": None}
        start = time.perf_counter()
        answer = protocol.request(sock, payload)
        round_trip.append(time.perf_counter() - start)
        assert answer.get("ok"), answer
    stop_all_servers(env)

    return {
        "model": name, "model_spec": model, "files": stats["files_scanned"],
        "chunks": stats["chunks_total"],
        "cold_no_server": summary(cold),
        "first_query_fresh_shell": summary(first),
        "ready_after_first": summary(ready_after),
        "second_query": summary(second),
        "tenth_query": summary(tenth),
        "second_to_tenth": summary(later + second),
        "lexical_cold_in_process": summary(lexical_cold),
        "lexical_via_server": summary(lexical_warm),
        "round_trip": summary(round_trip),
        "identical_output": not differ, "differing_queries": differ,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="minilm,qwen05b",
                        help="comma-separated: tiny, minilm, qwen05b, or any --model value")
    parser.add_argument("--queries", type=int, default=len(QUERIES))
    parser.add_argument("--rounds", type=int, default=3,
                        help="fresh-shell rounds of ten queries per model")
    parser.add_argument("--cold", type=int, default=5, help="cold --no-server runs per model")
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench" / "results" / "query_latency.json")
    args = parser.parse_args()
    queries = QUERIES[: max(10, args.queries)]

    with tempfile.TemporaryDirectory(prefix="cs-bench-latency-") as tmp:
        work = Path(tmp)
        (work / "xdg").mkdir(mode=0o700)
        env = dict(os.environ)
        env.update(CS_HOME=str(work / "home"), XDG_RUNTIME_DIR=str(work / "xdg"),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", NO_COLOR="1", CS_SERVER_IDLE="900",
                   PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
        for var in ("CS_INDEX_DIR", "CS_CACHE_DIR", "CS_MODEL", "CS_INDEX_URI", "CS_NO_SERVER",
                    "CS_SERVER_AUTOSTART", "CS_DEVICE"):
            env.pop(var, None)
        os.environ.update({k: env[k] for k in ("CS_HOME", "XDG_RUNTIME_DIR", "HF_HUB_OFFLINE")})
        results = []
        try:
            for name in [m.strip() for m in args.models.split(",") if m.strip()]:
                model = name
                if name == "tiny":
                    from tests.support.tiny_model import build_tiny_model

                    model = str(build_tiny_model(work / "tiny-model"))
                elif name == "qwen05b":
                    from bench._models import build_05b

                    corpus = [f.read_text(encoding="utf-8", errors="replace")
                              for f in sorted((REPO / "fixtures").rglob("*")) if f.is_file()]
                    model = str(build_05b(work / "qwen05b", corpus, vocab=8000))
                results.append(bench_model(name, model, work, env, queries, args.rounds,
                                           args.cold))
        finally:
            stop_all_servers(env)

    import torch

    report = {
        "benchmark": "query_latency",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "device": "cpu",
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "queries": len(queries), "rounds": args.rounds,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"\nquery latency ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}), ms")
    print(f"{'model':<8} {'what':<44} {'n':>3} {'p50':>8} {'p95':>8}")
    for r in results:
        for key, label in (("cold_no_server", "cold: cs find --no-server (today)"),
                           ("first_query_fresh_shell", "1st cs find, fresh shell, no server"),
                           ("ready_after_first", "server ready after the 1st returned"),
                           ("second_query", "2nd cs find (server ready)"),
                           ("tenth_query", "10th cs find"),
                           ("second_to_tenth", "2nd-10th cs find"),
                           ("lexical_cold_in_process", "lexical, cold, no server"),
                           ("lexical_via_server", "lexical via the server"),
                           ("round_trip", "round trip from a running client")):
            s = r[key]
            print(f"{r['model']:<8} {label:<44} {s['n']:>3} {s['p50_ms']:>8.1f} "
                  f"{s['p95_ms']:>8.1f}")
        print(f"{'':<8} identical output: {r['identical_output']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

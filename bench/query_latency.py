"""Query latency, cold vs warm: what `cs serve` saves on every `cs find`.

On a repository made of every sample repository under fixtures/ (15 languages), indexed once per
model (the tiny test model, MiniLM, and ``qwen05b``: the real jina-code-0.5b architecture with
random weights, what the default model costs), it times about 20 natural-language queries three
ways:

- cold: `cs find QUERY --json --no-server` as a fresh process (interpreter, imports, model load,
  index open, query), what every query costs without a server;
- warm: `cs find QUERY --json` as a fresh process while `cs serve` runs (interpreter, light
  imports, one round trip); its stdout must equal the cold one, byte for byte;
- round trip: the same request sent from an already running Python process to the server
  (socket, JSON, index open, embedding, search): the floor for an editor plugin or agent.

    python bench/query_latency.py                      # ~3-5 minutes on 2 CPU cores
    python bench/query_latency.py --models tiny,minilm,qwen05b
    python bench/query_latency.py --models tiny --queries 10

Prints a table of p50/p95 per model and path, and writes bench/results/query_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
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


def wait_ready(root: Path, proc: subprocess.Popen[str], deadline: float = 300.0) -> None:
    from codesearch.server import ping

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"cs serve exited with {proc.returncode}")
        info = ping(root)
        if info and info.get("models"):
            return
        time.sleep(0.1)
    raise RuntimeError("cs serve did not become ready")


def bench_model(name: str, model: str, work: Path, env: dict[str, str],
                queries: list[str]) -> dict[str, Any]:
    from codesearch.search import SearchOptions
    from codesearch.server import options_to_dict, request, socket_path
    from codesearch.store import resolve_index_uri

    root = build_repo(work / f"repo-{name}")
    seconds, proc = run_cs(["index", str(root), "--model", model, "--json"], env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    stats = json.loads(proc.stdout)
    print(f"{name}: indexed {stats['files_scanned']} files, {stats['chunks_total']} chunks "
          f"in {seconds:.1f}s", file=sys.stderr)

    find = ["find", "--path", str(root), "--json"]
    run_cs([*find[:1], queries[0], *find[1:], "--no-server"], env)  # page cache, not timed
    cold, cold_out = [], {}
    for q in queries:
        t, p = run_cs([find[0], q, *find[1:], "--no-server"], env)
        cold.append(t)
        cold_out[q] = p.stdout

    log = work / f"serve-{name}.log"
    server = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", str(root)],
                              env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                              text=True)
    try:
        t0 = time.perf_counter()
        try:
            wait_ready(root, server)
        except RuntimeError as err:
            raise RuntimeError(f"{err}: {log.read_text()[-2000:]}") from None
        startup = time.perf_counter() - t0
        warm, differ = [], []
        run_cs([find[0], queries[0], *find[1:]], env)  # not timed
        for q in queries:
            t, p = run_cs([find[0], q, *find[1:]], env)
            warm.append(t)
            if p.stdout != cold_out[q] or p.returncode != 0:
                differ.append(q)
        sock = socket_path(root, resolve_index_uri(root))
        round_trip = []
        for q in queries:
            payload = {"op": "find", "root": str(root.resolve()), "query": q,
                       "options": options_to_dict(SearchOptions()), "model": None,
                       "device": None}
            start = time.perf_counter()
            answer = request(sock, payload)
            round_trip.append(time.perf_counter() - start)
            assert answer.get("ok"), answer
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    return {
        "model": name, "model_spec": model, "files": stats["files_scanned"],
        "chunks": stats["chunks_total"], "server_startup_s": round(startup, 2),
        "cold_process": summary(cold), "warm_process": summary(warm),
        "round_trip": summary(round_trip), "identical_output": not differ,
        "differing_queries": differ,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,minilm",
                        help="comma-separated: tiny, minilm, qwen05b, or any --model value")
    parser.add_argument("--queries", type=int, default=len(QUERIES))
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench" / "results" / "query_latency.json")
    args = parser.parse_args()
    queries = QUERIES[: args.queries]

    with tempfile.TemporaryDirectory(prefix="cs-bench-latency-") as tmp:
        work = Path(tmp)
        env = dict(os.environ)
        env.update(CS_HOME=str(work / "home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", NO_COLOR="1",
                   PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
        for var in ("CS_INDEX_DIR", "CS_CACHE_DIR", "CS_MODEL", "CS_INDEX_URI"):
            env.pop(var, None)
        os.environ.update({k: env[k] for k in ("CS_HOME", "HF_HUB_OFFLINE")})
        results = []
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
            results.append(bench_model(name, model, work, env, queries))

    import torch

    report = {
        "benchmark": "query_latency",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "device": "cpu"},
        "queries": len(queries),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"\nquery latency over {len(queries)} queries ({os.cpu_count()} CPUs), ms")
    print(f"{'model':<8} {'path':<34} {'p50':>8} {'p95':>8}")
    for r in results:
        for key, label in (("cold_process", "cold: cs find --no-server"),
                           ("warm_process", "warm: cs find via cs serve"),
                           ("round_trip", "round trip (in-process client)")):
            s = r[key]
            print(f"{r['model']:<8} {label:<34} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f}")
        speedup = r["cold_process"]["p50_ms"] / r["warm_process"]["p50_ms"]
        print(f"{'':<8} warm is {speedup:.1f}x faster at p50; identical output: "
              f"{r['identical_output']}; server ready in {r['server_startup_s']}s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

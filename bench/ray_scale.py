"""Chunks/s of the Ray engine (1 and 2 workers) against the local engine, on the same texts.

The texts are the chunks of a real tree (default: this Python's standard ``asyncio`` package, cut
by codesearch.source.chunk and written by codesearch.documents exactly as ``cs index`` does),
embedded on the document side with the same model (default: the tiny random Qwen2 model of the
test suite, so this runs anywhere in minutes).

For each engine it reports:

- ``wall``: chunks / seconds from the call to the last vector, start-up included (Ray: starting
  the actors, importing torch and loading the model in each);
- ``steady``: chunks / seconds between the first and the last vector received, which leaves most
  of the start-up out (an estimate of throughput on a long run; local: the same as wall, as its
  model is loaded before timing).

    python bench/ray_scale.py                  # tiny model, asyncio's chunks, local Ray (2 CPUs)
    python bench/ray_scale.py --model minilm --max-chunks 2000
    python bench/ray_scale.py --address ray://head:10001 --workers 1 2 4 8

Prints a table and writes bench/results/ray_scale.json. Timings on a shared or loaded machine are
noisy: the load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def collect_texts(tree: Path, max_chunks: int) -> list[str]:
    """Embedding texts of the chunks of the ``.py`` files under ``tree`` (sorted paths), at most
    ``max_chunks``. Files are read directly: discovery would skip an installed tree (a virtual
    environment's own .gitignore ignores everything in it)."""
    from codesearch.documents import embedding_text
    from codesearch.source.chunk import chunk_source

    texts: list[str] = []
    for path in sorted(tree.rglob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
            chunks = chunk_source(source, path.relative_to(tree).as_posix(), "python")
        except Exception:  # noqa: BLE001 - a bad file is not the point here
            continue
        texts.extend(embedding_text(c) for c in chunks)
        if len(texts) >= max_chunks:
            break
    return texts[:max_chunks]


def default_tree() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"]) / "asyncio"


def tiny_model() -> str:
    from tests.support.tiny_model import build_tiny_model

    return str(build_tiny_model(Path(tempfile.mkdtemp(prefix="cs-bench-tiny-"))))


def time_local(texts: list[str], model: str, threads: int) -> dict[str, Any]:
    import torch

    from codesearch.documents import DOCUMENT_TASK
    from codesearch.embed import load_embedder

    torch.set_num_threads(threads)
    embedder = load_embedder(model, device="cpu", dtype="float32")
    embedder.embed_documents(texts[:8], task=DOCUMENT_TASK)  # warm-up
    start = time.perf_counter()
    embedder.embed_documents(texts, task=DOCUMENT_TASK)
    seconds = time.perf_counter() - start
    rate = len(texts) / seconds
    return {"engine": "local", "workers": 1, "threads": threads, "seconds": round(seconds, 3),
            "wall_chunks_per_s": round(rate, 1), "steady_chunks_per_s": round(rate, 1)}


def time_ray(texts: list[str], model: str, workers: int, batch: int) -> dict[str, Any]:
    from codesearch.index.ray import RayOptions, ray_embed

    start = time.perf_counter()
    first: float | None = None
    first_n = done = 0
    for indices, _vectors in ray_embed(texts, model=model, dim=None, device="cpu",
                                       dtype="float32",
                                       opts=RayOptions(workers=workers, batch_texts=batch)):
        now = time.perf_counter()
        if first is None:
            first, first_n = now, len(indices)
        done += len(indices)
    end = time.perf_counter()
    assert done == len(texts)
    steady = ((done - first_n) / (end - first)) if first is not None and end > first else None
    return {"engine": "ray", "workers": workers, "threads": 1, "seconds": round(end - start, 3),
            "wall_chunks_per_s": round(len(texts) / (end - start), 1),
            "steady_chunks_per_s": None if steady is None else round(steady, 1),
            "startup_s": None if first is None else round(first - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=None,
                        help="tree to chunk (default: stdlib asyncio)")
    parser.add_argument("--model", default=None, help="model (default: the tests' tiny model)")
    parser.add_argument("--max-chunks", type=int, default=1500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=64, help="texts per Ray batch")
    parser.add_argument("--address", default=None, help="a running Ray cluster (default: local)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ray_scale.json")
    args = parser.parse_args()

    import ray

    tree = args.tree or default_tree()
    model = args.model or tiny_model()
    texts = collect_texts(tree, args.max_chunks)
    print(f"{len(texts)} chunks from {tree}; model {model}", file=sys.stderr)

    # Both thread counts: on a loaded machine torch's OpenMP threads can spin against each other.
    rows = [time_local(texts, model, threads=t) for t in sorted({1, args.num_cpus})]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.address:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        for w in args.workers:
            rows.append(time_ray(texts, model, w, args.batch))
    finally:
        ray.shutdown()

    print(f"\n{'engine':<8}{'workers':>8}{'threads':>8}{'seconds':>10}{'wall c/s':>11}"
          f"{'steady c/s':>12}{'startup s':>11}")
    for r in rows:
        steady = "-" if r["steady_chunks_per_s"] is None else f"{r['steady_chunks_per_s']:.1f}"
        startup = "-" if r.get("startup_s") is None else f"{r['startup_s']:.1f}"
        print(f"{r['engine']:<8}{r['workers']:>8}{r['threads']:>8}{r['seconds']:>10.2f}"
              f"{r['wall_chunks_per_s']:>11.1f}{steady:>12}{startup:>11}")
    results = {
        "what": "document embedding throughput, local engine vs Ray Data actor pool",
        "tree": str(tree), "chunks": len(texts), "model": model if args.model else "tiny-qwen2",
        "ray_batch_texts": args.batch, "ray_address": args.address or f"local({args.num_cpus})",
        "rows": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "ray": ray.__version__,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

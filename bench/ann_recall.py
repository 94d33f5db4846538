"""ANN vs brute force in the cs store: recall@10, query latency and index build time by table size.

Vectors are synthetic but shaped like embeddings: unit vectors drawn around cluster centres (about
50 chunks per topic, intra-topic cosine ~0.6), queries are perturbed data points. Ground truth is an
exact numpy top-10. Each size is measured with brute force (no index), then with the ANN index
cs builds past its threshold (store.create_vector_index), with and without a language prefilter.

    python bench/ann_recall.py                      # sizes 20k 50k 100k 200k, dim 256
    python bench/ann_recall.py --sizes 10000 --queries 50

Prints a table and writes bench/results/ann_recall.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from codesearch.query.ranking import build_where
from codesearch.store.records import ChunkRecord, FileRecord, Manifest
from codesearch.store.store import Store

LANGS = ("python", "go", "rust", "javascript")
RESULTS = Path(__file__).resolve().parent / "results" / "ann_recall.json"


def synthetic(n: int, dim: int, rng: np.random.Generator, spread: float = 0.9) -> np.ndarray:
    centres = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    which = rng.integers(0, len(centres), n)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    x = centres[which] + noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fill(store: Store, vectors: np.ndarray, batch: int = 20_000) -> None:
    dim = vectors.shape[1]
    store.write_manifest(Manifest(model="bench", model_id="bench", revision=None, dim=dim,
                                  prefix_scheme="none", max_length=512, chunker_version="bench"))
    store.ensure_tables(dim)
    for start in range(0, len(vectors), batch):
        rows, files = [], []
        for i in range(start, min(start + batch, len(vectors))):
            path = f"f{i // 10}.x"
            rows.append(ChunkRecord(id=f"c{i}", path=path, language=LANGS[i % len(LANGS)],
                                    kind="function", symbol=f"s{i}", start_line=i % 10 + 1,
                                    end_line=i % 10 + 1, text="x", hash=f"h{i}",
                                    search_text="x"))
            if i % 10 == 0:
                files.append(FileRecord(path, 1, 1, path))
        store.commit_batch(files=files, chunks=rows, vectors=vectors[start:start + len(rows)])


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int,
              mask: np.ndarray | None = None) -> list[set[str]]:
    scores = queries @ vectors.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :k]
    return [{f"c{j}" for j in row} for row in top]


def measure(store: Store, queries: np.ndarray, truth: list[set[str]], k: int,
            where: str | None) -> dict[str, float]:
    recalls, times = [], []
    for q, expected in zip(queries, truth, strict=True):
        t = time.perf_counter()
        got = {h.id for h in store.vector_search(q, k, where=where)}
        times.append(time.perf_counter() - t)
        recalls.append(len(got & expected) / k)
    return {"recall_at_10": float(np.mean(recalls)), "p50_ms": 1000 * float(np.median(times)),
            "p95_ms": 1000 * float(np.percentile(times, 95))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 50_000, 100_000, 200_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--spread", type=float, default=0.9,
                        help="noise around topic centres: 0.9 puts the 10 nearest neighbours "
                             "at cosine ~0.6, 1.5 at ~0.37 (harder)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        vectors = synthetic(n, args.dim, rng, args.spread)
        picks = rng.integers(0, n, args.queries)
        queries = vectors[picks] + rng.standard_normal((args.queries, args.dim)).astype(
            np.float32) * (0.5 / np.sqrt(args.dim))
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        lang_mask = np.array([LANGS[i % len(LANGS)] == "go" for i in range(n)])
        truth = exact_top(vectors, queries, args.k)
        truth_go = exact_top(vectors, queries, args.k, lang_mask)
        where_go = build_where(["go"])
        tmp = Path(tempfile.mkdtemp(prefix="cs-ann-"))
        try:
            store = Store.open(str(tmp / "index"))
            fill(store, vectors)
            brute = measure(store, queries, truth, args.k, None)
            brute_go = measure(store, queries, truth_go, args.k, where_go)
            t = time.perf_counter()
            store.create_vector_index(n)
            build_s = time.perf_counter() - t
            ann = measure(store, queries, truth, args.k, None)
            ann_go = measure(store, queries, truth_go, args.k, where_go)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        row = {"rows": n, "dim": args.dim, "spread": args.spread,
               "index_build_s": round(build_s, 2), "brute": brute, "brute_prefilter": brute_go,
               "ann": ann, "ann_prefilter": ann_go}
        rows.append(row)
        print(f"{n:>8} rows  brute p50 {brute['p50_ms']:7.1f} ms (filtered "
              f"{brute_go['p50_ms']:6.1f})  ann p50 {ann['p50_ms']:6.1f} ms (filtered "
              f"{ann_go['p50_ms']:6.1f})  recall@10 {ann['recall_at_10']:.3f} (filtered "
              f"{ann_go['recall_at_10']:.3f})  build {build_s:6.1f}s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Runs with other sizes or spreads accumulate in the same file.
    try:
        previous = json.loads(args.out.read_text())["results"]
    except (OSError, ValueError, KeyError):
        previous = []
    keys = {(r["rows"], r["spread"]) for r in rows}
    merged = [r for r in previous if (r.get("rows"), r.get("spread")) not in keys] + rows
    merged.sort(key=lambda r: (r.get("spread", 0), r["rows"]))
    args.out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "index": "IVF_HNSW_SQ cosine, partitions rows//16384, ef_construction 150, "
                 "nprobes 256 (all), ef 64, refine_factor 4",
        "note": "timings taken on a shared 2-core machine under load from other jobs",
        "results": merged,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""How long `cs dups` takes on a large index, and which vector search it should use.

Builds a synthetic index directly through the store (no model): ``--rows`` chunks in files of 20,
each with 8-30 lines of made-up code and a vector shaped like an embedding (unit vectors around
topic centres, about 50 chunks per topic, as bench/ann_recall.py), with planted near duplicates
(2% of rows: noisy copies of another row's vector, cosine about .95) and exact copies (0.5%: the
same text in another file). Then measures:

1. ``duplicates()`` end to end (read the rows and vectors, fingerprints, vector pairs, groups):
   what ``cs dups`` runs, minus process start;
2. the vector step alone, as shipped (partitioned exact search) against the all-pairs exact
   search on a subset (time, and the share of its pairs found);
3. the alternative through LanceDB's ANN index (IVF-HNSW-SQ, as cs builds it past 100k rows): its
   build time, and one k-nearest query per row timed on a sample and extrapolated to every row.

    python bench/dups_scale.py                    # 100k rows, dim 384 (MiniLM's)
    python bench/dups_scale.py --rows 20000       # a quick look

Prints a table and writes bench/results/dups_scale.json.
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

from codesearch.query.dups import COLUMNS, duplicates, neighbour_pairs
from codesearch.query.request import SearchOptions
from codesearch.store.records import ChunkRecord, FileRecord, Manifest
from codesearch.store.store import Store

RESULTS = Path(__file__).resolve().parent / "results" / "dups_scale.json"
WORDS = ("value item total count index result buffer parse read write check update name key "
         "node child parent list map set table row column offset size limit config path").split()


def vectors_for(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, len(centres), n)]
    x = x + rng.standard_normal((n, dim)).astype(np.float32) * (0.9 / np.sqrt(dim))
    planted = rng.choice(n, size=n // 50, replace=False)
    sources = rng.integers(0, n, len(planted))
    x[planted] = x[sources] + rng.standard_normal((len(planted), dim)).astype(np.float32) * (
        0.33 / np.sqrt(dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def text_for(i: int, rng: np.random.Generator) -> str:
    lines = [f"def f_{i}({WORDS[i % len(WORDS)]}):"]
    for _ in range(int(rng.integers(8, 30))):
        a, b, c = rng.choice(WORDS, 3)
        lines.append(f"    {a}_{int(rng.integers(0, 50))} = {b}({c}, {int(rng.integers(0, 9))})")
    return "\n".join(lines)


def fill(store: Store, vectors: np.ndarray, rng: np.random.Generator,
         batch: int = 20_000) -> None:
    n, dim = vectors.shape
    store.write_manifest(Manifest(model="bench", model_id="bench", revision=None, dim=dim,
                                  prefix_scheme="none", max_length=512, chunker_version="bench"))
    store.ensure_tables(dim)
    texts = [text_for(i, rng) for i in range(n)]
    for i in rng.choice(n, size=n // 200, replace=False):  # exact copies in other files
        texts[i] = texts[int(rng.integers(0, n))]
    for start in range(0, n, batch):
        rows, files = [], []
        for i in range(start, min(start + batch, n)):
            path = f"src/m{i // 20}.py"
            line = (i % 20) * 40 + 1
            text = texts[i]
            rows.append(ChunkRecord(id=f"c{i}", path=path, language="python", kind="function",
                                    symbol=f"f_{i}", start_line=line,
                                    end_line=line + text.count("\n"), text=text, hash=f"h{i}",
                                    search_text="x"))
            if i % 20 == 0:
                files.append(FileRecord(path, 1, 1, path))
        store.commit_batch(files=files, chunks=rows, vectors=vectors[start:start + len(rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--subset", type=int, default=20_000,
                        help="rows of the exact all-pairs comparison")
    parser.add_argument("--ann-queries", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    out: dict = {"rows": args.rows, "dim": args.dim, "threshold": args.threshold,
                 "machine": f"{platform.processor() or platform.machine()}, "
                            f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}"}
    tmp = Path(tempfile.mkdtemp(prefix="dups-scale-"))
    try:
        vectors = vectors_for(args.rows, args.dim, rng)
        store = Store.open(str(tmp / "index"))
        t0 = time.perf_counter()
        fill(store, vectors, rng)
        out["fill_s"] = round(time.perf_counter() - t0, 1)

        store = Store.open(str(tmp / "index"))
        t0 = time.perf_counter()
        rows = store.chunk_columns(COLUMNS)
        out["read_s"] = round(time.perf_counter() - t0, 2)
        del rows
        t0 = time.perf_counter()
        groups = duplicates(store, SearchOptions(k=1_000_000, threshold=args.threshold))
        out["dups_s"] = round(time.perf_counter() - t0, 2)
        out["groups"] = len(groups)
        out["groups_exact"] = sum(g.kind == "exact" for g in groups)

        t0 = time.perf_counter()
        a, _, _ = neighbour_pairs(vectors, args.threshold)
        out["vector_pairs_s"] = round(time.perf_counter() - t0, 2)
        out["vector_pairs"] = len(a)

        sub = vectors[:args.subset]
        t0 = time.perf_counter()
        fast = neighbour_pairs(sub, args.threshold, exact_rows=0)
        fast_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        exact = neighbour_pairs(sub, args.threshold, exact_rows=len(sub))
        exact_s = time.perf_counter() - t0
        want = set(zip(exact[0].tolist(), exact[1].tolist(), strict=True))
        got = set(zip(fast[0].tolist(), fast[1].tolist(), strict=True))
        out["subset"] = {"rows": len(sub), "partitioned_s": round(fast_s, 2),
                         "all_pairs_s": round(exact_s, 2), "pairs_exact": len(want),
                         "pair_recall": round(len(got & want) / max(1, len(want)), 4),
                         "all_pairs_extrapolated_s": round(
                             exact_s * (args.rows / len(sub)) ** 2, 1)}

        t0 = time.perf_counter()
        store.create_vector_index(args.rows)
        out["ann_build_s"] = round(time.perf_counter() - t0, 1)
        store = Store.open(str(tmp / "index"))
        sample = rng.choice(args.rows, size=args.ann_queries, replace=False)
        t0 = time.perf_counter()
        for i in sample:
            store.vector_search(vectors[i], 11)
        per_query = (time.perf_counter() - t0) / len(sample)
        out["ann_query_ms"] = round(per_query * 1000, 2)
        out["ann_all_rows_extrapolated_s"] = round(per_query * args.rows + out["ann_build_s"], 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"| {out['rows']:,} rows, dim {out['dim']} | seconds |")
    print("|---|---:|")
    print(f"| `duplicates()` end to end (as `cs dups`) | **{out['dups_s']}** |")
    print(f"| reading the rows' columns and vectors alone | {out['read_s']} |")
    print(f"| vector pairs, partitioned exact (as shipped) | {out['vector_pairs_s']} |")
    s = out["subset"]
    print(f"| {s['rows']:,}-row subset: partitioned / all pairs (pair recall "
          f"{s['pair_recall']}) | {s['partitioned_s']} / {s['all_pairs_s']} |")
    print(f"| all pairs at {out['rows']:,} rows, extrapolated (quadratic) | "
          f"{s['all_pairs_extrapolated_s']} |")
    print(f"| LanceDB ANN: build + one query per row ({out['ann_query_ms']} ms each), "
          f"extrapolated | {out['ann_all_rows_extrapolated_s']} |")
    print(f"groups {out['groups']} ({out['groups_exact']} exact); {out['machine']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`cs similar FILE:LINE --lang TARGET`: does it find the same task written in another language?

fixtures/xlang/ holds 30 small, well-known tasks (FizzBuzz, binary search, Levenshtein, a sieve,
...) each written idiomatically, for this benchmark, in Python, JavaScript, TypeScript, Go and
Rust: one file per language, the tasks in the same order, one top-level function each (the k-th
function of every file is the same task). The tree is indexed together (``--model``, MiniLM by
default); then for every function and every other language, ``similar`` from the middle of the
function with ``--lang`` that language, and the reciprocal rank of the counterpart in the top 10.

``--anonymise`` first gives every task's function a random name of its own in each language
(recursive calls and exports follow), in a copy under /tmp: the names, which a port usually
keeps, then say nothing, and only the code can match.

Prints the 5x5 MRR@10 table (source language per row, target per column) for each mode and writes
bench/results/xlang_similar.json (``--tag`` names the run inside it, so a later run adds beside
an earlier one).

    python bench/xlang_similar.py                       # hybrid (default), semantic, lexical
    python bench/xlang_similar.py --modes hybrid --tag before
    python bench/xlang_similar.py --anonymise --tag anonymised
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quality  # noqa: E402  (CS_HOME, shared model loader, indexing)

FIXTURE = HERE.parent / "fixtures" / "xlang"
LANGS = ("python", "javascript", "typescript", "go", "rust")
FILES = {"python": "tasks.py", "javascript": "tasks.js", "typescript": "tasks.ts",
         "go": "tasks.go", "rust": "tasks.rs"}
RESULTS = HERE / "results" / "xlang_similar.json"
K = 10


def functions(root: Path) -> dict[str, list[tuple[int, int, str]]]:
    """language -> the (start, end, symbol) of each task's function, in task order."""
    from codesearch.source.chunk import chunk_source

    out = {}
    for lang, name in FILES.items():
        chunks = chunk_source((root / name).read_text(), name, lang)
        out[lang] = [(c.start_line, c.end_line, c.symbol) for c in chunks
                     if c.kind in ("function", "method")]
        assert len(out[lang]) == len(out["python"]), (lang, len(out[lang]))
    return out


def anonymised_copy(target: Path) -> Path:
    """fixtures/xlang in ``target`` with each task function renamed to a random word (seeded),
    every whole-word use of the name in its file following."""
    import random
    import re

    rng = random.Random(0)
    target.mkdir(parents=True, exist_ok=True)
    for lang, tasks in functions(FIXTURE).items():
        text = (FIXTURE / FILES[lang]).read_text()
        for _, _, symbol in tasks:
            fresh = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7))
            text = re.sub(rf"\b{re.escape(symbol)}\b", fresh, text)
        (target / FILES[lang]).write_text(text)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--modes", nargs="*", default=["hybrid", "semantic", "lexical"])
    parser.add_argument("--tag", default="now")
    parser.add_argument("--anonymise", action="store_true",
                        help="rename every task function at random first (see above)")
    args = parser.parse_args()
    os.environ.setdefault("CS_HOME", str(quality.DEFAULT_HOME))
    from codesearch.location import IndexSettings
    from codesearch.query.request import SearchOptions
    from codesearch.query.searcher import Searcher

    root = (anonymised_copy(Path("/tmp/cs-xlang-anonymised")) if args.anonymise
            else FIXTURE).resolve()
    loader = quality.SharedLoader()
    quality.index_tree(root, args.model, loader, rebuild=False,
                       fingerprint=quality.code_fingerprint())
    tasks = functions(root)
    searcher = Searcher.open(IndexSettings().locate(root), loader=loader)
    report: dict[str, Any] = {}
    for mode in args.modes:
        table: dict[str, dict[str, float]] = {}
        ranks: list[float] = []
        misses: list[str] = []
        t0 = time.perf_counter()
        for source in LANGS:
            table[source] = {}
            for target in LANGS:
                if target == source:
                    continue
                rr = []
                for i, (start, end, symbol) in enumerate(tasks[source]):
                    line = (start + end) // 2
                    hits = searcher.similar(f"{root / FILES[source]}:{line}",
                                            SearchOptions(k=K, languages=(target,), mode=mode))
                    want = tasks[target][i]
                    rank = next((r for r, h in enumerate(hits, 1)
                                 if h.start_line <= want[1] and h.end_line >= want[0]), None)
                    rr.append(1 / rank if rank else 0.0)
                    if rank != 1:
                        misses.append(f"{source}:{symbol} -> {target}: rank {rank}, top "
                                      f"{hits[0].symbol if hits else None}")
                table[source][target] = round(sum(rr) / len(rr), 3)
                ranks += rr
        overall = round(sum(ranks) / len(ranks), 3)
        report[mode] = {"mrr@10": overall, "table": table, "queries": len(ranks),
                        "seconds": round(time.perf_counter() - t0, 1), "misses": misses}
        print(f"\n{args.model}, mode {mode}: MRR@{K} {overall} over {len(ranks)} queries "
              "(rows: source, columns: target)")
        print("| from \\ to | " + " | ".join(LANGS) + " |")
        print("|---|" + "---:|" * len(LANGS))
        for source in LANGS:
            cells = [f"{table[source][t]:.3f}" if t in table[source] else "–" for t in LANGS]
            print(f"| {source} | " + " | ".join(cells) + " |")
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved[f"{args.tag}/{args.model}" + ("/anonymised" if args.anonymise else "")] = {
        mode: {k: v for k, v in r.items() if k != "misses"} for mode, r in report.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
    runs = HERE / "results" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"xlang_similar-{args.tag}.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

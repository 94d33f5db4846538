#!/usr/bin/env python3
"""`cs dups` on the shared benchmark's ``pair/`` trees: precision of the top groups and recall of
the known pairs.

Each ``pair/`` tree holds two versions of one package side by side (../shared/eval/README.md), so
every function of the old version has its counterpart in the new one: unchanged ones are exact
copies, and the changed ones listed in ``similar.jsonl`` (difflib token similarity 0.3-1.0) are the
known near duplicates.

- **recall**: a known pair counts when one group (any, at the given threshold) holds a location
  overlapping each of its two functions;
- **precision@N**: of the top N groups (the order `cs dups` prints), those whose every location
  has a partner in the group: its counterpart (the same symbol in the other version) or a near
  copy (difflib token similarity >= 0.5, make_corpus.py's tokens). ``strict`` counts only
  counterparts.

Indexes come from bench/quality.py's index_tree (the same private CS_HOME and fingerprints), so
after bench/quality.py has run nothing is embedded. Writes bench/results/dups_quality.json and
per-group dumps to bench/results/runs/dups_quality-groups.json.

Usage: python bench/dups_quality.py [--threshold 0.93 ...] [--top 50]
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quality  # noqa: E402  (bench/quality.py: split, CS_HOME and indexing helpers)

TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|[^\s\w]")  # make_corpus.py's body tokens
NEAR_COPY = 0.5


def version_of(path: str) -> str:
    return path.split("/", 1)[0]


def token_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, TOKEN.findall(a), TOKEN.findall(b),
                                   autojunk=False).ratio()


def judge(group: Any, strict: bool) -> bool:
    """Whether every location of ``group`` has a partner in it (see the module doc)."""
    locs = group.locations
    for i, a in enumerate(locs):
        ok = False
        for j, b in enumerate(locs):
            if i == j:
                continue
            if a.symbol == b.symbol and version_of(a.path) != version_of(b.path):
                ok = True
            elif not strict and token_similarity(a.text, b.text) >= NEAR_COPY:
                ok = True
            if ok:
                break
        if not ok:
            return False
    return True


def overlaps(hit: Any, path: str, start: int, end: int) -> bool:
    return hit.path == path and hit.start_line <= end and hit.end_line >= start


def recalled(groups: list[Any], pair: dict) -> bool:
    for g in groups:
        if (any(overlaps(h, pair["query_path"], pair["query_start_line"], pair["query_end_line"])
                for h in g.locations)
                and any(overlaps(h, pair["path"], pair["start_line"], pair["end_line"])
                        for h in g.locations)):
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=quality.DEFAULT_SPLIT)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--threshold", type=float, nargs="*", default=[],
                        help="thresholds to score (default: cs dups's own)")
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dups_quality.json")
    args = parser.parse_args()

    import os
    os.environ.setdefault("CS_HOME", str(quality.DEFAULT_HOME))
    from codesearch.location import IndexSettings
    from codesearch.query.dups import DEFAULT_THRESHOLD
    from codesearch.query.request import Query, SearchOptions
    from codesearch.query.service import QueryService

    quality.ensure_split(args.split, quality.DEFAULT_EVAL)
    corpora = sorted(p.parent.name for p in args.split.glob("*/pair"))
    loader = quality.SharedLoader()
    fingerprint = quality.code_fingerprint()
    thresholds = args.threshold or [DEFAULT_THRESHOLD]
    service = QueryService()
    report: dict[str, Any] = {"model": args.model, "split": str(args.split), "top": args.top,
                              "default_threshold": DEFAULT_THRESHOLD, "runs": {}}
    dumps: dict[str, Any] = {}
    for corpus in corpora:
        root = (args.split / corpus / "pair").resolve()
        quality.index_tree(root, args.model, loader, rebuild=False, fingerprint=fingerprint)
    for threshold in thresholds:
        rows: dict[str, Any] = {}
        for corpus in corpora:
            root = (args.split / corpus / "pair").resolve()
            pairs = [json.loads(line) for line in
                     (args.split / corpus / "similar.jsonl").read_text().splitlines()]
            t0 = time.perf_counter()
            answer = service.answer(IndexSettings().locate(root),
                                    Query("dups", "", SearchOptions(k=1_000_000,
                                                                    threshold=threshold)))
            seconds = time.perf_counter() - t0
            groups = answer.groups or []
            top = groups[:args.top]
            hits = sum(recalled(groups, p) for p in pairs)
            rows[corpus] = {
                "groups": len(groups), "pairs": len(pairs), "recalled": hits,
                "recall": round(hits / max(1, len(pairs)), 3),
                "precision": round(sum(judge(g, False) for g in top) / max(1, len(top)), 3),
                "precision_strict": round(sum(judge(g, True) for g in top) / max(1, len(top)), 3),
                "seconds": round(seconds, 2),
            }
            dumps[f"{threshold}/{corpus}"] = [
                {"similarity": g.similarity, "kind": g.kind, "lines": g.lines,
                 "ok": judge(g, False), "strict": judge(g, True),
                 "locations": [f"{h.path}:{h.start_line}-{h.end_line} {h.symbol}"
                               for h in g.locations]} for g in top]
        n_pairs = sum(r["pairs"] for r in rows.values())
        summary = {
            "recall": round(sum(r["recalled"] for r in rows.values()) / max(1, n_pairs), 3),
            "precision": round(sum(r["precision"] for r in rows.values()) / len(rows), 3),
            "precision_strict": round(sum(r["precision_strict"] for r in rows.values())
                                      / len(rows), 3),
        }
        report["runs"][str(threshold)] = {"corpora": rows, "all": summary}
        print(f"\nthreshold {threshold}  (precision@{args.top} per tree, recall of known pairs)")
        print(f"| tree | groups | P@{args.top} | P@{args.top} strict | recall | seconds |")
        print("|---|---:|---:|---:|---:|---:|")
        for corpus, r in rows.items():
            print(f"| {corpus} | {r['groups']} | {r['precision']:.3f} | "
                  f"{r['precision_strict']:.3f} | {r['recall']:.3f} ({r['recalled']}/"
                  f"{r['pairs']}) | {r['seconds']} |")
        print(f"| **all** | | **{summary['precision']:.3f}** | {summary['precision_strict']:.3f}"
              f" | **{summary['recall']:.3f}** | |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    runs = HERE / "results" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "dups_quality-groups.json").write_text(json.dumps(dumps, indent=1) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Realistic questions (the peer semble's benchmark, ../shared/eval/semble_bench.py) replayed in
seconds: sweep ranking levers over stored candidate searches instead of one ``cs find`` process
per question.

``dump`` reads, for every question of the dev split, through the real code paths (an index built by
``cs index``, found as ``cs find`` finds it: CS_HOME / CS_INDEX_DIR):
- every stored chunk with its vector (bench/replica.py's table);
- the question's vector exactly as ``Searcher.find`` builds it, and the LanceDB BM25 top
  ``--pool`` list (ids and scores).

``score`` ranks them with bench/replica.py's :func:`rank` (the candidate searches replayed in
numpy, then the real codesearch.query.ranking.hybrid_rank) or the semantic / lexical orders, takes
the files of the top 10 as ``cs find --json`` would print them, and scores them with
semble_bench.py's own ``ndcg``: per repository, kind and language.

    python bench/realistic.py dump --out /tmp/rank-replica [--repos a,b]
    python bench/realistic.py score /tmp/rank-replica [--mode hybrid] [--json F]

The numbers to report come from semble_bench.py itself (one ``cs find`` per question); this is
the loop for trying things.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from replica import Corpus, _chunk_table, rank, recorder_class  # noqa: E402
from replica import evaluate as replica_evaluate  # noqa: E402
from replica import load as replica_load  # noqa: E402
from replica import summary as replica_summary  # noqa: E402

K = 10
DEFAULT_DATA = Path("/tmp/semble-dev")


def semble() -> Any:
    """../shared/eval/semble_bench.py as a module (its tasks, matches and ndcg)."""
    path = HERE.parent.parent / "shared" / "eval" / "semble_bench.py"
    spec = importlib.util.spec_from_file_location("semble_bench", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dump(data: Path, out: Path, names: list[str] | None, pool: int) -> None:
    from codesearch.location import IndexSettings
    from codesearch.query import searcher as S

    sb = semble()
    sp = sb.specs(data)
    out.mkdir(parents=True, exist_ok=True)

    Recorder = recorder_class()
    for n in names or sb.SPLIT["repos"]:
        root = sb.bench_dir(data, sp[n]).resolve()
        searcher = Recorder.open(IndexSettings().for_root(root))
        table = _chunk_table(searcher.store)
        queries = []
        for t in sb.tasks(data, n):
            searcher.captured = None
            searcher.find(t["query"], S.SearchOptions(k=K, mode="hybrid"))
            cap = dict(searcher.captured)
            lex = searcher.store.text_search(cap["text_query"], pool, where=cap["where"])
            cap["lex_ids"] = [r.id for r in lex]
            cap["lex_scores"] = np.array([r.score for r in lex], dtype=np.float64)
            queries.append({"q": t, **cap})
        with open(out / f"{n}-find.pkl", "wb") as f:
            pickle.dump({"corpus": n, "task": "find", "root": str(root),
                         "language": sp[n]["language"], "chunks": table, "queries": queries}, f)
        print(f"dumped {n}: {len(queries)} questions, {len(table['id'])} chunks", file=sys.stderr)


# --- the orders ---------------------------------------------------------------------------------


def _pool(c: Corpus, ids: list[int], scores: list[float]) -> list[Any]:
    return [replace(c.rows[j], score=float(v)) for j, v in zip(ids, scores, strict=True)]


def semantic_order(c: Corpus, qd: dict[str, Any], k: int = K, levers: Any = None) -> list[int]:
    """``cs find --mode semantic``: the kind-weighted top cosines (Searcher._by_kind), then the
    find evidence (ranking.single_rank)."""
    from codesearch.query.ranking import hybrid_pool, kind_weight, single_rank

    sims = np.where(c.embedded, c.vectors @ qd["vector"], -np.inf)
    weighted = sims * np.array([kind_weight(r.kind) for r in c.rows])
    top = np.argsort(-weighted)[: hybrid_pool(k)]
    rows = _pool(c, top.tolist(), sims[top].tolist())
    return [c.index[r.id] for _, r in single_rank(rows, k, qd["q"]["query"], levers)]


def lexical_order(c: Corpus, qd: dict[str, Any], k: int = K, levers: Any = None) -> list[int]:
    """``cs find --mode lexical``: the kind-weighted top BM25 (Searcher._by_kind), then the find
    evidence (ranking.single_rank)."""
    from codesearch.query.ranking import hybrid_pool, kind_weight, single_rank

    ids = [c.index[i] for i in qd["lex_ids"]]
    scores = qd["lex_scores"].tolist()
    pairs = sorted(zip(ids, scores, strict=True),
                   key=lambda p: -p[1] * kind_weight(c.rows[p[0]].kind))[: hybrid_pool(k)]
    rows = _pool(c, [j for j, _ in pairs], [v for _, v in pairs])
    return [c.index[r.id] for _, r in single_rank(rows, k, qd["q"]["query"], levers)]


def plain_order(c: Corpus, qd: dict[str, Any], k: int = K, levers: Any = None, *,
                side: str = "semantic") -> list[int]:
    """``--mode semantic`` / ``lexical`` before the find evidence (main before issue 26): the
    search's own score times the kind prior, one piece per definition."""
    from codesearch.query.ranking import kind_weight, one_per_definition

    if side == "semantic":
        sims = np.where(c.embedded, c.vectors @ qd["vector"], -np.inf)
        top = np.argsort(-sims)[: 4 * k + 40]
        pairs = [(float(sims[j]), c.rows[j]) for j in top]
    else:
        pairs = [(float(v), c.rows[c.index[i]])
                 for i, v in zip(qd["lex_ids"], qd["lex_scores"].tolist(), strict=True)]
    scored = sorted(((v * kind_weight(r.kind), r) for v, r in pairs),
                    key=lambda p: (-p[0], p[1].path, p[1].start_line))
    return [c.index[r.id] for _, r in one_per_definition(scored)[:k]]


def hybrid_order(c: Corpus, qd: dict[str, Any], k: int = K, levers: Any = None) -> list[int]:
    return rank(c, qd, k=k, levers=levers)


ORDERS: dict[str, Callable[..., list[int]]] = {
    "hybrid": hybrid_order, "semantic": semantic_order, "lexical": lexical_order,
    "semantic-before": lambda c, qd, k=K, levers=None: plain_order(c, qd, k, side="semantic"),
    "lexical-before": lambda c, qd, k=K, levers=None: plain_order(c, qd, k, side="lexical")}


def load(dump_dir: Path, names: list[str] | None = None) -> list[Corpus]:
    out = []
    for p in sorted(dump_dir.glob("*-find.pkl")):
        if names and p.name.removesuffix("-find.pkl") not in names:
            continue
        with open(p, "rb") as f:
            out.append(Corpus(pickle.load(f)))
    return out


def evaluate(corpora: list[Corpus], order: Callable[..., list[int]], levers: Any = None
             ) -> list[dict[str, Any]]:
    """One row per question: repository, language, kind, query, targets, files, ndcg10."""
    sb = semble()
    rows = []
    for c in corpora:
        for qd in c.data["queries"]:
            t = qd["q"]
            files = list(dict.fromkeys(c.ch["path"][j] for j in order(c, qd, levers=levers)))[:K]
            # scored as semble_bench.py scores them: absolute paths, so a relative one cannot
            # match two targets (model.py and inference/model.py)
            absolute = [str(Path(c.data["root"]) / f) for f in files]
            rows.append({"repo": c.data["corpus"], "language": c.data["language"],
                         "category": t["category"], "query": t["query"],
                         "targets": t["targets"], "files": files,
                         "ndcg10": sb.ndcg(absolute, t["targets"])})
    return rows


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean NDCG@10 over repositories (the benchmark's headline), and per kind, language,
    repository."""
    def by(key: str) -> dict[str, float]:
        g: dict[str, list[float]] = defaultdict(list)
        for x in rows:
            g[x[key]].append(x["ndcg10"])
        return {k: statistics.mean(v) for k, v in sorted(g.items())}

    repos = by("repo")
    return {"ndcg10": statistics.mean(repos.values()) if repos else 0.0, "questions": len(rows),
            "category": by("category"), "language": by("language"), "repo": repos}


def summary(r: dict[str, Any]) -> str:
    return (f"NDCG@10 {r['ndcg10']:.4f} ({len(r['repo'])} repos, {r['questions']} q)  "
            + "  ".join(f"{k} {v:.3f}" for k, v in r["category"].items()))


# The ranking before the find evidence (main before issue 26): every lever neutral.
BEFORE_LEVERS = dict(definition_boost=0.0, path_boost=0.0, prose_weight=1.0,
                     question_semantic_weight=0.8, area_embedded_definition_boost=0.0,
                     area_path_boost=0.0, area_file_boost=0.0, area_file_decay=1.0)


def before_after(corpora: list[Corpus]) -> dict[str, Any]:
    """Every mode before and after the find evidence: {mode: {"before": report, "after":
    report}} (hybrid before: the same fusion with every lever neutral; lexical and semantic
    before: :func:`plain_order`)."""
    from codesearch.query.evidence import LEVERS

    before = replace(LEVERS, **BEFORE_LEVERS)
    out = {}
    for mode in ("hybrid", "lexical", "semantic"):
        old = (evaluate(corpora, ORDERS["hybrid"], before) if mode == "hybrid"
               else evaluate(corpora, ORDERS[f"{mode}-before"]))
        out[mode] = {"before": report(old), "after": report(evaluate(corpora, ORDERS[mode],
                                                                      LEVERS))}
    return out


def table(results: dict[str, Any]) -> str:
    """A Markdown table: NDCG@10 before -> after per mode, over repositories, kinds, languages."""
    modes = list(results)
    head = "| | " + " | ".join(modes) + " |\n|---|" + "---:|" * len(modes)
    lines = [head]

    def row(label: str, get: Callable[[dict[str, Any]], float | None]) -> None:
        cells = []
        for m in modes:
            b, a = get(results[m]["before"]), get(results[m]["after"])
            cells.append("" if a is None or b is None else f"{b:.3f} → **{a:.3f}**")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("ALL (mean over repositories)", lambda r: r["ndcg10"])
    first = results[modes[0]]["after"]
    for key in ("category", "language", "repo"):
        for name in first[key]:
            row(f"{key if key != 'repo' else ''} {name}".strip(),
                lambda r, key=key, name=name: r[key].get(name))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--data", type=Path, default=DEFAULT_DATA)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--repos")
    d.add_argument("--pool", type=int, default=200)
    s = sub.add_parser("score")
    s.add_argument("dump_dir", type=Path)
    s.add_argument("--repos")
    s.add_argument("--mode", choices=sorted(ORDERS), default="hybrid")
    s.add_argument("--json", type=Path, help="write the per-question rows here")
    s.add_argument("--before-after", type=Path, metavar="SUMMARY_JSON",
                   help="every mode before and after the find evidence: print the table, write "
                        "the summary here (bench/results/realistic.json)")
    s.add_argument("--set", action="append", default=[], metavar="LEVER=VALUE",
                   help="a query.evidence.Levers field (repeatable); default: the shipped ones")
    s.add_argument("--doc", type=Path, metavar="DUMP_DIR",
                   help="also score the docstring benchmark (a bench/replica.py find dump) with "
                        "the same levers: its MRR@10 beside each line")
    s.add_argument("--grid", action="append", default=[], metavar="LEVER=V1,V2",
                   help="sweep: one line per combination of these values (repeatable)")
    args = ap.parse_args(argv)
    names = args.repos.split(",") if args.repos else None
    if args.cmd == "dump":
        dump(args.data, args.out, names, args.pool)
        return 0
    from codesearch.query.evidence import LEVERS

    levers = replace(LEVERS, **{k: float(v) for k, v in (a.split("=") for a in args.set)})
    corpora = load(args.dump_dir, names)
    if args.before_after:
        results = before_after(corpora)
        print(table(results))
        args.before_after.write_text(json.dumps(
            {"benchmark": "semble realistic questions, dev split (../shared/eval/semble_bench.py)",
             "model": "minilm", "metric": "NDCG@10 over the files of the top 10",
             "repos": [c.data["corpus"] for c in corpora], "results": results}, indent=1))
        return 0
    doc = replica_load(args.doc) if args.doc else None

    def doc_line(lv: Any) -> str:
        if doc is None:
            return ""
        mrr, _ = replica_evaluate(doc, lambda c, qd: ORDERS[args.mode](c, qd, levers=lv))
        return "  | docstring " + replica_summary(mrr)

    if args.grid:
        import itertools

        axes = [(k, [float(x) for x in v.split(",")]) for k, v in (a.split("=") for a in args.grid)]
        for combo in itertools.product(*(vals for _, vals in axes)):
            lv = replace(levers, **dict(zip([k for k, _ in axes], combo, strict=True)))
            r = report(evaluate(corpora, ORDERS[args.mode], lv))
            print(" ".join(f"{k}={v:g}" for (k, _), v in zip(axes, combo, strict=True)),
                  summary(r) + doc_line(lv), flush=True)
        return 0
    rows = evaluate(corpora, ORDERS[args.mode], levers)
    r = report(rows)
    print(summary(r) + doc_line(levers))
    for k, v in r["repo"].items():
        print(f"  {k:20} {v:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"mode": args.mode, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

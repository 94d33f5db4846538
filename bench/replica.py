#!/usr/bin/env python3
"""A numpy replica of hybrid ranking, to sweep ranking levers in seconds instead of re-running
bench/quality.py (20 minutes a dev run with MiniLM on 2 cores).

``dump`` reads what the real code computes for every query of a split, through the real code
paths, and pickles it per corpus and task:
- every stored chunk (id, path, lines, symbol, kind, definition, vector);
- for each query, the query vector exactly as ``Searcher.find``/``.similar`` builds it (captured
  by a Searcher whose ``_rank`` records instead of searching); for ``find`` also the unfolded
  vectors of the query and its views, so view weights can be swept;
- the LanceDB BM25 top-``--pool`` list (ids, scores) under the query's own prefilter, and for
  ``similar`` the ids that prefilter excludes (the query's own definition).

``score`` ranks them with :func:`rank`: the candidate searches replayed in numpy (the exact top
``pool`` by cosine among the chunks the prefilter allows, and the stored BM25 list), then the real
ranking, codesearch.query.ranking.hybrid_rank, with its levers (the constants) as keyword
arguments; it prints MRR@10 per language with score.py's own functions. With default arguments it
reproduces bench/quality.py's hybrid ranks (a few may differ where floating-point ties break
differently).

    python bench/replica.py dump --split /tmp/cs-bench/dev --out /tmp/cs-replica/dev
    python bench/replica.py score /tmp/cs-replica/dev --compare bench/results/runs/X.json
"""

from __future__ import annotations

import argparse
import json
import pickle
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

K = 10


def _chunk_table(store: Any) -> dict[str, Any]:
    rows = store.chunks(with_vectors=True)
    return {
        "id": [r.id for r in rows], "path": [r.path for r in rows],
        "start": np.array([r.start_line for r in rows]),
        "end": np.array([r.end_line for r in rows]),
        "symbol": [r.symbol for r in rows], "kind": [r.kind for r in rows],
        "text": [r.text for r in rows], "language": [r.language for r in rows],
        "definition": [r.definition for r in rows],
        "definition_line": [r.definition_line for r in rows],
        "vectors": np.stack([r.vector for r in rows]).astype(np.float32),
    }


def recorder_class() -> type:
    """A Searcher that records the first candidate search of each query (its vector, BM25 text
    and filter: for find the code side, which Searcher.find ranks before the doc side) instead
    of running it; reset ``captured`` before each query. bench/realistic.py uses it too."""
    from codesearch.query import searcher as S

    class Recorder(S.Searcher):
        captured: dict[str, Any] | None = None

        def _ranked(self, embed, text_query, where, opts, *args, **kwargs):  # type: ignore[override]
            if self.captured is None:
                self.captured = {"vector": np.asarray(embed(), dtype=np.float32),
                                 "text_query": text_query, "where": where}
            return []

    return Recorder


def dump(split: Path, out: Path, pool: int, tasks: list[str], corpora: list[str] | None) -> None:
    from quality import SharedLoader, load_score  # type: ignore[import-not-found]

    from codesearch.documents import query_views, written
    from codesearch.location import IndexSettings
    from codesearch.query import searcher as S
    from codesearch.source.chunk import chunk_source
    from codesearch.source.languages import language_for_path

    score = load_score(HERE.parent.parent / "shared" / "eval")
    loader = SharedLoader()
    out.mkdir(parents=True, exist_ok=True)

    Recorder = recorder_class()
    names = corpora or sorted(p.name for p in split.iterdir() if (p / "queries.jsonl").exists())
    for corpus in names:
        for task in tasks:
            cdir = split / corpus
            rows = score.load_jsonl(cdir / ("queries.jsonl" if task == "find" else "similar.jsonl"))
            if not rows:
                continue
            root = (cdir / ("repo" if task == "find" else "pair")).resolve()
            searcher = Recorder.open(IndexSettings().for_root(root), loader=loader)
            table = _chunk_table(searcher.store)
            queries = []
            for q in rows:
                searcher.captured = None
                if task == "find":
                    searcher.find(q["query"], S.SearchOptions(k=K, mode="hybrid"))
                else:
                    searcher.similar(f"{root / q['query_path']}:{q['query_line']}",
                                     S.SearchOptions(k=K + 1, mode="hybrid"))
                cap = dict(searcher.captured)
                lex = searcher.store.text_search(cap["text_query"], pool, where=cap["where"])
                cap["lex_ids"] = [r.id for r in lex]
                cap["lex_scores"] = np.array([r.score for r in lex], dtype=np.float64)
                if cap["where"]:
                    cap["excluded"] = [r.id for r in searcher.store.chunks(
                        where=f"NOT ({cap['where']})")]
                if task == "find":
                    scheme = searcher.manifest.prefix_scheme
                    texts = [written(t, scheme) for t in (q["query"], *query_views(q["query"]))]
                    emb = searcher.handle.get()
                    cap["parts"] = np.asarray(emb.embed_queries(texts, task="nl2code"), np.float32)
                else:  # the chunk the query line falls in, as Searcher.similar finds it
                    text = (root / q["query_path"]).read_text(encoding="utf-8", errors="replace")
                    own = S.enclosing_chunk(chunk_source(text, q["query_path"], language_for_path(
                        q["query_path"], text.split("\n", 1)[0][:200])), q["query_line"])
                    cap["query_symbol"] = own.symbol if own else ""
                    cap["query_kind"] = own.kind if own else ""
                queries.append({"q": q, **cap})
            with open(out / f"{corpus}-{task}.pkl", "wb") as f:
                pickle.dump({"corpus": corpus, "task": task, "root": str(root),
                             "chunks": table, "queries": queries}, f)
            print(f"dumped {corpus} {task}: {len(queries)} queries, {len(table['id'])} chunks",
                  file=sys.stderr)


# --- the ranking: the real one, over replayed candidate searches ---------------------------------


class Corpus:
    """One pickled corpus, its chunks as the store's rows (with their vectors)."""

    def __init__(self, data: dict[str, Any]) -> None:
        from codesearch.store.records import StoredChunk

        self.data = data
        self.task = data["task"]
        ch = data["chunks"]
        self.ch = ch
        self.index = {cid: i for i, cid in enumerate(ch["id"])}
        self.vectors = ch["vectors"]
        self.embedded = np.abs(self.vectors).sum(axis=1) > 0
        # Older dumps have only the definition key: (path, definition_line or -start_line).
        lines = ch.get("definition_line") or [max(d[1], 0) for d in ch["definition"]]
        self.rows = [StoredChunk(id=cid, path=ch["path"][j], language=ch["language"][j],
                                 kind=ch["kind"][j], symbol=ch["symbol"][j],
                                 start_line=int(ch["start"][j]), end_line=int(ch["end"][j]),
                                 text=ch["text"][j], hash="", vector=self.vectors[j],
                                 definition_line=int(lines[j]))
                     for j, cid in enumerate(ch["id"])]


def rank(c: Corpus, qd: dict[str, Any], *, vector: np.ndarray | None = None,
         weight: float | None = None, name_boost: float | None = None,
         test_penalty: float | None = None, pool: int | None = None,
         secondary_weight: float | None = None, namesake_boost: float | None = None,
         extra: Callable[[Corpus, dict, Any], float] | None = None,
         k: int = K, levers: Any = None) -> list[int]:
    """Chunk indexes best first: ``Searcher._hybrid`` over the replayed candidate searches, the
    ranking itself being codesearch.query.ranking.hybrid_rank with these levers (None: its
    constant; ``pool``: candidates per search). ``extra(c, qd, row)`` may add a term per
    candidate (a StoredChunk) before the kind prior."""
    from codesearch.query.ranking import hybrid_pool, hybrid_rank, name_key

    pool = hybrid_pool(k) if pool is None else pool
    vec = qd["vector"] if vector is None else vector
    sims = c.vectors @ vec
    allowed = c.embedded.copy()
    if qd.get("excluded"):
        allowed[[c.index[i] for i in qd["excluded"]]] = False
    sims_m = np.where(allowed, sims, -np.inf)
    sem_idx = np.argpartition(-sims_m, min(pool, len(sims_m) - 1))[:pool]
    sem_idx = sem_idx[np.isfinite(sims_m[sem_idx])]
    sem_rows = [c.rows[j] for j in sem_idx.tolist()]
    lex_rows = [replace(c.rows[c.index[i]], score=float(s))
                for i, s in zip(qd["lex_ids"][:pool], qd["lex_scores"][:pool].tolist(),
                                strict=True)]
    query = qd["q"]["query"] if c.task == "find" else None
    namesake = (name_key(qd["query_symbol"], qd["query_kind"])
                if c.task != "find" and "query_symbol" in qd else None)
    best = hybrid_rank(vec, sem_rows, lex_rows, k, query=query, namesake=namesake,
                       semantic_weight=weight, name_boost=name_boost, test_penalty=test_penalty,
                       namesake_boost=namesake_boost, secondary_weight=secondary_weight,
                       extra_prior=(lambda row: extra(c, qd, row)) if extra else None,
                       levers=levers)
    return [c.index[row.id] for _, row in best]


def load(dump_dir: Path, task: str = "find") -> list[Corpus]:
    out = []
    for p in sorted(dump_dir.glob(f"*-{task}.pkl")):
        with open(p, "rb") as f:
            out.append(Corpus(pickle.load(f)))
    return out


def evaluate(corpora: list[Corpus], ranker: Callable[[Corpus, dict], list[int]] = rank,
             strict: bool = False) -> tuple[dict[str, float], dict[str, int | None]]:
    """MRR@10 per score.py group (score.py's own rank_of and group names), and each query's
    rank."""
    from quality import group_keys, load_score  # type: ignore[import-not-found]

    score = load_score(HERE.parent.parent / "shared" / "eval")
    groups: dict[str, list] = defaultdict(list)
    ranks: dict[str, int | None] = {}
    for c in corpora:
        for qd in c.data["queries"]:
            q = qd["q"]
            res = [{"path": c.ch["path"][j], "start_line": int(c.ch["start"][j]),
                    "end_line": int(c.ch["end"][j])} for j in ranker(c, qd)]
            excl = ((q["query_path"], q["query_start_line"], q["query_end_line"])
                    if c.task == "similar" else None)
            r = score.rank_of(res, q, K, strict, excl)
            ranks[q["id"]] = r
            for g in group_keys(c.task, c.data["corpus"], q):
                groups[g].append(r)
    mrr = {g: sum(1.0 / r for r in rs if r) / len(rs) for g, rs in groups.items()}
    return mrr, ranks


def summary(mrr: dict[str, float]) -> str:
    keys = ["lang:python", "lang:javascript", "lang:typescript", "lang:go", "lang:rust", "ALL",
            "hard:ALL", "sim:<0.6"]
    label = {"hard:ALL": "hard"}
    return "  ".join(f"{label.get(k, k.removeprefix('lang:'))} {mrr[k]:.4f}"
                     for k in keys if k in mrr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--split", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--pool", type=int, default=200)
    d.add_argument("--task", choices=["find", "similar", "both"], default="both")
    d.add_argument("--corpus", nargs="*")
    d.add_argument("--home", type=Path, help="bench/quality.py's CS_HOME (default: its default)")
    s = sub.add_parser("score")
    s.add_argument("dump_dir", type=Path)
    s.add_argument("--task", choices=["find", "similar"], default="find")
    s.add_argument("--compare", type=Path, help="a bench/quality.py report: count rank differences")
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        import os

        from quality import DEFAULT_HOME  # type: ignore[import-not-found]

        os.environ["CS_HOME"] = str(args.home or DEFAULT_HOME)
        tasks = ["find", "similar"] if args.task == "both" else [args.task]
        dump(args.split, args.out, args.pool, tasks, args.corpus)
        return 0
    corpora = load(args.dump_dir, args.task)
    mrr, ranks = evaluate(corpora)
    print(summary(mrr))
    if args.compare:
        report = json.loads(args.compare.read_text())
        theirs = report["tasks"][args.task]["ranks"]["hybrid"]
        diff = [i for i, r in ranks.items() if i in theirs and theirs[i][0] != r]
        print(f"{len(diff)} of {len(ranks)} ranks differ from {args.compare.name}: {diff[:10]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Documentation search quality (issue 29): questions answered from the docs (qa) and the docs of
a piece of code (code2nl), with MiniLM, against BM25 on the same sets.

**qa**: FAQ-style sections of published packages' own documentation (pinned sdists, fetched at
run time with ``pip download --no-deps --no-binary :all:``; nothing third-party is committed).
Every section whose heading is a question (ends with ``?``) gives one query: the heading is the
query, the section is the target, and in the tree that is indexed the heading is replaced by a
neutral ``Entry N`` (so the words of the query are not in the target's title). Candidates: every
doc section of the pinned doc folders. ``dev`` and ``check`` are different packages.

**code2nl**: the shared benchmark's dev split (``../shared/eval``, built by its
``make_corpus.py --split dev`` into /tmp/cs-bench/dev: stripped source trees and, per function,
the first sentence of its docstring), and the check split of other packages (``--split holdout
--pins bench/holdout_pins.json`` into /tmp/cs-bench/holdout). Per corpus every docstring sentence
is one candidate doc file under ``docs/``, beside the stripped tree under ``code/`` (a repository
has both); the query is ``cs docs code/FILE:LINE`` at the function (the chunk enclosing it,
docstring gone); the target is its own docstring.

Both run in-process through the code the CLI runs (``Searcher.find(..., kinds=("doc",))`` is
``cs find --docs``, ``Searcher.docs`` is ``cs docs``), in every mode, scored MRR@10 and R@10,
per doc format (qa) or code language (code2nl). The BM25 reference is plain Okapi BM25 (k1 1.2,
b 0.75) over the same candidates' texts (words and identifier parts, lower case).

    python bench/docs_quality.py qa --split dev
    python bench/docs_quality.py qa --split check
    python bench/docs_quality.py code2nl [--split check] [--per-corpus 40]
    python bench/docs_quality.py cost        # embedding cost of doc chunks on docs-heavy sdists

The model runs at the precision ``auto`` picks on this machine (``CS_PRECISION=fp32|bf16|int8``
pins it; the result records it): MRR moves by up to .02 between int8 and the float ones.

Writes bench/results/docs_quality.json (summary, one entry per set; reruns update their entry),
per-query ranks in bench/results/runs/docs_quality-*.json, and prints a table. A private CS_HOME
(/tmp/cs-docs-bench/home; CS_DOCS_BENCH) keeps indexes and the embedding cache between runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
WORK = Path(os.environ.get("CS_DOCS_BENCH", "/tmp/cs-docs-bench"))
os.environ.setdefault("CS_HOME", str(WORK / "home"))
sys.path.insert(0, str(PROJECT))

from codesearch.index.run import IndexOptions, index_root  # noqa: E402
from codesearch.location import IndexSettings  # noqa: E402
from codesearch.query import ranking  # noqa: E402
from codesearch.query.request import SearchOptions  # noqa: E402
from codesearch.query.searcher import Searcher, enclosing_chunk  # noqa: E402
from codesearch.source.chunk import (  # noqa: E402
    chunk_source,
    is_text_doc,
    markdown_headings,
    underlined_headings,
)
from codesearch.source.languages import language_for_path  # noqa: E402
from codesearch.vocabulary import identifier_words  # noqa: E402

K = 10
MODES = ("hybrid", "semantic", "lexical")
# code2nl sets: the shared benchmark's dev split and this project's check split (other packages:
# make_corpus.py --split holdout --pins bench/holdout_pins.json --out /tmp/cs-bench/holdout).
CODE2NL_SPLITS = {"dev": Path("/tmp/cs-bench/dev"), "check": Path("/tmp/cs-bench/holdout")}
# package, pip spec, doc paths inside the sdist (folders or files)
QA_PINS: dict[str, list[tuple[str, str, list[str]]]] = {
    "dev": [
        ("celery", "celery==5.4.0", ["docs/faq.rst", "docs/getting-started"]),
        ("django", "Django==5.1.3", ["docs/faq", "docs/howto"]),
        ("black", "black==24.10.0", ["docs"]),
    ],
    "check": [
        ("sqlalchemy", "SQLAlchemy==2.0.36", ["doc/build/faq", "doc/build/errors.rst",
                                              "doc/build/glossary.rst"]),
        ("mypy", "mypy==1.13.0", ["docs/source"]),
        ("coverage", "coverage==7.6.4", ["doc"]),
        # Added 2026-12-06, chosen before any was scored: well-known packages whose sdist ships
        # an FAQ page (70 more questions; 57 could not tell 1.498x from 1.5x).
        ("scrapy", "scrapy==2.12.0", ["docs"]),
        ("sphinx", "Sphinx==8.1.3", ["doc"]),
        ("jinja", "Jinja2==3.1.4", ["docs"]),
        ("tornado", "tornado==6.4.2", ["docs"]),
        ("gunicorn", "gunicorn==23.0.0", ["docs/source"]),
        ("hatch", "hatch==1.13.0", ["docs"]),
    ],
}


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# --- references and scoring ------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lower-case words, identifiers split into their parts."""
    return identifier_words(text)


def bm25_ranks(docs: list[str], queries: list[str], k1: float = 1.2, b: float = 0.75
               ) -> list[list[int]]:
    """Plain Okapi BM25: for each query, candidate indices best first (top K)."""
    toks = [Counter(words(d)) for d in docs]
    lengths = [sum(t.values()) for t in toks]
    avg = sum(lengths) / max(1, len(lengths))
    df: Counter[str] = Counter()
    for t in toks:
        df.update(t.keys())
    n = len(docs)
    out = []
    for q in queries:
        terms = set(words(q))
        scores = []
        for i, t in enumerate(toks):
            s = 0.0
            for w in terms:
                f = t.get(w, 0)
                if f:
                    idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                    s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * lengths[i] / avg))
            scores.append(s)
        order = sorted(range(n), key=lambda i: -scores[i])
        out.append([i for i in order[:K] if scores[i] > 0])
    return out


def summary(ranks: list[int | None]) -> dict[str, float]:
    """MRR@10 and R@10 of 1-based ranks (None: not in the top 10)."""
    n = max(1, len(ranks))
    return {"mrr": round(sum(1 / r for r in ranks if r) / n, 4),
            "r10": round(sum(1 for r in ranks if r) / n, 4), "n": len(ranks)}


def ratio_interval(ours: list[int | None], reference: list[int | None], rounds: int = 2000
                   ) -> dict[str, float]:
    """MRR(ours) / MRR(reference) over the same queries, with the 2.5th and 97.5th percentiles of
    the ratio over ``rounds`` resamples of the queries (paired bootstrap, fixed seed): how far a
    set of this size pins the ratio down."""
    rr = [(1 / a if a else 0.0, 1 / b if b else 0.0) for a, b in zip(ours, reference, strict=True)]
    rng = random.Random(0)
    ratios = []
    for _ in range(rounds):
        sample = [rr[rng.randrange(len(rr))] for _ in rr]
        total = sum(b for _, b in sample)
        if total:
            ratios.append(sum(a for a, _ in sample) / total)
    ratios.sort()
    base = sum(b for _, b in rr)
    return {"value": round(sum(a for a, _ in rr) / base, 3) if base else math.inf,
            "low": round(ratios[int(0.025 * len(ratios))], 3) if ratios else math.nan,
            "high": round(ratios[int(0.975 * len(ratios)) - 1], 3) if ratios else math.nan}


def per_query_and_table(name: str, dump: list[dict[str, Any]],
                        groups: dict[str, dict[str, list[int | None]]]
                        ) -> dict[str, dict[str, dict[str, float]]]:
    """Writes the per-query ranks to bench/results/runs/docs_quality-NAME.json; returns the
    summary of every group and method, and each group's hybrid / BM25 ratio with its interval."""
    (HERE / "results" / "runs").mkdir(parents=True, exist_ok=True)
    (HERE / "results" / "runs" / f"docs_quality-{name}.json").write_text(
        json.dumps(dump, indent=1))
    return {group: {**{m: summary(r) for m, r in methods.items()},
                    "ratio": ratio_interval(methods["hybrid"], methods["bm25"])}
            for group, methods in groups.items()}


# --- qa ----------------------------------------------------------------------------------------


def fetch(spec: str) -> Path:
    """The unpacked sdist of a pinned ``name==version`` (downloaded once)."""
    dest = WORK / "sdist" / spec
    if dest.exists():
        return next(p for p in dest.iterdir() if p.is_dir())
    dl = WORK / "download" / spec
    dl.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "-q", "-d", str(dl), spec], check=True)
    archive = next(dl.glob("*.tar.gz"))
    tmp = dest.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    tmp.rename(dest)
    return next(p for p in dest.iterdir() if p.is_dir())


def doc_language(rel: str) -> str | None:
    language = language_for_path(rel)
    if language in ("markdown", "restructuredtext"):
        return language
    if language is None and is_text_doc(rel):
        return "text"
    return None


def build_qa(name: str, spec: str, paths: list[str]) -> tuple[Path, list[dict[str, Any]]]:
    """The tree to index (question headings replaced by ``Entry N``) and its queries."""
    src = fetch(spec)
    root = WORK / "qa" / name / "repo"
    shutil.rmtree(root, ignore_errors=True)
    queries: list[dict[str, Any]] = []
    files = []
    for part in paths:
        base = src / part
        files += [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(src).as_posix()
        language = doc_language(rel)
        if language is None:
            continue
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
        heads = markdown_headings(lines) if language == "markdown" else underlined_headings(lines)
        starts = [row for row, _, _ in heads]
        for i, (row, _level, title) in enumerate(heads):
            if not title.rstrip().endswith("?"):
                continue
            end = starts[i + 1] - 1 if i + 1 < len(starts) else len(lines) - 1
            title_row = next(r for r in range(row, row + 2) if lines[r].strip() == title.strip()
                             or lines[r].lstrip("# ").strip() == title.strip())
            entry = f"Entry {len(queries) + 1}"
            lines[title_row] = (lines[title_row][:len(lines[title_row])
                                                 - len(lines[title_row].lstrip("# "))] + entry
                                if language == "markdown" else entry)
            query = re.sub(r"[`*]|:\w+:", "", title).strip()
            queries.append({"id": f"{name}/q{len(queries):03d}", "query": query, "path": rel,
                            "start_line": row + 1, "end_line": end + 1,
                            "format": "markdown" if language == "markdown" else "rst"})
        out = root / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines), encoding="utf-8")
    return root, queries


def hit_rank(hits: list[Any], path: str, start: int, end: int) -> int | None:
    for i, h in enumerate(hits[:K], 1):
        if h.path == path and start <= h.start_line <= end:
            return i
    return None


def run_qa(split: str, limit: int | None) -> dict[str, Any]:
    per_format: dict[str, dict[str, list[int | None]]] = defaultdict(lambda: defaultdict(list))
    dump: list[dict[str, Any]] = []
    index_seconds = 0.0
    chunks = 0
    precisions: set[str] = set()
    seconds = {"question": 0.0, "description": 0.0}
    for name, spec, paths in QA_PINS[split]:
        root, queries = build_qa(name, spec, paths)
        queries = queries[:limit] if limit else queries
        began = time.monotonic()
        stats = index_root(root, options=IndexOptions(model="minilm"))
        index_seconds += time.monotonic() - began
        chunks += stats.chunks_total
        searcher = Searcher.open(IndexSettings().locate(root))
        precisions.add(searcher.manifest.precision)
        docs = searcher.store.chunks("kind = 'doc' AND task = 'qa'")
        bm25 = bm25_ranks([f"{d.symbol}\n{d.text}" for d in docs], [q["query"] for q in queries])
        log(f"{name}: {len(queries)} questions, {len(docs)} doc chunks")
        if queries:  # the model loads outside the timings
            searcher.find(queries[0]["query"], SearchOptions(k=K, kinds=("doc",)))
        for q, best in zip(queries, bm25, strict=True):
            row: dict[str, Any] = {"id": q["id"], "query": q["query"]}
            for mode in MODES:
                began = time.perf_counter()
                hits = searcher.find(q["query"], SearchOptions(k=K, mode=mode, kinds=("doc",)))
                if mode == "hybrid":
                    seconds["question"] += time.perf_counter() - began
                row[mode] = hit_rank(hits, q["path"], q["start_line"], q["end_line"])
            # The same find as a description (task nl2code: the same doc rows with a text model,
            # no token matching), for what the question's rerank costs.
            began = time.perf_counter()
            searcher.find(q["query"], SearchOptions(k=K, kinds=("doc",), task="nl2code"))
            seconds["description"] += time.perf_counter() - began
            row["bm25"] = hit_rank([docs[i] for i in best], q["path"], q["start_line"],
                                   q["end_line"])
            for method in (*MODES, "bm25"):
                for group in (q["format"], f"package {name}", "ALL"):
                    per_format[group][method].append(row[method])
            dump.append(row)
    table = per_query_and_table(f"qa-{split}", dump, per_format)
    return {"task": "qa", "split": split, "packages": [s for _, s, _ in QA_PINS[split]],
            "precision": "/".join(sorted(precisions)), "chunks": chunks,
            "index_seconds": round(index_seconds, 1), "table": table,
            "find_ms": {key: round(1000 * value / max(len(dump), 1)) for key, value in
                        seconds.items()}}


# --- code2nl -----------------------------------------------------------------------------------


def run_code2nl(split: str, per_corpus: int) -> dict[str, Any]:
    source = CODE2NL_SPLITS[split]
    if not source.exists():
        pins = " --pins bench/holdout_pins.json" if split == "check" else ""
        raise SystemExit(f"{source} is missing: python3 ../shared/eval/make_corpus.py --split "
                         f"{'holdout' if split == 'check' else 'dev'}{pins} --out {source}")
    per_lang: dict[str, dict[str, list[int | None]]] = defaultdict(lambda: defaultdict(list))
    dump: list[dict[str, Any]] = []
    precisions: set[str] = set()
    for corpus in sorted(p for p in source.iterdir() if (p / "queries.jsonl").exists()):
        entries = [json.loads(line) for line in (corpus / "queries.jsonl").read_text().splitlines()]
        root = WORK / ("code2nl" if split == "dev" else f"code2nl-{split}") / corpus.name
        if not (root / "docs").exists():
            (root / "docs").mkdir(parents=True)
            for i, e in enumerate(entries):
                (root / "docs" / f"d{i:04d}.txt").write_text(e["query"] + "\n")
        if not (root / "code").exists():  # the stripped tree too, as a real repository has both
            shutil.copytree(corpus / "repo", root / "code")
        index_root(root, options=IndexOptions(model="minilm"))
        searcher = Searcher.open(IndexSettings().locate(root))
        precisions.add(searcher.manifest.precision)
        step = max(1, len(entries) // per_corpus)
        chosen = list(range(0, len(entries), step))[:per_corpus]
        code_chunks = []
        for i in chosen:
            e = entries[i]
            text = (corpus / "repo" / e["path"]).read_text(encoding="utf-8", errors="replace")
            chunk = enclosing_chunk(chunk_source(text, e["path"], e["language"]), e["start_line"])
            assert chunk is not None
            code_chunks.append(chunk)
        bm25 = bm25_ranks([e["query"] for e in entries],
                          [f"{c.symbol}\n{c.text}" for c in code_chunks])
        log(f"{corpus.name}: {len(chosen)} functions, {len(entries)} docstrings")
        for i, best in zip(chosen, bm25, strict=True):
            e = entries[i]
            target = f"docs/d{i:04d}.txt"
            row: dict[str, Any] = {"id": e["id"], "symbol": e["symbol"]}
            for mode in MODES:
                hits = searcher.docs(f"code/{e['path']}:{e['start_line']}",
                                     SearchOptions(k=K, mode=mode), cwd=root)
                row[mode] = next((r for r, h in enumerate(hits, 1) if h.path == target), None)
            row["bm25"] = next((r for r, j in enumerate(best, 1) if j == i), None)
            for method in (*MODES, "bm25"):
                per_lang[e["language"]][method].append(row[method])
                per_lang["ALL"][method].append(row[method])
            dump.append(row)
    table = per_query_and_table(f"code2nl-{split}", dump, per_lang)
    return {"task": "code2nl", "split": split, "per_corpus": per_corpus,
            "precision": "/".join(sorted(precisions)),
            "subject_weight": ranking.SUBJECT_WEIGHT, "table": table}


# --- cost ----------------------------------------------------------------------------------------

COST_PINS = ("Django==5.1.3", "celery==5.4.0")


def run_cost() -> dict[str, Any]:
    """What doc chunks cost to embed on docs-heavy trees (whole sdists, as ``cs index`` discovers
    them): texts and estimated tokens the model runs, now vs. before doc chunks (every chunk
    embedded once, code-style, with a text model's two views), for a prefixed model (jina) and a
    text model (MiniLM, words writing)."""
    from codesearch.documents import chunk_documents
    from codesearch.source.chunk import DOC_KIND, estimate_tokens
    from codesearch.source.discover import Discovery, read_source

    out: dict[str, Any] = {}
    for spec in COST_PINS:
        src = fetch(spec)
        chunks = []
        for f in Discovery(src):
            try:
                chunks += chunk_source(read_source(f), f.rel, f.language)
            except (OSError, ValueError):
                continue
        row: dict[str, Any] = {"chunks": len(chunks),
                               "doc_chunks": sum(1 for c in chunks if c.kind == DOC_KIND)}
        for label, scheme in (("jina", "jina-code-v1"), ("minilm", "none+words5")):
            now = chunk_documents(chunks, scheme)
            # before: a doc chunk was code-kind ("section"), one row, with views for MiniLM
            old_chunks = [c if c.kind != DOC_KIND else type(c)(**{**c.__dict__,
                                                                   "kind": "section"})
                          for c in chunks]
            before = chunk_documents(old_chunks, scheme)

            def cost(docs: dict[str, Any]) -> tuple[int, int]:
                texts = [d.text for d in docs.values()] + [v for d in docs.values()
                                                           for v in d.views]
                return len(texts), sum(estimate_tokens(t) for t in texts)

            (t_now, tok_now), (t_old, tok_old) = cost(now), cost(before)
            row[label] = {"texts_before": t_old, "texts_now": t_now, "tokens_before": tok_old,
                          "tokens_now": tok_now, "token_ratio": round(tok_now / tok_old, 3)}
        out[spec] = row
        log(spec, json.dumps(row))
    return {"task": "cost", "split": "sdists", "table": out}


# --- main --------------------------------------------------------------------------------------


def show(result: dict[str, Any]) -> None:
    print(f"\n{result['task']} ({result['split']}, MiniLM {result['precision']}): MRR@10 (R@10), n")
    print(f"{'':24}" + "".join(f"{m:>16}" for m in (*MODES, "bm25"))
          + "   hybrid/bm25 [95% bootstrap]")
    table = result["table"]
    order = sorted(table, key=lambda key: (key == "ALL", key.startswith("package "), key))
    for key, methods in ((key, table[key]) for key in order):
        cells = "".join(f"{methods[m]['mrr']:>9.3f} ({methods[m]['r10']:.2f})" for m in
                        (*MODES, "bm25"))
        ratio = methods["ratio"]
        print(f"{key:18} {methods['hybrid']['n']:>5}" + cells
              + f"   {ratio['value']:.3f}x [{ratio['low']:.2f}, {ratio['high']:.2f}]")
    if "find_ms" in result:
        ms = result["find_ms"]
        print(f"hybrid find, ms per question: {ms['question']} (with the token match); "
              f"{ms['description']} as a description (without)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("task", choices=("qa", "code2nl", "cost"))
    ap.add_argument("--split", choices=("dev", "check"), default="dev")
    ap.add_argument("--limit", type=int, default=None, help="qa: questions per package")
    ap.add_argument("--per-corpus", type=int, default=40, help="code2nl: functions per corpus")
    ap.add_argument("--subject-weight", type=float, default=None,
                    help="code2nl: the own-subject check's weight (0: off; default: the shipped "
                         "ranking.SUBJECT_WEIGHT)")
    args = ap.parse_args()
    if args.subject_weight is not None:
        ranking.SUBJECT_WEIGHT = args.subject_weight
    if args.task == "cost":
        result = run_cost()
    else:
        result = (run_qa(args.split, args.limit) if args.task == "qa"
                  else run_code2nl(args.split, args.per_corpus))
        show(result)
    out = HERE / "results" / "docs_quality.json"
    data = json.loads(out.read_text()) if out.exists() else {}
    lever = "" if args.subject_weight is None else f"-subject{args.subject_weight:g}"
    data[f"{result['task']}-{result['split']}{lever}"] = result
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Search quality of `cs` on the shared retrieval benchmark (../shared/eval), per mode and language.

What it does, in order:
1. builds the split if it is missing (``make_corpus.py --split dev``);
2. indexes every tree of the split with cs (``repo/`` for find, ``pair/`` for similar) into a
   private CS_HOME, through the same code ``cs index`` runs
   (:class:`codesearch.index.indexer.Indexer`), loading the model once for all trees; the shared
   embedding cache makes re-indexing cheap;
3. runs every query in-process through the code ``cs find --json`` / ``cs similar --json`` run
   (:meth:`codesearch.query.searcher.Searcher.find` / ``.similar`` -> ``Hit.to_dict``), for each
   mode;
4. scores them with score.py's own functions (``clean``, ``rank_of``, ``table``), imported from
   ../shared/eval, with both hit rules (overlap and strict), so every number means what score.py's
   would;
5. adds the BM25 and grep references by running ``score.py --baseline bm25|grep``;
6. writes ``bench/results/quality.json`` (the summary: every table and number) and
   ``bench/results/quality.md`` (the README table), prints the table, and puts the per-query ranks
   in ``bench/results/runs/quality-ranks.json`` (git-ignored, like every file under runs/).

``--via-cli N`` also runs N queries per corpus and mode through the real ``cs find ... --json`` /
``cs similar ... --json`` subprocess, via score.py, and fails unless every rank equals the
in-process one.

Usage (from the project root, venv active):
    python bench/quality.py                          # full dev split, all modes, both tasks
    python bench/quality.py --limit 20 --task find   # a quick look while exploring
    python bench/quality.py --tag chunk-v2 --compare bench/results/quality.json
    python bench/quality.py --via-cli 3              # also check the CLI gives the same ranks

Only the first run per tree embeds (minutes with MiniLM on 2 CPU cores); later runs reuse the
index, or the embedding cache when the chunker changed (the index is rebuilt automatically when
the chunker or lexical text changed since it was built).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DEFAULT_EVAL = PROJECT.parent / "shared" / "eval"
DEFAULT_SPLIT = Path("/tmp/cs-bench/dev")
DEFAULT_HOME = Path(os.environ.get("CS_BENCH_HOME", "/tmp/cs-bench/home"))
MODES = ("semantic", "lexical", "hybrid")
LANG_ORDER = ("python", "javascript", "typescript", "go", "rust")
K = 10


# --- small helpers -----------------------------------------------------------------------------


def load_score(eval_dir: Path) -> Any:
    """score.py as a module, so its metric functions are the ones used here."""
    sys.path.insert(0, str(eval_dir))
    import score  # type: ignore[import-not-found]

    return score


def ensure_split(split: Path, eval_dir: Path) -> None:
    """Build the split with make_corpus.py when it is missing."""
    if (split / "manifest.json").exists():
        return
    name = split.name
    print(f"building the {name} split into {split} ...", file=sys.stderr)
    subprocess.run([sys.executable, str(eval_dir / "make_corpus.py"), "--split", name,
                    "--out", str(split)], check=True)


def pick(rows: list[dict], limit: int) -> list[dict]:
    """score.py's --limit: at most ``limit`` rows, evenly spaced."""
    if limit and len(rows) > limit:
        return [rows[int(i * len(rows) / limit)] for i in range(limit)]
    return rows


def group_keys(task: str, corpus: str, q: dict) -> list[str]:
    """The groups score.py files a query under (corpus, language, ALL, hard:*, sim:*)."""
    lang = q["language"]
    keys = [corpus, "lang:" + lang, "ALL"]
    if task == "find" and not q.get("name_in_query"):
        keys += ["hard:lang:" + lang, "hard:ALL"]
    if task == "similar":
        sim = q.get("similarity", 1.0)
        keys.append("sim:" + ("<0.6" if sim < 0.6 else "0.6-0.8" if sim < 0.8 else ">=0.8"))
    return keys


def code_fingerprint() -> str:
    """A hash of the code that decides what an index contains (chunk boundaries, embedded and
    lexical texts); when it changes, the bench's indexes are rebuilt from the embedding cache."""
    import inspect

    from codesearch.index import plan

    h = hashlib.sha256()
    for rel in ("codesearch/source/chunk.py", "codesearch/documents.py",
                "codesearch/source/languages.py", "codesearch/source/discover.py"):
        p = PROJECT / rel
        if p.exists():
            h.update(p.read_bytes())
    for fn in (plan.chunk_records,):
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()[:16]


class SharedLoader:
    """One loaded model for every tree (the CLI loads it per process; the vectors are the same)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int | None, str | None, str | None], Any] = {}
        self.load_seconds = 0.0

    def __call__(self, model: str, *, dim: int | None = None, device: str | None = None,
                 precision: str | None = None) -> Any:
        key = (model, dim, device, precision)
        if key not in self._cache:
            from codesearch.embed import load_embedder

            t0 = time.perf_counter()
            self._cache[key] = load_embedder(model, dim=dim, device=device, precision=precision)
            self.load_seconds += time.perf_counter() - t0
        return self._cache[key]


# --- indexing ----------------------------------------------------------------------------------


def index_tree(root: Path, model: str, loader: SharedLoader, *, rebuild: bool,
               fingerprint: str) -> dict[str, Any]:
    """Bring the bench index of ``root`` up to date (what ``cs index ROOT --model M`` does)."""
    from codesearch.config import resolve_index_uri
    from codesearch.errors import IndexMismatchError
    from codesearch.index.indexer import Indexer, IndexOptions
    from codesearch.store.store import Store

    uri = resolve_index_uri(root)
    stamp = Path(uri).parent / (Path(uri).name + ".bench-fingerprint")
    if not rebuild and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
        rebuild = Path(uri).exists()  # the code changed since this index was built

    def run(rebuild: bool) -> Any:
        store = Store.open(uri)
        return Indexer(root, store, IndexOptions(model=model, rebuild=rebuild),
                       loader=loader).run()

    t0 = time.perf_counter()
    try:
        stats = run(rebuild)
    except IndexMismatchError:
        stats = run(True)
    seconds = time.perf_counter() - t0
    stamp.write_text(fingerprint + "\n")
    return {"seconds": round(seconds, 2), "rebuilt": bool(stats.rebuilt),
            "chunks": stats.chunks_total, "embedded": stats.chunks_embedded,
            "reused": stats.chunks_reused}


# --- running queries ---------------------------------------------------------------------------


def run_task(score: Any, split: Path, corpora: list[str], task: str, modes: list[str],
             limit: int, loader: SharedLoader) -> tuple[dict, dict, dict]:
    """Every query of ``task`` in every mode, in-process. Returns (groups, timing, ranks):
    groups[mode][hit] maps score.py group names to rank lists; ranks[mode][id] = (overlap,
    strict) ranks."""
    from codesearch.location import IndexSettings
    from codesearch.query.request import SearchOptions
    from codesearch.query.searcher import Searcher

    groups: dict[str, dict[str, dict[str, list]]] = {
        m: {"overlap": defaultdict(list), "strict": defaultdict(list)} for m in modes}
    latencies: dict[str, list[float]] = {m: [] for m in modes}
    errors: dict[str, int] = dict.fromkeys(modes, 0)
    ranks: dict[str, dict[str, tuple]] = {m: {} for m in modes}
    for corpus in corpora:
        cdir = split / corpus
        rows = score.load_jsonl(cdir / ("queries.jsonl" if task == "find" else "similar.jsonl"))
        rows = pick(rows, limit)
        if not rows:
            continue
        root = (cdir / ("repo" if task == "find" else "pair")).resolve()
        searcher = Searcher.open(IndexSettings().locate(root), loader=loader)
        for mode in modes:
            kq = K + (1 if task == "similar" else 0)
            opts = SearchOptions(k=kq, mode=mode)
            for q in rows:
                t0 = time.perf_counter()
                try:
                    if task == "find":
                        hits = searcher.find(q["query"], opts)
                    else:
                        hits = searcher.similar(f"{root / q['query_path']}:{q['query_line']}", opts)
                    results = [h.to_dict() for h in hits]
                except Exception as err:  # noqa: BLE001 - counted like score.py counts errors
                    errors[mode] += 1
                    if errors[mode] <= 5:
                        print(f"[{q['id']}] {mode}: {type(err).__name__}: {err}", file=sys.stderr)
                    results = []
                latencies[mode].append(time.perf_counter() - t0)
                res, _bad = score.clean(results, root)
                excl = ((q["query_path"], q["query_start_line"], q["query_end_line"])
                        if task == "similar" else None)
                r_overlap = score.rank_of(res, q, K, False, excl)
                r_strict = score.rank_of(res, q, K, True, excl)
                ranks[mode][q["id"]] = (r_overlap, r_strict)
                for g in group_keys(task, corpus, q):
                    groups[mode]["overlap"][g].append(r_overlap)
                    groups[mode]["strict"][g].append(r_strict)
        print(f"queried {task} {corpus}: {len(rows)} x {len(modes)} modes", file=sys.stderr)
    timing = {}
    for mode, lat in latencies.items():
        lat = sorted(lat)
        timing[mode] = {
            "queries": len(lat),
            "mean_s": round(statistics.mean(lat), 4) if lat else None,
            "p50_s": round(lat[len(lat) // 2], 4) if lat else None,
            "p95_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 4) if lat else None,
            "errors": errors[mode],
        }
    return groups, timing, ranks


def via_cli(score_py: Path, split: Path, corpora: list[str], task: str, modes: list[str], n: int,
            ranks: dict[str, dict[str, tuple]], env: dict[str, str]) -> list[str]:
    """Run ``n`` queries per corpus and mode through the real CLI via score.py; return the
    mismatches with the in-process ranks (empty when they all agree)."""
    cs = shlex.quote(str(Path(sys.executable).with_name("cs")))
    problems: list[str] = []
    for mode in modes:
        if task == "find":
            cmd = ["--cmd", f"{cs} find {{query}} --path {{repo}} -k {{k}} --json --mode {mode}"]
        else:
            cmd = ["--similar-cmd",
                   f"{cs} similar {{location}} --path {{repo}} -k {{k}} --json --mode {mode}"]
        for corpus in corpora:
            with tempfile.TemporaryDirectory() as tmp:
                details = Path(tmp) / "details.jsonl"
                p = subprocess.run(
                    [sys.executable, str(score_py), str(split), *cmd, "--task", task,
                     "--corpus", corpus, "--limit", str(n), "--jobs", "2",
                     "--details", str(details)],
                    capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    problems.append(f"{task}/{mode}/{corpus}: score.py failed: {p.stderr[-300:]}")
                    continue
                for line in details.read_text().splitlines() if details.exists() else []:
                    d = json.loads(line)
                    want = ranks[mode].get(d["id"], ("missing",))[0]
                    if d["error"] or d["rank"] != want:
                        problems.append(f"{task}/{mode}/{corpus} {d['id']}: cli rank {d['rank']} "
                                        f"(error {d['error']}), in-process {want}")
    return problems


def baselines(score_py: Path, split: Path, corpora: list[str] | None, limit: int,
              tasks: list[str]) -> dict[str, Any]:
    """``score.py --baseline bm25|grep`` for both hit rules: {kind: {hit: {task: metrics}}}."""
    out: dict[str, Any] = {}
    task_arg = "both" if len(tasks) == 2 else tasks[0]
    for kind in ("bm25", "grep"):
        for hit in ("overlap", "strict"):
            with tempfile.TemporaryDirectory() as tmp:
                js = Path(tmp) / "out.json"
                args = [sys.executable, str(score_py), str(split), "--baseline", kind,
                        "--hit", hit, "--task", task_arg, "--json", str(js)]
                if limit:
                    args += ["--limit", str(limit)]
                if corpora:
                    args += ["--corpus", *corpora]
                subprocess.run(args, check=True, capture_output=True, text=True)
                report = json.loads(js.read_text())
            out.setdefault(kind, {})[hit] = {t: v["metrics"] for t, v in report["tasks"].items()}
    return out


# --- tables ------------------------------------------------------------------------------------


def _lang_rows(metrics: dict[str, dict]) -> list[str]:
    present = {g[5:] for g in metrics if g.startswith("lang:")}
    langs = [lang for lang in LANG_ORDER if lang in present]
    langs += sorted(present - set(langs))
    return ["lang:" + lang for lang in langs] + ["ALL", "MACRO(lang)", "hard:ALL"]


def _cell(m: dict | None, key: str = f"MRR@{K}") -> str:
    if not m or not m.get("n"):
        return "–"
    return f"{m[key]:.3f}".lstrip("0") if m[key] < 1 else f"{m[key]:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """The README table: modes x languages beside BM25 and grep, for both hit rules."""
    out: list[str] = []
    base = report.get("baselines", {})
    for task in ("find", "similar"):
        res = report["tasks"].get(task)
        if not res:
            continue
        modes = list(res["modes"])
        refs = [k for k in ("bm25", "grep") if k in base]
        for hit in ("overlap", "strict"):
            first = res["modes"][modes[0]][hit]
            limit = f", limit {report['limit']}" if report["limit"] else ""
            title = (f"**`cs {task}`**, MRR@{K}, hit={hit} ({report['split_name']}, "
                     f"{report['model']}{limit})")
            default = report.get(f"default_{task}_mode" if task == "similar" else "default_mode")
            head = ["set", "n", *[f"{m}{' (default)' if m == default else ''}"
                                  for m in modes], *[r.upper() if r == "bm25" else r for r in refs]]
            out += [title, "", "| " + " | ".join(head) + " |",
                    "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
            for g in _lang_rows(first):
                if g not in first:
                    continue
                name = g[5:] if g.startswith("lang:") else f"**{g}**" if g == "ALL" else g
                cells = [name, str(first[g]["n"])]
                cells += [_cell(res["modes"][m][hit].get(g)) for m in modes]
                cells += [_cell(base[r][hit].get(task, {}).get(g)) for r in refs]
                out.append("| " + " | ".join(cells) + " |")
            allrow = {m: res["modes"][m][hit].get("ALL", {}) for m in modes}
            out.append("")
            out.append("R@1 / R@10 (ALL): " + "; ".join(
                f"{m} {_cell(a, 'R@1')}/{_cell(a, f'R@{K}')}" for m, a in allrow.items())
                + "".join(f"; {r} {_cell(base[r][hit].get(task, {}).get('ALL'), 'R@1')}/"
                          f"{_cell(base[r][hit].get(task, {}).get('ALL'), f'R@{K}')}"
                          for r in refs))
            out.append("")
    return "\n".join(out)


def split_ranks(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report without its per-query ranks (the summary: every table and number, what
    ``--compare`` reads), and the ranks alone under the same keys (``tasks.TASK.ranks``, what
    ``bench/replica.py --compare`` reads) with what identifies the run."""
    summary = {**report, "tasks": {task: {k: v for k, v in res.items() if k != "ranks"}
                                   for task, res in report["tasks"].items()}}
    ranks: dict[str, Any] = {k: report[k] for k in ("split", "split_name", "model", "limit", "k",
                                                    "code_fingerprint") if k in report}
    ranks["tasks"] = {task: {"ranks": res["ranks"]} for task, res in report["tasks"].items()
                      if "ranks" in res}
    return summary, ranks


def compare(report: dict[str, Any], other: dict[str, Any]) -> str:
    """Per-language MRR@10 before -> after, for every mode both runs have (find task)."""
    lines = []
    for task in ("find", "similar"):
        a, b = other["tasks"].get(task), report["tasks"].get(task)
        if not a or not b:
            continue
        for mode in b["modes"]:
            if mode not in a["modes"]:
                continue
            for hit in ("overlap", "strict"):
                ma, mb = a["modes"][mode][hit], b["modes"][mode][hit]
                cells = []
                for g in _lang_rows(mb):
                    if g in ma and g in mb:
                        va, vb = ma[g][f"MRR@{K}"], mb[g][f"MRR@{K}"]
                        name = g[5:] if g.startswith("lang:") else g
                        cells.append(f"{name} {va:.3f}->{vb:.3f} ({vb - va:+.3f})")
                lines.append(f"{task}/{mode}/{hit}: " + ", ".join(cells))
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", type=Path, default=DEFAULT_SPLIT,
                    help="split directory (built by make_corpus.py when missing; its name is "
                         "the split)")
    ap.add_argument("--eval", type=Path, default=DEFAULT_EVAL, help="the shared eval directory")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated find/similar modes")
    ap.add_argument("--task", choices=["find", "similar", "both"], default="both")
    ap.add_argument("--corpus", nargs="*", help="only these corpora")
    ap.add_argument("--limit", type=int, default=0,
                    help="at most N queries per corpus and task (evenly spaced, like score.py)")
    ap.add_argument("--home", type=Path, default=DEFAULT_HOME,
                    help="CS_HOME for the bench's indexes and embedding cache [env CS_BENCH_HOME]")
    ap.add_argument("--rebuild", action="store_true", help="rebuild every index (cache reused)")
    ap.add_argument("--via-cli", type=int, default=0, metavar="N",
                    help="also run N queries per corpus and mode through the `cs` CLI via "
                         "score.py and check the ranks match")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads while querying (default: torch's choice; 1 is much "
                         "faster for one-query batches on a busy machine, same vectors)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the BM25/grep references")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--tag", help="write results/runs/TAG.json (+.md; per-query ranks included: "
                                  "runs/ is git-ignored) instead of quality.json")
    ap.add_argument("--compare", type=Path, help="a previous report: print MRR deltas against it")
    a = ap.parse_args(argv)

    os.environ["CS_HOME"] = str(a.home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    a.home.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(PROJECT))
    ensure_split(a.split, a.eval)
    score = load_score(a.eval)
    score_py = a.eval / "score.py"
    manifest = json.loads((a.split / "manifest.json").read_text())
    corpora = [c for c in sorted(manifest["corpora"]) if not a.corpus or c in a.corpus]
    tasks = ["find", "similar"] if a.task == "both" else [a.task]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    # Read now: the report written at the end may replace the file compared against.
    previous = json.loads(a.compare.read_text()) if a.compare and a.compare.exists() else None

    from codesearch.query.ranking import DEFAULT_MODE, DEFAULT_SIMILAR_MODE

    loader = SharedLoader()
    fingerprint = code_fingerprint()
    t_start = time.time()
    report: dict[str, Any] = {
        "split": str(a.split), "split_name": manifest.get("split", a.split.name),
        "model": a.model, "limit": a.limit, "k": K, "default_mode": DEFAULT_MODE,
        "default_similar_mode": DEFAULT_SIMILAR_MODE,
        "corpora": corpora, "code_fingerprint": fingerprint, "index": {}, "tasks": {},
    }

    # 1. index every tree the chosen tasks need
    for task in tasks:
        for corpus in corpora:
            qfile = a.split / corpus / ("queries.jsonl" if task == "find" else "similar.jsonl")
            if not qfile.exists() or not qfile.read_text().strip():
                continue
            root = (a.split / corpus / ("repo" if task == "find" else "pair")).resolve()
            info = index_tree(root, a.model, loader, rebuild=a.rebuild, fingerprint=fingerprint)
            report["index"][f"{corpus}/{root.name}"] = info
            print(f"indexed {corpus}/{root.name}: {info}", file=sys.stderr)
    report["model_load_seconds"] = round(loader.load_seconds, 2)

    # 2. queries, in-process
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    all_ranks: dict[str, dict] = {}
    for task in tasks:
        t0 = time.perf_counter()
        groups, timing, ranks = run_task(score, a.split, corpora, task, modes, a.limit, loader)
        all_ranks[task] = ranks
        res: dict[str, Any] = {"modes": {}, "timing": timing,
                               "seconds": round(time.perf_counter() - t0, 1),
                               # per query: [overlap rank, strict rank] (null: not in the top K)
                               "ranks": {m: {i: list(r) for i, r in ranks[m].items()}
                                         for m in modes}}
        for mode in modes:
            res["modes"][mode] = {}
            for hit in ("overlap", "strict"):
                text, rows = score.table(f"== {task} {mode} ({report['split_name']}, "
                                         f"{a.model}, hit={hit})", groups[mode][hit], K)
                res["modes"][mode][hit] = rows
                if hit == "overlap" or mode == DEFAULT_MODE:
                    print(text + "\n", file=sys.stderr)
        report["tasks"][task] = res

    # 3. references
    if not a.no_baselines:
        report["baselines"] = baselines(score_py, a.split, a.corpus, a.limit, tasks)

    # 4. the CLI gives the same ranks
    if a.via_cli:
        env = dict(os.environ)
        problems = []
        for task in tasks:
            problems += via_cli(score_py, a.split, corpora, task, modes, a.via_cli,
                                all_ranks[task], env)
        report["via_cli"] = {"per_corpus": a.via_cli, "mismatches": problems}
        for p in problems:
            print("VIA-CLI MISMATCH " + p, file=sys.stderr)
        print(f"via-cli check: {len(problems)} mismatches", file=sys.stderr)

    report["wall_seconds"] = round(time.time() - t_start, 1)
    md = markdown(report)
    if a.tag:  # a run of its own, git-ignored: the whole report
        out_json = a.out / "runs" / f"{a.tag}.json"
        written = {out_json: report}
    else:  # the committed summary; its per-query ranks beside the runs, git-ignored
        out_json = a.out / "quality.json"
        summary, ranks_only = split_ranks(report)
        written = {out_json: summary, a.out / "runs" / "quality-ranks.json": ranks_only}
    for path, data in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    out_json.with_suffix(".md").write_text(md + "\n")
    print(md)
    if previous is not None:
        print(compare(report, previous))
    print(f"(wrote {', '.join(map(str, written))}; {report['wall_seconds']}s)", file=sys.stderr)
    return 1 if a.via_cli and report["via_cli"]["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

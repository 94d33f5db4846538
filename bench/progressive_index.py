"""The progressive first index (issue 17): how soon a fresh `cs index` answers, how fast the
vectors fill in, and what search quality is at each stage.

``timing``: a ~10k-chunk, evenly spread part of the Python standard library (copied, like
bench/index_scale.py) is indexed from scratch by a real ``cs index --json`` subprocess with a fresh
CS_HOME, while this process watches it as a user would:
- ``first_answer_s``: from starting the process until an in-process lexical ``find`` (what
  ``cs find`` runs) first returns hits;
- coverage samples every few seconds (``Store.coverage``: two row counts), from which the times
  to 50% and 100% of the vectors are read; a run stopped at ``--max-seconds`` (SIGINT, as Ctrl-C)
  reports the measured phase-2 rate and the times it implies, labelled as extrapolations.
After the process ends, the index is checked: lexical search answers, and the vectors committed
before the stop are still there (what the next ``cs index`` resumes from).

``quality``: dev find MRR@10 (the shared eval, scored with bench/quality.py's machinery) with
MiniLM as the vectors arrive: on fully built dev indexes, the chunks phase 2 would embed last are
marked as having no vector (``embedded`` false, zero vector: exactly what a partial index holds),
in phase-2 order (:func:`codesearch.index.order.embed_order`), at 0/25/50/75/100%; lexical mode is
the reference. The indexes are copies (``--home``), so the originals are never touched.

    python bench/progressive_index.py timing --model minilm
    python bench/progressive_index.py timing --model qwen05b --max-seconds 300
    python bench/progressive_index.py quality --home /tmp/cs17-bench-home

Prints a table per part and merges into bench/results/progressive_index.json.
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
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "progressive_index.json"
QUERY = "parse a date string into a datetime"  # any query with lexical hits in the stdlib
MODEL_DIR_05B = Path(tempfile.gettempdir()) / "cs17-qwen05b"


# --- the tree ----------------------------------------------------------------------------------


def pick_tree(lib: Path, target_chunks: int, dest: Path) -> dict[str, Any]:
    """Copy an evenly spread part of ``lib`` holding about ``target_chunks`` chunks to ``dest``."""
    from bench.index_scale import copy_tree, stdlib_files, subset
    from codesearch.source.chunk import chunk_source
    from codesearch.source.languages import language_for_path

    files = stdlib_files(lib, None)
    counts = {}
    for rel in files:
        try:
            text = (lib / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "\0" in text or len(text) > 1 << 20:
            continue
        try:
            counts[rel] = len(chunk_source(text, rel.as_posix(),
                                           language_for_path(rel.as_posix(), text[:200])))
        except Exception:  # noqa: BLE001 - the indexer would count it as failed; leave it out
            continue
    total = sum(counts.values())
    chosen = subset(sorted(counts), min(1.0, target_chunks / total))
    source_bytes = copy_tree(lib, chosen, dest)
    return {"lib": str(lib), "files": len(chosen),
            "estimated_chunks": sum(counts[f] for f in chosen),
            "source_mib": round(source_bytes / 2**20, 1)}


def model_path(name: str, lib: Path) -> str:
    """``minilm`` as is; ``qwen05b``: the 0.5B architecture with random weights (built once)."""
    if name != "qwen05b":
        return name
    if not (MODEL_DIR_05B / "config.json").exists():
        from bench._models import build_05b

        sources = sorted((lib / "json").glob("*.py")) + sorted((lib / "email").glob("*.py"))
        corpus = [p.read_text(encoding="utf-8", errors="replace") for p in sources]
        build_05b(MODEL_DIR_05B, corpus, vocab=8000)
    return str(MODEL_DIR_05B)


# --- timing ------------------------------------------------------------------------------------


def watch_index(root: Path, model: str, home: Path, max_seconds: float) -> dict[str, Any]:
    """Run ``cs index`` on ``root`` and observe it; see the module doc."""
    from codesearch.config import resolve_index_uri
    from codesearch.errors import CodeSearchError
    from codesearch.location import IndexSettings
    from codesearch.query.request import SearchOptions
    from codesearch.query.searcher import Searcher
    from codesearch.store.store import Store

    env = dict(os.environ, CS_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               NO_COLOR="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    for var in ("CS_INDEX_DIR", "CS_CACHE_DIR", "CS_INDEX_URI", "CS_CACHE_URI", "CS_MODEL"):
        env.pop(var, None)
    os.environ["CS_HOME"] = str(home)  # this process's reads find the same index
    uri = resolve_index_uri(root)
    log = home / "index.log"
    home.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "codesearch", "index", str(root), "--model", model, "--json"]
    samples: list[tuple[float, int, int]] = []
    first_answer: float | None = None
    first_hits = 0
    stopped = False
    with open(log, "wb") as err, tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=REPO)
        next_sample = 0.0
        while proc.poll() is None:
            now = time.perf_counter() - start
            if first_answer is None and Path(uri).is_dir():
                try:
                    searcher = Searcher.open(IndexSettings().locate(root))
                    hits = searcher.find(QUERY, SearchOptions(k=10, mode="lexical"))
                except CodeSearchError:
                    hits = []
                if hits:
                    first_answer = time.perf_counter() - start
                    first_hits = len(hits)
            if first_answer is not None and now >= next_sample:
                try:
                    embedded, total = Store.open(uri).coverage()
                    samples.append((round(now, 2), embedded, total))
                except CodeSearchError:
                    pass
                next_sample = now + 3.0
            if now > max_seconds and not stopped:
                proc.send_signal(signal.SIGINT)  # what Ctrl-C does
                stopped = True
            time.sleep(0.5 if first_answer is None else 0.5)
        wall = time.perf_counter() - start
        out.seek(0)
        raw = out.read().decode()
    stats = json.loads(raw) if raw.strip() and proc.returncode == 0 else None
    store = Store.open(uri)
    embedded, total = store.coverage()
    samples.append((round(wall, 2), embedded, total))
    after = Searcher.open(IndexSettings().locate(root)).find(
        QUERY, SearchOptions(k=10, mode="lexical"))
    return {"returncode": proc.returncode, "stopped_at_s": max_seconds if stopped else None,
            "wall_s": round(wall, 1), "first_answer_s": round(first_answer, 1)
            if first_answer is not None else None, "first_answer_hits": first_hits,
            "stats": stats, "samples": samples, "final_coverage": [embedded, total],
            "lexical_hits_after": len(after), "log_tail": log.read_text()[-600:]}


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Times to 50% / 100% of the vectors: observed when reached, else extrapolated from the
    measured phase-2 rate (first sample with a vector missing -> last sample)."""
    samples = run["samples"]
    total = samples[-1][2]
    out: dict[str, Any] = {"chunks": total}

    def reached(share: float) -> float | None:
        for t, e, n in samples:
            if n and e >= share * n:
                return t
        return None

    # The embedding rate: from the first sample with a committed vector to the last (model load
    # and the one-off dtype timing before it are reported as first_vector_s).
    with_vectors = [s for s in samples if s[1] > samples[0][1]]
    t0, e0, _ = with_vectors[0] if with_vectors else samples[0]
    t1, e1, _ = samples[-1]
    rate = (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0
    out["first_vector_s"] = with_vectors[0][0] if with_vectors else None
    out["phase2_rate_chunks_per_s"] = round(rate, 2)
    out["vectors_at_start_of_phase2"] = samples[0][1]
    for share, key in ((0.5, "50"), (1.0, "100")):
        seen = reached(share)
        if seen is not None:
            out[f"to_{key}pct_s"] = seen
            out[f"to_{key}pct_kind"] = "measured"
        elif rate > 0:
            out[f"to_{key}pct_s"] = round(t1 + (share * total - e1) / rate, 0)
            out[f"to_{key}pct_kind"] = "extrapolated from the measured rate"
        else:
            out[f"to_{key}pct_s"] = None
            out[f"to_{key}pct_kind"] = "no vectors in the bounded run"
    return out


def timing(args: argparse.Namespace) -> dict[str, Any]:
    lib = args.lib.resolve()
    work = Path(tempfile.mkdtemp(prefix="cs17-progressive-"))
    try:
        tree = pick_tree(lib, args.chunks, work / "lib")
        model = model_path(args.model, lib)
        if args.dtype_memo:  # the one-off fp32-vs-bf16 timing, from an earlier run
            (work / "home").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.dtype_memo, work / "home" / "cpu-dtype.json")
        run = watch_index(work / "lib", model, work / "home", args.max_seconds)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarise(run)
    row = {"model": args.model, "tree": tree, "dtype_memo": str(args.dtype_memo or ""),
           **summary, "first_answer_s": run["first_answer_s"],
           "searchable_s_reported": (run["stats"] or {}).get("seconds_searchable"),
           "wall_s": run["wall_s"], "stopped_at_s": run["stopped_at_s"],
           "returncode": run["returncode"], "final_coverage": run["final_coverage"],
           "lexical_hits_after_stop": run["lexical_hits_after"], "samples": run["samples"],
           "load_average_at_end": os.getloadavg()}
    print(f"{args.model}: {summary['chunks']} chunks; first lexical answer "
          f"{run['first_answer_s']} s; phase-2 rate {summary['phase2_rate_chunks_per_s']} "
          f"chunks/s; 50% at {summary['to_50pct_s']} s ({summary['to_50pct_kind']}); 100% at "
          f"{summary['to_100pct_s']} s ({summary['to_100pct_kind']}); after the run "
          f"{run['final_coverage'][0]}/{run['final_coverage'][1]} vectors kept, lexical search "
          f"{run['lexical_hits_after']} hits", flush=True)
    return row


# --- quality -----------------------------------------------------------------------------------


def mark_unembedded(root: Path, share_embedded: float) -> tuple[int, int]:
    """Leave vectors on the first ``share_embedded`` of the chunks in phase-2 order (by file, as
    phase 2 goes) and mark the rest as waiting for theirs. Reversible: the vectors are saved in
    the shared cache by hash, and :func:`restore` puts them back."""
    from codesearch.config import resolve_index_uri
    from codesearch.index.order import embed_order, git_recency
    from codesearch.store.records import CHUNKS, EMBEDDED, VECTOR, sql_in
    from codesearch.store.store import Store

    store = Store.open(resolve_index_uri(root))
    table = store._table(CHUNKS)
    store.ensure_tables(int(table.schema.field(VECTOR).type.list_size))  # adds `embedded`
    table = store._table(CHUNKS)
    rows = table.search().select(["id", "path"]).limit(None).to_arrow().to_pylist()
    by_path: dict[str, list[str]] = {}
    for r in rows:
        by_path.setdefault(r["path"], []).append(r["id"])
    order = embed_order(root, list(by_path), store.file_records(), recency=git_recency(root) or {})
    ids = [i for p in order for i in sorted(by_path[p])]
    keep = int(round(share_embedded * len(ids)))
    drop = ids[keep:]
    dim = int(table.schema.field(VECTOR).type.list_size)
    zero = "[" + ",".join(["0.0"] * dim) + "]"
    for start in range(0, len(drop), 2000):
        part = drop[start:start + 2000]
        table.update(where=sql_in("id", part), values_sql={EMBEDDED: "false", VECTOR: zero})
    return keep, len(ids)


def quality(args: argparse.Namespace) -> dict[str, Any]:
    from bench import quality as q

    score = q.load_score(args.eval)
    corpora = sorted(p.name for p in args.split.iterdir() if (p / "queries.jsonl").exists())
    os.environ["CS_HOME"] = str(args.home)
    loader = q.SharedLoader()
    rows = []
    pristine = Path(tempfile.mkdtemp(prefix="cs17-quality-"))
    index_root = args.home / "indexes"
    shutil.copytree(index_root, pristine / "indexes")  # each share starts from the full index
    try:
        for share in args.shares:
            shutil.rmtree(index_root)
            shutil.copytree(pristine / "indexes", index_root)
            marked = {}
            for corpus in corpora:
                root = (args.split / corpus / "repo").resolve()
                marked[corpus] = mark_unembedded(root, share)
            modes = ["hybrid", "lexical"] if share in (0.0, 1.0) else ["hybrid"]
            groups, timing_, _ranks = q.run_task(score, args.split, corpora, "find", modes,
                                                 args.limit, loader)
            row: dict[str, Any] = {"embedded_share": share,
                                   "chunks_embedded": sum(k for k, _ in marked.values()),
                                   "chunks": sum(n for _, n in marked.values())}
            for mode in modes:
                _text, table = score.table(mode, groups[mode]["overlap"], q.K)
                row[f"{mode}_mrr10"] = table["ALL"][f"MRR@{q.K}"]
                row[f"{mode}_r10"] = table["ALL"][f"R@{q.K}"]
                row[f"{mode}_by_lang"] = {g.removeprefix("lang:"): r[f"MRR@{q.K}"]
                                          for g, r in table.items() if g.startswith("lang:")}
            rows.append(row)
            print(f"{share:>5.0%} embedded ({row['chunks_embedded']}/{row['chunks']} chunks): "
                  + ", ".join(f"{m} MRR@10 {row[f'{m}_mrr10']:.4f}" for m in modes), flush=True)
    finally:
        shutil.rmtree(index_root, ignore_errors=True)
        shutil.copytree(pristine / "indexes", index_root)
        shutil.rmtree(pristine, ignore_errors=True)
    return {"split": str(args.split), "model": "minilm", "queries_per_corpus": args.limit or "all",
            "hit_rule": "overlap (score.py's default)", "results": rows}


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--model", default="minilm", help="minilm, or qwen05b (random 0.5B arch)")
    t.add_argument("--lib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    t.add_argument("--chunks", type=int, default=10_000, help="about this many chunks")
    t.add_argument("--max-seconds", type=float, default=1800,
                   help="stop the run (SIGINT) after this long; the rest is extrapolated")
    t.add_argument("--keep", action="store_true", help="keep the work directory")
    t.add_argument("--dtype-memo", type=Path, help="a cpu-dtype.json to start the fresh home "
                   "with: skips the first load's fp32-vs-bf16 timing (minutes for the 0.5B "
                   "architecture on a loaded CPU), measured by an earlier run")
    qa = sub.add_parser("quality")
    qa.add_argument("--home", type=Path, default=Path("/tmp/cs17-bench-home"))
    qa.add_argument("--split", type=Path, default=Path("/tmp/cs-bench/dev"))
    qa.add_argument("--eval", type=Path, default=REPO.parent / "shared" / "eval")
    qa.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    qa.add_argument("--limit", type=int, default=0, help="queries per corpus (0: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                         "python": platform.python_version(),
                         "note": "2 cores shared with other engineers' jobs: timings are noisy"}
    if args.part == "timing":
        report.setdefault("timing", {})[args.model] = timing(args)
    else:
        report["quality"] = quality(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

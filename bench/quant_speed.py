"""Speed and agreement of each CPU precision (fp32, bf16, int8 = ONNX Runtime dynamic int8).

Three parts, each side by side in one run (the CPU is shared: compare ratios, not absolutes):

- ``speed``: the real jina-code-embeddings-0.5b architecture (random weights, bench/_models.py)
  through the embedder pipeline (``embed_documents``) on a seeded sample of chunks cut from a
  real tree (this Python's standard library, as `cs index` cuts it); rounds alternate the
  precisions and the median round counts. Tokens/s, speed-up over fp32, and the cosine of each
  precision's vectors to fp32's (random weights: reported, not used to judge). Also what `auto`'s
  probe picks for this model.
- ``agreement``: MiniLM (real weights) through the same engines on the dev split: bench/quality.py
  is run once per precision (CS_PRECISION, its own home; an existing home is reused), then the
  vectors of every text both embedded (the homes' embedding caches, joined on the text hash) give
  min / p1 / median cosine to fp32, and find MRR@10 per language gives the loss against fp32.
- ``index``: whole-pipeline `cs index` (subprocess) chunks/s with the 0.5B architecture at each
  precision on a small real tree (fixtures/python), a fresh index and embedding cache per run;
  the int8 build is made beforehand (by the speed part), so its one-off cost is reported apart.

    python bench/quant_speed.py                        # all parts, ~1 h on 2 shared CPU cores
    python bench/quant_speed.py --parts speed --sample 16

Prints tables and writes bench/results/quant_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._models import build_05b  # noqa: E402
from bench.embed_speed import collect_chunks, log, write  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8")
LANGS = ("python", "javascript", "typescript", "go", "rust")


def cosines(a: Any, b: Any) -> Any:
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def spread(cos: Any) -> dict[str, float]:
    import numpy as np

    return {"n": int(len(cos)), "min": round(float(np.min(cos)), 5),
            "p1": round(float(np.percentile(cos, 1)), 5),
            "median": round(float(np.median(cos)), 5)}


def model_05b(work: Path, corpus: list[str]) -> Path:
    path = work / "qwen05b-random"
    if not (path / "config.json").is_file():
        log(f"building the 0.5B architecture with random weights in {path}")
        build_05b(path, corpus)
    return path


# --- speed --------------------------------------------------------------------------------------


def part_speed(results: dict[str, Any], work: Path, sample: int, rounds: int) -> None:
    import torch

    from codesearch.embed import load_embedder
    from codesearch.embed.hf import measure_cpu_dtype

    texts, source = collect_chunks(80)
    model = model_05b(work, texts)
    rng = random.Random(0)
    chosen = rng.sample(texts, sample)
    out: dict[str, Any] = {"source": source, "sample": sample, "rounds": rounds,
                           "threads": torch.get_num_threads()}
    embedders = {}
    for p in PRECISIONS:
        t0 = time.perf_counter()
        embedders[p] = load_embedder(str(model), device="cpu", precision=p, notify=log)
        out.setdefault("load_seconds", {})[p] = round(time.perf_counter() - t0, 1)
        log(f"loaded {p} in {out['load_seconds'][p]} s: {embedders[p]!r}")
    tokens = sum(len(s) for s in embedders["fp32"].tokenize(chosen, "nl2code", "document"))
    out["tokens"] = tokens
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    vectors = {}
    for r in range(rounds):
        for p in PRECISIONS:
            t0 = time.perf_counter()
            vectors[p] = embedders[p].embed_documents(chosen)
            times[p].append(time.perf_counter() - t0)
            log(f"round {r + 1} {p}: {tokens / times[p][-1]:.1f} tokens/s")
    med = {p: statistics.median(times[p]) for p in PRECISIONS}
    out["precisions"] = {
        p: {"tokens_per_s": round(tokens / med[p], 1), "speedup": round(med["fp32"] / med[p], 2),
            "seconds_per_round": [round(t, 2) for t in times[p]],
            "cosine_to_fp32_256d_random_weights": spread(cosines(vectors["fp32"], vectors[p]))}
        for p in PRECISIONS
    }
    # What `auto`'s probe decides for this model (random weights: int8 agreement is pessimistic).
    fp32 = embedders["fp32"]
    probe = measure_cpu_dtype(fp32.model, fp32.tokenizer, fp32.pooling,
                              int8=embedders["int8"]._int8)
    out["auto_probe_random_weights"] = probe
    results["speed"] = out
    del embedders, vectors


def print_speed(s: dict[str, Any]) -> None:
    print(f"\n0.5B architecture (random weights), {s['sample']} chunks, {s['tokens']} tokens, "
          f"{s['threads']} threads, median of {s['rounds']} rounds")
    print(f"{'precision':10s} {'tokens/s':>9s} {'x fp32':>7s} {'min cos':>8s} {'p1 cos':>8s}")
    for p, r in s["precisions"].items():
        c = r["cosine_to_fp32_256d_random_weights"]
        print(f"{p:10s} {r['tokens_per_s']:9.1f} {r['speedup']:7.2f} {c['min']:8.4f} "
              f"{c['p1']:8.4f}")
    print(f"auto probe: {s['auto_probe_random_weights']}")


# --- agreement (MiniLM, real weights) -----------------------------------------------------------


def _cache_vectors(home: Path) -> dict[str, Any]:
    """hash -> vector over every table of a home's embedding cache."""
    import lancedb
    import numpy as np

    db = lancedb.connect(str(home / "embeddings"))
    out: dict[str, Any] = {}
    for name in db.table_names():
        data = db.open_table(name).to_arrow()
        vecs = np.asarray(data.column("vector").combine_chunks().flatten()).reshape(len(data), -1)
        out.update(zip(data.column("hash").to_pylist(), vecs, strict=True))
    return out


def part_agreement(results: dict[str, Any], work: Path, homes: str, split: Path,
                   precisions: list[str], corpora: list[str], given: dict[str, Path]) -> None:
    """``precisions[0]`` is the reference the others are compared with. ``given``: quality.py
    reports already made (precision -> JSON), used instead of running it again; MRR per language
    is compared only between reports over the same corpora, MRR per corpus always."""
    import numpy as np

    ref_p = precisions[0]
    out: dict[str, Any] = {"model": "minilm", "split": str(split), "reference": ref_p,
                           "corpora": corpora or "all", "runs": {}}
    reports = {}
    tag = "-" + "-".join(corpora) if corpora else ""
    for p in precisions:
        home = Path(f"{homes}{p}")
        if p in given:
            reports[p] = json.loads(given[p].read_text())
            out["runs"][p] = {"home": str(home), "report": str(given[p])}
            continue
        tag_dir = work / "quality"
        cmd = [sys.executable, str(REPO / "bench" / "quality.py"), "--task", "find",
               "--modes", "semantic,hybrid", "--no-baselines", "--split", str(split),
               "--home", str(home), "--out", str(tag_dir), "--tag", p + tag]
        if corpora:
            cmd += ["--corpus", *corpora]
        log(f"quality run at {p}: {' '.join(cmd)}")
        t0 = time.perf_counter()
        env = {**os.environ, "CS_PRECISION": p, "PYTHONPATH": str(REPO)}
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        out["runs"][p] = {"home": str(home), "seconds": round(time.perf_counter() - t0, 1)}
        reports[p] = json.loads((tag_dir / "runs" / f"{p}{tag}.json").read_text())
    ref = _cache_vectors(Path(f"{homes}{ref_p}"))
    for p in precisions[1:]:
        other = _cache_vectors(Path(f"{homes}{p}"))
        common = sorted(set(ref) & set(other))
        a = np.stack([ref[h] for h in common])
        b = np.stack([other[h] for h in common])
        out.setdefault("cosine_to_reference", {})[p] = spread(cosines(a, b))
    mrr: dict[str, Any] = {}
    per_corpus: dict[str, Any] = {}
    same = len({tuple(sorted(r["corpora"])) for r in reports.values()}) == 1
    for mode in ("semantic", "hybrid"):
        for p in precisions:
            rows = reports[p]["tasks"]["find"]["modes"][mode]["overlap"]
            if same:
                keys = ["ALL", *[f"lang:{lang}" for lang in LANGS if f"lang:{lang}" in rows]]
                mrr.setdefault(mode, {})[p] = {k.removeprefix("lang:"): rows[k]["MRR@10"]
                                               for k in keys}
            common = set.intersection(*(set(r["corpora"]) for r in reports.values()))
            per_corpus.setdefault(mode, {})[p] = {c: rows[c]["MRR@10"] for c in sorted(common)}
    out["find_mrr10_per_corpus"] = per_corpus
    if not same:
        mrr = per_corpus
    out["find_mrr10"] = mrr
    out["find_mrr10_loss_vs_reference"] = {
        mode: {p: {k: round(v[ref_p][k] - v[p][k], 4) for k in v[ref_p]}
               for p in precisions[1:]}
        for mode, v in mrr.items()
    }
    results.setdefault("agreement", {})[f"{ref_p} reference{tag or ', all corpora'}"] = out


def print_agreement(a: dict[str, Any]) -> None:
    print(f"\nMiniLM (real weights) on {a['split']} ({a['corpora']}): cosine to "
          f"{a['reference']} over every text both embedded")
    for p, c in a["cosine_to_reference"].items():
        print(f"  {p}: n={c['n']} min={c['min']:.4f} p1={c['p1']:.4f} median={c['median']:.4f}")
    for mode, v in a["find_mrr10"].items():
        keys = list(v[a["reference"]])
        print(f"find MRR@10 ({mode}): " + " ".join(f"{k:>10s}" for k in keys))
        for p, row in v.items():
            print(f"  {p:6s}" + " " * 14 + " ".join(f"{row[k]:10.4f}" for k in keys))


# --- whole pipeline -----------------------------------------------------------------------------


def small_tree(work: Path) -> Path:
    """A copy of fixtures/python (29 chunks): small enough for fp32 on a shared CPU."""
    import shutil

    tree = work / "tree"
    if not tree.is_dir():
        shutil.copytree(REPO / "fixtures" / "python", tree)
    return tree


def part_index(results: dict[str, Any], work: Path) -> None:
    texts, _ = collect_chunks(80)
    model = model_05b(work, texts)
    tree = small_tree(work)
    out: dict[str, Any] = {"tree": "fixtures/python", "runs": {}}
    for p in PRECISIONS:
        run_dir = work / f"index-{p}-{int(time.time())}"
        env = {**os.environ, "PYTHONPATH": str(REPO), "CS_PRECISION": p,
               "CS_HOME": str(work / "home"), "CS_INDEX_DIR": str(run_dir / "indexes"),
               "CS_CACHE_URI": str(run_dir / "embeddings")}
        cmd = [sys.executable, "-m", "codesearch", "index", str(tree), "--model", str(model),
               "--json"]
        log(f"cs index at {p}")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        stats = json.loads(proc.stdout)
        chunks = int(stats.get("chunks_embedded") or stats.get("chunks_total") or 0)
        out["runs"][p] = {"chunks": chunks, "wall_seconds": round(wall, 1),
                          "chunks_per_s": round(chunks / wall, 2), "stats": stats}
        log(f"{p}: {chunks} chunks in {wall:.1f} s")
    base = out["runs"]["fp32"]["chunks_per_s"]
    for r in out["runs"].values():
        r["speedup"] = round(r["chunks_per_s"] / base, 2) if base else None
    results["index"] = out


def print_index(x: dict[str, Any]) -> None:
    print(f"\ncs index, 0.5B architecture, {x['tree']} (wall incl. model load)")
    for p, r in x["runs"].items():
        print(f"  {p:6s} {r['chunks']} chunks {r['wall_seconds']:7.1f} s "
              f"{r['chunks_per_s']:6.2f} chunks/s  x{r['speedup']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="speed,agreement,index")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cs-quant-bench"),
                    help="models, trees and the home of the int8 builds")
    ap.add_argument("--sample", type=int, default=24, help="chunks per speed round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--homes", default="/tmp/cs-quant-quality-",
                    help="quality homes: PREFIX + precision (reused when they exist)")
    ap.add_argument("--split", type=Path, default=Path("/tmp/cs-bench/dev"))
    ap.add_argument("--agree", default="fp32,bf16,int8",
                    help="precisions to compare, the reference first")
    ap.add_argument("--corpus", nargs="*", help="only these dev corpora (fp32 is slow)")
    ap.add_argument("--reports", default="",
                    help="PRECISION=quality.json,... made before: used instead of running it")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "quant_speed.json")
    a = ap.parse_args()
    parts = a.parts.split(",")
    a.work.mkdir(parents=True, exist_ok=True)
    os.environ["CS_HOME"] = str(a.work / "home")  # the speed part's int8 build lives here
    results: dict[str, Any] = json.loads(a.out.read_text()) if a.out.is_file() else {}
    results["machine"] = {"cpu": _cpu(), "load_average_at_start": list(os.getloadavg())}
    try:
        import onnxruntime
        import torch

        results["machine"].update(torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                                  threads=torch.get_num_threads())
    except ImportError:
        pass
    if "speed" in parts:
        part_speed(results, a.work, a.sample, a.rounds)
        write(a.out, results)
        print_speed(results["speed"])
    if "agreement" in parts:
        given = {k: Path(v) for k, _, v in (x.partition("=") for x in a.reports.split(",") if x)}
        part_agreement(results, a.work, a.homes, a.split, a.agree.split(","), a.corpus or [],
                       given)
        write(a.out, results)
        for block in results["agreement"].values():
            print_agreement(block)
    if "index" in parts:
        part_index(results, a.work)
        write(a.out, results)
        print_index(results["index"])
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    write(a.out, results)


def _cpu() -> str:
    from codesearch.embed.hf import _cpu_name

    return _cpu_name()


if __name__ == "__main__":
    main()

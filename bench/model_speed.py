"""What each preset costs on this CPU: tokens/s and chunks/s of its exact architecture at fp32,
bf16 and int8, and how closely int8 agrees with fp32.

- ``speed``: jina-code-0.5b (Qwen2: hidden 896, 24 layers, 14 heads, 2 KV, MLP 4864, vocab 151,936)
  and qwen3-0.6b (Qwen3: hidden 1024, 28 layers, 16 heads of 128, 8 KV, MLP 3072, vocab 151,669),
  built with random weights (bench/_models.py: FLOPs, and so timings, do not depend on them),
  through the embedder pipeline (``embed_documents``) on a seeded sample of real code chunks of
  about 256 tokens (this Python's standard library, cut by cs's chunker). Every (model, precision)
  is loaded first (a warm-up call each; the int8 build, ONNX export + quantisation once per
  model, shows in its load time), then each round takes them in turn, so a load that changes
  during the run falls on all alike; the median round counts. Cosine of int8 and bf16 to fp32
  over the same texts (random weights: reported, not a verdict on meaning).
- ``meaning``: MiniLM (real weights) fp32 vs int8 on real code chunks: min / p1 / median cosine.

    python bench/model_speed.py --work DIR               # ~25 min on 2 shared CPU cores
    python bench/model_speed.py --models qwen3-0.6b --sample 4 --rounds 2

Prints a table and writes bench/results/model_speed.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._models import build_arch  # noqa: E402
from bench.embed_speed import collect_chunks, log, write  # noqa: E402
from bench.quant_speed import cosines, spread  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8")
MODELS = ("jina-code-0.5b", "qwen3-0.6b")


def pick_texts(tokenizer: Any, texts: list[str], sample: int, low: int, high: int) -> list[str]:
    """``sample`` texts (seeded) whose token count is within [low, high]."""
    fitting = [t for t in texts if low <= len(tokenizer(t)["input_ids"]) <= high]
    return random.Random(0).sample(fitting, min(sample, len(fitting)))


def part_speed(results: dict[str, Any], work: Path, models: list[str], sample: int,
               rounds: int) -> None:
    """Every (model, precision) loaded at once, then rounds that take each in turn: a load that
    changes during the run (the CPU is shared) falls on all of them alike."""
    import torch

    from codesearch.embed import load_embedder

    corpus, source = collect_chunks(80)
    out: dict[str, Any] = {"source": source, "threads": torch.get_num_threads(),
                           "rounds": rounds, "models": {}}
    results["speed"] = out
    embedders: dict[tuple[str, str], Any] = {}
    chosen: list[str] = []
    for kind in models:
        path = work / kind
        if not (path / "config.json").is_file():
            log(f"building the {kind} architecture with random weights in {path}")
            build_arch(kind, path, corpus)
        row: dict[str, Any] = {"precisions": {}}
        out["models"][kind] = row
        for p in PRECISIONS:
            t0 = time.perf_counter()
            emb = load_embedder(str(path), device="cpu", precision=p, notify=log)
            # For int8 this includes the one-off build (export + quantisation) unless cached.
            row["precisions"][p] = {"precision_loaded": emb.precision,
                                    "load_seconds": round(time.perf_counter() - t0, 1)}
            if not chosen:
                chosen = pick_texts(emb.tokenizer, corpus, sample, 200, 320)
            if p == "fp32":
                row["params"] = sum(x.numel() for x in emb.model.parameters())
            row.update(texts=len(chosen), tokens=sum(
                len(s) for s in emb.tokenize(chosen, "nl2code", "document")))
            emb.embed_documents(chosen[:2])  # kernels for these shapes are built on first use
            embedders[(kind, p)] = emb
    times: dict[tuple[str, str], list[float]] = {key: [] for key in embedders}
    vectors: dict[tuple[str, str], Any] = {}
    for r in range(rounds):
        for (kind, p), emb in embedders.items():
            t1 = time.perf_counter()
            vectors[(kind, p)] = emb.embed_documents(chosen)
            times[(kind, p)].append(time.perf_counter() - t1)
            tokens = out["models"][kind]["tokens"]
            log(f"{kind} {p} round {r + 1}: {tokens / times[(kind, p)][-1]:.1f} tokens/s "
                f"(load {os.getloadavg()[0]:.1f})")
    for (kind, p), taken in times.items():
        row = out["models"][kind]
        med = statistics.median(taken)
        fp32 = statistics.median(times[(kind, "fp32")])
        row["precisions"][p].update(
            tokens_per_s=round(row["tokens"] / med, 1),
            chunks_per_s=round(len(chosen) / med, 3),
            x_fp32=round(fp32 / med, 2),
            seconds_per_round=[round(t, 1) for t in taken])
        if p != "fp32":
            row["precisions"][p]["cosine_to_fp32_random_weights"] = spread(
                cosines(vectors[(kind, "fp32")], vectors[(kind, p)]))


def part_meaning(results: dict[str, Any], sample: int) -> None:
    from codesearch.embed import load_embedder

    corpus, source = collect_chunks(80)
    texts = random.Random(1).sample(corpus, min(sample, len(corpus)))
    vectors = {p: load_embedder("minilm", device="cpu", precision=p).embed_documents(texts)
               for p in ("fp32", "int8")}
    results["meaning"] = {"model": "minilm", "source": source, "texts": len(texts),
                          "int8_cosine_to_fp32": spread(cosines(vectors["fp32"],
                                                                vectors["int8"]))}


def print_tables(results: dict[str, Any]) -> None:
    speed = results.get("speed", {})
    print(f"\n{'model':16s} {'precision':9s} {'tokens/s':>9s} {'chunks/s':>9s} {'x fp32':>7s} "
          f"{'min cos':>8s}")
    for kind, row in speed.get("models", {}).items():
        for p, r in row["precisions"].items():
            cos = r.get("cosine_to_fp32_random_weights", {}).get("min", 1.0)
            print(f"{kind:16s} {p:9s} {r['tokens_per_s']:9.1f} {r['chunks_per_s']:9.3f} "
                  f"{r.get('x_fp32', 0):7.2f} {cos:8.4f}")
    if "meaning" in results:
        m = results["meaning"]
        print(f"MiniLM int8 vs fp32 over {m['texts']} code chunks: {m['int8_cosine_to_fp32']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--sample", type=int, default=4, help="chunks of ~256 tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--meaning-sample", type=int, default=64)
    parser.add_argument("--parts", default="speed,meaning")
    parser.add_argument("--work", type=Path, default=None, help="keeps the built models")
    args = parser.parse_args()
    os.environ.setdefault("CS_HOME", tempfile.mkdtemp(prefix="cs-model-speed-"))
    work = args.work or Path(tempfile.mkdtemp(prefix="model-speed-"))
    results: dict[str, Any] = {"cpu": platform.processor() or platform.machine(),
                               "load_average": os.getloadavg()[0]}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            results["cpu"] = next(line.split(":", 1)[1].strip() for line in handle
                                  if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = args.parts.split(",")
    if "meaning" in parts:
        part_meaning(results, args.meaning_sample)
    if "speed" in parts:
        part_speed(results, work, args.models, args.sample, args.rounds)
    results["load_average_end"] = os.getloadavg()[0]
    write(REPO / "bench" / "results" / "model_speed.json", results)
    print_tables(results)


if __name__ == "__main__":
    main()

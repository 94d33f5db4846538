"""Embedding speed of the real jina-code-embeddings-0.5b architecture (random weights) on CPU/CUDA.

FLOPs do not depend on the weights, so a Qwen2 model built from the 0.5B config (hidden 896, 24
layers, 14 heads, 2 KV heads, MLP 4864, vocab 151936) times exactly like the real one, offline.

Chunks come from a real tree (this Python's standard library, cut by codesearch.source.chunk as
`cs index` cuts it), tokenised by a byte-level BPE trained on that tree. It measures, on one seeded
sample:

- the pipeline (``embed_documents``: tokenise, sort by length, batch by token budget, forward,
  pool, truncate, normalise, restore order): chunks/s, real tokens/s;
- the bare forward pass over exactly the same padded batches (pre-built tensors, model only), and
  the ratio pipeline rate / bare rate (goal >= 0.9);
- padding: real / padded tokens with length-sorted budget batches vs fixed batches in file order;
- bf16 vs fp32 on a smaller sample (bf16 can be very slow on CPUs without native bf16): speed
  ratio and cosine agreement of the 256-dim vectors.

    python bench/embed_speed.py                  # ~3-4 minutes on 2 idle CPU cores
    python bench/embed_speed.py --sample 64 --bf16-sample 16 --device cuda

Prints a table and writes bench/results/embed_speed.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._models import QWEN25_05B, train_bpe  # noqa: E402


def collect_chunks(max_files: int) -> tuple[list[str], str]:
    """Embedding texts of every chunk in the first ``max_files`` stdlib .py files."""
    from codesearch.documents import embedding_text
    from codesearch.source.chunk import chunk_source

    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(lib.glob("*.py"))[:max_files]
    texts: list[str] = []
    for f in files:
        try:
            source = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.extend(embedding_text(c) for c in chunk_source(source, f.name, "python"))
    return texts, f"{lib} ({len(files)} files, codesearch.source.chunk)"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write(path: Path, results: dict[str, Any]) -> None:
    """Write what is known so far, so a run cut short still leaves its numbers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def padding_efficiency(batches: list[list[int]], lengths: list[int]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return real / padded


def bare_forward_seconds(emb: Any, sequences: list[list[int]]) -> tuple[float, float]:
    """Model-only (wall, CPU) seconds over the same batches the pipeline forms (tensors built
    beforehand)."""
    import torch

    from codesearch.embed.batching import pad_batch, plan_batches

    plan = plan_batches([len(s) for s in sequences], emb.token_budget, 256)
    tensors = []
    for batch in plan:
        ids, mask = pad_batch([sequences[i] for i in batch], emb._pad_id, emb.padding_side)
        tensors.append(
            (torch.from_numpy(ids).to(emb.device), torch.from_numpy(mask).to(emb.device))
        )
    sync = torch.cuda.synchronize if emb.device.type == "cuda" else (lambda: None)
    sync()
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for ids, mask in tensors:
            emb.model(input_ids=ids, attention_mask=mask, use_cache=False)
    sync()
    return time.perf_counter() - start, time.process_time() - cpu_start


def timed_pipeline(emb: Any, texts: list[str]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, vectors) for embed_documents(texts)."""
    import torch

    sync = torch.cuda.synchronize if emb.device.type == "cuda" else (lambda: None)
    sync()
    start, cpu_start = time.perf_counter(), time.process_time()
    vectors = emb.embed_documents(texts)
    sync()
    return time.perf_counter() - start, time.process_time() - cpu_start, vectors


def make_embedder(model: Any, tokenizer: Any, dtype: str, device: str, budget: int | None) -> Any:
    from codesearch.embed import EmbedderSpec
    from codesearch.embed.hf import HFEmbedder
    from codesearch.embed.resolve import ResolvedModel

    resolved = ResolvedModel(
        name="qwen2.5-0.5b-arch-random",
        model_id="random:qwen2.5-0.5b-arch",
        revision=None,
        path=Path("."),
        pooling="last",
        prefix_scheme="jina-code-v1",
        dims=(64, 128, 256, 512, 896),
        default_dim=256,
        max_length=512,
        licence="-",
    )
    spec = EmbedderSpec(model=resolved.model_id, dtype=dtype, device=device, token_budget=budget)
    return HFEmbedder(spec, resolved=resolved, loaded=(tokenizer, model))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=24, help="chunks timed in fp32")
    parser.add_argument("--bf16-sample", type=int, default=4, help="chunks timed in fp32 vs bf16")
    parser.add_argument("--files", type=int, default=80, help="stdlib files to chunk")
    parser.add_argument("--vocab", type=int, default=32000, help="BPE vocabulary size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--token-budget", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed rounds (fp32)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "embed_speed.json")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import Qwen2Config, Qwen2Model

    from codesearch.embed.batching import plan_batches

    t0 = time.perf_counter()
    all_texts, source = collect_chunks(args.files)
    tokenizer = train_bpe(all_texts, args.vocab)
    prefix = "Candidate code snippet:\n"
    all_lengths = [
        min(len(ids), 512)
        for ids in tokenizer([prefix + t for t in all_texts], add_special_tokens=True)["input_ids"]
    ]
    rng = random.Random(args.seed)
    picks = rng.sample(range(len(all_texts)), args.sample)
    sample = [all_texts[i] for i in picks]
    small = sample[: args.bf16_sample]
    setup_s = time.perf_counter() - t0

    # Padding waste by token budget, on the whole tree and on small updates (pure, no model).
    padding: dict[str, dict[str, float]] = {}
    for n in (256, len(all_lengths)):
        sub = all_lengths if n == len(all_lengths) else rng.sample(all_lengths, n)
        for budget in (1024, 2048, 4096, 8192):
            plan = plan_batches(sub, budget, 256)
            per = max(1, round(n / len(plan)))
            naive = [list(range(i, min(i + per, n))) for i in range(0, n, per)]
            padding[f"{n} chunks, budget {budget}"] = {
                "sorted": round(padding_efficiency(plan, sub), 3),
                "unsorted": round(padding_efficiency(naive, sub), 3),
            }
    log(f"{len(all_texts)} chunks, tokenizer trained; building the 0.5B model")
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = Qwen2Model(Qwen2Config(**QWEN25_05B)).eval()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())

    results: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "model": {"config": QWEN25_05B, "params": params, "weights": "random"},
        "corpus": {
            "source": source,
            "chunks": len(all_texts),
            "tokenizer": f"byte-level BPE, vocab {args.vocab}, trained on the corpus",
            "tokens_p10_p50_p90_p99": [
                float(x) for x in np.percentile(all_lengths, [10, 50, 90, 99])
            ],
            "tokens_mean": float(np.mean(all_lengths)),
            "sample": args.sample,
            "sample_tokens_mean": statistics.mean(all_lengths[i] for i in picks),
        },
        "padding_efficiency_real_over_padded_tokens": padding,
        "setup_seconds": {
            "chunk_and_tokenizer": round(setup_s, 1),
            "build_model": round(build_s, 1),
        },
    }

    # fp32: pipeline vs bare forward on the same batches.
    fp32 = make_embedder(model, tokenizer, "float32", args.device, args.token_budget)
    fp32.embed_documents(sample[:4])  # warm-up: kernel selection, allocator
    sequences = fp32.tokenize(sample, "nl2code", "document")
    real_tokens = sum(len(s) for s in sequences)
    # Alternate the two and keep each one's best round, so neither pays first-touch costs alone
    # and a burst of load from other processes hurts both alike.
    # CPU seconds are also kept: on a machine shared with other jobs, wall time measures the
    # neighbours as much as the code, while this process's CPU time mostly does not.
    pipe_runs, bare_runs, pipe_cpu, bare_cpu = [], [], [], []
    for r in range(args.rounds):
        wall, cpu, _ = timed_pipeline(fp32, sample)
        pipe_runs.append(wall)
        pipe_cpu.append(cpu)
        wall, cpu = bare_forward_seconds(fp32, sequences)
        bare_runs.append(wall)
        bare_cpu.append(cpu)
        log(f"round {r + 1}: pipeline {pipe_runs[-1]:.1f}s, bare {bare_runs[-1]:.1f}s (wall)")
    pipe_s, bare_s = min(pipe_runs), min(bare_runs)
    lengths = [len(s) for s in sequences]
    sorted_plan = plan_batches(lengths, fp32.token_budget, 256)
    per_batch = max(1, round(len(sequences) / max(1, len(sorted_plan))))
    naive_plan = [
        list(range(i, min(i + per_batch, len(lengths)))) for i in range(0, len(lengths), per_batch)
    ]
    results["fp32"] = {
        "token_budget": fp32.token_budget,
        "batches": len(sorted_plan),
        "real_tokens": real_tokens,
        "rounds": args.rounds,
        "pipeline_seconds_each_round": [round(x, 2) for x in pipe_runs],
        "bare_seconds_each_round": [round(x, 2) for x in bare_runs],
        "pipeline_seconds": round(pipe_s, 2),
        "pipeline_chunks_per_s": round(len(sample) / pipe_s, 3),
        "pipeline_tokens_per_s": round(real_tokens / pipe_s, 1),
        "bare_forward_seconds": round(bare_s, 2),
        "bare_tokens_per_s": round(real_tokens / bare_s, 1),
        "pipeline_over_bare": round(bare_s / pipe_s, 3),
        "pipeline_cpu_seconds_each_round": [round(x, 2) for x in pipe_cpu],
        "bare_cpu_seconds_each_round": [round(x, 2) for x in bare_cpu],
        "pipeline_tokens_per_cpu_s": round(real_tokens / min(pipe_cpu), 1),
        "bare_tokens_per_cpu_s": round(real_tokens / min(bare_cpu), 1),
        "pipeline_over_bare_cpu_time": round(min(bare_cpu) / min(pipe_cpu), 3),
        "padding_efficiency_sorted_budget": round(padding_efficiency(sorted_plan, lengths), 3),
        "padding_efficiency_unsorted_same_batch_count": round(
            padding_efficiency(naive_plan, lengths), 3
        ),
    }

    write(args.out, results)
    log(f"fp32 done: {results['fp32']['pipeline_tokens_per_s']} tokens/s; bf16 next")

    # bf16 vs fp32 on a small sample: speed and agreement.
    small_seq = fp32.tokenize(small, "nl2code", "document")
    small_tokens = sum(len(s) for s in small_seq)
    f32_s, f32_cpu, f32_vec = timed_pipeline(fp32, small)
    bf16 = make_embedder(
        copy.deepcopy(model), tokenizer, "bfloat16", args.device, args.token_budget
    )
    bf16.embed_documents(small[:1])  # warm-up
    b16_s, b16_cpu, b16_vec = timed_pipeline(bf16, small)
    cos = np.sum(f32_vec * b16_vec, axis=1)
    results["bf16_vs_fp32"] = {
        "sample": len(small),
        "real_tokens": small_tokens,
        "fp32_tokens_per_s": round(small_tokens / f32_s, 1),
        "bf16_tokens_per_s": round(small_tokens / b16_s, 1),
        "bf16_speedup": round(f32_s / b16_s, 3),
        "bf16_speedup_cpu_time": round(f32_cpu / b16_cpu, 3),
        "cosine_min": round(float(cos.min()), 5),
        "cosine_mean": round(float(cos.mean()), 5),
        "dim": 256,
        "auto_choice_rule": "bf16 only if >= 1.2x faster and min cosine >= 0.99",
    }

    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write(args.out, results)

    f, b = results["fp32"], results["bf16_vs_fp32"]
    corpus = results["corpus"]
    print(f"corpus: {corpus['chunks']} chunks from {source}")
    p10, p50, p90, p99 = corpus["tokens_p10_p50_p90_p99"]
    print(
        f"tokens per chunk (with prefix, cut at 512): p10 {p10:.0f}  p50 {p50:.0f}  "
        f"p90 {p90:.0f}  p99 {p99:.0f}  mean {corpus['tokens_mean']:.0f}"
    )
    print(
        f"model: Qwen2 0.5B architecture, {params / 1e6:.0f}M params, random weights; "
        f"device {args.device}, {torch.get_num_threads()} threads; "
        f"load average {results['machine']['load_average_at_start'][0]} at start, "
        f"{results['machine']['load_average_at_end'][0]} at end"
    )
    print()
    print(f"{'measure':<44}{'value':>12}")
    rows = [
        (f"fp32 pipeline chunks/s ({args.sample} chunks)", f["pipeline_chunks_per_s"]),
        ("fp32 pipeline tokens/s", f["pipeline_tokens_per_s"]),
        ("fp32 bare forward tokens/s (same batches)", f["bare_tokens_per_s"]),
        ("pipeline rate / bare rate (goal >= 0.9)", f["pipeline_over_bare"]),
        ("fp32 pipeline tokens per CPU-second", f["pipeline_tokens_per_cpu_s"]),
        ("fp32 bare forward tokens per CPU-second", f["bare_tokens_per_cpu_s"]),
        ("same ratio on CPU time", f["pipeline_over_bare_cpu_time"]),
        ("padding efficiency, sorted + token budget", f["padding_efficiency_sorted_budget"]),
        (
            "padding efficiency, unsorted, same batches",
            f["padding_efficiency_unsorted_same_batch_count"],
        ),
        (f"bf16 tokens/s ({b['sample']} chunks)", b["bf16_tokens_per_s"]),
        (f"fp32 tokens/s ({b['sample']} chunks)", b["fp32_tokens_per_s"]),
        ("bf16 speed / fp32 speed", b["bf16_speedup"]),
        ("bf16 speed / fp32 speed, CPU time", b["bf16_speedup_cpu_time"]),
        ("cosine(bf16, fp32) min, dim 256", b["cosine_min"]),
        ("cosine(bf16, fp32) mean, dim 256", b["cosine_mean"]),
    ]
    for name, value in rows:
        print(f"{name:<44}{value:>12}")
    print("\npadding efficiency (real / padded tokens)     sorted+budget    unsorted")
    for name, eff in padding.items():
        print(f"  {name:<42}{eff['sorted']:>13}{eff['unsorted']:>12}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""The Ray engine: embed what an index run needs on a Ray cluster, then commit exactly as locally.

``cs index --engine ray`` does the same run as the local engine, with one extra step in front:

1. Under the writer lock, check (or create) the manifest and work out, by stat and hash, which files
   changed; chunk them and keep the texts whose content hash is neither in the index (same file,
   unchanged function) nor in the embedding cache. This is the same diff the local indexer makes.
2. Embed those texts through Ray Data: ``from_items`` over the texts sorted by length (so each
   Ray batch holds texts of similar length and pads little: the local engine's length bucketing),
   ``map_batches`` with an actor class that loads the model once per actor (``concurrency``
   actors, one GPU each when the cluster has GPUs). Vectors stream back to the driver and go into
   the embedding cache as they arrive, so a crash keeps the work done.
3. Run the ordinary :class:`codesearch.index.indexer.Indexer`: every vector it needs is now in the cache,
   so it commits through the same batched path, with the same manifest checks and crash safety.

Chunk ids come from the same chunker and :func:`codesearch.index.indexer.chunk_records`, and vectors from
the same model code, so both engines produce the same index. Ray is an optional extra, imported only
here and only when this engine runs.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from codesearch.documents import (
    DOCUMENT_TASK,
    Document,
    chunk_documents,
    document_style,
    embed_documents,
)
from codesearch.errors import UsageError
from codesearch.index.indexer import (
    Indexer,
    IndexOptions,
    IndexProgress,
    IndexStats,
    ProgressFn,
)
from codesearch.index.plan import plan
from codesearch.store.store import Store, resolve_index_uri

ENGINES = ("local", "ray")
# Texts per Ray batch. Each actor batches again by tokens inside (plan_batches), so this only sets
# how much work one task carries: large enough to amortise scheduling, small enough to balance.
RAY_BATCH_TEXTS = 256
RAY_HINT = "install the Ray extra: pip install 'codesearch[ray]'"


def import_ray() -> Any:
    """Import ray (with Ray Data), or a UsageError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate extra of ray
    except ImportError as err:
        raise UsageError(f"--engine ray needs Ray Data, which is not installed ({err.name})",
                         hint=RAY_HINT) from err
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` of a running cluster (None: the one already initialised in
    this process, else RAY_ADDRESS, else a local instance); ``workers`` actors (None: one per GPU
    when the cluster has GPUs, else one per 4 CPUs, at least 1); ``gpus_per_worker`` (None: 1 when
    the cluster has GPUs, else 0)."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    batch_texts: int = RAY_BATCH_TEXTS


class EmbedActor:
    """One model per actor process; Ray Data calls it with batches of ``{"i", "text"}`` rows, plus
    ``view0``, ``view1``... for a writing with short views (see documents.embed_documents)."""

    def __init__(self, model: str, dim: int | None, device: str | None, dtype: str | None,
                 threads: int, precision: str | None = None) -> None:
        import torch

        from codesearch.embed import load_embedder

        # Several actors share a node: each keeps to the CPUs Ray granted it instead of all cores.
        torch.set_num_threads(max(1, threads))
        self.embedder = load_embedder(model, dim=dim, device=device, dtype=dtype,
                                      precision=precision)

    def _embed(self, texts: Sequence[str],
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.embedder.embed_documents(list(texts), task=DOCUMENT_TASK)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        columns = sorted((key for key in batch if key.startswith("view")), key=lambda k: int(k[4:]))
        extras = [tuple(str(batch[key][i]) for key in columns) for i in range(len(texts))]
        vectors = embed_documents(self._embed, list(zip(texts, extras, strict=True)))
        return {"i": np.asarray(batch["i"]), "vector": np.asarray(vectors, dtype=np.float32)}


def _connect(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    ray.init(**kwargs)


def _plan_workers(ray: Any, opts: RayOptions) -> tuple[int, float]:
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    per_gpu = opts.gpus_per_worker if opts.gpus_per_worker is not None else (1.0 if gpus else 0.0)
    if opts.workers is not None:
        workers = opts.workers
    elif per_gpu:
        workers = int(gpus // per_gpu)
    else:
        workers = int(resources.get("CPU", 1) // 4)
    return max(1, workers), per_gpu


def _worker_env() -> dict[str, str]:
    """The settings a worker's embedder must share with this process (model cache, offline mode,
    device, the measured CPU dtype), so an actor loads the same model the same way."""
    keep = ("CS_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}


def ray_embed(docs: Sequence[Document], *, model: str, dim: int | None, device: str | None,
              dtype: str | None = None, precision: str | None = None,
              opts: RayOptions | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Embed chunk ``docs`` (document side, as documents.embed_documents) on Ray; yields
    ``(indices, vectors)`` blocks as they finish,
    covering every index exactly once. ``model`` must resolve on every worker (a preset or hub id
    in each node's cache, or a directory every node can read). ``dtype`` (None: each actor's
    "auto") should be what the local engine uses, for identical vectors."""
    ray = import_ray()
    opts = opts or RayOptions()
    if not docs:
        return
    _connect(ray, opts.address)
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_progress = False
    workers, per_gpu = _plan_workers(ray, opts)
    # Longest first, as the local embedder sorts: neighbouring rows (and so each Ray batch) have
    # similar lengths and the actor pads little.
    order = sorted(range(len(docs)), key=lambda i: (-len(docs[i][0]), i))
    items = [{"i": i, "text": docs[i][0]} | {f"view{j}": v for j, v in enumerate(docs[i][1])}
             for i in order]
    n_blocks = max(1, min(len(items) // max(1, opts.batch_texts), 4 * workers * 4))
    ds = ray.data.from_items(items, override_num_blocks=n_blocks)
    ds = ds.map_batches(
        EmbedActor,
        fn_constructor_kwargs={"model": model, "dim": dim, "device": device, "dtype": dtype,
                               "threads": int(max(1, opts.cpus_per_worker)),
                               "precision": precision},
        runtime_env={"env_vars": _worker_env()},
        batch_size=opts.batch_texts, batch_format="numpy",
        compute=ActorPoolStrategy(size=workers),
        num_gpus=per_gpu, num_cpus=opts.cpus_per_worker,
    )
    for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield np.asarray(block["i"], dtype=np.int64), np.asarray(block["vector"], dtype=np.float32)


@dataclass
class _Pending:
    docs: list[Document]
    hashes: list[str]


def _missing_docs(indexer: Indexer) -> _Pending:
    """What a run of ``indexer`` would embed: the documents of chunks of changed files whose
    content hash is in neither the index (for that file) nor the embedding cache. Call after
    ``prepare()``."""
    from codesearch.source.chunk import chunk_source
    from codesearch.source.discover import Discovery, read_source

    assert indexer.cache is not None and indexer.manifest is not None
    style = document_style(indexer.manifest.prefix_scheme)
    records = indexer.store.file_records()
    the_plan = plan(Discovery(indexer.root, max_file_bytes=indexer.options.max_file_bytes),
                    records)
    docs: dict[str, Document] = {}
    reindexed: list[str] = []
    for f in the_plan.candidates:
        try:
            text = read_source(f)
        except OSError:
            continue  # the indexer reports it
        old = records.get(f.rel)
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if old is not None and old.hash == digest:
            continue
        try:
            chunks = chunk_source(text, f.rel, f.language)
        except Exception:  # noqa: BLE001 - the indexer reports the bad file; nothing to embed
            continue
        if old is not None:
            reindexed.append(f.rel)
        chunk_documents(chunks, style, into=docs)
    if reindexed:
        for start in range(0, len(reindexed), 500):
            stored = indexer.store.vectors_by_hash(reindexed[start:start + 500],
                                                   indexer.manifest.dim)
            for h in stored:
                docs.pop(h, None)
    if docs:
        cached = indexer.cache.get(sorted(docs))
        for h in cached:
            docs.pop(h, None)
    hashes = sorted(docs)
    return _Pending([docs[h] for h in hashes], hashes)


def index_root_ray(root: Path, *, index_uri: str | None = None,
                   index_dir: str | Path | None = None,
                   storage_options: dict[str, str] | None = None,
                   options: IndexOptions | None = None, ray_options: RayOptions | None = None,
                   progress: ProgressFn | None = None,
                   notify: Callable[[str], None] | None = None) -> IndexStats:
    """:func:`codesearch.index.indexer.index_root` with the embedding done on Ray (see the module doc).
    The returned stats count the texts Ray embedded as ``chunks_embedded``."""
    import_ray()  # fail before touching the index
    root = root.expanduser()
    if not root.exists():
        raise UsageError(f"{root} does not exist")
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory", hint="cs index takes a directory")
    options = options or IndexOptions()
    report = progress or (lambda p: None)
    uri = resolve_index_uri(root, index_dir=index_dir, index_uri=index_uri)
    store = Store.open(uri, storage_options=storage_options)
    start = time.monotonic()

    pre = Indexer(root, store, options, notify=notify)
    embedded = 0
    with pre.lock():
        manifest = pre.prepare()
        report(IndexProgress("scan"))
        pending = _missing_docs(pre)
        if pending.docs:
            assert pre.cache is not None
            # The driver's choice of dtype when it has loaded the model (a new index), else the
            # same rule it would apply: actors read the driver's settings (_worker_env).
            handle = pre.handle
            emb = handle.get() if handle and handle.loaded else None
            loaded = getattr(emb, "dtype", None)
            dtype = str(loaded).removeprefix("torch.") if loaded is not None else None
            # int8 and float vectors never mix: actors run the driver's precision (or the index's).
            precision = getattr(emb, "precision", None) or getattr(handle, "precision", None)
            for indices, vectors in ray_embed(pending.docs, model=manifest.model,
                                              dim=manifest.dim, device=options.device,
                                              dtype=dtype, precision=precision,
                                              opts=ray_options):
                # Into the cache as they arrive: an interrupted run keeps what Ray finished.
                pre.cache.put([pending.hashes[i] for i in indices], vectors)
                embedded += len(indices)
                report(IndexProgress("embed", 0, 0, embedded, 0))

    # The ordinary run, whose every vector is now in the cache. A file edited between the two steps
    # is embedded locally by the same model, so the index is right whatever happens meanwhile.
    final = Indexer(root, store, replace(options, rebuild=False), progress=progress,
                    notify=notify)
    stats = final.run()
    stats.rebuilt = pre.stats.rebuilt
    stats.chunks_embedded += embedded
    stats.chunks_reused = max(0, stats.chunks_reused - embedded)
    stats.seconds = time.monotonic() - start
    if embedded and final.manifest is not None:
        with final.lock():  # record the corrected summary, as the local engine's run does
            store.write_manifest(replace(final.manifest, last_run=stats.to_dict()))
    return stats

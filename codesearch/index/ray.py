"""The Ray engine: embed what an index run needs on a Ray cluster, then commit exactly as locally.

``cs index --engine ray`` is the ordinary :class:`codesearch.index.indexer.Indexer` run, whose phase
2 first hands what it is missing to Ray:

1. Phase 1 as always, under the writer lock: the manifest checks, the diff by stat and hash, every
   changed file chunked and committed, vectors the index or the embedding cache already hold
   reused. Every other chunk is left without its vector (``run(defer=True)``, whatever the size
   of the change), so the tree is lexically searchable before Ray starts.
2. What phase 2 would embed (:meth:`Indexer.missing_documents`: the indexer's own diff) is
   embedded through Ray Data: ``from_items`` over the texts sorted by length (so each Ray batch
   holds texts of similar length and pads little: the local engine's length bucketing),
   ``map_batches`` with an actor class that loads the model once per actor (``concurrency``
   actors, one GPU each when the cluster has GPUs). Vectors stream back to the driver and go into
   the embedding cache as they arrive, so a crash keeps the work done.
3. Phase 2 as always (:meth:`Indexer.fill_vectors`): every vector it needs is now in the cache, so
   it commits them through the same batched path, with the same crash safety; a file edited
   meanwhile is left to the next run, as locally.

Chunk ids come from the same chunker and indexer, and vectors from the same model code
(documents.embed_documents), so both engines produce the same index. Ray is an optional extra,
imported only here and only when this engine runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codesearch.documents import DOCUMENT_TASK, Document, embed_batch, embed_documents
from codesearch.embed import load_embedder
from codesearch.errors import UsageError
from codesearch.index.indexer import (
    Indexer,
    IndexOptions,
    IndexProgress,
    IndexStats,
    ProgressFn,
)
from codesearch.location import IndexLocation
from codesearch.store.store import Store

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
    """One model per actor process; Ray Data calls it with batches of ``{"i", "text", "task"}``
    rows (task: the document side, documents.Document), ``views`` (how many views it has), plus
    ``view0``, ``view1``... for a writing with short views (see documents.embed_documents)."""

    def __init__(self, model: str, dim: int | None, device: str | None, dtype: str | None,
                 threads: int, precision: str | None = None) -> None:
        from codesearch.embed.choice import set_model_threads

        # Several actors share a node: each keeps to the CPUs Ray granted it instead of all cores.
        set_model_threads(threads)
        self.embedder = load_embedder(model, dim=dim, device=device, dtype=dtype,
                                      precision=precision)

    def _embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
               task: str = DOCUMENT_TASK) -> np.ndarray:
        return embed_batch(self.embedder, texts, task=task)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        tasks = [str(t) for t in batch["task"]]
        columns = sorted((key for key in batch if key.startswith("view") and key[4:].isdigit()),
                         key=lambda k: int(k[4:]))
        extras = [tuple(str(batch[key][i]) for key in columns[:int(batch["views"][i])])
                  for i in range(len(texts))]
        vectors = embed_documents(self._embed, [Document(*d) for d in zip(texts, extras, tasks,
                                                                            strict=True)])
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
    # Every row has the same columns (Ray gives a missing one as None): a doc chunk has no views
    # where code has two, so the view columns are padded and "views" says how many are real.
    width = max(len(d.views) for d in docs)
    items = [{"i": i, "text": docs[i].text, "task": docs[i].task, "views": len(docs[i].views)}
             | {f"view{j}": docs[i].views[j] if j < len(docs[i].views) else ""
                for j in range(width)} for i in order]
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


class _RayIndexer(Indexer):
    """The local indexer whose phase 2 first embeds on Ray everything it is missing
    (:meth:`Indexer.missing_documents`), into the embedding cache, where the ordinary phase 2
    then finds every vector."""

    def __init__(self, *args: Any, ray_options: RayOptions | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ray_options = ray_options

    def fill_vectors(self, *, should_stop: Callable[[], bool] | None = None) -> int:
        embedded = self._embed_on_ray()
        filled = super().fill_vectors(should_stop=should_stop)
        # What Ray embedded came back through the cache: count it as embedded, not reused.
        self.stats.chunks_embedded += embedded
        self.stats.chunks_reused = max(0, self.stats.chunks_reused - embedded)
        return filled

    def _embed_on_ray(self) -> int:
        """Embed :meth:`missing_documents` on Ray into the cache; returns how many."""
        assert self.cache is not None and self.manifest is not None
        pending = self.missing_documents()
        if not pending:
            return 0
        hashes = list(pending)
        docs = [pending[h] for h in hashes]
        # The driver's choice of dtype when it has loaded the model (a new index), else the
        # same rule it would apply: actors read the driver's settings (_worker_env).
        handle = self.handle
        emb = handle.get() if handle and handle.loaded else None
        loaded = getattr(emb, "dtype", None)
        dtype = str(loaded).removeprefix("torch.") if loaded is not None else None
        # int8 and float vectors never mix: actors run the driver's precision (or the index's).
        precision = getattr(emb, "precision", None) or getattr(handle, "precision", None)
        embedded = 0
        for indices, vectors in ray_embed(docs, model=self.manifest.model, dim=self.manifest.dim,
                                          device=self.options.device, dtype=dtype,
                                          precision=precision, opts=self.ray_options):
            # Into the cache as they arrive: an interrupted run keeps what Ray finished.
            self.cache.put([hashes[i] for i in indices], vectors)
            embedded += len(indices)
            self._progress(IndexProgress("embed", 0, 0, embedded, 0))
        return embedded


def index_root_ray(location: IndexLocation, *, options: IndexOptions | None = None,
                   ray_options: RayOptions | None = None, progress: ProgressFn | None = None,
                   notify: Callable[[str], None] | None = None) -> IndexStats:
    """:func:`codesearch.index.run.index_root` with the embedding done on Ray (see the module
    doc). The returned stats count the texts Ray embedded as ``chunks_embedded``."""
    import_ray()  # fail before touching the index
    store = Store.at(location)
    indexer = _RayIndexer(location.root, store, options, progress=progress, notify=notify,
                          ray_options=ray_options)
    return indexer.run(defer=True)

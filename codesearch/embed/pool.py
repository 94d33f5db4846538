"""Loaded models shared by threads: one pool per process, so each (model, dim, device, precision)
loads once for every index and request that needs it (a query server, ``cs watch``'s indexer and
its queries, ``cs find`` in-process)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from codesearch.embed import Embedder, load_embedder
from codesearch.embed.choice import set_model_threads

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

Notify = Callable[[str], None]


class _ModelThread:
    """An embedder whose calls all run, one at a time, on one long-lived thread of its own.

    One at a time: fast tokenizers fail ("Already borrowed") when one instance is used by two
    threads at once, and one forward pass at a time is what a CPU does best anyway. One thread:
    torch's first operations on a new thread are slow (its intra-op thread pool starts again:
    ~800 ms for a MiniLM query on a loaded 2-core machine, against 20-30 ms on a thread that has
    run one before), and the server answers each connection on a new thread."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cs-model")
        self.model_id = inner.model_id
        self.revision = inner.revision
        self.dim = inner.dim
        self.prefix_scheme = inner.prefix_scheme
        self.max_length = inner.max_length

    def embed_queries(self, texts: Sequence[str], task: str = "nl2code") -> np.ndarray:
        return self._thread.submit(self._inner.embed_queries, texts, task=task).result()

    def embed_documents(self, texts: Sequence[str], task: str = "nl2code",
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self._thread.submit(self._inner.embed_documents, texts, task=task,
                                   progress=progress).result()

    def token_vectors(self, texts: Sequence[str], task: str, side: str,
                      max_length: int | None = None) -> list[tuple[np.ndarray, np.ndarray]] | None:
        return self._thread.submit(self._inner.token_vectors, texts, task, side,
                                   max_length).result()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class EmbedderPool:
    """Loaded models, shared by every request (and by a watcher's indexer): ``pool.load`` has the
    signature of the ``loader`` that :class:`~codesearch.query.searcher.Searcher` and
    :class:`~codesearch.index.indexer.Indexer` accept. Each model loads once, even when several
    threads ask for it at the same time; calls into one model run one at a time on its own
    thread."""

    def __init__(self, notify: Notify | None = None,
                 load: Callable[..., Embedder] | None = None, *,
                 queries_only: bool = False) -> None:
        """``queries_only``: this process embeds queries only (a query server, not ``cs watch``,
        which indexes too): models run on :func:`limit_model_threads` threads, as ``cs find``
        in-process does (:func:`query_loader`), so both compute the same vectors."""
        self._notify = notify
        self._load = load
        self._queries_only = queries_only
        self._lock = threading.Lock()
        self._models: dict[tuple[str, int | None, str | None, str | None], _ModelThread] = {}
        self._loading: dict[tuple[str, int | None, str | None, str | None], threading.Lock] = {}

    def load(self, model: str, *, dim: int | None = None, device: str | None = None,
             precision: str | None = None, **_: Any) -> Embedder:
        """The embedder for (model, dim, device, precision), loading it on first use
        (``precision`` as :func:`codesearch.embed.load_embedder` takes it: an index's own kind,
        float or int8, so one server answers float and int8 indexes alike)."""
        key = (model, dim, device, precision)
        with self._lock:
            if key in self._models:
                return self._models[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one loader per key; the others wait for it instead of loading a copy
            with self._lock:
                if key in self._models:
                    return self._models[key]
            if self._load is not None:
                inner = self._load(model, dim=dim, device=device, precision=precision)
            elif self._queries_only:
                inner = query_loader(self._notify)(model, dim=dim, device=device,
                                                   precision=precision)
            else:
                inner = load_embedder(model, dim=dim, device=device, precision=precision,
                                      notify=self._notify)
            wrapped = _ModelThread(inner)
            # The model thread's first forward pass is the slow one: pay it now, not in a query.
            wrapped.embed_queries(["warm up"])
            with self._lock:
                self._models[key] = wrapped
            return wrapped

    def loaded(self) -> list[str]:
        """``model (dim)`` for every loaded model."""
        with self._lock:
            return [f"{m} (dim {e.dim})" for (m, _, _, _), e in self._models.items()]


def query_loader(notify: Notify | None = None) -> Callable[..., Embedder]:
    """A model loader for a process that only embeds queries (``cs find``, ``cs similar``
    in-process): the same thread count as a query server (:func:`limit_model_threads`), so both
    paths compute the same query vectors (in bf16, one thread and two differ in the third
    decimal) and print the same results."""

    def load(model: str, *, dim: int | None = None, device: str | None = None,
             precision: str | None = None, **_: Any) -> Embedder:
        limit_model_threads()
        return load_embedder(model, dim=dim, device=device, precision=precision, notify=notify)

    return load


def limit_model_threads() -> None:
    """Run a query process's forward passes (torch or ONNX Runtime) on ``CS_SERVER_THREADS``
    cores (default 1), without importing torch. A query
    is a few tokens: more threads save little, and each forward pass then waits for every
    thread of the pool to be scheduled, which on a busy machine cost ~1 s per MiniLM query
    against ~40 ms on one thread (measured on the shared 2-core machine, load 7)."""
    try:
        threads = max(1, int(os.environ.get("CS_SERVER_THREADS", "1")))
    except ValueError:
        threads = 1
    set_model_threads(threads)

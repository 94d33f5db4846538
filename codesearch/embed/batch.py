"""A pure batch function over texts, for a local loop or a distributed engine (Ray Data).

Each process loads a model once per spec and keeps it. With Ray Data::

    spec = EmbedderSpec(model="jina-code-0.5b", dim=256)
    ds = ds.map_batches(BatchEmbedFn, fn_constructor_kwargs={"spec": spec}, batch_size=512,
                        concurrency=2, batch_format="numpy")  # num_gpus=1: a GPU per actor

Rows come back in the batch's order with a ``vector`` column, exactly as ``embed_batch`` would
compute them locally (same tokenisation, length sorting inside the batch, pooling, truncation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from codesearch.embed import EmbedderSpec

_LOADED: dict[EmbedderSpec, Any] = {}


def embedder_for(spec: EmbedderSpec) -> Any:
    """The embedder for ``spec`` in this process, loaded on first use and then reused."""
    if spec not in _LOADED:
        _LOADED[spec] = spec.load()
    return _LOADED[spec]


def embed_batch(
    spec: EmbedderSpec, texts: Sequence[str], task: str = "nl2code", side: str = "document"
) -> np.ndarray:
    """(len(texts), dim) float32 normalised vectors for ``texts``; depends only on its arguments."""
    return embedder_for(spec).embed(list(texts), task=task, side=side)


class BatchEmbedFn:
    """A callable class for ``map_batches``: reads ``text_column``, adds ``vector_column``."""

    def __init__(
        self,
        spec: EmbedderSpec,
        task: str = "nl2code",
        side: str = "document",
        text_column: str = "text",
        vector_column: str = "vector",
    ) -> None:
        self.embedder = embedder_for(spec)
        self.task, self.side = task, side
        self.text_column, self.vector_column = text_column, vector_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column]]
        out = dict(batch)
        out[self.vector_column] = self.embedder.embed(texts, task=self.task, side=self.side)
        return out

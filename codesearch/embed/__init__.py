"""Embedders: texts -> L2-normalised float32 vectors for a task and side.

CONTRACT (owned by the embedding work, issue 3; other modules rely on these names):

    TASKS = ("nl2code", "qa", "code2code", "code2nl", "code2completion")

    class Embedder(Protocol):
        model_id: str            # hub id or absolute local path
        revision: str | None     # pinned hub revision, or None for a local directory
        dim: int                 # output dimension after Matryoshka truncation
        prefix_scheme: str       # e.g. "jina-code-v1" or "none": recorded in index manifests
        max_length: int
        def embed_queries(self, texts: Sequence[str], task: str = "nl2code") -> np.ndarray: ...
        def embed_documents(self, texts: Sequence[str], task: str = "nl2code",
                            progress: Callable[[int], None] | None = None) -> np.ndarray: ...
        # (n, dim) float32, rows L2-normalised; progress(k) is called as k more texts finish.
        def token_vectors(self, texts, task, side, max_length=None) -> list[(ids, vectors)] | None
        # per text: token ids and L2-normalised token states (None: the engine only pools)

    def load_embedder(model: str | None = None, *, dim: int | None = None,
                      device: str | None = None, pooling: str | None = None,
                      max_length: int | None = None) -> Embedder
        # model: a preset ("jina-code-0.5b", "jina-code-1.5b", "qwen3-0.6b", "minilm"), a hub id
        # or a local dir. A sentence-transformers dir uses its own recipe (st_recipe.py); another
        # local dir with a Qwen2 config defaults to last-token pooling and jina prefixes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from codesearch.embed.presets import POOLINGS, PRESETS, SIDES, TASKS, ModelPreset, prefix_for

if TYPE_CHECKING:
    import numpy as np

    from codesearch.embed.base import BaseEmbedder

__all__ = [
    "POOLINGS",
    "PRESETS",
    "SIDES",
    "TASKS",
    "Embedder",
    "EmbedderSpec",
    "ModelPreset",
    "load_embedder",
    "prefix_for",
]


@runtime_checkable
class Embedder(Protocol):
    """What the indexer and search need from a model. Rows are float32 and L2-normalised."""

    model_id: str
    revision: str | None
    dim: int
    prefix_scheme: str
    max_length: int

    def embed_queries(self, texts: Sequence[str], task: str = "nl2code") -> np.ndarray: ...

    def embed_documents(
        self,
        texts: Sequence[str],
        task: str = "nl2code",
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray: ...

    def token_vectors(self, texts: Sequence[str], task: str, side: str,
                      max_length: int | None = None
                      ) -> list[tuple[np.ndarray, np.ndarray]] | None: ...
    # each text's token ids and normalised token vectors; None if the engine only pools


@dataclass(frozen=True)
class EmbedderSpec:
    """Everything needed to build an embedder, small and picklable: send it to another process
    (a Ray actor, a worker) and call ``load()`` there. ``None`` fields take the model's defaults.

    ``model`` is a preset, a hub id (``org/name`` or ``org/name@revision``) or a local directory
    (made absolute by load_embedder so the spec means the same thing elsewhere).
    """

    model: str
    dim: int | None = None
    device: str | None = None
    pooling: str | None = None  # "last", "mean" or "cls"
    max_length: int | None = None
    dtype: str | None = None  # "auto", "float32" or "bfloat16"
    prefix_scheme: str | None = None  # "jina-code-v1" or "none"
    token_budget: int | None = None  # padded tokens per forward pass
    padding_side: str = "right"
    # "auto", "fp32", "bf16" or "int8" (None: CS_PRECISION, else auto); wins over dtype.
    precision: str | None = None
    # "auto", "torch" or "onnx" (None: CS_ENGINE, else auto; embed/engine.py decides).
    engine: str | None = None

    def load(self, notify: Callable[[str], None] | None = None) -> BaseEmbedder:
        """Resolve, download if needed and allowed, and load the model this spec names."""
        from codesearch.embed.engine import load

        return load(self, notify=notify)


def load_embedder(
    model: str | None = None,
    *,
    dim: int | None = None,
    device: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    dtype: str | None = None,
    prefix_scheme: str | None = None,
    token_budget: int | None = None,
    padding_side: str = "right",
    precision: str | None = None,
    engine: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> BaseEmbedder:
    """Load ``model`` (default: CS_MODEL, else jina-code-0.5b) as an Embedder.

    Presets carry their pooling, prefixes and valid dims; a sentence-transformers directory or hub
    id its own pooling, prompts and token limit (embed.st_recipe); another one with a Qwen2
    config gets last-token pooling and jina prefixes, other encoders mean pooling and no prefix;
    ``pooling`` and ``prefix_scheme`` override. ``dim`` defaults to 256 where offered; an invalid
    dim raises ModelError listing the valid ones. Device: ``device``, else CS_DEVICE, else CUDA
    (bf16) when present, else CPU. ``precision`` (else CS_PRECISION, else auto): fp32, bf16, int8
    (ONNX Runtime, CPU only), or auto: on a CPU the fastest of those measured on this model whose
    vectors agree with fp32's to cosine >= 0.99 (once, remembered). ``engine`` (else CS_ENGINE,
    else auto): onnx (ONNX Runtime, CPU, fp32 or int8: the only engine without torch) or torch
    (fp32, bf16, CUDA); see embed/engine.py for how auto picks.
    ``notify`` receives one-line notices (download starting, dtype measurement) for the CLI.
    Never runs code from a model repository (trust_remote_code is always False).
    """
    from codesearch.config import default_model
    from codesearch.embed.resolve import normalize_model_name

    spec = EmbedderSpec(
        model=normalize_model_name(model or default_model()),
        dim=dim,
        device=device,
        pooling=pooling,
        max_length=max_length,
        dtype=dtype,
        prefix_scheme=prefix_scheme,
        token_budget=token_budget,
        padding_side=padding_side,
        precision=precision,
        engine=engine,
    )
    return spec.load(notify=notify)

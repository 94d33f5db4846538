"""What every engine does the same way around its forward pass: the model's identity and valid
dims, the task prefix and tokenising, sorting by length and batching by token budget, Matryoshka
truncation and normalisation, input order restored. An engine (hf.py: torch; ort.py: ONNX
Runtime) supplies only ``forward_pooled``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from codesearch.embed.batching import plan_batches
from codesearch.embed.pooling import check_dim, truncate_normalize
from codesearch.embed.presets import check_side, check_task
from codesearch.embed.resolve import ResolvedModel
from codesearch.embed.tokenizer import TextTokenizer
from codesearch.errors import ModelError

if TYPE_CHECKING:
    from codesearch.embed import EmbedderSpec

MAX_BATCH = 256


class BaseEmbedder:
    """Texts -> (n, dim) float32 L2-normalised vectors; subclasses run the model.

    Pickling sends only the spec; unpickling loads the model again (once per process), which is
    what a Ray actor or a worker process wants.
    """

    spec: EmbedderSpec
    tokenizer: TextTokenizer
    token_budget: int
    precision: str
    engine: str

    def _identify(self, spec: EmbedderSpec, res: ResolvedModel) -> None:
        """The fields every engine shares, checked before any weights load (a wrong --dim fails
        in milliseconds)."""
        self.spec = spec
        self.resolved = res
        self.name = res.name
        self.model_id = res.model_id
        self.revision = res.revision
        self.pooling = res.pooling
        self.prefix_scheme = res.prefix_scheme
        self.max_length = res.max_length
        self.dims = res.dims
        self.licence = res.licence
        self.dim = check_dim(
            spec.dim if spec.dim is not None else res.default_dim, res.dims, res.name
        )
        if spec.padding_side not in ("left", "right"):
            raise ModelError(
                f"unknown padding side '{spec.padding_side}'", hint="use left or right"
            )
        self.padding_side = spec.padding_side

    def _special_ids(self) -> None:
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else self.tokenizer.eos_id
        self._pad_id = int(pad) if pad is not None else 0
        eos = self.tokenizer.eos_id
        self._filler_id = int(eos) if eos is not None else self._pad_id
        self._end_id: int | None = None
        if self.resolved.end_token is not None:
            end_id = self.tokenizer.token_id(self.resolved.end_token)
            if end_id is None:
                raise ModelError(f"{self.name}'s tokenizer has no {self.resolved.end_token} token",
                                 hint="check that the model files are complete")
            self._end_id = end_id

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_load_from_spec, (self.spec,))

    def forward_pooled(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """One forward pass over ``sequences``: pooled full-size float32 vectors, before
        truncation and normalisation."""
        raise NotImplementedError

    def forward_tokens(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray] | None:
        """One forward pass over ``sequences``: each one's last hidden states, (its length,
        hidden) float32; None when the engine yields only pooled vectors (a graph that pools)."""
        return None

    def token_vectors(self, texts: Sequence[str], task: str, side: str,
                      max_length: int | None = None) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Each text's token ids and L2-normalised contextual token vectors (at most
        ``max_length`` tokens, None: the model's), as ranking.token_match reads them; None when
        this engine yields only pooled vectors."""
        sequences = self.tokenize(texts, task, side, max_length)
        out: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * len(sequences)
        for batch in plan_batches([len(s) for s in sequences], self.token_budget, MAX_BATCH):
            states = self.forward_tokens([sequences[i] for i in batch])
            if states is None:
                return None
            for i, hidden in zip(batch, states, strict=True):
                norms = np.linalg.norm(hidden, axis=1, keepdims=True)
                out[i] = (np.asarray(sequences[i], dtype=np.int64),
                          hidden / np.maximum(norms, 1e-12))
        return out

    def tokenize(self, texts: Sequence[str], task: str, side: str,
                 max_length: int | None = None) -> list[list[int]]:
        """Token ids of ``prefix + text`` for each text, truncated to ``max_length`` tokens (None:
        the model's; the model's end token kept last, when it has one)."""
        limit = min(max_length or self.max_length, self.max_length)
        prefix = self.resolved.prefix(check_task(task), check_side(side))
        if not texts:
            return []
        inputs = [prefix + t for t in texts]
        if self.resolved.lowercase:
            inputs = [t.lower() for t in inputs]
        encoded = self.tokenizer.encode(inputs, limit)
        end = self._end_id
        if end is not None:
            # What the current tokenizer appends itself, for a snapshot whose tokenizer does not.
            encoded = [ids if ids and ids[-1] == end else [*ids[: limit - 1], end]
                       for ids in encoded]
        # An empty text with no prefix and no special tokens would be a zero-length row.
        return [ids if ids else [self._filler_id] for ids in encoded]

    def embed(
        self,
        texts: Sequence[str],
        task: str = "nl2code",
        side: str = "document",
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """(len(texts), dim) float32 rows, L2-normalised, in input order; ``progress(k)`` is called
        as each batch of k texts finishes."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        sequences = self.tokenize(texts, task, side)
        out = np.empty((len(sequences), self.dim), dtype=np.float32)
        lengths = [len(s) for s in sequences]
        for batch in plan_batches(lengths, self.token_budget, MAX_BATCH):
            pooled = self.forward_pooled([sequences[i] for i in batch])
            out[batch] = truncate_normalize(pooled, self.dim)
            if progress is not None:
                progress(len(batch))
        return out

    def embed_queries(self, texts: Sequence[str], task: str = "nl2code") -> np.ndarray:
        """Vectors for search queries (the task's query prefix)."""
        return self.embed(texts, task=task, side="query")

    def embed_documents(
        self,
        texts: Sequence[str],
        task: str = "nl2code",
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors for indexed documents (the task's document prefix)."""
        return self.embed(texts, task=task, side="document", progress=progress)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, dim={self.dim}, pooling={self.pooling!r}, "
            f"prefixes={self.prefix_scheme!r}, engine={self.engine}, "
            f"precision={self.precision})"
        )


def _load_from_spec(spec: EmbedderSpec) -> BaseEmbedder:
    return spec.load()

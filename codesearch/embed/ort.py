"""The ONNX Runtime engine: the default on a CPU, and the only one an install without torch has.
fp32 runs the model's fp32 ONNX graph (export.fp32_graph) in padded batches; int8 runs its
quantised build (quantized.py) one text at a time; auto measures both on this CPU once and keeps
the faster one that agrees with fp32 (choice.py's rule). Imports no torch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

import codesearch.embed.choice as choice
from codesearch.embed.base import BaseEmbedder
from codesearch.embed.batching import pad_batch
from codesearch.embed.export import fp32_graph
from codesearch.embed.pooling import pool_array
from codesearch.embed.quantized import Int8Unavailable, cached_int8, load_int8, model_config
from codesearch.embed.resolve import ResolvedModel
from codesearch.embed.runner import OnnxUnavailable, OrtRunner
from codesearch.embed.tokenizer import load_tokenizer
from codesearch.errors import ModelError

if TYPE_CHECKING:
    from codesearch.embed import EmbedderSpec

Notify = Callable[[str], None]
CPU_TOKEN_BUDGET = 2048


def no_graph_error(res: ResolvedModel, reason: str) -> ModelError:
    """The one message for a model this install cannot run: no ONNX export, no torch."""
    name = res.preset.name if res.preset is not None else res.name
    return ModelError(
        reason,
        hint=(f"where torch is installed, run `cs model export {name} --out DIR` and use "
              f"--model DIR here; or {choice.TORCH_HINT}"),
    )


def int8_alone(runner: Any, sequences: Sequence[Sequence[int]]
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The int8 graph's output for each text run alone, and its (all-ones) mask. Dynamic
    quantisation takes each activation's scale from the whole input, so a padded batch would make
    a text's vector depend on its batch-mates (cosine 0.99 apart on the 0.5B architecture); alone,
    the same text always gets the same vector, and no padding is computed (1.4x faster than padded
    batches there)."""
    for seq in sequences:
        ids = np.asarray([seq], dtype=np.int64)
        mask = np.ones_like(ids)
        yield runner(ids, mask), mask


def int8_pooled(runner: Any, sequences: Sequence[Sequence[int]], pooling: str) -> np.ndarray:
    """Pooled vectors from the int8 engine, one text per run (:func:`int8_alone`)."""
    rows = [hidden[0] if hidden.ndim == 2 else pool_array(pooling, hidden, mask)[0]
            for hidden, mask in int8_alone(runner, sequences)]
    return np.stack(rows) if rows else np.empty((0, 0), dtype=np.float32)


def unpadded(hidden: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """Each row's hidden states at its real tokens (either padding side)."""
    return [row[keep.astype(bool)] for row, keep in zip(hidden, mask, strict=True)]


def int8_tokens(runner: Any, sequences: Sequence[Sequence[int]]) -> list[np.ndarray] | None:
    """Token states from the int8 engine, one text per run (:func:`int8_alone`); None when its
    graph pools."""
    rows = []
    for hidden, _ in int8_alone(runner, sequences):
        if hidden.ndim != 3:
            return None
        rows.append(hidden[0])
    return rows


def padded_hidden(runner: OrtRunner, sequences: Sequence[Sequence[int]], pad_id: int,
                  side: str) -> tuple[np.ndarray, np.ndarray]:
    """An fp32 graph's output over one padded batch (positions counted from each row's first
    real token under left padding, as without padding), and the batch's mask."""
    ids, mask = pad_batch(sequences, pad_id, side)
    positions = None
    if side == "left":
        positions = np.clip(mask.cumsum(axis=1) - 1, 0, None).astype(np.int64)
    return runner(ids, mask, positions), mask


def padded_pooled(runner: OrtRunner, sequences: Sequence[Sequence[int]], pooling: str,
                  pad_id: int, side: str) -> np.ndarray:
    """Pooled vectors from an fp32 graph over one padded batch."""
    hidden, mask = padded_hidden(runner, sequences, pad_id, side)
    return hidden if hidden.ndim == 2 else pool_array(pooling, hidden, mask)


class Int8Fallback(Exception):
    """int8 was asked for but cannot be built, and torch is here to run fp32 instead; the
    message is the one line to show."""


class OnnxEmbedder(BaseEmbedder):
    """Texts -> (n, dim) float32 L2-normalised vectors with ONNX Runtime on the CPU."""

    engine = "onnx"

    def __init__(self, spec: EmbedderSpec, *, resolved: ResolvedModel, precision: str,
                 notify: Notify | None = None, torch_fallback: bool = False) -> None:
        """``precision``: fp32, int8 or auto (measured once per model and CPU).
        ``torch_fallback``: when int8 cannot be built, raise Int8Fallback (torch runs fp32)
        instead of running fp32 here."""
        self._identify(spec, resolved)
        self._torch_fallback = torch_fallback
        if precision not in ("fp32", "int8", "auto"):
            raise ModelError(f"the ONNX engine runs fp32 or int8, not {precision}",
                             hint=f"for {precision}: {choice.TORCH_HINT}")
        self.device = "cpu"
        self.int8_error: str | None = None
        self.dtype_choice: dict[str, Any] = {}
        self.token_budget = spec.token_budget or CPU_TOKEN_BUDGET
        self.tokenizer = load_tokenizer(resolved.path)
        self._special_ids()
        self._threads = choice.model_threads()
        self._config = model_config(resolved.path)
        self._runner: OrtRunner
        self.int8 = False
        if precision == "auto":
            key = choice.measurement_key("onnx", self.model_id, self.revision)
            known = choice.remembered(key)
            if known is not None and known.get("precision") in ("fp32", "int8"):
                self.dtype_choice = known
                precision = str(known["precision"])
            else:
                precision = self._measure(key, notify)
        if precision == "int8" and not self.int8:
            self._use_int8(notify)
        elif precision == "fp32" and not hasattr(self, "_runner"):
            self._runner = self._fp32(notify)
        self.precision = "int8" if self.int8 else "fp32"
        # Workers unpickling this embedder load the same engine and precision, measuring nothing.
        self.spec = dataclasses.replace(spec, precision=self.precision, engine="onnx")

    def _fp32(self, notify: Notify | None) -> OrtRunner:
        try:
            graph = fp32_graph(self.resolved, keep=True, notify=notify)
            return OrtRunner(graph, self._threads, self._config)
        except OnnxUnavailable as err:
            raise no_graph_error(self.resolved, str(err)) from err

    def _use_int8(self, notify: Notify | None) -> None:
        try:
            self._runner = load_int8(self.resolved, pad_id=self._pad_id, threads=self._threads,
                                     notify=notify)
            self.int8 = True
        except Int8Unavailable as err:
            message = f"{err}; using fp32"
            if self._torch_fallback:
                raise Int8Fallback(message) from err
            self.int8_error = message
            self._runner = self._fp32(None)
            if notify is not None:
                notify(message)

    def _measure(self, key: str, notify: Notify | None) -> str:
        """fp32 or int8 for this model on this CPU, measured once and remembered."""
        cached = cached_int8(self.resolved, self._threads)
        try:
            fp32: OrtRunner | None = self._fp32(notify)
        except ModelError:
            if cached is None:
                raise
            fp32 = None  # no fp32 graph here, but a finished int8 build: nothing to compare
        if fp32 is None:
            assert cached is not None
            self._runner, self.int8 = cached, True
            return "int8"
        self._runner = fp32
        try:
            int8 = cached or load_int8(self.resolved, pad_id=self._pad_id,
                                       threads=self._threads, notify=notify)
        except Int8Unavailable as err:
            self.int8_error = f"{err}; using fp32"
            if notify is not None:
                notify(self.int8_error)
            return "fp32"
        if notify is not None:
            notify("Measuring fp32 and int8 speed on this CPU (once per model)...")
        seqs = self.tokenizer.encode([choice.PROBE_SAMPLE * 4, choice.PROBE_SAMPLE * 3], 64)

        def timed(run: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
            run()  # the first call at a shape plans kernels: time the later ones
            best, out = float("inf"), np.empty(0)
            for _ in range(3):
                start = time.perf_counter()
                out = run()
                best = min(best, time.perf_counter() - start)
            return best, out

        t32, v32 = timed(lambda: padded_pooled(fp32, seqs, self.pooling, self._pad_id, "right"))
        t8, v8 = timed(lambda: int8_pooled(int8, seqs, self.pooling))
        speed8 = t32 / t8 if t8 > 0 else 0.0
        cos8 = choice.min_cosine(v32, v8)
        won = choice.int8_wins(speed8, cos8, 1.0)
        self.dtype_choice = {"dtype": "float32", "speedup": 1.0, "min_cosine": 1.0,
                             "precision": "int8" if won else "fp32",
                             "int8_speedup": round(speed8, 3), "int8_min_cosine": round(cos8, 6)}
        choice.remember(key, self.dtype_choice)
        if won:
            self._runner, self.int8 = int8, True
        return "int8" if won else "fp32"

    def forward_tokens(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray] | None:
        if self.int8:
            return int8_tokens(self._runner, sequences)
        hidden, mask = padded_hidden(self._runner, sequences, self._pad_id, self.padding_side)
        return unpadded(hidden, mask) if hidden.ndim == 3 else None

    def forward_pooled(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Pooled full-size float32 vectors for ``sequences`` (int8: one text per run)."""
        if self.int8:
            return int8_pooled(self._runner, sequences, self.pooling)
        return padded_pooled(self._runner, sequences, self.pooling, self._pad_id,
                             self.padding_side)

"""The torch engine (the `torch` extra: transformers and torch): fp32 or bf16 on the CPU, bf16 on
CUDA. Tokenising, prefixes, batching, truncation and normalisation are the shared ones (base.py);
int8 on the CPU runs on ONNX Runtime (quantized.py), measured here against fp32 and bf16 by auto.

Imported only when this engine is chosen (engine.py): it imports torch and transformers.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import codesearch.embed.choice as choice
from codesearch.config import default_device
from codesearch.embed.base import BaseEmbedder
from codesearch.embed.batching import pad_batch
from codesearch.embed.export import load_torch_model
from codesearch.embed.ort import int8_pooled, int8_tokens, unpadded
from codesearch.embed.pooling import pool
from codesearch.embed.resolve import ResolvedModel, resolve_model
from codesearch.embed.tokenizer import load_tokenizer
from codesearch.errors import ModelError

if TYPE_CHECKING:
    from codesearch.embed import EmbedderSpec

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
# Padded tokens per forward pass. On CPU a 2048-row matmul already runs at full speed, and smaller
# batches are more uniform in length: on 256 stdlib chunks (a small incremental update) padding
# efficiency is 0.945 at 2048 vs 0.89 at 4096 (0.996 vs 0.99 on the whole tree; see
# bench/embed_speed.py). A GPU wants large batches to stay busy.
CPU_TOKEN_BUDGET = 2048
CUDA_TOKEN_BUDGET = 32768
_PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "float32"}
_DTYPE_PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def pick_device(requested: str | None) -> torch.device:
    """The device to run on: ``requested`` (or CS_DEVICE) if usable, else CUDA when present, else
    CPU. Raises ModelError for an unknown device or CUDA asked for but missing."""
    name = requested or default_device()
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ModelError(f"unknown device '{name}'", hint="use cpu, cuda or cuda:N") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError("CUDA was requested but is not available", hint="use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(
                f"no CUDA device {device.index}",
                hint=f"this machine has {torch.cuda.device_count()} (cuda:0...)",
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError("MPS was requested but is not available", hint="use --device cpu")
    elif device.type not in {"cpu", "cuda", "mps"}:
        raise ModelError(f"unsupported device '{name}'", hint="use cpu, cuda or cuda:N")
    return device


def _parse_dtype(name: str) -> torch.dtype | None:
    if name == "auto":
        return None
    if name not in _DTYPES:
        raise ModelError(f"unknown dtype '{name}'", hint="use auto, float32 or bfloat16")
    return _DTYPES[name]


class HFEmbedder(BaseEmbedder):
    """Texts -> (n, dim) float32 L2-normalised vectors with a transformers model."""

    engine = "torch"

    def __init__(
        self,
        spec: EmbedderSpec,
        *,
        resolved: ResolvedModel | None = None,
        notify: Callable[[str], None] | None = None,
        loaded: tuple[Any, torch.nn.Module] | None = None,
    ) -> None:
        """Load the model ``spec`` names. ``resolved`` skips resolution; ``loaded`` (tokenizer,
        float32 model) skips reading weights, for benchmarks of architectures built in memory."""
        res = resolved or resolve_model(
            spec.model,
            pooling=spec.pooling,
            prefix_scheme=spec.prefix_scheme,
            max_length=spec.max_length,
            notify=notify,
        )
        self._identify(spec, res)
        if (threads := choice.configured_threads()) is not None:
            torch.set_num_threads(threads)
        self.device = pick_device(spec.device)
        precision = choice.choose_precision(spec.precision, spec.dtype)
        if precision == "int8" and self.device.type != "cpu":
            raise ModelError(
                "int8 runs on the CPU only", hint="use --device cpu or --precision bf16"
            )
        requested_dtype = _parse_dtype(_PRECISION_DTYPES.get(precision, "auto"))
        self._int8: Any = None
        self.int8_error: str | None = None
        self.token_budget = spec.token_budget or (
            CUDA_TOKEN_BUDGET if self.device.type == "cuda" else CPU_TOKEN_BUDGET
        )
        self.dtype_choice: dict[str, Any] = {}
        self._int8_probe: Any = None  # the int8 runner built for measuring, reused if chosen
        planned = self._planned_dtype(requested_dtype, precision)
        # Load straight into the final dtype when it is known (bf16 weights stay bf16: half the
        # memory); only an unmeasured CPU loads fp32 first, to time both.
        if loaded is not None:
            self.tokenizer, model = loaded
        else:
            self.tokenizer = load_tokenizer(res.path)
            model = load_torch_model(res.path, planned or torch.float32)
        forward_params = inspect.signature(model.forward).parameters
        self._special_ids()
        if planned is None:
            planned = self._measure_cpu_dtype(model, notify)
        if precision == "auto" and self.dtype_choice.get("precision") == "int8":
            precision, planned = "int8", torch.float32
        if precision == "int8":
            self._int8 = self._int8_probe or self._load_int8(model, notify)
        self._int8_probe = None
        if self._int8 is not None:
            # The int8 engine runs alone: the float32 weights (2 GB for the 0.5B) are freed.
            self.model: torch.nn.Module | None = None
            self.dtype = torch.float32
        else:
            self.model = model.to(device=self.device, dtype=planned)
            self.dtype = next(self.model.parameters()).dtype
        del model
        # What the vectors were computed in (recorded in index manifests).
        self.precision = "int8" if self._int8 is not None else _DTYPE_PRECISIONS[self.dtype]
        # Workers unpickling this embedder load the same precision without measuring again.
        self.spec = dataclasses.replace(spec, precision=self.precision)
        # A decoder would otherwise build a KV cache we never read: memory and time for nothing.
        self._extra: dict[str, Any] = {"use_cache": False} if "use_cache" in forward_params else {}
        self._takes_positions = "position_ids" in forward_params

    # -- loading ------------------------------------------------------------------------------

    def _planned_dtype(self, requested: torch.dtype | None, precision: str) -> torch.dtype | None:
        """The dtype to run in when known before loading; None when CPU speed must be measured.
        A remembered `auto` choice of int8 sets ``precision`` via self.dtype_choice."""
        if requested is not None:
            return requested
        if self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.device.type == "cpu":
            known = choice.remembered(self._cpu_dtype_key())
            if known is not None and known.get("dtype") in _DTYPES:
                self.dtype_choice = known
                if precision == "auto" and known.get("precision") == "int8":
                    return torch.float32
                return _DTYPES[str(known["dtype"])]
            return None
        return torch.float32

    def _cpu_dtype_key(self) -> str:
        return choice.measurement_key("torch", self.model_id, self.revision)

    def _load_int8(self, model: torch.nn.Module, notify: Callable[[str], None] | None) -> Any:
        """The int8 runner, or None (fp32, with one line saying why) when it cannot be built."""
        from codesearch.embed.quantized import Int8Unavailable, load_int8

        try:
            return load_int8(self.resolved, pad_id=self._pad_id, threads=torch.get_num_threads(),
                             model=model, notify=notify)
        except Int8Unavailable as err:
            message = f"{err}; using fp32"
            if notify is not None:
                notify(message)
            self.int8_error = message
            return None

    def _measure_cpu_dtype(
        self, model: torch.nn.Module, notify: Callable[[str], None] | None
    ) -> torch.dtype:
        """fp32 or bf16 for this model on this CPU, measured once and remembered in the cache dir.

        bf16 speed on CPUs ranges from several times faster (AMX, AVX512-BF16) to ten times slower
        (emulated on AVX2), so it is timed on the real model rather than guessed from CPU flags;
        agreement with fp32 is checked on the same inputs.
        """
        from codesearch.embed.quantized import runtime_version

        int8 = None
        if runtime_version() is not None:
            int8 = self._int8_probe = self._load_int8(model, notify)
        if notify is not None:
            names = "fp32, bf16 and int8" if int8 is not None else "fp32 vs bf16"
            notify(f"Measuring {names} speed on this CPU (once per model)...")
        result = measure_cpu_dtype(model, self.tokenizer, self.pooling, int8=int8)
        self.dtype_choice = result
        choice.remember(self._cpu_dtype_key(), result)
        return _DTYPES[result["dtype"]]

    # -- embedding ----------------------------------------------------------------------------

    def forward_pooled(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """One forward pass over ``sequences`` (padded together): pooled full-size float32 vectors,
        before truncation and normalisation."""
        if self._int8 is not None:
            return int8_pooled(self._int8, sequences, self.pooling)
        hidden, mask = self._hidden(sequences)
        with torch.inference_mode():
            return pool(self.pooling, hidden, mask).float().cpu().numpy()

    def forward_tokens(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray] | None:
        if self._int8 is not None:
            return int8_tokens(self._int8, sequences)
        hidden, mask = self._hidden(sequences)
        return unpadded(hidden.float().cpu().numpy(), mask.cpu().numpy())

    def _hidden(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The last hidden states of ``sequences`` padded together, and their attention mask."""
        ids_np, mask_np = pad_batch(sequences, self._pad_id, self.padding_side)
        assert self.model is not None
        ids = torch.from_numpy(ids_np).to(self.device, non_blocking=True)
        mask = torch.from_numpy(mask_np).to(self.device, non_blocking=True)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, **self._extra}
        if self.padding_side == "left" and self._takes_positions:
            # Count positions from each row's first real token, as if there were no padding.
            kwargs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(**kwargs)
            return (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]), mask


def measure_cpu_dtype(
    model: torch.nn.Module, tokenizer: Any, pooling: str, int8: Any = None
) -> dict[str, Any]:
    """Time fp32 and bf16 forward passes of ``model`` (and ``int8``, an OrtRunner, when given) on
    a fixed code batch (2 x 64 tokens, best of three runs) and compare the pooled vectors with
    fp32's. Returns {"dtype", "speedup", "min_cosine", "precision", "int8_speedup",
    "int8_min_cosine"}: "dtype" is the float choice (bf16 only when it is BF16_MIN_SPEEDUP faster
    and agrees to BF16_MIN_COSINE), "precision" the fastest of fp32, bf16 and int8 that passes
    its rule (what `auto` runs)."""
    seqs = tokenizer.encode([choice.PROBE_SAMPLE * 4, choice.PROBE_SAMPLE * 3], 64)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    ids_np, mask_np = pad_batch(seqs, pad, "right")
    ids_t, mask_t = torch.from_numpy(ids_np), torch.from_numpy(mask_np)
    params = inspect.signature(model.forward).parameters
    extra = {"use_cache": False} if "use_cache" in params else {}

    def run(m: torch.nn.Module) -> tuple[float, np.ndarray]:
        best = float("inf")
        with torch.inference_mode():
            # The first call at a shape builds kernels (oneDNN); time the later ones.
            for _ in range(3):
                start = time.perf_counter()
                out = m(input_ids=ids_t, attention_mask=mask_t, **extra)
                best = min(best, time.perf_counter() - start)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            return best, pool(pooling, hidden, mask_t).float().numpy()

    t32, v32 = run(model)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    t16, v16 = run(bf16)
    del bf16
    min_cos = choice.min_cosine(v32, v16)
    speedup = t32 / t16 if t16 > 0 else 0.0
    use_bf16 = speedup >= choice.BF16_MIN_SPEEDUP and min_cos >= choice.BF16_MIN_COSINE
    result: dict[str, Any] = {
        "dtype": "bfloat16" if use_bf16 else "float32",
        "speedup": round(speedup, 3),
        "min_cosine": round(min_cos, 6),
        "precision": "bf16" if use_bf16 else "fp32",
    }
    if int8 is not None:
        def run8() -> tuple[float, np.ndarray]:
            start = time.perf_counter()
            vectors = int8_pooled(int8, seqs, pooling)
            return time.perf_counter() - start, vectors

        runs = [run8() for _ in range(3)]
        best, v8 = min(took for took, _ in runs), runs[-1][1]  # best time, last run's vectors
        cos8 = choice.min_cosine(v32, v8)
        speed8 = t32 / best if best > 0 else 0.0
        result.update(int8_speedup=round(speed8, 3), int8_min_cosine=round(cos8, 6))
        if choice.int8_wins(speed8, cos8, speedup if use_bf16 else 1.0):
            result["precision"] = "int8"
    return result

"""Which engine runs a model, decided before anything heavy is imported.

- ``onnx`` (ONNX Runtime, always installed): the CPU engine, fp32 or int8, fed by the model's
  published ONNX export, a cached build, or an export torch makes once.
- ``torch`` (the `torch` extra): fp32 and bf16, CUDA, and what `auto` measures on a CPU when torch
  is installed (fp32, bf16 and int8 side by side, as before there was a choice).

Without torch everything runs on ONNX Runtime. With torch, ONNX Runtime still answers whenever
the precision is int8 (asked for, or what auto measured and remembered) and the int8 build is
in the cache: a query then imports no torch at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import codesearch.embed.choice as choice
from codesearch.embed.resolve import ResolvedModel, resolve_model
from codesearch.errors import ModelError, UsageError

if TYPE_CHECKING:
    from codesearch.embed import EmbedderSpec
    from codesearch.embed.base import BaseEmbedder

Notify = Callable[[str], None]


def requested_engine(spec: EmbedderSpec) -> str:
    """The engine asked for: the spec's, else CS_ENGINE, else auto. UsageError if unknown."""
    engine = spec.engine or os.environ.get("CS_ENGINE") or "auto"
    if engine not in choice.ENGINES:
        raise UsageError(f"unknown engine '{engine}'", hint="use auto, torch or onnx")
    return engine


def choose_engine(spec: EmbedderSpec, res: ResolvedModel, precision: str) -> str:
    """"torch" or "onnx" for this spec (see the module docstring); ModelError when what is asked
    for needs torch and torch is not installed."""
    engine = requested_engine(spec)
    device = spec.device or os.environ.get("CS_DEVICE") or "auto"
    # "float" (an index's fp32 or bf16 vectors) is fp32 where there is no torch for bf16.
    needs_torch = device not in ("auto", "cpu") or precision in ("bf16", "fp16")
    if engine == "onnx":
        if device not in ("auto", "cpu"):
            raise ModelError("the ONNX engine runs on the CPU only", hint="use --device cpu")
        return "onnx"
    has_torch = choice.torch_available()
    if engine == "torch" or needs_torch:
        if not has_torch:
            what = f"--device {device}" if device not in ("auto", "cpu") else precision
            raise ModelError(f"{what} needs torch, which is not installed",
                             hint=choice.TORCH_HINT)
        return "torch"
    if not has_torch:
        return "onnx"
    if precision == "int8":
        return "onnx"  # the CPU engine, CUDA or not (an int8 index is searched with int8)
    if device == "auto" and choice.cuda_possible():
        return "torch"  # CUDA may be here: torch decides, and runs bf16 there
    if precision == "auto":
        key = choice.measurement_key("torch", res.model_id, res.revision)
        known = choice.remembered(key) or {}
        if known.get("precision") == "int8":
            from codesearch.embed.quantized import cached_int8

            if cached_int8(res, choice.model_threads()) is not None:
                return "onnx"  # measured with torch once; now the int8 build alone answers
    return "torch"


def load(spec: EmbedderSpec, notify: Notify | None = None) -> BaseEmbedder:
    """Resolve the model ``spec`` names and load it on the engine :func:`choose_engine` picks."""
    precision = choice.choose_precision(spec.precision, spec.dtype)
    engine = requested_engine(spec)
    no_torch = engine == "onnx" or not choice.torch_available()
    res = resolve_model(spec.model, pooling=spec.pooling, prefix_scheme=spec.prefix_scheme,
                        max_length=spec.max_length, notify=notify, onnx=no_torch)
    if choose_engine(spec, res, precision) == "torch":
        from codesearch.embed.hf import HFEmbedder

        return HFEmbedder(spec, resolved=res, notify=notify)
    from codesearch.embed.ort import Int8Fallback, OnnxEmbedder

    if engine == "auto" and precision == "auto" and choice.torch_available():
        precision = "int8"  # chosen above from torch's remembered measurement
    elif precision == "float":
        precision = "fp32"  # the float of an index, without torch (bf16 would need it)
    try:
        return OnnxEmbedder(spec, resolved=res, precision=precision, notify=notify,
                            torch_fallback=engine == "auto" and choice.torch_available())
    except Int8Fallback as fallback:
        from dataclasses import replace

        from codesearch.embed.hf import HFEmbedder

        if notify is not None:
            notify(str(fallback))
        embedder = HFEmbedder(replace(spec, precision="fp32", engine="torch"), resolved=res,
                              notify=notify)
        embedder.int8_error = str(fallback)
        return embedder

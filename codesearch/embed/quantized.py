"""The int8 CPU engine's model: the fp32 ONNX graph (export.fp32_graph: published, cached, or
exported by torch) with its MatMul weights quantised to int8 per output channel (activations
quantised per batch at run time), run by ONNX Runtime. Needs no torch when the model has a
published ONNX export.

Only the transformer's forward pass changes: tokenising, task prefixes, pooling, Matryoshka
truncation and normalisation are shared with every engine. Chosen over torch's own int8
(quantize_dynamic: 1.1x fp32, cosine 0.92 on the 0.5B architecture), torchao int8 (0.6-0.8x:
slower than fp32 on CPU) and OpenVINO's int8 weight compression (3.4x, computes in fp32) in one
side-by-side probe (README "Speed").

The build lives in the cache (runner.build_dir), built once, rebuilt when the model or ONNX
Runtime changes. A half-built model never becomes visible (built in a temp dir, then renamed).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from codesearch.embed.resolve import ResolvedModel
from codesearch.embed.runner import (
    ENGINE_VERSION,
    INT8_FILE,
    OnnxUnavailable,
    OrtRunner,
    build_dir,
    example,
    has_vnni,
)

MODEL_FILE = INT8_FILE
# A built model whose vectors are this far from fp32 on the build check is broken, not merely
# quantised (the run-time agreement threshold lives in choice.py).
_SANITY_COSINE = 0.9


class Int8Unavailable(OnnxUnavailable):
    """The int8 engine cannot be used here; the message is one line saying why."""


def runtime_version() -> str | None:
    """ONNX Runtime's version, or None when it (or onnx, needed to quantise) is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)


def model_config(path: Path) -> dict[str, Any]:
    """The model's config.json (heads and sizes an exported key/value cache needs), or {}."""
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _quantize(src: Path, dst: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)  # the quantiser logs a hint per run
    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
        reduce_range=not has_vnni(), op_types_to_quantize=["MatMul"],
        use_external_data_format=True,
    )  # fmt: skip


def _sanity_check(fp32: OrtRunner, int8: OrtRunner, pad_id: int) -> None:
    """The built model at a shape other than the export's must agree with fp32 roughly: catches a
    graph that baked in a length or lost the mask."""
    ids, mask, positions = example(pad_id, 2, 37)
    ref = fp32(ids, mask, positions)
    got = int8(ids, mask, positions)
    if got.shape != ref.shape:
        raise Int8Unavailable(f"the int8 model returned shape {got.shape}, expected {ref.shape}")
    real = mask.astype(bool)
    a, b = (ref[real], got[real]) if ref.ndim == 3 else (ref, got)
    cos = np.sum(a * b, axis=1) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
    )
    if float(np.min(cos)) < _SANITY_COSINE:
        raise Int8Unavailable(f"the int8 model disagrees with fp32 (cosine {np.min(cos):.3f})")


def cached_int8(res: ResolvedModel, threads: int) -> OrtRunner | None:
    """The int8 runner of ``res`` when its build is already in the cache, else None."""
    target = build_dir("int8", res.model_id, res.revision, res.path)
    if not (target / "build.json").is_file():
        return None
    try:
        return OrtRunner(target / MODEL_FILE, threads, model_config(res.path))
    except Exception:  # noqa: BLE001 - a damaged cached build is rebuilt by load_int8
        shutil.rmtree(target, ignore_errors=True)
        return None


def load_int8(
    res: ResolvedModel,
    *,
    pad_id: int,
    threads: int,
    model: Any = None,
    notify: Callable[[str], None] | None = None,
) -> OrtRunner:
    """The int8 runner for ``res``, building and caching it first if needed (``model``: its
    float32 torch module when already loaded, for the export). Raises Int8Unavailable (one
    line) when the engine is missing or the build fails."""
    version = runtime_version()
    if version is None:
        raise Int8Unavailable(
            "int8 needs onnxruntime and onnx (pip install onnxruntime onnx)"
        )
    if (cached := cached_int8(res, threads)) is not None:
        return cached
    from codesearch.embed.export import fp32_graph

    target = build_dir("int8", res.model_id, res.revision, res.path)
    if notify is not None:
        notify("Building the int8 model with ONNX Runtime (once per model and version)...")
    started = time.perf_counter()
    work: Path | None = None
    config = model_config(res.path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        (work / "fp32").mkdir()
        src = fp32_graph(res, keep=False, model=model, workdir=work / "fp32")
        built = work / "int8"
        built.mkdir()
        _quantize(src, built / MODEL_FILE)
        runner = OrtRunner(built / MODEL_FILE, threads, config)
        _sanity_check(OrtRunner(src, threads, config), runner, pad_id)
        shutil.rmtree(work / "fp32")  # the fp32 export is only a step: gigabytes for a 0.5B
        info = {"model_id": res.model_id, "revision": res.revision, "engine": ENGINE_VERSION,
                "onnxruntime": version, "reduce_range": not has_vnni(),
                "seconds": round(time.perf_counter() - started, 1)}
        (built / "build.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        if target.exists() and not (target / "build.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(built, target)
        except OSError:  # another process finished first: use theirs
            pass
        return OrtRunner(target / MODEL_FILE, threads, config)
    except Int8Unavailable:
        raise
    except OnnxUnavailable as err:
        raise Int8Unavailable(str(err)) from err
    except Exception as err:  # noqa: BLE001 - any exporter/quantiser failure becomes one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise Int8Unavailable(f"int8 export failed: {type(err).__name__}: {first}") from err
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

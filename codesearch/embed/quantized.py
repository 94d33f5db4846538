"""The int8 CPU engine: the model exported to ONNX once, its MatMul weights quantised to int8 per
output channel (activations quantised per batch at run time), run by ONNX Runtime.

Only the transformer's forward pass changes: tokenising, task prefixes, padding, position ids,
pooling, Matryoshka truncation and normalisation stay in hf.py, shared with fp32 and bf16. Chosen
over torch's own int8 (quantize_dynamic: 1.1x fp32, cosine 0.92 on the 0.5B architecture), torchao
int8 (0.6-0.8x: slower than fp32 on CPU) and OpenVINO's int8 weight compression (3.4x, computes in
fp32) in one side-by-side probe (README "Speed"); install with ``pip install 'codesearch[fast]'``.

The built model lives in the cache (``<cache>/quantized/<model>-<key>/``; CS_QUANTIZED_DIR moves
it), keyed by the model's id, revision (or, for a local directory, its weight files' sizes and
times), the exporter's and ONNX Runtime's versions and this module's ENGINE_VERSION: built once,
rebuilt when any of them changes. A half-built model never becomes visible (built in a temp dir,
then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from codesearch.config import quantized_dir

# Bump when the export or quantisation settings change: every cached int8 model is rebuilt.
ENGINE_VERSION = 1
MODEL_FILE = "model.int8.onnx"
# A built model whose vectors are this far from fp32 on the build check is broken, not merely
# quantised (the run-time agreement threshold lives in hf.py).
_SANITY_COSINE = 0.9


class Int8Unavailable(Exception):
    """The int8 engine cannot be used here; the message is one line saying why."""


def runtime_version() -> str | None:
    """ONNX Runtime's version, or None when it (or onnx, needed to quantise) is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)


def has_vnni() -> bool:
    """True when the CPU has int8 dot-product instructions (AVX-VNNI or AVX512-VNNI). Without
    them ONNX Runtime's u8s8 kernels can saturate, so weights are quantised to 7 bits instead."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return True  # not Linux: assume a modern CPU; the agreement check still guards
    return bool(re.search(r"\b(avx_vnni|avx512_vnni|amx_int8)\b", flags))


def _weights_fingerprint(source: Path) -> list[Any]:
    """Sizes and times of a local model's files: a changed weight file means a new model."""
    rows = []
    for f in sorted(source.iterdir()):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin"}:
            st = f.stat()
            rows.append([f.name, st.st_size, st.st_mtime_ns])
    return rows


def model_dir(model_id: str, revision: str | None, source: Path, takes_positions: bool) -> Path:
    """Where the int8 build of this model lives; the name changes whenever the build would."""
    import torch

    key = {
        "model_id": model_id,
        "revision": revision,
        "files": _weights_fingerprint(source) if revision is None else None,
        "engine": ENGINE_VERSION,
        "onnxruntime": runtime_version(),
        "torch": torch.__version__,
        "positions": takes_positions,
        "reduce_range": not has_vnni(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", model_id.rstrip("/").split("/")[-1])[:40]
    return quantized_dir() / f"{slug}-{digest}"


def _forward_module(model: Any) -> Any:
    """The model as a module of (ids, mask[, positions]) -> last hidden state, for export."""
    import torch

    no_cache = {"use_cache": False} if "use_cache" in _params(model) else {}

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any, *positions: Any) -> Any:
            extra = {"position_ids": positions[0]} if positions else {}
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra,
                             **no_cache)
            return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    return Forward().eval()


def _params(model: Any) -> Any:
    import inspect

    return inspect.signature(model.forward).parameters


def _example(pad_id: int, batch: int, seq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids with one right-padded and one left-padded row, so the exported graph keeps the
    attention-mask path for any padding."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 200, (batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[0, seq // 2 :] = 0
    mask[-1, : seq // 3] = 0
    ids[mask == 0] = pad_id
    positions = np.clip(mask.cumsum(axis=1) - 1, 0, None).astype(np.int64)
    return ids, mask, positions


def _export(model: Any, takes_positions: bool, pad_id: int, out: Path) -> None:
    import torch

    ids, mask, positions = _example(pad_id, 3, 16)
    args = [torch.from_numpy(ids), torch.from_numpy(mask)]
    names = ["input_ids", "attention_mask"]
    if takes_positions:
        args.append(torch.from_numpy(positions))
        names.append("position_ids")
    axes = {n: {0: "batch", 1: "seq"} for n in [*names, "hidden"]}
    import warnings

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: it handles the transformers attention-mask code as is, and
        # writes external data for models over 2 GB.
        torch.onnx.export(
            _forward_module(model), tuple(args), str(out), dynamo=False,
            opset_version=17, input_names=names, output_names=["hidden"], dynamic_axes=axes,
        )  # fmt: skip


def _quantize(src: Path, dst: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)  # the quantiser logs a hint per run
    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
        reduce_range=not has_vnni(), op_types_to_quantize=["MatMul"],
        use_external_data_format=True,
    )  # fmt: skip


class Int8Runner:
    """An ONNX Runtime session over the int8 model: (ids, mask[, positions]) -> float32 hidden
    states (batch, seq, hidden), like the torch model's last_hidden_state."""

    def __init__(self, path: Path, threads: int, takes_positions: bool) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.path = path
        self.takes_positions = takes_positions
        self.session = ort.InferenceSession(
            str(path / MODEL_FILE), opts, providers=["CPUExecutionProvider"]
        )

    def __call__(
        self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray | None = None
    ) -> np.ndarray:
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        if self.takes_positions:
            if positions is None:  # right padding: real tokens count from 0 as without padding
                positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
            feed["position_ids"] = np.ascontiguousarray(positions, dtype=np.int64)
        hidden: np.ndarray = self.session.run(None, feed)[0]
        return hidden


def _sanity_check(model: Any, runner: Int8Runner, takes_positions: bool, pad_id: int) -> None:
    """The built model at a shape other than the export's must agree with fp32 roughly: catches a
    graph that baked in a length or lost the mask."""
    import torch

    ids, mask, positions = _example(pad_id, 2, 37)
    kwargs: dict[str, Any] = {"input_ids": torch.from_numpy(ids),
                              "attention_mask": torch.from_numpy(mask)}
    if takes_positions:
        kwargs["position_ids"] = torch.from_numpy(positions)
    if "use_cache" in _params(model):
        kwargs["use_cache"] = False
    with torch.inference_mode():
        out = model(**kwargs)
        ref = (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]).numpy()
    got = runner(ids, mask, positions)
    if got.shape != ref.shape:
        raise Int8Unavailable(f"the int8 model returned shape {got.shape}, expected {ref.shape}")
    real = mask.astype(bool)
    a, b = ref[real], got[real]
    cos = np.sum(a * b, axis=1) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
    )
    if float(np.min(cos)) < _SANITY_COSINE:
        raise Int8Unavailable(f"the int8 model disagrees with fp32 (cosine {np.min(cos):.3f})")


def load_int8(
    model: Any,
    *,
    model_id: str,
    revision: str | None,
    source: Path,
    pad_id: int,
    threads: int,
    notify: Callable[[str], None] | None = None,
) -> Int8Runner:
    """The int8 runner for ``model`` (a float32 torch module), building and caching it first if
    needed. Raises Int8Unavailable (one line) when the engine is missing or the build fails."""
    version = runtime_version()
    if version is None:
        raise Int8Unavailable(
            "int8 needs onnxruntime and onnx (pip install 'codesearch[fast]')"
        )
    takes_positions = "position_ids" in _params(model)
    target = model_dir(model_id, revision, source, takes_positions)
    if (target / "build.json").is_file():
        try:
            return Int8Runner(target, threads, takes_positions)
        except Exception:  # noqa: BLE001 - a damaged cached build is rebuilt below
            shutil.rmtree(target, ignore_errors=True)
    if notify is not None:
        notify("Building the int8 model with ONNX Runtime (once per model and version)...")
    started = time.perf_counter()
    work: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        (work / "fp32").mkdir()
        _export(model, takes_positions, pad_id, work / "fp32" / "model.onnx")
        built = work / "int8"
        built.mkdir()
        _quantize(work / "fp32" / "model.onnx", built / MODEL_FILE)
        shutil.rmtree(work / "fp32")  # the fp32 export is only a step: gigabytes for a 0.5B
        runner = Int8Runner(built, threads, takes_positions)
        _sanity_check(model, runner, takes_positions, pad_id)
        info = {"model_id": model_id, "revision": revision, "engine": ENGINE_VERSION,
                "onnxruntime": version, "reduce_range": not has_vnni(),
                "seconds": round(time.perf_counter() - started, 1)}
        (built / "build.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        if target.exists() and not (target / "build.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(built, target)
        except OSError:  # another process finished first: use theirs
            pass
        return Int8Runner(target, threads, takes_positions)
    except Int8Unavailable:
        raise
    except Exception as err:  # noqa: BLE001 - any exporter/quantiser failure becomes one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise Int8Unavailable(f"int8 export failed: {type(err).__name__}: {first}") from err
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

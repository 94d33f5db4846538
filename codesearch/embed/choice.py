"""What every engine shares about precision, without importing one: the names ``--precision``
takes, the rules ``auto`` applies to a measurement, where measurements are remembered, the thread
count models run on, and whether torch (the optional engine) is installed at all.

Torch-free on purpose: the engine is chosen (engine.py) before anything heavy is imported, so a
query that will run on ONNX Runtime never pays for importing torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
from typing import Any

import numpy as np

from codesearch.config import cache_dir, default_precision
from codesearch.errors import ModelError, UsageError

# What --precision / CS_PRECISION accept. "float" (internal) is auto between fp32 and bf16: an
# index built with float vectors keeps float vectors.
PRECISIONS = ("auto", "fp32", "bf16", "int8")
# What --engine / CS_ENGINE accept: torch (transformers; fp32, bf16, CUDA) or onnx (ONNX Runtime
# on the CPU; fp32 and int8); auto picks (engine.choose_engine).
ENGINES = ("auto", "torch", "onnx")
_DTYPE_PRECISIONS = {"float32": "fp32", "fp32": "fp32", "bfloat16": "bf16", "bf16": "bf16",
                     "float16": "fp16", "fp16": "fp16"}
# CPU bf16 is used only when it is at least this much faster than fp32 on the real model and its
# vectors stay this close (cosine) to fp32's.
BF16_MIN_SPEEDUP = 1.2
BF16_MIN_COSINE = 0.99
# int8 (ONNX Runtime) is used by `auto` under the same rule. MiniLM's int8 passes it (probe 0.995;
# dev chunks p1 0.993) and loses at most .001 of dev find MRR@10 overall (README "Speed"); torch's
# per-tensor int8 (0.92-0.96 on the 0.5B architecture) would not.
INT8_MIN_SPEEDUP = 1.2
INT8_MIN_COSINE = 0.99
PROBE_SAMPLE = (
    "def parse_csv(path, column):\n"
    '    """Read a CSV file and return the mean of one numeric column."""\n'
    "    import csv\n"
    "    with open(path, newline='') as handle:\n"
    "        values = [float(row[column]) for row in csv.DictReader(handle)]\n"
    "    return sum(values) / len(values) if values else 0.0\n"
)
TORCH_HINT = "pip install 'codesearch[torch]' (CUDA users: see the README's GPU section)"

_threads: int | None = None


def torch_available() -> bool:
    """Whether the optional torch engine (torch and transformers) is installed; imports neither."""
    return all(_installed(name) for name in ("torch", "transformers"))


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cuda_possible() -> bool:
    """False when this machine surely has no CUDA device (no NVIDIA driver files), so choosing
    the device need not import torch to ask."""
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia"))


def package_version(name: str) -> str | None:
    """An installed distribution's version, read from its metadata (no import), or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def set_model_threads(threads: int) -> None:
    """Run forward passes of every model this process loads from now on on ``threads`` threads
    (torch's intra-op pool, ONNX Runtime's session)."""
    global _threads
    _threads = max(1, threads)
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:  # already loaded: apply now; a later load applies it itself
        torch.set_num_threads(_threads)


def configured_threads() -> int | None:
    """The thread count :func:`set_model_threads` set, or None (each engine's default)."""
    return _threads


def model_threads() -> int:
    """The threads a forward pass runs on: as set, else the CPUs this process may use."""
    if _threads is not None:
        return _threads
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_precision(precision: str | None, dtype: str | None) -> str:
    """The precision asked for: ``precision``, else an explicit ``dtype``'s, else CS_PRECISION,
    else auto. Raises UsageError for an unknown name, ModelError for an unknown dtype."""
    if precision in (None, "auto", "float") and dtype not in (None, "auto"):
        if dtype not in _DTYPE_PRECISIONS:
            raise ModelError(f"unknown dtype '{dtype}'", hint="use auto, float32 or bfloat16")
        precision = _DTYPE_PRECISIONS[str(dtype)]
    precision = precision or default_precision() or "auto"
    if precision not in (*PRECISIONS, "float", "fp16"):
        raise UsageError(f"unknown precision '{precision}'", hint="use auto, fp32, bf16 or int8")
    return precision


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measurement_key(engine: str, model_id: str, revision: str | None) -> str:
    """Where an `auto` measurement of this model is remembered: one per engine, CPU, engine
    version and thread count. With ONNX Runtime installed int8 is a candidate too."""
    parts = [model_id, str(revision), cpu_name()]
    if engine == "torch":
        parts.append(package_version("torch") or "?")
    else:
        parts.append("onnx")
    key = "|".join([*parts, str(model_threads())])
    ort = package_version("onnxruntime")
    return f"{key}|ort-{ort}" if ort and _installed("onnx") else key


def remembered(key: str) -> dict[str, Any] | None:
    """The measurement remembered under ``key``, if any."""
    known = _store().get(key)
    return known if isinstance(known, dict) else None


def remember(key: str, choice: dict[str, Any]) -> None:
    """Keep ``choice`` under ``key`` (atomically; failing to write only costs a measurement)."""
    store = cache_dir() / "cpu-dtype.json"
    try:
        known = _store()
        known[key] = choice
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
        tmp.replace(store)
    except OSError:
        pass


def _store() -> dict[str, Any]:
    try:
        known = json.loads((cache_dir() / "cpu-dtype.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine between two (n, d) arrays."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def int8_wins(int8_speedup: float, int8_cosine: float, best_float_speedup: float) -> bool:
    """The int8 rule of `auto`: fast enough, close enough, and faster than the best float."""
    return (int8_speedup >= INT8_MIN_SPEEDUP and int8_cosine >= INT8_MIN_COSINE
            and int8_speedup > max(best_float_speedup, 1.0))

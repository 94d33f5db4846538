"""ONNX graphs of a model and the ONNX Runtime session that runs one: where a graph is (a
published export in the model's directory, or a build in the cache), and (ids, mask[, positions])
-> hidden states, whatever inputs the graph was exported with. Torch-free.

Builds live in the cache (``<cache>/quantized/<model>-<key>/``; CS_QUANTIZED_DIR moves it), keyed
by the model's id, revision (or, for a local directory, its weight files' sizes and times), what
the graph comes from, ONNX Runtime's version for int8 builds, and ENGINE_VERSION: built once,
rebuilt when any of them changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from codesearch.config import quantized_dir
from codesearch.embed.choice import package_version

# Bump when the export or quantisation settings change: every cached build is made again.
ENGINE_VERSION = 2
INT8_FILE = "model.int8.onnx"
FP32_FILE = "model.onnx"
# Where a model repository keeps its fp32 ONNX export (the optimum / transformers.js layout first).
PUBLISHED = ("onnx/model.onnx", "model.onnx")
_WEIGHT_SUFFIXES = {".json", ".safetensors", ".bin", ".onnx", ".onnx_data", ".data"}
# Names an exported graph gives its per-token hidden states.
_HIDDEN_OUTPUTS = ("last_hidden_state", "token_embeddings", "hidden")


class OnnxUnavailable(Exception):
    """An ONNX graph of the model cannot be had here; the message is one line saying why."""


def published_graph(path: Path) -> Path | None:
    """The fp32 ONNX export shipped in a model directory, if any."""
    for name in PUBLISHED:
        if (path / name).is_file():
            return path / name
    return None


def has_vnni() -> bool:
    """True when the CPU has int8 dot-product instructions (AVX-VNNI or AVX512-VNNI). Without
    them ONNX Runtime's u8s8 kernels can saturate, so weights are quantised to 7 bits instead."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return True  # not Linux: assume a modern CPU; the agreement check still guards
    return bool(re.search(r"\b(avx_vnni|avx512_vnni|amx_int8)\b", flags))


def _fingerprint(source: Path) -> list[Any]:
    """Sizes and times of a local model's files: a changed weight file means a new model."""
    rows = []
    for sub in (source, source / "onnx"):
        if not sub.is_dir():
            continue
        for f in sorted(sub.iterdir()):
            if f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
                st = f.stat()
                rows.append([f.relative_to(source).as_posix(), st.st_size, st.st_mtime_ns])
    return rows


def build_dir(kind: str, model_id: str, revision: str | None, source: Path) -> Path:
    """Where the ``kind`` ("int8" or "fp32") build of this model lives; the name changes
    whenever the build would."""
    key: dict[str, Any] = {
        "model_id": model_id,
        "revision": revision,
        "files": _fingerprint(source) if revision is None else None,
        "engine": ENGINE_VERSION,
        "kind": kind,
        "published": published_graph(source) is not None,
    }
    if kind == "int8":
        key.update(onnxruntime=package_version("onnxruntime"), reduce_range=not has_vnni())
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", model_id.rstrip("/").split("/")[-1])[:40]
    return quantized_dir() / f"{slug}-{kind}-{digest}"


def example(pad_id: int, batch: int, seq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids with one right-padded and one left-padded row, so an exported graph keeps the
    attention-mask path for any padding, and a check covers both."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 200, (batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[0, seq // 2 :] = 0
    mask[-1, : seq // 3] = 0
    ids[mask == 0] = pad_id
    positions = np.clip(mask.cumsum(axis=1) - 1, 0, None).astype(np.int64)
    return ids, mask, positions


class OrtRunner:
    """An ONNX Runtime session over one graph: (ids, mask[, positions]) -> float32 hidden states
    (batch, seq, hidden) like a transformers model's last_hidden_state, or (batch, hidden) when
    the graph pools itself. Feeds whatever else an exporter asked for: zero token types (BERT),
    an empty key/value cache (a decoder exported with one)."""

    def __init__(self, model_file: Path, threads: int, config: dict[str, Any] | None = None
                 ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.path = model_file
        self.session = ort.InferenceSession(
            str(model_file), opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name: i for i in self.session.get_inputs()}
        self.takes_positions = "position_ids" in self._inputs
        outputs = self.session.get_outputs()
        named = [o.name for o in outputs if o.name in _HIDDEN_OUTPUTS]
        self._output = named[0] if named else outputs[0].name
        self._config = config or {}

    def _past(self, meta: Any, batch: int) -> np.ndarray:
        """An empty cache entry: (batch, kv heads, 0, head dim)."""
        cfg = self._config
        heads = cfg.get("num_key_value_heads") or cfg.get("num_attention_heads") or 1
        head_dim = cfg.get("head_dim") or (cfg.get("hidden_size", 64) // max(
            1, cfg.get("num_attention_heads") or 1))
        shape = [d if isinstance(d, int) else None for d in meta.shape]
        dims = [batch, shape[1] or heads, 0, shape[3] or head_dim]
        dtype = np.float16 if "float16" in meta.type else np.float32
        return np.zeros(dims, dtype=dtype)

    def __call__(
        self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray | None = None
    ) -> np.ndarray:
        feed: dict[str, np.ndarray] = {"input_ids": ids.astype(np.int64),
                                       "attention_mask": mask.astype(np.int64)}
        if self.takes_positions:
            if positions is None:  # right padding: real tokens count from 0 as without padding
                positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
            feed["position_ids"] = np.ascontiguousarray(positions, dtype=np.int64)
        for name, meta in self._inputs.items():
            if name in feed:
                continue
            if name == "token_type_ids":
                feed[name] = np.zeros_like(feed["input_ids"])
            elif name.startswith("past_key_values"):
                feed[name] = self._past(meta, ids.shape[0])
        hidden = self.session.run([self._output], feed)[0]
        return np.asarray(hidden, dtype=np.float32)

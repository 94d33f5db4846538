"""What models cost on this machine, as measured by real ``cs index`` runs (chunks embedded per
second of embedding), and which licence notices were already shown. Small JSON files in the cache
directory; the standard library only."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from codesearch.config import cache_dir

# A run that embedded fewer chunks says more about loading than about the model's speed.
MIN_CHUNKS = 16


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # not remembering costs a notice or a figure, never a run


def record_rate(model: str, *, chunks: int, seconds: float, precision: str,
                device: str) -> None:
    """Remember ``model``'s embedding rate from a run that embedded ``chunks`` in ``seconds``
    (runs under MIN_CHUNKS are ignored); the latest run per model wins."""
    if chunks < MIN_CHUNKS or seconds <= 0:
        return
    path = cache_dir() / "model-rates.json"
    data = _load(path)
    data[model] = {"chunks_per_s": round(chunks / seconds, 2), "chunks": chunks,
                   "precision": precision, "device": device, "measured_at": time.time()}
    _store(path, data)


def measured_rate(*names: str) -> dict[str, Any] | None:
    """The last rate recorded under any of ``names`` (a preset's name, its hub id), or None."""
    data = _load(cache_dir() / "model-rates.json")
    found = [data[n] for n in names if isinstance(data.get(n), dict)]
    return max(found, key=lambda r: r.get("measured_at", 0)) if found else None


def first_time(notice: str) -> bool:
    """True the first time this user is shown ``notice`` (a key), then False."""
    path = cache_dir() / "notices.json"
    data = _load(path)
    if notice in data:
        return False
    data[notice] = time.time()
    _store(path, data)
    return True

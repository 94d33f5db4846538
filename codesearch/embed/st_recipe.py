"""A sentence-transformers model directory's own recipe: which modules run (``modules.json``), how
its Pooling module pools (``1_Pooling/config.json``), whether it normalises, its token limit
(``sentence_bert_config.json``) and its prompts (``config_sentence_transformers.json``).

Reads small JSON files only; the weights are loaded by hf.py. cs runs the Transformer, then the
pooling named here, then Matryoshka truncation and L2 normalisation (a model whose recipe ends
without ``Normalize`` is still searched by cosine). A recipe cs cannot run exactly (a Dense layer,
max pooling, several poolings concatenated, prompts excluded from pooling) is one ModelError
naming what, rather than a silently different vector.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesearch.embed.presets import PREFIX_SCHEMES, TASKS
from codesearch.errors import ModelError

# sentence-transformers' pooling modes (new "pooling_mode" values) -> cs's poolings.
_POOLING_MODES = {"lasttoken": "last", "mean": "mean", "cls": "cls"}
# The boolean keys of older Pooling configs, in sentence-transformers' order.
_LEGACY_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_RUNNABLE = {"Transformer", "Pooling", "Normalize"}
# encode_document's prompt names, in the order sentence-transformers tries them.
_DOCUMENT_NAMES = ("document", "passage", "corpus")
_HINT = "pick a model whose modules.json has only Transformer, Pooling and Normalize, or pass " \
        "--pooling last|mean|cls to use its transformer alone"


@dataclass(frozen=True)
class STRecipe:
    """What a sentence-transformers directory says about using it."""

    transformer_dir: Path  # where config.json and the weights are (the Transformer's path)
    pooling: str | None  # "last", "mean" or "cls"; None: no Pooling module
    normalize: bool
    max_length: int | None  # max_seq_length
    lowercase: bool  # do_lower_case
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity: str | None = None  # similarity_fn_name


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {path}: {err}",
                         hint="check the sentence-transformers files of the model") from err


def _pooling(cfg: dict[str, Any], where: Path) -> tuple[str, bool]:
    """(cs pooling, include_prompt) from a Pooling config, old or new keys."""
    mode = cfg.get("pooling_mode")
    if mode is None:
        modes = [m for key, m in _LEGACY_MODES.items() if cfg.get(key)] or ["mean"]
    else:
        modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1 or modes[0] not in _POOLING_MODES:
        raise ModelError(f"{where} pools by {'+'.join(map(str, modes))}, which cs does not run",
                         hint="cs pools by last token, mean or CLS: " + _HINT)
    return _POOLING_MODES[modes[0]], bool(cfg.get("include_prompt", True))


def read_recipe(path: Path) -> STRecipe | None:
    """The recipe of the sentence-transformers model at ``path``, or None when it has no
    ``modules.json``. Raises ModelError for a recipe cs cannot follow exactly."""
    modules_path = path / "modules.json"
    if not modules_path.is_file():
        return None
    modules = _read(modules_path)
    if not isinstance(modules, list):
        raise ModelError(f"{modules_path} is not a list of modules", hint=_HINT)
    transformer_dir, pooling, include_prompt, normalize = path, None, True, False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        sub = path / str(module.get("path", ""))
        if kind not in _RUNNABLE:
            raise ModelError(f"{path} uses the sentence-transformers module {kind}, which cs "
                             "does not run", hint=_HINT)
        if kind == "Transformer":
            transformer_dir = sub
        elif kind == "Pooling":
            pooling, include_prompt = _pooling(_read(sub / "config.json"), sub / "config.json")
        else:
            normalize = True
    st_path = transformer_dir / "sentence_bert_config.json"
    st_cfg = _read(st_path) if st_path.is_file() else {}
    cfg_path = path / "config_sentence_transformers.json"
    cfg = _read(cfg_path) if cfg_path.is_file() else {}
    prompts = {str(k): str(v or "") for k, v in (cfg.get("prompts") or {}).items()}
    recipe = STRecipe(
        transformer_dir=transformer_dir,
        pooling=pooling,
        normalize=normalize,
        max_length=st_cfg.get("max_seq_length"),
        lowercase=bool(st_cfg.get("do_lower_case", False)),
        prompts=prompts,
        default_prompt_name=cfg.get("default_prompt_name"),
        similarity=cfg.get("similarity_fn_name"),
    )
    if not include_prompt and prompt_table(recipe) is not None:
        raise ModelError(f"{path} pools without its prompt tokens (include_prompt false), which "
                         "cs does not do", hint=_HINT)
    return recipe


def prompt_table(recipe: STRecipe) -> dict[str, tuple[str, str]] | None:
    """(query prefix, document prefix) for each of cs's tasks, as sentence-transformers'
    ``encode_query`` / ``encode_document`` would pick them: a task's own ``{task}_query`` /
    ``{task}_document`` prompt if the model has one, else ``query`` / ``document`` (or
    ``passage``, ``corpus``), else the default prompt. None when every prefix is empty."""
    prompts = recipe.prompts
    fallback = prompts.get(recipe.default_prompt_name or "", "")
    document = next((prompts[n] for n in _DOCUMENT_NAMES if n in prompts), fallback)
    table = {
        task: (prompts.get(f"{task}_query", prompts.get("query", fallback)),
               prompts.get(f"{task}_document", document))
        for task in TASKS
    }
    return table if any(q or d for q, d in table.values()) else None


def prompt_scheme(table: dict[str, tuple[str, str]] | None) -> str:
    """The prefix scheme an index records for these prompts: a named scheme when they are exactly
    one, else ``st-`` and a digest of the prompts (another prompt is another vector space)."""
    if table is None:
        return "none"
    for name, known in PREFIX_SCHEMES.items():
        if known == table:
            return name
    digest = hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:12]
    return f"st-{digest}"

"""Where model weights come from: an installed package, the Hugging Face cache, or a download.

Downloads go through huggingface_hub (its progress bar, its cache, shared with other tools) at a
pinned revision. Offline and not cached is one ModelError that says how to fix it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codesearch.embed.presets import ModelPreset
from codesearch.errors import ModelError

# What a transformers embedding model needs; skips ONNX/GGUF/other-format copies in the same repo.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.md", "1_Pooling/*"]
# What an ONNX Runtime install needs instead: the fp32 export (and its external data), not the
# torch weights nor the other exports (fp16, int4...) a repository may hold.
ONNX_ALLOW_PATTERNS = ["*.json", "*.txt", "*.model", "1_Pooling/*", "onnx/model.onnx",
                       "onnx/model.onnx_data", "onnx/model.onnx.data"]
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """True when the environment forbids hub access (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE).

    Read from the environment on each call: huggingface_hub reads it only once, at import.
    """
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring HF_HUB_CACHE and HF_HOME as they are now."""
    if explicit := os.environ.get("HF_HUB_CACHE"):
        return Path(explicit).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def package_model_dir(package: str | None) -> Path | None:
    """The model directory shipped inside an installed Python package, else None."""
    if not package:
        return None
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    model_dir = Path(spec.origin).parent / "model"
    return model_dir if (model_dir / "config.json").is_file() else None


@dataclass(frozen=True)
class CacheState:
    """Whether a model's weights are on this machine, where, and how many bytes they take."""

    cached: bool
    path: Path | None
    size_bytes: int | None
    source: str  # "package", "hub cache" or "not cached"


def _dir_size(path: Path) -> int:
    # Hub snapshots are symlinks into blobs/; stat() follows them to the real size.
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _has_weights(path: Path, onnx: bool = False) -> bool:
    if onnx:
        return (path / "onnx" / "model.onnx").is_file()
    return any(p.suffix in _WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file())


def cached_snapshot(hub_id: str, revision: str, onnx: bool = False) -> Path | None:
    """The local snapshot of ``hub_id`` at ``revision`` if complete enough to load (its ONNX
    export when ``onnx``), else None."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(
            snapshot_download(
                hub_id,
                revision=revision,
                cache_dir=hub_cache_dir(),
                local_files_only=True,
                allow_patterns=ONNX_ALLOW_PATTERNS if onnx else ALLOW_PATTERNS,
            )
        )
    except Exception:  # noqa: BLE001 - any failure to find it locally means "not cached"
        return None
    return path if path.is_dir() and _has_weights(path, onnx) else None


def cache_state(preset: ModelPreset) -> CacheState:
    """Where ``preset``'s weights are on this machine, if anywhere. Never touches the network."""
    if (pkg := package_model_dir(preset.package)) is not None:
        return CacheState(True, pkg, _dir_size(pkg), "package")
    if (snap := cached_snapshot(preset.hub_id, preset.revision)) is not None:
        return CacheState(True, snap, _dir_size(snap), "hub cache")
    from codesearch.embed.choice import torch_available

    if preset.onnx_hub_id and not torch_available():  # what an install without torch runs
        rev = preset.revision if preset.onnx_hub_id == preset.hub_id else "main"
        if (snap := cached_snapshot(preset.onnx_hub_id, rev, onnx=True)) is not None:
            return CacheState(True, snap, _dir_size(snap), "hub cache (ONNX)")
    return CacheState(False, None, None, "not cached")


def offline_error(name: str, hub_id: str) -> ModelError:
    """The one message for a model that is neither cached nor downloadable here."""
    return ModelError(
        f"model '{name}' ({hub_id}) is not cached and this machine is offline",
        hint=(
            f"run `cs model pull {name}` on a connected machine (then copy the Hugging Face "
            "cache), or use `--model PATH` with a local model directory, or `--model minilm`"
        ),
    )


def fetch(
    hub_id: str,
    revision: str,
    *,
    name: str | None = None,
    notify: Callable[[str], None] | None = None,
    onnx: bool = False,
) -> Path:
    """A local directory with ``hub_id``'s files at ``revision``: from the cache, else downloaded
    (huggingface_hub shows a progress bar on stderr); with ``onnx``, its fp32 ONNX export
    (onnx/model.onnx) instead of torch weights. Raises ModelError when offline and not cached
    or when the download fails.
    """
    label = name or hub_id
    if (snap := cached_snapshot(hub_id, revision, onnx)) is not None:
        return snap
    if is_offline():
        raise offline_error(label, hub_id)
    from huggingface_hub import snapshot_download

    if notify is not None:
        notify(f"Downloading {hub_id} (revision {revision}) to {hub_cache_dir()} ...")
    try:
        path = Path(
            snapshot_download(
                hub_id,
                revision=revision,
                cache_dir=hub_cache_dir(),
                allow_patterns=ONNX_ALLOW_PATTERNS if onnx else ALLOW_PATTERNS,
            )
        )
    except Exception as err:  # noqa: BLE001 - network, auth and not-found all end the same way
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if type(err).__name__ in {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}:
            raise offline_error(label, hub_id) from err
        raise ModelError(
            f"could not download {hub_id}@{revision}: {first_line}",
            hint="check the model id and your network, or use `--model PATH` or `--model minilm`",
        ) from err
    if not _has_weights(path, onnx):
        what = "ONNX export (onnx/model.onnx)" if onnx else "safetensors or PyTorch weights"
        raise ModelError(
            f"{hub_id}@{revision} has no {what}",
            hint="pick a transformers model repository, or use `--model PATH`",
        )
    return path

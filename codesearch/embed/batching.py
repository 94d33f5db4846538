"""Pure batching: group token sequences so that padding is small and each batch fits a budget."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_batches(
    lengths: Sequence[int], token_budget: int, max_batch: int = 256
) -> list[list[int]]:
    """Indices of the inputs grouped into batches, longest first.

    Sorting by length makes neighbours similar, so padding to the longest in a batch wastes little.
    A batch holds as many sequences as fit ``token_budget`` padded tokens (rows x longest length),
    at most ``max_batch``, and always at least one (a sequence longer than the budget runs alone).
    Every index appears exactly once.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        candidate = max(longest, lengths[i])
        if current and (candidate * (len(current) + 1) > token_budget or len(current) >= max_batch):
            batches.append(current)
            current, candidate = [], lengths[i]
        current.append(i)
        longest = candidate
    if current:
        batches.append(current)
    return batches


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) as int64 arrays, padded on ``side`` ('left' or 'right') to the
    longest sequence."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        n = len(seq)
        if side == "left":
            ids[row, width - n :] = seq
            mask[row, width - n :] = 1
        else:
            ids[row, :n] = seq
            mask[row, :n] = 1
    return ids, mask

"""Laying one optimizer step's packed rows out over the data-parallel ranks (RL, SFT and DPO).

Every rank must run the same number of forward passes (each is a round of FSDP all-gathers), so
ranks that get fewer rows are topped up with all-masked padding rows; no row is ever dropped.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from olmorl.algo import PackedRow, split_rows


@dataclass(frozen=True)
class MiniBatch:
    """One rank's packed rows of one optimizer step, and the step's loss-token count."""

    rows: tuple[PackedRow, ...]
    """Rows for this rank; every rank gets the same number (padding rows are all-masked)."""
    total_loss_tokens: int
    """Loss tokens of the whole optimizer step over all ranks: the loss denominator."""


def shard_rows(rows: Sequence[PackedRow], world_size: int) -> list[MiniBatch]:
    """Deals `rows` to `world_size` ranks, balancing tokens, padding to equal row counts."""
    if not rows:
        raise ValueError("an optimizer step needs at least one row")
    total = sum(row.num_loss_tokens for row in rows)
    parts = split_rows(rows, world_size)
    count = max(len(part) for part in parts)
    shortest = min(rows, key=len)
    padding = replace(shortest, loss_mask=torch.zeros_like(shortest.loss_mask))
    return [MiniBatch(tuple(part) + (padding,) * (count - len(part)), total) for part in parts]


@dataclass(frozen=True)
class PreferenceMiniBatch:
    """One rank's packed preference pairs of one optimizer step.

    Each pair p is two adjacent documents of one row, chosen (2p) then rejected (2p + 1), with the
    response tokens in the loss mask.
    """

    rows: tuple[PackedRow, ...]
    """Rows for this rank, padded to the same count on every rank (padding rows are all-masked)."""
    reference_logps: tuple[torch.Tensor, ...]
    """Per row, the reference model's summed response log-prob of each document, # [D]."""
    total_pairs: int
    """Pairs of the whole optimizer step over all ranks: the loss denominator."""

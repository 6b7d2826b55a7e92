"""Sequence packing: many trajectories per row, attention kept within each document.

`pack_trajectories` bins trajectories into rows by first-fit-decreasing; each row is one
micro-batch of shape [1, T] whose position ids restart at 0 per document. `unpack` maps per-token
results back to the trajectories in their original order.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from olmorl.algo.masks import TrajectoryTokens


@dataclass(frozen=True)
class PackedRow:
    """Several trajectories laid end to end in one row."""

    input_ids: Tensor
    """Token ids of all documents, # [T] int64."""
    position_ids: Tensor
    """Position within its own document, restarting at 0, # [T] int64."""
    loss_mask: Tensor
    """True on tokens that enter the loss, # [T] bool."""
    sampler_logprobs: Tensor
    """vLLM logprob on loss tokens, 0 elsewhere, # [T] float32."""
    advantages: Tensor
    """Advantage on loss tokens, 0 elsewhere, # [T] float32."""
    seq_lens: tuple[int, ...]
    """Length of each document, in row order."""
    trajectory_indices: tuple[int, ...]
    """Index of each document in the list given to `pack_trajectories`, in row order."""

    def __len__(self) -> int:
        return self.input_ids.numel()

    @property
    def cu_seqlens(self) -> Tensor:
        """Document boundaries [0, l0, l0+l1, ...] for varlen attention kernels, # [D+1]."""
        return torch.tensor([0, *self.seq_lens], dtype=torch.int32).cumsum(0, dtype=torch.int32)

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def model_inputs(
        self, varlen: bool = False, pad: bool = False
    ) -> dict[str, Tensor | int | bool]:
        """Keyword arguments for a Hugging Face causal LM forward over this row as a [1, T] batch,
        or as a [D, L] batch when its D documents all have L tokens (pretraining windows, a group's
        equal-length responses): plain causal attention then keeps them apart, where the packed
        row costs sdpa a dense [T, T] mask. `pad` batches documents of different lengths too, each
        right-padded to the longest, when that at most doubles the tokens: a kernel that needs the
        dense mask (sdpa, eager) then works on D small squares instead of one [T, T] one (at
        T = 1,024 of 12-20-token documents, a tiny Olmo3's forward and backward took 0.65x the
        time; at T = 4,000, 0.28x). Causal attention never lets a real token see the padding
        after it, and the padding's positions continue its document's, so no document boundary
        is seen there. Per-token outputs go back to row order with `in_row_order`.

        transformers ≥ 5 turns position ids that restart at 0 into a block-diagonal causal mask
        (`find_packed_sequence_indices`; sdpa and eager: dense, flex_attention: a BlockMask), for
        full and sliding-window layers alike, but only when attention_mask is None and there is
        no KV cache. Olmo3 creates a cache whenever use_cache is on (its config default), and
        attention then silently crosses documents; hence use_cache=False here, which
        tests/unit/test_algo_packing.py checks against unpacked runs.

        flash_attention_2 ignores that mask and finds the documents itself from the position ids,
        in every layer, with device syncs; `varlen` passes their boundaries instead, as the
        flash-attn varlen arguments transformers takes (`cu_seq_lens_q`, `max_length_q`, ...).
        """
        inputs: dict[str, Tensor | int | bool] = {"use_cache": False}
        if self._batched(varlen, pad):
            valid = self._in_batch()
            longest = valid.shape[1]
            input_ids = torch.zeros(valid.shape, dtype=self.input_ids.dtype)
            input_ids[valid] = self.input_ids
            positions = torch.zeros(valid.shape, dtype=self.position_ids.dtype)
            positions[valid] = self.position_ids
            lengths = valid.sum(1, keepdim=True)
            last = positions.gather(1, lengths - 1)
            continuing = last - lengths + 1 + torch.arange(longest)
            inputs.update(
                input_ids=input_ids, position_ids=torch.where(valid, positions, continuing)
            )
            return inputs
        inputs.update(input_ids=self.input_ids[None], position_ids=self.position_ids[None])
        if varlen:
            cu_seqlens = self.cu_seqlens  # [D+1] int32
            longest = max(self.seq_lens)
            inputs.update(
                cu_seq_lens_q=cu_seqlens,
                cu_seq_lens_k=cu_seqlens,
                max_length_q=longest,
                max_length_k=longest,
            )
        return inputs

    def in_row_order(self, values: Tensor) -> Tensor:
        """Per-token outputs of a forward over `model_inputs(...)` (# [1, T] or [D, L]) as
        # [1, T], in row order: each document's first position then scores 0, as the row's
        first does."""
        if values.shape[0] == 1:
            return values.reshape(1, -1)
        real = self._in_batch().flatten().nonzero().squeeze(1).to(values.device)
        return values.reshape(-1).index_select(0, real)[None]

    def _batched(self, varlen: bool, pad: bool) -> bool:
        if varlen or len(self.seq_lens) < 2:
            return False
        equal = len(set(self.seq_lens)) == 1
        return equal or (pad and len(self.seq_lens) * max(self.seq_lens) <= 2 * len(self))

    def _in_batch(self) -> Tensor:
        """Which slots of the [D, longest] batch hold this row's tokens, # [D, L] bool."""
        lengths = torch.tensor(self.seq_lens)
        return torch.arange(max(self.seq_lens)) < lengths[:, None]


def pack_trajectories(
    trajectories: Sequence[TrajectoryTokens], max_tokens_per_row: int
) -> list[PackedRow]:
    """Pack every trajectory into exactly one row of at most max_tokens_per_row tokens.

    First-fit-decreasing: longest first, each into the first row with room. Nothing is dropped;
    a trajectory longer than the budget is an error, not a silent truncation.
    """
    too_long = [i for i, t in enumerate(trajectories) if len(t) > max_tokens_per_row]
    if too_long:
        raise ValueError(
            f"trajectory {too_long[0]} has {len(trajectories[too_long[0]])} tokens, more than "
            f"max_tokens_per_row={max_tokens_per_row} ({len(too_long)} such trajectories); "
            "raise the row budget or cap the response length"
        )
    lengths = [len(t) for t in trajectories]
    # sorted() is stable, so equal lengths keep their original order: packing is deterministic.
    bins = first_fit(
        sorted(range(len(lengths)), key=lambda i: -lengths[i]), lengths, max_tokens_per_row
    )
    return [
        concatenate_documents([trajectories[i] for i in indices], tuple(indices))
        for indices in bins
    ]


def first_fit(order: Sequence[int], lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices into `lengths` grouped into rows of at most `capacity` tokens, taking them in
    `order` and putting each in the first row it fits."""
    bins: list[list[int]] = []
    used: list[int] = []
    for index in order:
        row = next((r for r, n in enumerate(used) if n + lengths[index] <= capacity), None)
        if row is None:
            bins.append([])
            used.append(0)
            row = len(bins) - 1
        bins[row].append(index)
        used[row] += lengths[index]
    return bins


def concatenate_documents(docs: Sequence[TrajectoryTokens], indices: tuple[int, ...]) -> PackedRow:
    """One row holding `docs` back to back, positions restarting at each (SFT packs with it too)."""
    return PackedRow(
        input_ids=torch.cat([d.input_ids for d in docs]),
        position_ids=torch.cat([torch.arange(len(d)) for d in docs]),
        loss_mask=torch.cat([d.loss_mask for d in docs]),
        sampler_logprobs=torch.cat([d.sampler_logprobs for d in docs]),
        advantages=torch.cat([d.advantages for d in docs]),
        seq_lens=tuple(len(d) for d in docs),
        trajectory_indices=indices,
    )


def unpack(rows: Sequence[PackedRow], per_row_values: Sequence[Tensor]) -> list[Tensor]:
    """Split per-token values of each row (# [T] or [1, T]) back into trajectories, in order."""
    pieces_by_index: dict[int, Tensor] = {}
    for row, values in zip(rows, per_row_values, strict=True):
        pieces = values.reshape(-1).split(list(row.seq_lens))
        pieces_by_index.update(zip(row.trajectory_indices, pieces, strict=True))
    if sorted(pieces_by_index) != list(range(len(pieces_by_index))):
        raise ValueError(
            "rows do not hold trajectories 0..n-1: pass every row of one pack_trajectories call"
        )
    return [pieces_by_index[i] for i in range(len(pieces_by_index))]


def document_sums(row: PackedRow, values: Tensor) -> tuple[Tensor, Tensor]:
    """Σ values over each document's loss-mask tokens, and the count of those tokens. # [D], [D]

    `values` is per token of the row, # [T] or [1, T]; masked-out positions may hold anything.
    """
    mask = row.loss_mask.to(values.device)  # [T]
    masked = torch.where(mask, values.reshape(-1), 0.0)  # [T]
    doc = torch.repeat_interleave(
        torch.arange(len(row.seq_lens), device=values.device),
        torch.tensor(row.seq_lens, device=values.device),
    )  # [T], the document of each token
    sums = torch.zeros(len(row.seq_lens), dtype=values.dtype, device=values.device)
    counts = torch.zeros(len(row.seq_lens), dtype=torch.long, device=values.device)
    return sums.index_add(0, doc, masked), counts.index_add(0, doc, mask.long())


def split_rows(rows: Sequence[PackedRow], num_parts: int) -> list[list[PackedRow]]:
    """Deal rows to num_parts ranks or micro-batch groups, balancing tokens; every row lands once.

    Parts may get different numbers of rows; a rank that runs out must step with an all-masked
    row rather than the step dropping the leftover rows (design §5).
    """
    if num_parts < 1:
        raise ValueError(f"num_parts must be >= 1, got {num_parts}")
    parts: list[list[PackedRow]] = [[] for _ in range(num_parts)]
    part_tokens = [0] * num_parts
    # Longest-processing-time greedy: each row, longest first, to the least loaded part.
    for row in sorted(rows, key=len, reverse=True):
        lightest = min(range(num_parts), key=part_tokens.__getitem__)
        parts[lightest].append(row)
        part_tokens[lightest] += len(row)
    return parts

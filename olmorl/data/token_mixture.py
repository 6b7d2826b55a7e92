"""Which fixed-length window of which source each pretraining step reads: a pure function of the
seed, the sources' sizes, their weights and the window's place in the stream.

Each source is cut into windows of `seq_len` tokens, across document boundaries (a remainder
shorter than a window is not read). The stream is laid out in blocks of `BLOCK_WINDOWS`: every
block holds each source's share of the block (its weight, apportioned by largest remainder), in
an order shuffled per block. A source's windows are read in a fresh seeded permutation each time
it is exhausted (its epoch). So the mix holds within every block, not just on average over a run,
and window k of the stream is found in O(1) without replaying the ones before it: a resumed run
reads exactly the tokens an uninterrupted one would.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

BLOCK_WINDOWS = 1024


@dataclass(frozen=True)
class WindowRef:
    source: int
    """Index of the source in the mixture."""
    window: int
    """Index of the window within that source: tokens [window·seq_len, (window+1)·seq_len)."""


def apportion(weights: Sequence[float], total: int) -> list[int]:
    """Integer shares of `total` proportional to `weights`, by largest remainder (summing to
    `total`; ties go to the earlier source)."""
    exact = [total * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(frozen=True)
class MixtureStream:
    window_counts: tuple[int, ...]
    """Whole windows in each source."""
    weights: tuple[float, ...]
    """Relative share of the stream each source takes."""
    seed: int
    names: tuple[str, ...] = ()
    """For error messages: what each source is called."""

    def __post_init__(self):
        names = self.names or tuple(f"source {i}" for i in range(len(self.weights)))
        if len(self.window_counts) != len(self.weights) or len(names) != len(self.weights):
            raise ValueError("window_counts, weights and names must have one entry per source")
        for name, count, weight in zip(names, self.window_counts, self.weights, strict=True):
            if weight <= 0:
                raise ValueError(f"{name}: weight must be positive, got {weight}")
            if count < 1:
                raise ValueError(f"{name}: shorter than one window of the sequence length")
        starved = [n for n, s in zip(names, self.block_shares, strict=True) if s == 0]
        if starved:
            raise ValueError(
                f"{', '.join(starved)}: weight too small for a share of {BLOCK_WINDOWS} windows "
                f"(under {1 / BLOCK_WINDOWS:.4f} of the mix)"
            )

    @cached_property
    def block_shares(self) -> tuple[int, ...]:
        """Windows of each source in every block."""
        return tuple(apportion(self.weights, BLOCK_WINDOWS))

    def window(self, k: int) -> WindowRef:
        """The stream's window number k (0-based)."""
        if k < 0:
            raise ValueError(f"window index must be non-negative, got {k}")
        block, slot = divmod(k, BLOCK_WINDOWS)
        source, ordinal = _block_layout(self.block_shares, self.seed, block)[slot]
        read = block * self.block_shares[source] + ordinal  # this source's windows before it
        epoch, position = divmod(read, self.window_counts[source])
        order = _epoch_order(self.window_counts[source], self.seed, source, epoch)
        return WindowRef(source, int(order[position]))

    def windows(self, start: int, count: int) -> list[WindowRef]:
        return [self.window(k) for k in range(start, start + count)]

    def source_counts(self, num_windows: int) -> list[int]:
        """How many of the stream's first `num_windows` windows each source gave."""
        full, rest = divmod(num_windows, BLOCK_WINDOWS)
        counts = [full * share for share in self.block_shares]
        for source, _ in _block_layout(self.block_shares, self.seed, full)[:rest]:
            counts[source] += 1
        return counts


@lru_cache(maxsize=8)
def _block_layout(shares: tuple[int, ...], seed: int, block: int) -> tuple[tuple[int, int], ...]:
    """(source, its ordinal within the block) for each slot of block `block`."""
    slots = [source for source, share in enumerate(shares) for _ in range(share)]
    random.Random(f"{seed}:block:{block}").shuffle(slots)
    seen = [0] * len(shares)
    layout = []
    for source in slots:
        layout.append((source, seen[source]))
        seen[source] += 1
    return tuple(layout)


@lru_cache(maxsize=16)
def _epoch_order(count: int, seed: int, source: int, epoch: int) -> np.ndarray:
    """The order a source's windows are read in during its epoch `epoch` (4 or 8 bytes a window:
    about 1 GB for a 2T-token source at 8K windows)."""
    dtype = np.uint32 if count <= np.iinfo(np.uint32).max else np.uint64
    return np.random.default_rng([seed, source, epoch]).permutation(count).astype(dtype)

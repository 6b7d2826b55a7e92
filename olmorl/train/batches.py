"""Which examples each optimizer step trains on: a pure function of the seed and the data.

The whole run's plan is computed up front, so a resumed run takes step k's examples by index
and sees exactly what an uninterrupted run would have.
"""

import random
from collections.abc import Callable, Sequence


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """Example indices in the order epoch `epoch` visits them."""
    order = list(range(num_examples))
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def token_budget_batches(
    order: Sequence[int], lengths: Sequence[int], tokens_per_step: int
) -> list[list[int]]:
    """Consecutive runs of `order` whose lengths sum to at most tokens_per_step (at least one
    example each, so an example as long as the budget still trains)."""
    batches: list[list[int]] = []
    used = tokens_per_step
    for index in order:
        if used + lengths[index] > tokens_per_step:
            batches.append([])
            used = 0
        batches[-1].append(index)
        used += lengths[index]
    return batches


def fixed_size_batches(order: Sequence[int], size: int) -> list[list[int]]:
    """Consecutive runs of `size` examples; the epoch's last batch may be smaller."""
    return [list(order[i : i + size]) for i in range(0, len(order), size)]


def plan_steps(
    num_examples: int,
    seed: int,
    shuffle: bool,
    split_epoch: Callable[[list[int]], list[list[int]]],
    epochs: int,
    steps: int | None = None,
) -> list[list[int]]:
    """Every optimizer step's example indices: `epochs` passes, or exactly `steps` steps
    (cycling through as many epochs as that takes). No batch spans two epochs."""
    if num_examples < 1:
        raise ValueError("there are no examples to train on")
    plan: list[list[int]] = []
    epoch = 0
    while (steps is None and epoch < epochs) or (steps is not None and len(plan) < steps):
        plan += split_epoch(epoch_order(num_examples, seed, epoch, shuffle))
        epoch += 1
    return plan if steps is None else plan[:steps]

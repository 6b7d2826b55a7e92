"""Step planning: deterministic, epoch-aligned, and the same plan after a resume."""

from olmorl.train.batches import (
    epoch_order,
    fixed_size_batches,
    plan_steps,
    token_budget_batches,
)


def test_epoch_order_is_a_seeded_permutation():
    first = epoch_order(50, seed=3, epoch=0, shuffle=True)
    assert sorted(first) == list(range(50))
    assert first == epoch_order(50, seed=3, epoch=0, shuffle=True)
    assert first != epoch_order(50, seed=3, epoch=1, shuffle=True)
    assert first != epoch_order(50, seed=4, epoch=0, shuffle=True)
    assert epoch_order(5, seed=3, epoch=7, shuffle=False) == [0, 1, 2, 3, 4]


def test_token_budget_batches_fill_up_to_the_budget_in_order():
    lengths = [4, 4, 4, 9, 1, 10, 2]
    batches = token_budget_batches(range(7), lengths, 10)
    assert batches == [[0, 1], [2], [3, 4], [5], [6]]
    assert [i for b in batches for i in b] == list(range(7))
    assert all(sum(lengths[i] for i in b) <= 10 for b in batches)


def test_fixed_size_batches_keep_the_remainder():
    assert fixed_size_batches([5, 1, 4, 2, 3], 2) == [[5, 1], [4, 2], [3]]


def test_plan_covers_each_epoch_once_and_cycles_for_extra_steps():
    split = lambda order: fixed_size_batches(order, 4)
    plan = plan_steps(10, seed=0, shuffle=True, split_epoch=split, epochs=2)
    assert len(plan) == 6  # 3 batches per epoch (4 + 4 + 2), no batch spans two epochs
    for epoch in (plan[:3], plan[3:]):
        assert sorted(i for b in epoch for i in b) == list(range(10))
    longer = plan_steps(10, seed=0, shuffle=True, split_epoch=split, epochs=2, steps=8)
    assert longer[:6] == plan and len(longer) == 8
    shorter = plan_steps(10, seed=0, shuffle=True, split_epoch=split, epochs=2, steps=4)
    assert shorter == plan[:4]

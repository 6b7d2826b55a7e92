"""Learning-rate schedules: warm-up, the three decays, their ends, and bad arguments."""

import math

import pytest

from olmorl.algo.schedule import learning_rate


def rates(kind, total=11, warmup=0, final=0.0, decay=0):
    return [learning_rate(s, 1.0, total, kind, warmup, final, decay) for s in range(total)]


def test_warmup_rises_linearly_and_never_trains_at_zero():
    assert rates("constant", total=10, warmup=4)[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_constant_linear_and_cosine_after_warmup():
    assert rates("constant") == [1.0] * 11
    assert rates("linear") == pytest.approx([1 - i / 10 for i in range(11)])
    cosine = rates("cosine")
    assert cosine == pytest.approx([0.5 * (1 + math.cos(math.pi * i / 10)) for i in range(11)])
    assert cosine[5] == pytest.approx(0.5)


def test_decay_ends_at_the_floor_after_warmup():
    linear = rates("linear", total=12, warmup=2, final=0.1)
    assert linear[1] == 1.0 and linear[2] == 1.0 and linear[-1] == pytest.approx(0.1)
    assert rates("cosine", total=12, warmup=2, final=0.1)[-1] == pytest.approx(0.1)
    # Olmo 3's DPO: linear decay with 10% warm-up.
    dpo = rates("linear", total=100, warmup=10)
    assert (
        dpo[9] == 1.0
        and dpo[-1] == 0.0
        and dpo == sorted(dpo[:10]) + sorted(dpo[10:], reverse=True)
    )


def test_warmup_stable_decay():
    wsd = rates("wsd", total=10, warmup=2, final=0.2, decay=4)
    assert wsd == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2])


def test_wsd_decay_fraction_comes_from_the_learner_config():
    from olmorl.algo.schedule import scheduled_lr
    from olmorl.config.components import LearnerConfig

    learner = LearnerConfig(lr=1.0, lr_schedule="wsd", decay_fraction=0.25)
    assert [scheduled_lr(learner, s, 8) for s in range(8)] == pytest.approx([1.0] * 6 + [0.5, 0.0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((11, 1.0, 11), "outside"),
        ((-1, 1.0, 11), "outside"),
        ((0, 1.0, 11, "constant", 11), "warmup_steps"),
        ((0, 1.0, 11, "step"), "unknown schedule"),
        ((0, 1.0, 11, "wsd", 2, 0.0, 0), "decay_steps"),
        ((0, 1.0, 11, "wsd", 2, 0.0, 10), "decay_steps"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        learning_rate(*args)

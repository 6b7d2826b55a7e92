"""Engine activity: busy and occupancy integrate over time; pauses count as idle."""

import pytest

from olmorl.rollout.activity import EngineActivity


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_busy_occupancy_and_pauses() -> None:
    clock = Clock()
    activity = EngineActivity(capacity=4, clock=clock)
    clock.now = 1.0  # idle
    activity.started(2)
    clock.now = 3.0  # 2 of 4 slots for 2 s
    activity.started(6)
    clock.now = 4.0  # full (8 in flight > 4) for 1 s
    activity.paused(True)
    clock.now = 6.0  # paused for 2 s, holding requests
    activity.paused(False)
    activity.finished(8, tokens=100)
    clock.now = 7.0  # idle again
    totals = activity.take()
    assert totals == pytest.approx(
        {"wall_s": 7.0, "busy_s": 3.0, "occupancy_s": 2 * 0.5 + 1.0, "paused_s": 2.0, "tokens": 100}
    )
    clock.now = 8.0
    assert activity.take()["wall_s"] == 1.0  # counting restarted

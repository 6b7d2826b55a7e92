"""Learning-rate schedules: linear warm-up, then constant, linear decay, cosine decay, or
warmup-stable-decay (constant, then a linear decay over the last part of the run) to a floor.

A pure function of the optimizer step, so a resumed run recomputes exactly the rate it had.
"""

import math
from typing import Literal

ScheduleKind = Literal["constant", "linear", "cosine", "wsd"]


def learning_rate(
    step: int,
    peak: float,
    total_steps: int,
    kind: ScheduleKind = "constant",
    warmup_steps: int = 0,
    final_fraction: float = 0.0,
    decay_steps: int = 0,
) -> float:
    """The rate for optimizer step `step` (0-based) of `total_steps`.

    Warm-up rises linearly from peak / warmup_steps at step 0 to `peak` at step warmup_steps - 1,
    so no step trains at rate 0. After it, `linear` and `cosine` fall from `peak` to
    `final_fraction * peak` at the last step; `constant` stays at `peak`.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} is outside the schedule of {total_steps} steps")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, {total_steps}), got {warmup_steps}")
    if kind == "wsd" and not 0 < decay_steps <= total_steps - warmup_steps:
        raise ValueError(
            f"wsd needs 0 < decay_steps <= {total_steps - warmup_steps} (the steps after "
            f"warm-up), got {decay_steps}"
        )
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if kind == "constant":
        return peak
    floor = final_fraction * peak
    if kind == "wsd":
        decay_start = total_steps - decay_steps
        if step < decay_start:
            return peak
        # The decay's first step is already below peak, its last is the floor.
        return peak + (floor - peak) * (step - decay_start + 1) / decay_steps
    span = total_steps - warmup_steps - 1
    progress = (step - warmup_steps) / span if span else 1.0
    if kind == "linear":
        return peak + (floor - peak) * progress
    if kind == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {kind!r}; choose constant, linear, cosine or wsd")


def scheduled_lr(learner, step: int, total_steps: int) -> float:
    """`learning_rate` as a LearnerConfig sets it up (warm-up given as a share of the run); a
    step past the end keeps the last rate."""
    return learning_rate(
        min(step, total_steps - 1),
        learner.lr,
        total_steps,
        learner.lr_schedule,
        int(learner.warmup_fraction * total_steps),
        learner.final_lr_fraction,
        max(1, round(learner.decay_fraction * total_steps)),
    )

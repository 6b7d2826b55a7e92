"""Starting a dead rollout engine's replacement: the old engine's processes gone, then the start
retried with backoff.

On a GPU, vLLM refuses to start while free memory is below `gpu_memory_utilization` of the
device, and a killed engine's processes (vLLM's engine core and workers outlive the actor for a
while) hold theirs until they exit. `RLCluster.replace_engine` waits for them with
`wait_until_gone`, then starts the new engine with `start_with_backoff`. Both take the clock and
the sleep as arguments, so that tests run them without waiting.
"""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

GONE_TIMEOUT_S = 120.0
"""How long a killed engine's processes may take to exit."""
START_ATTEMPTS = 4
"""Starts tried before a replacement is given up."""
FIRST_PAUSE_S = 10.0
"""The pause after the first failed start; each later one is twice the one before."""


class ReplacementFailed(RuntimeError):
    """A dead engine's processes did not go, or its replacement did not start."""


def wait_until_gone(
    running: Callable[[], list],
    name: str,
    timeout_s: float = GONE_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Returns once `running()` (`name`'s processes still running) is empty; raises
    ReplacementFailed naming them if it is not within `timeout_s`. Checks every 0.1 s at first,
    then less often (at most every 2 s)."""
    deadline = clock() + timeout_s
    pause = 0.1
    while left := running():
        if clock() >= deadline:
            raise ReplacementFailed(
                f"{name} was killed, but its processes {left} still run after {timeout_s:g} s "
                "and may hold its GPU memory; its replacement was not started"
            )
        sleep(pause)
        pause = min(2 * pause, 2.0)


def start_with_backoff(
    start: Callable[[], T],
    name: str,
    attempts: int = START_ATTEMPTS,
    first_pause_s: float = FIRST_PAUSE_S,
    sleep: Callable[[float], None] = time.sleep,
    final: tuple[type[Exception], ...] = (),
) -> T:
    """`start()`'s result, trying up to `attempts` times, pausing `first_pause_s`, then twice as
    long after each failure (memory a killed engine held can take a while to be free again).
    After the last failure raises ReplacementFailed naming `name` and every attempt's error,
    from the last one. An error of a `final` type is raised at once: no retry can help."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    errors: list[str] = []
    pause = first_pause_s
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except final:
            raise
        except Exception as e:  # retried; every attempt's error is reported at the end
            errors.append(f"attempt {attempt}: {type(e).__name__}: {_first_line(e)}")
            if attempt == attempts:
                raise ReplacementFailed(
                    f"{name} did not start in {attempts} attempts ({'; '.join(errors)})"
                ) from e
        sleep(pause)
        pause *= 2
    raise AssertionError("unreachable")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"

"""How busy one rollout engine was: time with sequences to run, occupancy, pauses, tokens.

Sequences in flight are those submitted and not finished. While fewer than `max_num_seqs` are in
flight vLLM runs them all, so min(in flight, capacity) / capacity is the engine's occupancy;
a paused engine (weight update) counts as idle whatever it holds.
"""

import time
from collections.abc import Callable


class EngineActivity:
    def __init__(self, capacity: int, clock: Callable[[], float] = time.perf_counter):
        self.capacity, self.clock = capacity, clock
        self.in_flight = 0
        self.is_paused = False
        self._reset(clock())

    def started(self, sequences: int) -> None:
        self._advance()
        self.in_flight += sequences

    def finished(self, sequences: int, tokens: int) -> None:
        self._advance()
        self.in_flight -= sequences
        self.tokens += tokens

    def paused(self, paused: bool) -> None:
        self._advance()
        self.is_paused = paused

    def take(self) -> dict[str, float]:
        """The totals since the previous call, then starts counting afresh."""
        self._advance()
        totals = {
            "wall_s": self._last - self._since,
            "busy_s": self.busy_s,
            "occupancy_s": self.occupancy_s,
            "paused_s": self.paused_s,
            "tokens": float(self.tokens),
        }
        self._reset(self._last)
        return totals

    def _advance(self) -> None:
        now = self.clock()
        elapsed = now - self._last
        if self.is_paused:
            self.paused_s += elapsed
        elif self.in_flight > 0:
            self.busy_s += elapsed
            self.occupancy_s += elapsed * min(self.in_flight, self.capacity) / self.capacity
        self._last = now

    def _reset(self, now: float) -> None:
        self._since = self._last = now
        self.busy_s = self.occupancy_s = self.paused_s = 0.0
        self.tokens = 0

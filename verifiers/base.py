"""What every verifier is: an async callable from (response, label, row) to a score in [0, 1].

A verifier subclasses `Verifier`, declares its options as a frozen dataclass named `Config` and is
made known with `@register(name)` (or an `olmorl.verifiers` entry point for third-party packages).
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class VerifierResult:
    score: float
    """The reward, in [0, 1]."""
    reason: str
    """Short machine-readable cause, e.g. "correct", "wrong_answer", "no_answer", "timeout"."""
    transient: bool = False
    """The score reflects a failure that may not recur (an endpoint down, a timeout), not a
    verdict on the response; the reward service does not cache it."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")


class VerifierUnavailable(RuntimeError):
    """A verifier cannot run on this host (no sandbox for model-written code, say)."""


class Verifier(ABC):
    name: ClassVar[str]
    """The `dataset` value of the rows this verifier scores; set by `register`."""

    @dataclass(frozen=True)
    class Config:
        """Options of the verifier; subclasses replace it with a subclass carrying their fields."""

    def __init__(self, config: Config | None = None):
        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise TypeError(
                f"{type(self).__name__} takes a {self.Config.__qualname__}, "
                f"got a {type(config).__qualname__}"
            )
        self.config = config

    @classmethod
    def check_host(cls) -> str | None:
        """Raises VerifierUnavailable, naming the reason, where this verifier cannot run on this
        host (a run then refuses to start rather than score every response 0); else returns a
        line for the run's console on what it found, or None. By default every host will do."""
        return None

    @abstractmethod
    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        """Scores `response` against `label` (the row's `ground_truth`); `row` is the whole row."""

    def close(self) -> None:
        """Releases what the verifier holds (worker processes); the default holds nothing."""

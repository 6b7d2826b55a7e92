"""The `coin` verifier: a reward that ignores correctness, for benchmarks of the RL loop.

The score is 1 with probability `p`, decided by a hash of (response, label): deterministic, so a
run repeats, and independent across a group's different responses, so groups have the reward
variance training needs whatever the model writes.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from verifiers.base import Verifier, VerifierResult
from verifiers.registry import register


@register("coin")
class CoinVerifier(Verifier):
    @dataclass(frozen=True)
    class Config(Verifier.Config):
        p: float = 0.5
        """Probability of a reward of 1."""

        def __post_init__(self) -> None:
            if not 0.0 <= self.p <= 1.0:
                raise ValueError(f"p must be in [0, 1], got {self.p}")

    config: Config

    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        digest = hashlib.sha256(f"{label}\0{response}".encode()).digest()
        heads = int.from_bytes(digest[:8], "big") < self.config.p * 2**64
        return VerifierResult(1.0 if heads else 0.0, "heads" if heads else "tails")

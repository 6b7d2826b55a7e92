"""The reward worker: a Ray actor serving the verifiers of one run through a `RewardService`.

Its methods are async, so one worker scores many groups at once; each verifier runs under its own
concurrency limit, timeout and retries (verifiers/service.py), so a slow judge never holds up math.
"""

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from olmorl.actor_logs import capture_output
from olmorl.config import VerifiersConfig
from olmorl.rl.types import GroupScores


class RewardWorker:
    def __init__(self, config: VerifiersConfig, verifier_names: Sequence[str]):
        capture_output()
        from verifiers import build_verifier
        from verifiers.service import CallLimits, RewardService

        def limits(cfg) -> CallLimits:
            return CallLimits(**cfg.model_dump())

        self.service = RewardService(
            {name: build_verifier(name, config.options.get(name)) for name in verifier_names},
            limits={name: limits(cfg) for name, cfg in config.limits.items()},
            default_limits=limits(config.default_limits),
            weights=config.weights,
            cache_size=config.cache_size,
        )

    async def score_group(
        self, row: Mapping[str, Any], responses: Sequence[str], thinking: bool = False
    ) -> GroupScores:
        """The verdicts on one prompt's responses (`thinking`: the prompt opened a think block)."""
        scores = await asyncio.gather(
            *(self.service.score(row, r, thinking=thinking) for r in responses)
        )
        per_verifier = {
            name: tuple(s.per_verifier.get(name, 0.0) for s in scores)
            for name in dict.fromkeys(k for s in scores for k in s.per_verifier)
        }
        return GroupScores(
            rewards=tuple(s.score for s in scores),
            verifier_scores=per_verifier,
            pass_rates=tuple(s.pass_rate for s in scores),
            unscored=tuple(s.transient for s in scores),
        )

    def take_stats(self):
        """Per-verifier counters and latencies since the last call (`VerifierStats` by name)."""
        return self.service.take_stats()

    def shutdown(self) -> None:
        self.service.close()

"""The reward worker: scores a group's responses with the verifiers its row names.

`ray.remote(RewardWorker)` runs several of these as a pool, so scoring (which may be slow, e.g.
sympy in a subprocess) overlaps generation instead of blocking it.
"""

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from olmorl.config import VerifiersConfig


class RewardWorker:
    def __init__(self, config: VerifiersConfig, verifier_names: Sequence[str]):
        from verifiers import build_verifier

        self.weights = dict(config.weights)
        self.verifiers = {
            name: build_verifier(name, config.options.get(name)) for name in verifier_names
        }

    async def score_group(
        self, row: Mapping[str, Any], responses: Sequence[str]
    ) -> tuple[tuple[float, ...], dict[str, tuple[float, ...]]]:
        """Each response's reward, and each verifier's scores, for one prompt's group."""
        from verifiers import score_row

        scores = await asyncio.gather(
            *(score_row(row, r, self.verifiers, self.weights) for r in responses)
        )
        per_verifier = {
            name: tuple(s.per_verifier.get(name, 0.0) for s in scores)
            for name in dict.fromkeys(k for s in scores for k in s.per_verifier)
        }
        return tuple(s.score for s in scores), per_verifier

    def shutdown(self) -> None:
        for verifier in self.verifiers.values():
            verifier.close()

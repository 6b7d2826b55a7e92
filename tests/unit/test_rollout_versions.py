"""The policy version each sampled token is labelled with fails closed: a token vLLM leaves
unlabelled counts as the oldest weights it could have come from, never the engine's newest."""

import asyncio
from types import SimpleNamespace

import pytest

from olmorl.config import ModelConfig, RolloutConfig
from olmorl.rollout.engine import RolloutEngine


class FakeLLM:
    """Streams one response of two deltas; a weight push (to version 9) lands between them."""

    def __init__(self, engine: RolloutEngine, weight_versions):
        self.engine, self.weight_versions = engine, weight_versions

    async def generate(self, prompt, params, request_id):
        yield self._delta([5, 6], finish_reason=None)
        self.engine.version = 9  # finish_weight_update ran while the request was in flight
        yield self._delta([7], finish_reason="stop")

    def _delta(self, token_ids, finish_reason):
        logprobs = [{t: SimpleNamespace(logprob=-1.0)} for t in token_ids]
        output = SimpleNamespace(
            index=0,
            token_ids=token_ids,
            logprobs=logprobs,
            finish_reason=finish_reason,
            weight_versions=self.weight_versions if finish_reason else None,
        )
        return SimpleNamespace(outputs=[output])


def span(version: str, start: int, end: int):
    return SimpleNamespace(version=version, start=start, end=end)


@pytest.mark.parametrize(
    "weight_versions, expected",
    [
        (None, (4, 4, 4)),  # vLLM labelled nothing
        ([span("4", 0, 2)], (4, 4, 4)),  # spans that do not cover the response
        ([span("default", 0, 2), span("9", 2, 3)], (4, 4, 9)),  # a label that is no number
        ([span("4", 0, 2), span("9", 2, 3)], (4, 4, 9)),  # fully labelled: kept as vLLM says
    ],
)
def test_unlabelled_tokens_get_the_version_held_at_submission(weight_versions, expected):
    engine = RolloutEngine(ModelConfig(path="unused"), RolloutConfig(), 64, seed=0)
    engine.version = 4
    engine.llm = FakeLLM(engine, weight_versions)
    [completion] = asyncio.run(engine.generate([1, 2, 3], n=1))
    assert completion.token_ids == (5, 6, 7)
    assert completion.token_versions == expected

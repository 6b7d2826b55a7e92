"""Held-out evaluation: pass@k against enumeration, metrics by hand, and an evaluation that runs
beside the rollout producer without any of its groups reaching a training batch."""

import itertools
import math
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from olmorl.config import AlgorithmConfig
from olmorl.rl.evaluation import EvalGroup, eval_metrics, evaluate, pass_at_k
from olmorl.rl.producer import ProducerSettings, RolloutProducer
from olmorl.rl.prompts import PromptSampler
from olmorl.rl.types import Completion, GroupScores, Prompt


@pytest.mark.parametrize(("n", "c", "k"), [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 4, 3), (4, 4, 2)])
def test_pass_at_k_is_the_chance_a_random_k_subset_holds_a_correct_one(n, c, k):
    subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(map(any, subsets)) / len(subsets))


def completion(length: int, truncated: bool = False) -> Completion:
    return Completion(
        tuple(range(length)), (-1.0,) * length, "length" if truncated else "stop", (0,) * length
    )


def test_metrics_by_hand():
    # Prompt A: 4 samples, rewards (1, 0, 1, 0.5), fully passed by samples 0 and 2.
    # Prompt B: 4 samples, sample 3 unscored (a verifier timed out): 3 scored, 1 passed.
    a = GroupScores(
        (1.0, 0.0, 1.0, 0.5), {"v": (1.0, 0.0, 1.0, 0.5)}, (1.0, 0.0, 1.0, 0.5), (False,) * 4
    )
    b = GroupScores(
        (0.0, 1.0, 0.0, 0.0),
        {"v": (0.0, 1.0, 0.0, 0.0)},
        (0.0, 1.0, 0.0, 0.0),
        (False, False, False, True),
    )
    groups = [
        EvalGroup(tuple(completion(n) for n in (2, 4, 6, 8)), a),
        EvalGroup((completion(2), completion(2), completion(2), completion(10, True)), b),
    ]
    metrics = eval_metrics(groups)
    # reward: (1 + 0 + 1 + 0.5 + 0 + 1 + 0) / 7;  pass@1: (2/4 + 1/3) / 2
    # pass@4: A has 2 of 4 → 1;  B has 3 scored (k capped at 3), 1 correct → 1
    assert metrics["eval/reward"] == pytest.approx(3.5 / 7)
    assert metrics["eval/reward/v"] == pytest.approx(3.5 / 7)
    assert metrics["eval/pass@1"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert metrics["eval/pass@4"] == 1.0
    assert metrics["eval/response_tokens"] == pytest.approx(36 / 8)
    assert metrics["eval/truncation_rate"] == 1 / 8
    assert metrics["eval/responses_unscored"] == 1


def test_evaluation_beside_the_producer_never_reaches_a_training_batch():
    # One fake engine pool serves both; held-out prompts carry token ids >= 1000.
    pool = ThreadPoolExecutor(8)
    requests: list[tuple[int, ...]] = []

    def sample(ids, n) -> list[Completion]:
        requests.append(tuple(ids))
        return [Completion((ids[0], 7), (-1.0, -1.0), "stop", (0, 0)) for _ in range(n)]

    def train_generate(prompt, engine, ids, n, seed) -> Future:
        return pool.submit(sample, ids, n)

    def eval_generate(engine, ids, n, seed) -> Future:
        return pool.submit(sample, ids, n)

    def verdicts(rewards) -> GroupScores:
        return GroupScores(
            tuple(rewards), {"v": tuple(rewards)}, tuple(rewards), (False,) * len(rewards)
        )

    train = [Prompt([i], {"i": i}) for i in range(16)]
    held_out = [Prompt([1000 + i], {"i": 1000 + i}) for i in range(8)]
    cfg = AlgorithmConfig(group_size=4, prompts_per_step=4, async_steps=1)
    producer = RolloutProducer(
        ProducerSettings.from_algo(cfg, seed=0),
        train,
        PromptSampler(16, seed=0),
        1,
        train_generate,
        lambda p, row, ids: pool.submit(verdicts, [0.0, 1.0, 0.0, 1.0]),
        cfg,
    )
    producer.start()
    try:
        taken = []
        for step in range(1, 4):
            metrics = evaluate(
                held_out,
                2,
                1,
                eval_generate,
                lambda prompt, ids: pool.submit(verdicts, [1.0, 0.0]),
            )
            taken += producer.take(learner_version=0, timeout_s=30).groups
            producer.step_done(step)
    finally:
        producer.stop()
    assert metrics["eval/prompts"] == 8 and metrics["eval/pass@2"] == 1.0
    assert any(ids[0] >= 1000 for ids in requests)  # the evaluation did run on the engines
    assert all(g.group.prompt_ids[0] < 1000 for g in taken)
    assert all(c.token_ids[0] < 1000 for g in taken for c in g.group.completions)
    assert math.isclose(metrics["eval/reward"], 0.5)


class EngineDied(Exception):
    pass


def test_requests_of_a_dead_engine_go_to_another_and_with_none_left_the_evaluation_is_lost():
    from olmorl.rl.evaluation import NoEngineLeft

    pool = ThreadPoolExecutor(4)
    dead: set[int] = {0}
    served: list[int] = []

    def generate(engine, ids, n, seed) -> Future:
        def run():
            if engine in dead:
                raise EngineDied()
            served.append(engine)
            return [Completion((5,), (-1.0,), "stop", (0,)) for _ in range(n)]

        return pool.submit(run)

    def score(prompt, ids) -> Future:
        return pool.submit(lambda: GroupScores((1.0,), {"v": (1.0,)}, (1.0,), (False,)))

    prompts = [Prompt([i], {}) for i in range(6)]
    lost = lambda error: isinstance(error, EngineDied)
    metrics = evaluate(prompts, 1, 2, generate, score, engine_lost=lost)
    assert metrics["eval/prompts"] == 6 and metrics["eval/reward"] == 1.0
    assert set(served) == {1} and len(served) == 6  # all six answered by the live engine
    dead.add(1)
    with pytest.raises(NoEngineLeft):
        evaluate(prompts, 1, 2, generate, score, engine_lost=lost)

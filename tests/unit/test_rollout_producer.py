"""The rollout producer's policy with engines and reward workers faked by thread pools:
batch sizes under active sampling, the staleness bound, aborted requests sent again."""

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from olmorl.config import AlgorithmConfig
from olmorl.rl.producer import ProducerSettings, RolloutProducer
from olmorl.rl.prompts import PromptSampler
from olmorl.rl.types import Completion, GroupScores, Prompt

GROUP = 4


class FakeCluster:
    """Engines that label tokens with the version they hold, and a scorer by prompt."""

    def __init__(self, num_prompts, delay=lambda prompt: 0.0, rewards=None, aborts=()):
        self.prompts = [Prompt([i], {"i": i}) for i in range(num_prompts)]
        self.version = 0
        self.delay, self.aborts = delay, set(aborts)
        self.rewards = rewards or (lambda prompt: [0.0, 1.0] * (GROUP // 2))
        self.pool = ThreadPoolExecutor(16)
        self.lock = threading.Lock()
        self.requests: Counter[int] = Counter()

    def generate(self, prompt: int, engine: int, ids: list[int], n: int, seed: int) -> Future:
        with self.lock:
            self.requests[prompt] += 1
            abort = prompt in self.aborts and self.requests[prompt] == 1

        def run() -> list[Completion]:
            version = self.version
            time.sleep(self.delay(prompt))
            return [
                Completion((7, 8), (-1.0, -1.0), "abort" if abort else "stop", (version, version))
                for _ in range(n)
            ]

        return self.pool.submit(run)

    def score(self, prompt, row, token_ids) -> Future:
        return self.pool.submit(lambda: verdicts(self.rewards(row["i"])))

    def producer(self, snapshot=None, **algo) -> RolloutProducer:
        """A started producer over these engines, continuing from `snapshot` if given."""
        cfg = AlgorithmConfig(group_size=GROUP, **algo)
        producer = RolloutProducer(
            ProducerSettings.from_algo(cfg, seed=0),
            self.prompts,
            PromptSampler(len(self.prompts), seed=0),
            num_engines=2,
            generate=self.generate,
            score=self.score,
            algo=cfg,
        )
        if snapshot is not None:
            producer.restore(snapshot)
        producer.start()
        return producer


def verdicts(rewards, unscored=None) -> GroupScores:
    """A reward worker's answer for a group scored by one verifier `v`."""
    rewards = tuple(rewards)
    return GroupScores(rewards, {"v": rewards}, rewards, tuple(unscored or [False] * len(rewards)))


def train(
    cluster: FakeCluster,
    producer: RolloutProducer,
    steps: int,
    learner_s: float = 0.0,
    first_step: int = 1,
):
    """The learner's side of the loop: take, 'train', bump the engines' version."""
    try:
        return train_without_stop(cluster, producer, steps, learner_s, first_step)
    finally:
        producer.stop()


def train_without_stop(cluster, producer, steps, learner_s=0.0, first_step=1):
    batches = []
    for step in range(first_step, first_step + steps):
        batches.append(producer.take(learner_version=cluster.version))
        time.sleep(learner_s)
        cluster.version += 1
        producer.step_done(step)
    return batches


def test_active_sampling_keeps_the_batch_exact_when_most_groups_are_degenerate() -> None:
    # 9 prompts in 10 get the same reward for every response: no gradient.
    cluster = FakeCluster(200, rewards=lambda p: [0.0, 1.0, 0.0, 1.0] if p % 10 == 0 else [1.0] * 4)
    batches = train(cluster, cluster.producer(prompts_per_step=8, async_steps=1), steps=3)
    for batch in batches:
        assert len(batch.groups) == 8
        assert all(g.group.prompt_index % 10 == 0 for g in batch.groups)
    assert sum(b.stats["groups_resampled"] for b in batches) >= 3 * 8 * 9 * 0.5


def test_without_active_sampling_degenerate_groups_stay_in_the_batch() -> None:
    cluster = FakeCluster(50, rewards=lambda p: [1.0] * 4)
    batches = train(
        cluster, cluster.producer(prompts_per_step=4, async_steps=0, active_sampling=False), 2
    )
    assert [len(b.groups) for b in batches] == [4, 4]
    assert all(b.stats["groups_resampled"] == 0 for b in batches)


@pytest.mark.parametrize("async_steps", [0, 1, 2])
def test_no_trained_token_is_older_than_the_bound(async_steps: int) -> None:
    # A slow learner, and a long tail: the first prompt's request runs until the learner is
    # async_steps + 2 versions further, so it comes back too stale to train on.
    cluster = FakeCluster(400)
    first = PromptSampler(400, seed=0).take(1)[0]
    if async_steps:
        cluster.delay = lambda p: (
            _wait_for(lambda: cluster.version >= async_steps + 2) if p == first else 0.0
        )
    producer = cluster.producer(prompts_per_step=6, async_steps=async_steps)
    learner_versions = []
    original_take = producer.take

    def take(learner_version: int):
        learner_versions.append(learner_version)
        return original_take(learner_version)

    producer.take = take
    batches = train(cluster, producer, steps=async_steps + 5, learner_s=0.05)
    for version, batch in zip(learner_versions, batches):
        lags = [
            version - v for g in batch.groups for c in g.group.completions for v in c.token_versions
        ]
        assert 0 <= max(lags) <= async_steps
    trained = {g.group.prompt_index for b in batches for g in b.groups}
    if async_steps == 0:  # synchronous: everything is sampled by the current weights
        assert all(b.stats["groups_dropped_stale"] == 0 for b in batches)
    else:  # the long tail arrived late and was dropped, not trained
        assert sum(b.stats["groups_dropped_stale"] for b in batches) == 1
        assert first not in trained


def _wait_for(condition) -> float:
    while not condition():
        time.sleep(0.005)
    return 0.0


def test_the_budget_bounds_how_far_sampling_runs_ahead() -> None:
    cluster = FakeCluster(400)
    producer = cluster.producer(prompts_per_step=5, async_steps=2)
    issued = lambda: sum(cluster.requests.values())
    try:
        # The learner has not taken anything yet: three batches go out, and no more.
        _wait_for(lambda: issued() >= (0 + 1 + 2) * 5)
        time.sleep(0.3)
        assert issued() == (0 + 1 + 2) * 5
        producer.take(learner_version=0)
        producer.step_done(1)
        _wait_for(lambda: issued() >= (1 + 1 + 2) * 5)
        time.sleep(0.3)
        assert issued() == (1 + 1 + 2) * 5
    finally:
        producer.stop()


def test_aborted_requests_are_sent_again_and_no_prompt_is_lost_or_doubled() -> None:
    cluster = FakeCluster(24, aborts={1, 5, 9})
    batches = train(cluster, cluster.producer(prompts_per_step=8, async_steps=0), steps=3)
    trained = [g.group.prompt_index for b in batches for g in b.groups]
    assert sorted(trained) == list(range(24))  # one epoch, each prompt exactly once
    assert all(
        c.finish_reason == "stop" for b in batches for g in b.groups for c in g.group.completions
    )
    assert {p: cluster.requests[p] for p in (1, 5, 9)} == {1: 2, 5: 2, 9: 2}
    assert sum(b.stats["requests_aborted"] for b in batches) == 3


def test_solved_prompts_leave_later_epochs() -> None:
    cluster = FakeCluster(8, rewards=lambda p: [1.0, 1.0, 1.0, 0.0] if p < 4 else [0.0, 1.0] * 2)
    batches = train(
        cluster,
        cluster.producer(prompts_per_step=4, async_steps=0, pass_rate_exclusion=0.7),
        steps=4,
    )
    later = [g.group.prompt_index for b in batches[2:] for g in b.groups]
    assert sorted(later) == [4, 4, 5, 5, 6, 6, 7, 7]


def test_an_engine_failure_reaches_the_learner() -> None:
    cluster = FakeCluster(10)
    cluster.generate = lambda *args: cluster.pool.submit(lambda: 1 / 0)
    producer = cluster.producer(prompts_per_step=2, async_steps=0)
    with pytest.raises(RuntimeError, match="rollout producer failed"):
        producer.take(learner_version=0)
    producer.stop()


def test_active_sampling_gives_up_with_a_message_when_no_group_has_variance() -> None:
    cluster = FakeCluster(50, rewards=lambda p: [0.0] * 4)
    producer = cluster.producer(prompts_per_step=2, async_steps=0)
    with pytest.raises(RuntimeError, match="rollout producer failed") as failure:
        producer.take(learner_version=0)
    producer.stop()
    assert "active_sampling=false" in str(failure.value.__cause__)


@pytest.mark.parametrize("async_steps", [0, 2])
def test_a_restored_producer_loses_and_repeats_no_prompt(async_steps) -> None:
    # Slow, uneven requests: at the checkpoint several prompts are in flight or waiting.
    delay = lambda p: 0.002 * (p % 5)
    algo = {"prompts_per_step": 6, "async_steps": async_steps, "active_sampling": False}
    whole = FakeCluster(30, delay=delay)
    reference = train(whole, whole.producer(**algo), steps=8)

    first = FakeCluster(30, delay=delay)
    producer = first.producer(**algo)
    before = train_without_stop(first, producer, steps=3)
    snapshot = producer.snapshot()
    producer.stop()
    assert snapshot["trained_steps"] == 3
    second = FakeCluster(30, delay=delay)
    second.version = first.version
    restored = second.producer(snapshot=snapshot, **algo)
    after = train(second, restored, steps=5, first_step=4)

    def trained(batches):
        return [g.group.prompt_index for b in batches for g in b.groups]

    resumed = trained(before) + trained(after)
    left = restored.snapshot()["in_flight"]
    dropped = sum(b.stats["groups_dropped_stale"] for b in before + after)
    issued = PromptSampler(30, seed=0).take(len(resumed) + len(left) + int(dropped))
    # Trained across the restart plus still in flight: the sampler's order, nothing lost, nothing
    # twice (a prompt appears as often as its epochs drew it).
    assert not Counter(resumed) + Counter(left) - Counter(issued)
    assert len(resumed) == 8 * 6
    if async_steps == 0:  # synchronous: each step trains exactly what the uninterrupted run did
        assert [sorted(p.group.prompt_index for p in b.groups) for b in before + after] == [
            sorted(p.group.prompt_index for p in b.groups) for b in reference
        ]


def test_a_verifier_that_is_down_stops_the_take_with_its_message() -> None:
    from verifiers.service import VerifierDown

    cluster = FakeCluster(20)

    def score(prompt, row, token_ids) -> Future:
        future: Future = Future()
        future.set_exception(VerifierDown("judge", 256, "ConnectError: refused"))
        return future

    cluster.score = score
    producer = cluster.producer(prompts_per_step=4)
    with pytest.raises(VerifierDown, match="'judge' failed 256 calls in a row"):
        producer.take(learner_version=0, timeout_s=30)
    producer.stop()


def test_engines_that_deliver_nothing_stall_the_take_within_its_limit() -> None:
    from olmorl.rl.producer import RolloutStalled

    cluster = FakeCluster(20, delay=lambda p: 3.0)
    producer = cluster.producer(prompts_per_step=4)
    started = time.monotonic()
    with pytest.raises(RolloutStalled, match=r"no rollout group arrived for 0.5 s"):
        producer.take(learner_version=0, timeout_s=0.5)
    assert time.monotonic() - started < 5
    producer.stop()


def test_requests_of_a_dead_engine_go_again_and_its_replacement_rejoins() -> None:
    class EngineDied(Exception):
        pass

    cluster = FakeCluster(40, delay=lambda p: 0.02)
    state = {"calls": 0, "replaced": False, "after": 0}
    lost: list[int] = []
    fake_generate = cluster.generate

    def generate(prompt, engine, ids, n, seed) -> Future:
        if engine == 0 and state["replaced"]:
            state["after"] += 1
        if engine == 0 and not state["replaced"]:
            state["calls"] += 1
            if state["calls"] > 4:  # engine 0 dies after four requests
                future: Future = Future()
                future.set_exception(EngineDied())
                return future
        return fake_generate(prompt, engine, ids, n, seed)

    def on_engine_lost(engine: int) -> None:
        lost.append(engine)

        def replace() -> None:
            time.sleep(0.05)  # the replacement starts, then gets the weights
            state["replaced"] = True
            producer.engine_restored(engine)

        threading.Thread(target=replace).start()

    cfg = AlgorithmConfig(group_size=GROUP, prompts_per_step=6, async_steps=0)
    producer = RolloutProducer(
        ProducerSettings.from_algo(cfg, seed=0),
        cluster.prompts,
        PromptSampler(len(cluster.prompts), seed=0),
        num_engines=2,
        generate=generate,
        score=cluster.score,
        algo=cfg,
        engine_lost=lambda error: isinstance(error, EngineDied),
        on_engine_lost=on_engine_lost,
    )
    producer.start()
    batches = train(cluster, producer, steps=5)
    trained = [g.group.prompt_index for b in batches for g in b.groups]
    # Nothing lost, nothing twice: exactly the sampler's first 30 prompts were trained.
    assert Counter(trained) == Counter(PromptSampler(40, seed=0).take(30))
    assert lost == [0] and sum(b.stats["engine_failures"] for b in batches) == 1
    assert state["after"] > 0  # the replacement took requests again


def test_a_row_scored_by_two_verifiers_is_excluded_by_its_pass_rate_not_its_summed_reward():
    # Verifiers a and b each pass half of every group: each response's reward (their sum) is 1,
    # but its pass rate is 0.5, below the 0.9 threshold: the prompt is not solved.
    from olmorl.config import VerifiersConfig
    from olmorl.rl.rewards import RewardWorker

    worker = RewardWorker(VerifiersConfig(), ["contains"])
    row = {"dataset": ["contains", "contains"], "ground_truth": ["a", "b"]}
    cluster = FakeCluster(8, rewards=lambda p: [0.0, 1.0] * 2)
    half = asyncio.run(worker.score_group(row, ["a", "a", "b", "b"]))
    assert half.rewards == (1.0,) * 4 and half.pass_rates == (0.5,) * 4
    solved = asyncio.run(worker.score_group(row, ["a b", "a b", "a b", "b"]))
    assert solved.pass_rates == (1.0, 1.0, 1.0, 0.5)  # mean 0.875
    cluster.score = lambda prompt, row, ids: cluster.pool.submit(lambda: half)
    batches = train(
        cluster,
        cluster.producer(
            prompts_per_step=2, async_steps=0, pass_rate_exclusion=0.9, active_sampling=False
        ),
        steps=8,
    )
    assert sum(b.stats["prompts_excluded"] for b in batches) == 0
    trained = [g.group.prompt_index for b in batches for g in b.groups]
    assert sorted(trained) == sorted(list(range(8)) * 2)  # both epochs hold every prompt


def test_unscored_responses_are_counted_and_left_out_of_the_reward():
    # Response 3 of every group met a verifier timeout: no verdict, so the reward is over 3.
    cluster = FakeCluster(20)
    cluster.score = lambda prompt, row, ids: cluster.pool.submit(
        lambda: verdicts([1.0, 0.0, 1.0, 0.0], unscored=[False, False, False, True])
    )
    batches = train(cluster, cluster.producer(prompts_per_step=2, async_steps=0), steps=3)
    assert all(b.stats["reward"] == pytest.approx(2 / 3) for b in batches)
    assert sum(b.stats["responses_unscored"] for b in batches) == 6
    assert all(g.scored == (True, True, True, False) for b in batches for g in b.groups)

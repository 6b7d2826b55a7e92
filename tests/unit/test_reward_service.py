"""The reward service: per-verifier limits, timeouts, retries, cache and counters."""

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest

from verifiers import Verifier, VerifierResult
from verifiers.service import CallLimits, RewardService, VerifierStats, stats_metrics


class Scripted(Verifier):
    """Scores 1 when response == label; sleeps, hangs or raises as told, and counts its calls."""

    def __init__(self, delay_s: float = 0.0, hang: bool = False, failures: int = 0):
        super().__init__()
        self.delay_s, self.hang, self.failures_left = delay_s, hang, failures
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hang:
                await asyncio.Event().wait()
            await asyncio.sleep(self.delay_s)
            if self.failures_left:
                self.failures_left -= 1
                raise RuntimeError("flaky")
            return VerifierResult(float(response == label), "scripted")
        finally:
            self.in_flight -= 1


def row(dataset, label="a"):
    return {"dataset": dataset, "ground_truth": label}


def test_a_hanging_verifier_times_out_without_holding_up_the_others() -> None:
    service = RewardService(
        {"slow": Scripted(hang=True), "fast": Scripted()},
        limits={"slow": CallLimits(timeout_s=0.3)},
    )

    async def run():
        slow = asyncio.create_task(service.score(row("slow"), "a"))
        started = time.perf_counter()
        fast = await service.score(row("fast"), "a")
        fast_s = time.perf_counter() - started
        return await slow, fast, fast_s

    slow, fast, fast_s = asyncio.run(run())
    assert (slow.score, slow.reasons) == (0.0, {"slow": "timeout"})
    assert fast.score == 1.0 and fast_s < 0.3
    stats = service.take_stats()
    assert stats["slow"].timeouts == 1 and stats["fast"].timeouts == 0


def test_concurrency_is_capped_per_verifier() -> None:
    capped, free = Scripted(delay_s=0.05), Scripted(delay_s=0.05)
    service = RewardService(
        {"capped": capped, "free": free}, limits={"capped": CallLimits(concurrency=2)}
    )

    async def run():
        await asyncio.gather(
            *(service.score(row(name), f"r{i}") for i in range(8) for name in ("capped", "free"))
        )

    asyncio.run(run())
    assert capped.most_in_flight == 2 and free.most_in_flight == 8


def test_a_raising_verifier_is_retried_then_scores_zero() -> None:
    flaky = Scripted(failures=1)
    service = RewardService({"v": flaky}, default_limits=CallLimits(retries=1))
    result = asyncio.run(service.score(row("v"), "a"))
    assert result.score == 1.0 and flaky.calls == 2
    assert service.take_stats()["v"].retries == 1

    broken = RewardService({"v": Scripted(failures=5)}, default_limits=CallLimits(retries=2))
    result = asyncio.run(broken.score(row("v"), "a"))
    assert (result.score, result.reasons) == (0.0, {"v": "error:RuntimeError"})
    stats = broken.take_stats()["v"]
    assert (stats.failures, stats.retries) == (1, 2)


def test_results_are_cached_by_verifier_response_and_label_but_failures_are_not() -> None:
    v = Scripted()
    service = RewardService({"v": v})

    async def run():
        await service.score(row("v", "a"), "a")
        await service.score(row("v", "a"), "a")
        await service.score(row("v", "b"), "a")  # another label: a new call
        await service.score(row("v", ["x", 1]), "a")
        await service.score(row("v", ["x", 1]), "a")

    asyncio.run(run())
    assert v.calls == 3
    assert service.take_stats()["v"].cache_hits == 2

    flaky = Scripted(failures=1)
    service = RewardService({"v": flaky})
    first = asyncio.run(service.score(row("v"), "a"))
    second = asyncio.run(service.score(row("v"), "a"))
    assert (first.score, second.score, flaky.calls) == (0.0, 1.0, 2)


def test_the_cache_is_bounded() -> None:
    v = Scripted()
    service = RewardService({"v": v}, cache_size=2)

    async def run():
        for response in ("a", "b", "c", "a"):
            await service.score(row("v"), response)

    asyncio.run(run())
    assert v.calls == 4  # "a" was evicted by "c"


def test_rows_with_several_verifiers_sum_their_weighted_scores() -> None:
    service = RewardService({"v": Scripted(), "w": Scripted()}, weights={"w": 0.5})
    result = asyncio.run(service.score({"dataset": ["v", "w"], "ground_truth": ["a", "a"]}, "a"))
    assert result.score == 1.5 and result.per_verifier == {"v": 1.0, "w": 1.0}


def test_stats_of_several_workers_merge_into_metrics() -> None:
    one = {"v": VerifierStats(calls=3, cache_hits=1, latency_s=[0.1, 0.3])}
    two = {"v": VerifierStats(calls=1, timeouts=1, latency_s=[0.2]), "w": VerifierStats()}
    metrics = stats_metrics([one, two])
    assert metrics["verifier/v/calls"] == 4 and metrics["verifier/v/timeouts"] == 1
    assert metrics["verifier/v/latency_mean_s"] == pytest.approx(0.2)
    assert metrics["verifier/v/latency_max_s"] == 0.3
    assert not any(k.startswith("verifier/w/") for k in metrics)  # no calls, no noise


def test_take_stats_resets_the_counters() -> None:
    service = RewardService({"v": Scripted()})
    asyncio.run(service.score(row("v"), "a"))
    assert service.take_stats()["v"].calls == 1
    assert service.take_stats()["v"].calls == 0


def test_transient_results_are_not_cached_and_the_prompt_is_part_of_the_key() -> None:
    class DownThenUp(Scripted):
        async def __call__(self, response, label, row):
            self.calls += 1
            return VerifierResult(0.0, "judge_unreachable", transient=self.calls == 1)

    v = DownThenUp()
    service = RewardService({"v": v})
    ask = {"dataset": "v", "ground_truth": None, "messages": [{"role": "user", "content": "q1"}]}
    other = {**ask, "messages": [{"role": "user", "content": "q2"}]}

    async def run():
        for r in (ask, ask, ask, other):
            await service.score(r, "same answer")

    asyncio.run(run())
    assert v.calls == 3  # the transient result was retried; the verdict cached; q2 is new
    stats = service.take_stats()["v"]
    assert (stats.failures, stats.last_error) == (1, "judge_unreachable")


def test_a_verifier_that_keeps_failing_degrades_then_stops_the_run() -> None:
    from verifiers.service import VerifierDown

    # Three failures, a success (resets the count), then failures until the limit.
    judge = Scripted(failures=3)
    service = RewardService({"judge": judge}, default_limits=CallLimits(max_consecutive_failures=4))

    async def calls(n, response="a"):
        return [await service.score(row("judge"), f"{response}{i}") for i in range(n)]

    scores = asyncio.run(calls(3))
    assert [s.score for s in scores] == [0.0, 0.0, 0.0]  # degraded: zeros, still running
    assert asyncio.run(service.score(row("judge"), "a")).score == 1.0
    judge.failures_left = 100
    assert [s.score for s in asyncio.run(calls(3, "b"))] == [0.0] * 3
    with pytest.raises(VerifierDown, match=r"'judge' failed 4 calls in a row \(last: RuntimeError"):
        asyncio.run(service.score(row("judge"), "c"))
    # It survives a process boundary (Ray pickles it) with its fields.
    import pickle

    try:
        asyncio.run(service.score(row("judge"), "d"))
    except VerifierDown as e:
        again = pickle.loads(pickle.dumps(e))
        assert (again.name, again.failures) == ("judge", 5) and str(again) == str(e)


def test_an_infrastructure_failure_makes_the_row_score_no_verdict() -> None:
    # A call past the service's limit or one that raises says nothing of the response: the row's
    # score is transient (masked by the RL loop), even when its other verifier gave a verdict.
    service = RewardService(
        {"hangs": Scripted(hang=True), "raises": Scripted(failures=1), "fine": Scripted()},
        limits={"hangs": CallLimits(timeout_s=0.2)},
    )

    async def run():
        return await asyncio.gather(
            service.score(row(["fine", "hangs"]), "a"),
            service.score(row(["fine", "raises"]), "a"),
            service.score(row("fine"), "a"),
        )

    timed_out, raised, fine = asyncio.run(run())
    assert (timed_out.score, timed_out.transient) == (1.0, True)
    assert timed_out.reasons == {"fine": "scripted", "hangs": "timeout"}
    assert (raised.transient, raised.reasons["raises"]) == (True, "error:RuntimeError")
    assert (fine.score, fine.transient) == (1.0, False)


def test_a_math_comparison_past_its_own_deadline_is_a_cached_verdict() -> None:
    # A pathological answer is the answer's fault: 0, kept in the cache like any verdict.
    from verifiers.math import MathVerifier

    math = MathVerifier(MathVerifier.Config(timeout_s=1.0))
    service = RewardService({"math": math})
    try:
        first, again = (
            asyncio.run(service.score(row("math", "10"), r"\boxed{9^{9^{9}}}")) for _ in range(2)
        )
        assert (first.score, first.reasons, first.transient) == (0.0, {"math": "timeout"}, False)
        assert again == first and service.take_stats()["math"].cache_hits == 1
    finally:
        math.close()


def test_a_row_pass_rate_is_the_mean_of_its_verifiers_whatever_their_weights() -> None:
    service = RewardService({"x": Scripted(), "y": Scripted()}, weights={"x": 2.0})
    score = asyncio.run(service.score(row(["x", "y"], ["a", "b"]), "a"))
    assert (score.score, score.pass_rate) == (2.0, 0.5)

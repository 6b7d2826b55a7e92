"""The reward service's core: verifier calls under limits, with a cache and per-verifier counters.

Each verifier gets its own concurrency limit, per-call timeout and retries, so a slow one (an LLM
judge, a sandbox run) holds only its own slots while the others go on. A call that times out or
raises after its retries is a failure of the infrastructure, not a verdict: it comes back
`transient` with the reason `timeout` or `error:<Type>`, is counted, and the RL loop masks the
response out of training. Only `max_consecutive_failures` failures in a row raise (VerifierDown),
to stop a run whose judge is gone. What is the response's own fault stays a verdict the verifier
returns itself: a math comparison that runs past its own deadline on a pathological answer scores
0. Verdicts are cached by (verifier, answer, label, prompt), since groups repeat responses and
epochs repeat prompts; transient failures never are.

Pure asyncio, no Ray: the RL loop runs one `RewardService` per reward actor, `olmorl verify` one
in-process.
"""

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from verifiers.base import Verifier, VerifierResult
from verifiers.scoring import RowScore, check_built, combine, no_answer, pair_labels
from verifiers.thinking import final_answer


@dataclass(frozen=True)
class CallLimits:
    concurrency: int = 64
    """Calls of this verifier in flight at once; further calls wait for a slot."""
    timeout_s: float = 60.0
    """Limit on one call, waiting for a slot not included; past it the call scores 0."""
    retries: int = 0
    """Further attempts after a call raises (not after a timeout: a slow verifier stays slow)."""
    max_consecutive_failures: int | None = None
    """Failed calls in a row (timeouts, errors, transient results) after which the service
    raises VerifierDown instead of scoring 0 again; None: never."""

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.timeout_s <= 0 or self.retries < 0:
            raise ValueError(f"invalid verifier limits: {self}")
        if self.max_consecutive_failures is not None and self.max_consecutive_failures < 1:
            raise ValueError(f"invalid verifier limits: {self}")


class VerifierDown(RuntimeError):
    """A verifier failed `max_consecutive_failures` calls in a row: the run should stop."""

    def __init__(self, name: str, failures: int, last_error: str | None):
        super().__init__(
            f"verifier {name!r} failed {failures} calls in a row (last: {last_error}); "
            f"stopping, as verifiers.limits.{name}.max_consecutive_failures says"
        )
        self.name, self.failures, self.last_error = name, failures, last_error

    def __reduce__(self):  # so that it crosses process boundaries (Ray) intact
        return type(self), (self.name, self.failures, self.last_error)


@dataclass
class VerifierStats:
    """Counters of one verifier since the last `take_stats`."""

    calls: int = 0
    cache_hits: int = 0
    timeouts: int = 0
    failures: int = 0
    """Calls that raised after their retries, or returned a transient failure."""
    retries: int = 0
    latency_s: list[float] = field(default_factory=list)
    """Wall time of each uncached call, waiting for a slot included."""
    last_error: str | None = None
    """`Type: message` of the latest exception, to say what the `error:<Type>` reasons were."""

    def merge(self, other: "VerifierStats") -> "VerifierStats":
        """The counters of both, e.g. of two reward workers."""
        return VerifierStats(
            calls=self.calls + other.calls,
            cache_hits=self.cache_hits + other.cache_hits,
            timeouts=self.timeouts + other.timeouts,
            failures=self.failures + other.failures,
            retries=self.retries + other.retries,
            latency_s=self.latency_s + other.latency_s,
            last_error=other.last_error or self.last_error,
        )

    def as_metrics(self, name: str) -> dict[str, float]:
        """Flat metrics under `verifier/<name>/`; latencies as mean, p95 and max."""
        metrics = {
            f"verifier/{name}/calls": float(self.calls),
            f"verifier/{name}/cache_hits": float(self.cache_hits),
            f"verifier/{name}/timeouts": float(self.timeouts),
            f"verifier/{name}/failures": float(self.failures),
            f"verifier/{name}/retries": float(self.retries),
        }
        latencies = sorted(self.latency_s)
        if latencies:
            metrics[f"verifier/{name}/latency_mean_s"] = sum(latencies) / len(latencies)
            metrics[f"verifier/{name}/latency_p95_s"] = latencies[int(0.95 * (len(latencies) - 1))]
            metrics[f"verifier/{name}/latency_max_s"] = latencies[-1]
        return metrics


def stats_metrics(per_worker: Iterable[Mapping[str, VerifierStats]]) -> dict[str, float]:
    """One set of `verifier/<name>/...` metrics from the stats of several services."""
    merged: dict[str, VerifierStats] = {}
    for stats in per_worker:
        for name, s in stats.items():
            merged[name] = merged.get(name, VerifierStats()).merge(s)
    return {
        k: v for name, s in sorted(merged.items()) if s.calls for k, v in s.as_metrics(name).items()
    }


class RewardService:
    def __init__(
        self,
        verifiers: Mapping[str, Verifier],
        limits: Mapping[str, CallLimits] | None = None,
        default_limits: CallLimits = CallLimits(),
        weights: Mapping[str, float] | None = None,
        cache_size: int = 65536,
    ):
        self.verifiers = dict(verifiers)
        self.weights = dict(weights or {})
        self.limits = {name: (limits or {}).get(name, default_limits) for name in self.verifiers}
        self._slots = {
            name: asyncio.Semaphore(lim.concurrency) for name, lim in self.limits.items()
        }
        self._cache: OrderedDict[bytes, VerifierResult] = OrderedDict()
        self._cache_size = cache_size
        self._stats = {name: VerifierStats() for name in self.verifiers}
        self._failing = {name: 0 for name in self.verifiers}  # failed calls in a row
        self._last_error: dict[str, str | None] = {name: None for name in self.verifiers}

    async def score(
        self, row: Mapping[str, Any], response: str, thinking: bool = False
    ) -> RowScore:
        """The row's reward for `response`: its verifiers run concurrently on its answer, each
        under its limits (`thinking` as in `scoring.score_row`)."""
        pairs = pair_labels(row["dataset"], row["ground_truth"])
        check_built(pairs, self.verifiers)
        answer = final_answer(response, thinking)
        if answer is None:
            return no_answer(pairs, self.weights)
        results = await asyncio.gather(
            *(self._call(name, answer, label, row) for name, label in pairs)
        )
        return combine(pairs, results, self.weights)

    def take_stats(self) -> dict[str, VerifierStats]:
        """Each verifier's counters since the previous call (see `stats_metrics`)."""
        stats, self._stats = self._stats, {name: VerifierStats() for name in self.verifiers}
        return stats

    def close(self) -> None:
        for verifier in self.verifiers.values():
            verifier.close()

    async def _call(
        self, name: str, response: str, label: Any, row: Mapping[str, Any]
    ) -> VerifierResult:
        stats = self._stats[name]
        stats.calls += 1
        key = _cache_key(name, response, label, row)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            stats.cache_hits += 1
            return cached
        started = time.perf_counter()
        result = await self._call_with_retries(name, response, label, row, stats)
        stats.latency_s.append(time.perf_counter() - started)
        self._count_failure(name, result, stats)
        if not result.transient:
            self._cache[key] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def _count_failure(self, name: str, result: VerifierResult, stats: VerifierStats) -> None:
        """Degrade, then stop: a failure scores 0 until too many come in a row."""
        if not result.transient:
            self._failing[name] = 0
            return
        self._failing[name] += 1
        self._last_error[name] = stats.last_error or result.reason
        limit = self.limits[name].max_consecutive_failures
        if limit is not None and self._failing[name] >= limit:
            raise VerifierDown(name, self._failing[name], self._last_error[name])

    async def _call_with_retries(
        self, name: str, response: str, label: Any, row: Mapping[str, Any], stats: VerifierStats
    ) -> VerifierResult:
        limits = self.limits[name]
        async with self._slots[name]:
            for attempt in range(limits.retries + 1):
                try:
                    result = await asyncio.wait_for(
                        self.verifiers[name](response, label, row), limits.timeout_s
                    )
                    if result.transient:  # the verifier's own failure, e.g. judge_unreachable
                        stats.failures += 1
                        stats.last_error = result.reason
                    return result
                except TimeoutError:
                    stats.timeouts += 1
                    return VerifierResult(0.0, "timeout", transient=True)
                except Exception as e:  # noqa: BLE001 -- a verifier bug or bad label must not stop the run
                    error = e
                    if attempt < limits.retries:
                        stats.retries += 1
            stats.failures += 1
            stats.last_error = f"{type(error).__name__}: {error}"
            return VerifierResult(0.0, f"error:{type(error).__name__}", transient=True)


def _cache_key(name: str, response: str, label: Any, row: Mapping[str, Any]) -> bytes:
    """A digest, so that the cache holds 32 bytes per entry however long the responses are.

    The prompt is part of it: a reference-free judge scores the same response differently under
    different questions.
    """
    parts = [name, response, label, row.get("messages")]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).digest()

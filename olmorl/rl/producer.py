"""The rollout producer: keeps the engines generating while the learners train.

A background thread draws prompts, sends each to the least loaded engine as soon as the budget
allows, scores every finished group and queues it for the learner. The budget is what bounds the
asynchrony: after `trained_steps` optimizer steps, at most (trained_steps + 1 + async_steps)
batches' worth of groups are ever issued (filtered and stale groups do not count), so with
async_steps = 0 the next batch is only sampled once the learner has pushed its new weights.

Active sampling: a zero-variance group is dropped when it arrives and another prompt goes out
at once, so every batch holds exactly `prompts_per_step` groups that carry a gradient. At take
time, a group whose oldest token is more than `max_lag` policy versions behind the learner is
dropped and replaced likewise. A request cut off by an `abort` weight update is sent again.

An engine that dies (`engine_lost` says which errors mean that) is taken out of the rotation,
its requests are sent again to the others, and `on_engine_lost` is told so that a replacement
can be started; `engine_restored` puts the replacement in once it holds the current weights.

The engines and the reward workers are reached through functions returning
`concurrent.futures.Future`s (Ray's `ObjectRef.future()`), so the policy here is tested without
Ray.
"""

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass

from olmorl.config import AlgorithmConfig
from olmorl.rl.batch import is_degenerate, reward_stats
from olmorl.rl.prompts import PromptSampler
from olmorl.rl.types import Completion, GroupScores, Prompt, PromptGroup, ScoredGroup
from verifiers.service import VerifierDown

# Zero-variance groups resampled in one step, per group in the batch, before giving up.
RESAMPLE_LIMIT = 50

GenerateFn = Callable[[int, int, list[int], int, int], Future]
"""(prompt index, engine index, prompt token ids, n, seed) -> Future[list[Completion]]."""
ScoreFn = Callable[[int, Mapping, list[Sequence[int]]], Future]
"""(prompt index, row, each response's token ids) -> Future[GroupScores]."""


@dataclass(frozen=True)
class ProducerSettings:
    group_size: int
    prompts_per_step: int
    async_steps: int
    """Batches the producer may run ahead of the learner (0: synchronous)."""
    max_lag: int
    """Most policy versions a trained token may be behind the learner's weights."""
    active_sampling: bool
    """Replace zero-variance groups as they arrive, so every batch is full."""
    pass_rate_exclusion: float | None
    """Prompts whose pass rate (mean over the scored responses of each one's mean verifier
    score, in [0, 1]) exceeds this leave later epochs."""
    seed: int

    @classmethod
    def from_algo(cls, algo: AlgorithmConfig, seed: int) -> "ProducerSettings":
        return cls(
            group_size=algo.group_size,
            prompts_per_step=algo.prompts_per_step,
            async_steps=algo.async_steps,
            # Versions advance once per mini-batch: a lag of async_steps steps is that many
            # versions times the optimizer steps each step takes.
            max_lag=algo.async_steps * algo.num_mini_batches,
            active_sampling=algo.active_sampling and algo.filter_zero_variance,
            pass_rate_exclusion=algo.pass_rate_exclusion,
            seed=seed,
        )


@dataclass(frozen=True)
class TakenBatch:
    groups: list[ScoredGroup]
    """The step's groups, in the order they finished."""
    stats: dict[str, float]
    """Since the previous take: the reward of every group scored (`reward`, `reward/<name>`),
    groups resampled (zero variance) or dropped (stale), requests aborted, prompts excluded; and
    the share of the batch's tokens at each staleness."""


class RolloutProducer:
    def __init__(
        self,
        settings: ProducerSettings,
        prompts: Sequence[Prompt],
        sampler: PromptSampler,
        num_engines: int,
        generate: GenerateFn,
        score: ScoreFn,
        algo: AlgorithmConfig,
        engine_lost: Callable[[BaseException], bool] = lambda error: False,
        on_engine_lost: Callable[[int], None] = lambda engine: None,
    ):
        self.settings, self.prompts, self.sampler = settings, prompts, sampler
        self.generate, self.score, self.algo = generate, score, algo
        self._engine_lost, self._on_engine_lost = engine_lost, on_engine_lost
        self._up = [True] * num_engines  # engines that take requests
        self._cond = threading.Condition()
        self._trained_steps = 0
        self._live = 0  # issued groups that still count against the budget
        self._retry: deque[int] = deque()  # prompts whose request an abort cut off
        # Prompts issued and neither trained nor dropped yet, in issue order: what a checkpoint
        # must hand to the resumed run so that no prompt is lost or trained twice.
        self._outstanding: list[int] = []
        self._ready: list[ScoredGroup] = []
        self._load = [0] * num_engines  # requests in flight per engine
        self._draws = 0
        self._counts: Counter[str] = Counter()
        self._sampled: list[ScoredGroup] = []  # every group scored since the last take
        self._error: BaseException | None = None
        self._stop = self._drain = False
        self._thread = threading.Thread(target=self._run, name="rollout-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def snapshot(self) -> dict:
        """The producer's data position for a checkpoint taken between steps: the sampler, the
        prompts in flight (issued, not yet trained) and the counters that seed requests."""
        with self._cond:
            return {
                "sampler": self.sampler.state(),
                "in_flight": list(self._outstanding),
                "draws": self._draws,
                "live": self._live,
                "trained_steps": self._trained_steps,
            }

    def restore(self, snapshot: Mapping) -> None:
        """Before `start`: continue from `snapshot`; its in-flight prompts are issued first, in
        their original order, then the sampler continues where it was."""
        with self._cond:
            self.sampler.restore(snapshot["sampler"])
            self._retry = deque(snapshot["in_flight"])
            self._outstanding = list(snapshot["in_flight"])
            self._draws, self._live = snapshot["draws"], snapshot["live"]
            self._trained_steps = snapshot["trained_steps"]

    def take(
        self,
        learner_version: int,
        timeout_s: float | None = None,
        while_waiting: Callable[[], None] = lambda: None,
    ) -> TakenBatch:
        """Blocks until a full batch is ready: `prompts_per_step` groups (all non-degenerate with
        active sampling), none of whose tokens is more than `max_lag` versions behind.

        `while_waiting` runs about once a second while it blocks (the learners are idle then:
        the loop installs replacement engines). Raises RolloutStalled when no group arrives for
        `timeout_s`."""
        taken: list[ScoredGroup] = []
        with self._cond:
            while len(taken) < self.settings.prompts_per_step:
                self._wait_for_a_group(timeout_s, while_waiting)
                if self._error is not None:
                    down = _verifier_down(self._error)
                    if down is not None:
                        raise VerifierDown(down.name, down.failures, down.last_error) from None
                    raise RuntimeError("the rollout producer failed") from self._error
                if self._stop:
                    raise RuntimeError("the rollout producer was stopped")
                # The stalest first: it is the one that would fall out of the window next.
                group = min(self._ready, key=_oldest_version)
                self._ready.remove(group)
                self._outstanding.remove(group.group.prompt_index)
                if learner_version - _oldest_version(group) > self.settings.max_lag:
                    self._counts["dropped_stale"] += 1
                    self._live -= 1
                    self._cond.notify_all()
                    continue
                taken.append(group)
            counts, self._counts = self._counts, Counter()
            sampled, self._sampled = self._sampled, []
        lags = Counter(
            learner_version - v
            for g in taken
            for c in g.group.completions
            for v in c.token_versions
        )
        stats = {
            # The policy's reward is that of everything it sampled: the batch, with zero-variance
            # groups resampled away, always holds both successes and failures.
            **reward_stats(sampled or taken),
            "groups_resampled": float(counts["resampled"]),
            "groups_dropped_stale": float(counts["dropped_stale"]),
            "requests_aborted": float(counts["aborted"]),
            "engine_failures": float(counts["engine_failures"]),
            "prompts_excluded": float(counts["excluded"]),
            # Responses a verifier failed on (not the response's fault): masked, never trained on.
            "responses_unscored": float(counts["unscored"]),
            **{f"staleness/{lag}": n / sum(lags.values()) for lag, n in sorted(lags.items())},
        }
        return TakenBatch(taken, stats)

    def _wait_for_a_group(self, timeout_s: float | None, while_waiting: Callable[[], None]):
        """Holds the lock; returns once a group is ready, the producer failed or was stopped."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not (self._ready or self._error or self._stop):
            while_waiting()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise RolloutStalled(
                    f"no rollout group arrived for {timeout_s:g} s (run.stage_timeout_s); "
                    f"requests in flight per engine: {self._load}, engines up: {self._up}, "
                    f"groups being scored or queued: {len(self._outstanding) - sum(self._load)}"
                )
            self._cond.wait(1.0 if remaining is None else min(1.0, remaining))

    def engine_restored(self, engine: int) -> None:
        """Engine `engine` (a replacement) holds the current weights: it takes requests again."""
        with self._cond:
            self._up[engine] = True
            self._cond.notify_all()

    def step_done(self, trained_steps: int) -> None:
        """The learner finished (and pushed) `trained_steps` steps: the budget moves on."""
        with self._cond:
            self._trained_steps = trained_steps
            self._cond.notify_all()

    def stop(self, drain: bool = False) -> None:
        """Stops issuing requests; with `drain`, returns once those in flight have finished (so
        that the engines are idle), else at once."""
        with self._cond:
            self._stop, self._drain = True, drain
            self._cond.notify_all()
        self._thread.join()

    # The producer thread.

    def _run(self) -> None:
        # Each future in flight: an engine's (prompt, engine) or a reward worker's PromptGroup.
        generating: dict[Future, tuple[int, int]] = {}
        scoring: dict[Future, PromptGroup] = {}
        try:
            while True:
                with self._cond:
                    if self._stop and (not self._drain or not (generating or scoring)):
                        return
                    for prompt, engine, seed in [] if self._stop else self._issue():
                        ids = self.prompts[prompt].token_ids
                        future = self.generate(prompt, engine, ids, self.settings.group_size, seed)
                        generating[future] = (prompt, engine)
                if not generating and not scoring:
                    with self._cond:
                        self._cond.wait(timeout=0.1)
                    continue
                done, _ = wait([*generating, *scoring], timeout=0.1, return_when=FIRST_COMPLETED)
                for future in done:
                    if future in generating:
                        prompt, engine = generating.pop(future)
                        error = future.exception()
                        if error is not None and self._engine_lost(error):
                            self._lost(prompt, engine)
                            continue
                        group = self._generated(prompt, engine, future.result())
                        if group is not None:
                            texts = [c.token_ids for c in group.completions]
                            scoring[self.score(prompt, self.prompts[prompt].row, texts)] = group
                    else:
                        self._scored(scoring.pop(future), future.result())
        except BaseException as e:  # noqa: BLE001 -- handed to the learner's thread by take()
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def _issue(self) -> list[tuple[int, int, int]]:
        """(prompt, engine, seed) of every request the budget allows now; holds the lock."""
        budget = (self._trained_steps + 1 + self.settings.async_steps) * (
            self.settings.prompts_per_step
        )
        issued = []
        engines = [e for e, up in enumerate(self._up) if up]
        while engines and (self._retry or self._live < budget):
            if self._retry:
                prompt = self._retry.popleft()
            else:
                prompt = self.sampler.take(1)[0]
                self._live += 1
                self._outstanding.append(prompt)
            self._draws += 1
            engine = min(engines, key=self._load.__getitem__)
            self._load[engine] += 1
            seed = random.Random(f"{self.settings.seed}/{self._draws}").getrandbits(31)
            issued.append((prompt, engine, seed))
        return issued

    def _lost(self, prompt: int, engine: int) -> None:
        """A request whose engine died: the prompt goes again, elsewhere."""
        with self._cond:
            self._load[engine] -= 1
            self._retry.append(prompt)
            first = self._up[engine]
            self._up[engine] = False
            if first:
                self._counts["engine_failures"] += 1
            self._cond.notify_all()
        if first:
            self._on_engine_lost(engine)

    def _generated(
        self, prompt: int, engine: int, completions: list[Completion]
    ) -> PromptGroup | None:
        """The group to score, or None when an abort cut it off and the prompt goes again."""
        with self._cond:
            self._load[engine] -= 1
            if any(c.finish_reason == "abort" for c in completions):
                self._counts["aborted"] += 1
                self._retry.append(prompt)
                return None
        return PromptGroup(prompt, tuple(self.prompts[prompt].token_ids), tuple(completions))

    def _scored(self, group: PromptGroup, scores: GroupScores) -> None:
        scored = ScoredGroup(group, scores.rewards, scores.verifier_scores, scores.unscored)
        threshold = self.settings.pass_rate_exclusion
        pass_rates = [p for p, ok in zip(scores.pass_rates, scored.scored) if ok]
        with self._cond:
            self._sampled.append(scored)
            self._counts["unscored"] += len(scores.rewards) - len(pass_rates)
            if (
                threshold is not None
                and pass_rates
                and sum(pass_rates) / len(pass_rates) > threshold
            ):
                self.sampler.exclude(group.prompt_index)
                self._counts["excluded"] += 1
            if self.settings.active_sampling and is_degenerate(scored, self.algo):
                self._counts["resampled"] += 1
                self._live -= 1  # frees its place in the budget: a replacement goes out
                self._outstanding.remove(group.prompt_index)
                if self._counts["resampled"] > RESAMPLE_LIMIT * self.settings.prompts_per_step:
                    raise RuntimeError(
                        f"active sampling replaced {self._counts['resampled']} zero-variance "
                        f"groups without filling a batch of {self.settings.prompts_per_step}: "
                        "the policy gets the same reward for every response (the task is far "
                        "too hard or too easy for it); set algo.active_sampling=false"
                    )
            else:
                self._ready.append(scored)
            self._cond.notify_all()


class RolloutStalled(RuntimeError):
    """The engines and reward workers delivered no group within the stage limit."""


def _verifier_down(error: BaseException) -> VerifierDown | None:
    """The VerifierDown behind `error`, which Ray delivers wrapped in a RayTaskError."""
    cause = getattr(error, "cause", error)
    return cause if isinstance(cause, VerifierDown) else None


def _oldest_version(group: ScoredGroup) -> int:
    versions = [c.oldest_version for c in group.group.completions if c.token_ids]
    # A group of empty responses was sampled by no weights in particular: never stale.
    return min(versions) if versions else 1 << 62

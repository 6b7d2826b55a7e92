"""Held-out evaluation of the policy the engines serve: sample, score, summarise.

The run's own engines generate it, next to (never inside) the rollout producer's requests, and
its groups go nowhere near a training batch. `olmorl eval` runs the same on any checkpoint.
The engines and reward workers are reached through functions returning futures, as in the
producer, so that this runs without Ray in tests.
"""

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass

from olmorl.rl.types import Completion, GroupScores, Prompt

EvalGenerateFn = Callable[[int, list[int], int, int], Future]
"""(engine index, prompt token ids, n, seed) -> Future[list[Completion]]."""
EvalScoreFn = Callable[[Prompt, list[Sequence[int]]], Future]
"""(prompt, each response's token ids) -> Future[GroupScores]."""


@dataclass(frozen=True)
class EvalGroup:
    """One held-out prompt's samples and their verdicts."""

    completions: tuple[Completion, ...]
    """The sampled responses."""
    scores: GroupScores
    """The reward worker's verdicts on them."""


def evaluate(
    prompts: Sequence[Prompt],
    samples_per_prompt: int,
    num_engines: int,
    generate: EvalGenerateFn,
    score: EvalScoreFn,
    seed: int = 0,
    engine_lost: Callable[[BaseException], bool] = lambda error: False,
) -> dict[str, float]:
    """Samples every prompt `samples_per_prompt` times over the engines, scores the responses as
    they finish and returns `eval/...` metrics (see `eval_metrics`). Blocks until done.

    A request whose engine died (`engine_lost` says which errors mean that) goes to another
    engine; with none left, raises NoEngineLeft: the evaluation is lost, not scored."""
    started = time.perf_counter()
    live = list(range(num_engines))

    def submit(index: int) -> None:
        if not live:
            raise NoEngineLeft("every rollout engine died during the evaluation")
        engine = live[index % len(live)]
        future = generate(engine, list(prompts[index].token_ids), samples_per_prompt, seed + index)
        requests[future] = (index, engine)

    requests: dict[Future, tuple[int, int]] = {}
    for index in range(len(prompts)):
        submit(index)
    scoring: dict[Future, tuple[int, list[Completion]]] = {}
    groups: dict[int, EvalGroup] = {}
    while requests or scoring:
        done, _ = wait([*requests, *scoring], return_when="FIRST_COMPLETED")
        for future in done:
            if future in requests:
                index, engine = requests.pop(future)
                error = future.exception()
                if error is not None and engine_lost(error):
                    if engine in live:
                        live.remove(engine)
                    submit(index)
                    continue
                completions = future.result()
                ids = [c.token_ids for c in completions]
                scoring[score(prompts[index], ids)] = (index, completions)
            else:
                index, completions = scoring.pop(future)
                groups[index] = EvalGroup(tuple(completions), future.result())
    metrics = eval_metrics([groups[i] for i in range(len(prompts))])
    metrics["eval/time_s"] = time.perf_counter() - started
    return metrics


class NoEngineLeft(RuntimeError):
    """Every engine the evaluation could use died before it finished."""


def eval_metrics(groups: Sequence[EvalGroup]) -> dict[str, float]:
    """`eval/reward` and `eval/reward/<verifier>` (means over scored responses), `eval/pass@1`
    and, with k > 1 samples a prompt, `eval/pass@k` (a response passes when every verifier of its
    row gives it full marks; the unbiased estimator of Chen et al. 2021, arXiv 2107.03374),
    response length, truncation rate and responses no verifier could score."""
    rewards: list[float] = []
    per_verifier: dict[str, list[float]] = {}
    pass_at: dict[int, list[float]] = {}
    lengths, truncated, unscored = [], [], 0
    k = max(len(g.completions) for g in groups)
    for group in groups:
        scored = [i for i, u in enumerate(group.scores.unscored) if not u]
        unscored += len(group.completions) - len(scored)
        rewards += [group.scores.rewards[i] for i in scored]
        for name, values in group.scores.verifier_scores.items():
            per_verifier.setdefault(name, []).extend(values[i] for i in scored)
        lengths += [len(c.token_ids) for c in group.completions]
        truncated += [c.truncated for c in group.completions]
        if scored:
            correct = sum(group.scores.pass_rates[i] >= 1.0 for i in scored)
            for at in {1, k}:
                pass_at.setdefault(at, []).append(pass_at_k(len(scored), correct, at))
    metrics = {
        "eval/prompts": float(len(groups)),
        "eval/response_tokens": _mean(lengths),
        "eval/truncation_rate": _mean(truncated),
        "eval/responses_unscored": float(unscored),
    }
    if rewards:
        metrics["eval/reward"] = _mean(rewards)
    for name, values in sorted(per_verifier.items()):
        if values:
            metrics[f"eval/reward/{name}"] = _mean(values)
    for at, values in sorted(pass_at.items()):
        metrics[f"eval/pass@{at}"] = _mean(values)
    return metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k draws without replacement from n samples, c of them
    correct, is correct: 1 − C(n−c, k)/C(n, k). With k > n (a response the verifiers could not
    score leaves fewer than k) it uses all n."""
    k = min(k, n)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0

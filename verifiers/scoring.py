"""Scores one response to one row: runs the verifiers the row's `dataset` names and sums them.

In the Dolci schema `dataset` may be a list; the row's reward is then the weighted sum of those
verifiers' scores, and `ground_truth` is either one label per verifier or a single shared label.
Verifiers see the response's answer only: a Think response's reasoning is cut off (thinking.py).
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from verifiers.base import Verifier, VerifierResult
from verifiers.options import did_you_mean
from verifiers.registry import UnknownVerifierError
from verifiers.thinking import final_answer


@dataclass(frozen=True)
class RowScore:
    score: float
    """The row's reward: the weighted sum of its verifiers' scores."""
    per_verifier: dict[str, float]
    """Each verifier's unweighted score; a name listed twice gets "#2", "#3" on its later keys."""
    reasons: dict[str, str]
    """Each verifier's reason, keyed as `per_verifier`."""
    transient: bool = False
    """A verifier failed for a reason that is not the response's (a timeout of the call, a crash,
    an unreachable judge): `score` is no verdict, and training must leave the response out."""

    @property
    def pass_rate(self) -> float:
        """The mean of the verifiers' unweighted scores: in [0, 1] however many the row names."""
        return sum(self.per_verifier.values()) / len(self.per_verifier)


def pair_labels(dataset: str | Sequence[str], ground_truth: Any) -> list[tuple[str, Any]]:
    """(verifier name, label) for each verifier a row names."""
    if isinstance(dataset, str):
        if _is_list(ground_truth) and len(ground_truth) == 1:
            return [(dataset, ground_truth[0])]
        return [(dataset, ground_truth)]
    names = list(dataset)
    if not names:
        raise ValueError("the row's dataset list is empty: it names no verifier")
    if not _is_list(ground_truth):
        return [(name, ground_truth) for name in names]
    if len(ground_truth) != len(names):
        raise ValueError(
            f"the row has {len(ground_truth)} labels for {len(names)} verifiers {names}; "
            "give one label per verifier or a single label"
        )
    return list(zip(names, ground_truth))


async def score_row(
    row: Mapping[str, Any],
    response: str,
    verifiers: Mapping[str, Verifier],
    weights: Mapping[str, float] | None = None,
    thinking: bool = False,
) -> RowScore:
    """Runs the row's verifiers on `response`'s answer concurrently; `weights` default to 1 per
    verifier. `thinking`: the prompt opened a think block, so only the text after `</think>` is
    the answer, and a response without one scores 0 with reason `no_answer`.

    No limits and no cache: the reward service (service.py) adds those around the same steps.
    """
    pairs = pair_labels(row["dataset"], row["ground_truth"])
    check_built(pairs, verifiers)
    answer = final_answer(response, thinking)
    if answer is None:
        return no_answer(pairs, weights)
    results = await asyncio.gather(*(verifiers[name](answer, label, row) for name, label in pairs))
    return combine(pairs, results, weights)


def no_answer(
    pairs: Sequence[tuple[str, Any]], weights: Mapping[str, float] | None = None
) -> RowScore:
    """The score of a response cut off while thinking: 0 from every verifier, none of them run."""
    return combine(pairs, [VerifierResult(0.0, "no_answer")] * len(pairs), weights)


def check_built(pairs: Sequence[tuple[str, Any]], verifiers: Mapping[str, Verifier]) -> None:
    """Raises UnknownVerifierError when a row names a verifier that is not in `verifiers`."""
    for name, _ in pairs:
        if name not in verifiers:
            raise UnknownVerifierError(
                f"the row names verifier {name!r}, which was not built "
                f"(built: {', '.join(sorted(verifiers)) or 'none'}){did_you_mean(name, verifiers)}"
            )


def combine(
    pairs: Sequence[tuple[str, Any]],
    results: Sequence[VerifierResult],
    weights: Mapping[str, float] | None = None,
) -> RowScore:
    """The row's score from each (verifier, label) pair's result."""
    weights = weights or {}
    keys = _unique_keys([name for name, _ in pairs])
    return RowScore(
        score=sum(weights.get(name, 1.0) * r.score for (name, _), r in zip(pairs, results)),
        per_verifier={key: r.score for key, r in zip(keys, results)},
        reasons={key: r.reason for key, r in zip(keys, results)},
        transient=any(r.transient for r in results),
    )


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _unique_keys(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys

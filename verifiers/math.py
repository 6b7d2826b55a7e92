"""The `math` verifier: 1.0 when the response's final answer equals the label, as math-verify judges.

The answer is found and tidied in this process (math_answer); math-verify's parse and verify run in
a warm child process under a deadline (deadline), since sympy can spend unbounded time on inputs
such as `9^{9^{9}}`. A percentage equals both its number and its fraction (50\\% = 50 = 0.5,
math-verify's rule), as data sets write such labels either way.
"""

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

from verifiers.base import Verifier, VerifierResult
from verifiers.deadline import DeadlineWorkerPool, WorkerCrashed
from verifiers.math_answer import (
    AnswerSource,
    extract_answer,
    last_boxed,
    normalize_answer,
)
from verifiers.registry import register


@register("math")
class MathVerifier(Verifier):
    @dataclass(frozen=True)
    class Config(Verifier.Config):
        answer_sources: tuple[AnswerSource, ...] = ("boxed", "answer_line")
        """Where to look for the final answer, first match wins: boxed, answer_line, last_number."""
        timeout_s: float = 5.0
        """Wall-clock limit on one comparison; past it the response scores 0 ("timeout")."""
        parallel_workers: int = 0
        """Comparison processes running at once; 0 means one per CPU core."""

        def __post_init__(self) -> None:
            known = get_args(AnswerSource)
            if not self.answer_sources or not set(self.answer_sources) <= set(known):
                raise ValueError(
                    f"answer_sources must be a non-empty list of {', '.join(known)}; "
                    f"got {list(self.answer_sources)}"
                )
            if self.timeout_s <= 0:
                raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
            if self.parallel_workers < 0:
                raise ValueError(f"parallel_workers must be >= 0, got {self.parallel_workers}")

    config: Config

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        self._workers = DeadlineWorkerPool(
            self.config.parallel_workers or os.cpu_count() or 1, initializer=prepare_worker
        )

    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        answer = extract_answer(response, self.config.answer_sources)
        if answer is None:
            return VerifierResult(0.0, "no_answer")
        gold = gold_answer(label)
        try:
            reason = await asyncio.to_thread(
                self._workers.call,
                judge,
                gold,
                normalize_answer(answer),
                timeout_s=self.config.timeout_s,
            )
        except TimeoutError:
            reason = "timeout"
        except WorkerCrashed:  # e.g. sympy exhausting memory on a pathological answer
            reason = "worker_crashed"
        return VerifierResult(1.0 if reason == "correct" else 0.0, reason)

    def close(self) -> None:
        self._workers.close()


def gold_answer(label: Any) -> str:
    """The label as math-verify should read it; a boxed label is unwrapped."""
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise TypeError(f"a math label is a string or a number, got {label!r}")
    text = str(label)
    return normalize_answer(last_boxed(text) or text)


def judge(gold: str, answer: str) -> str:
    """The verdict: correct, wrong_answer, parse_error or bad_label; may run for unbounded time."""
    # Imported here: only the worker process runs this, so callers never load sympy.
    from math_verify import parse, verify

    # math-verify's own (signal.alarm) timeouts are off: the worker's deadline covers parse and
    # verify together, and a comparison cut short must read "timeout", not a silent False.
    gold_parsed = parse(f"${gold}$", parsing_timeout=None)
    if not gold_parsed:
        return "bad_label"
    answer_parsed = parse(f"${answer}$", parsing_timeout=None)
    if not answer_parsed:
        return "parse_error"
    # An inequality is a right answer for an interval label ("1 \\le x \\le 2" for [1, 2]); by
    # default math-verify compares the two only when the answer is the interval.
    equal = verify(gold_parsed, answer_parsed, timeout_seconds=None, allow_set_relation_comp=True)
    return "correct" if equal else "wrong_answer"


def prepare_worker() -> None:
    """Runs once in each worker: imports and warms math-verify before any deadline starts."""
    # math-verify warns once that its timeouts are off; they are off on purpose (see judge).
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    judge("1", "1")

"""`olmorl bench verifiers`: math verifications/s and sandboxed code executions/s on this machine.

Each is measured through the reward service, as the RL loop scores, and against a baseline doing
the same work without isolation in the same run: math-verify called in this process (the
service adds the deadline worker and IPC), and the same program run by a plain `python -I`
subprocess from a pool of the same size (the sandbox adds namespaces, a tmpfs root and limits).
Every response is distinct, so the cache never answers.
"""

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from olmorl.bench.table import BenchResult

# (response, label) pairs across the answer forms the math verifier meets in RL data.
MATH_CASES = (
    (r"so \boxed{\frac{1}{2}}", "0.5"),
    (r"\boxed{3}", "3"),
    (r"the answer is \boxed{x = 3}", "3"),
    (r"\boxed{[1, 2)}", "[1,2)"),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
    (r"\boxed{50\%}", "0.5"),
    (r"\boxed{1,000}", "1000"),
    (r"\boxed{\{1, 2\}}", r"\{2, 1\}"),
    (r"\boxed{\dfrac{\pi}{4}}", r"\frac{\pi}{4}"),
    (r"\boxed{7}", "8"),
)
CODE_PROGRAM = "def add(a, b):\n    return a + b\n"
# A literal expected value: the verifier compares it itself, so a row is one sandboxed execution.
CODE_TEST = "assert add({i}, 1) == {j}"


def bench_math(count: int) -> list[BenchResult]:
    from verifiers import build_verifier
    from verifiers.math import judge, prepare_worker
    from verifiers.math_answer import extract_answer, normalize_answer

    cases = [(f"Attempt {i}: {MATH_CASES[i % len(MATH_CASES)][0]}", i) for i in range(count)]
    labels = [MATH_CASES[i % len(MATH_CASES)][1] for i in range(count)]

    prepare_worker()  # the same imports, warm-up and logging as the worker's
    started = time.perf_counter()
    for (response, _), label in zip(cases, labels):
        judge(label, normalize_answer(extract_answer(response, ("boxed",))))
    in_process = BenchResult("in-process", count, time.perf_counter() - started)

    verifier = build_verifier("math")
    try:
        return [in_process, _through_service(verifier, "math", cases, labels)]
    finally:
        verifier.close()


def bench_code(count: int) -> list[BenchResult]:
    from verifiers import build_verifier

    workers = os.cpu_count() or 1
    tests = [CODE_TEST.format(i=i, j=i + 1) for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(_plain_subprocess, tests))
    plain = BenchResult("subprocess", count, time.perf_counter() - started)

    # One test per row: each row is one sandboxed execution.
    verifier = build_verifier("code", {"parallel_runs": workers})
    response = f"```python\n{CODE_PROGRAM}```"
    cases = [(response, i) for i in range(count)]
    try:
        return [plain, _through_service(verifier, "code", cases, [[t] for t in tests])]
    finally:
        verifier.close()


def _through_service(verifier, name: str, cases, labels) -> BenchResult:
    from verifiers.service import RewardService

    service = RewardService({name: verifier})

    async def score_all() -> list[float]:
        results = await asyncio.gather(
            *(
                service.score({"dataset": name, "ground_truth": label}, response)
                for (response, _), label in zip(cases, labels)
            )
        )
        return [r.score for r in results]

    started = time.perf_counter()
    scores = asyncio.run(score_all())
    seconds = time.perf_counter() - started
    failures = service.take_stats()[name]
    if failures.failures or failures.timeouts:
        raise RuntimeError(f"{name} benchmark: {failures.last_error or 'timeouts'}")
    if name == "code" and min(scores) < 1.0:
        raise RuntimeError("code benchmark: a sandboxed run failed its test")
    return BenchResult("reward service", len(cases), seconds)


def _plain_subprocess(test: str) -> None:
    subprocess.run(
        [sys.executable, "-I", "-c", f"{CODE_PROGRAM}{test}\n"], check=True, capture_output=True
    )

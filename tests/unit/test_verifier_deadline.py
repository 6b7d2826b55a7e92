"""DeadlineWorker: results and errors come back, a call past its deadline is killed within it,
and the worker recovers from timeouts and crashes. Only stdlib functions are sent to the child."""

import functools
import math
import operator
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from verifiers.deadline import DeadlineWorker, DeadlineWorkerPool, WorkerCrashed, WorkerError


@pytest.fixture(scope="module")
def worker() -> Iterator[DeadlineWorker]:
    w = DeadlineWorker()
    yield w
    w.close()


def test_returns_the_result(worker: DeadlineWorker) -> None:
    assert worker.call(operator.add, 2, 3, timeout_s=5) == 5
    assert worker.call(os.getpid, timeout_s=5) != os.getpid()


def test_an_exception_in_the_child_comes_back_with_its_traceback(worker: DeadlineWorker) -> None:
    with pytest.raises(WorkerError, match="ValueError: math domain error"):
        worker.call(math.sqrt, -1, timeout_s=5)
    assert worker.call(math.sqrt, 4, timeout_s=5) == 2.0


def test_a_call_past_its_deadline_is_killed_and_the_next_gets_a_fresh_child(
    worker: DeadlineWorker,
) -> None:
    first_pid = worker.call(os.getpid, timeout_s=5)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="sleep"):
        worker.call(time.sleep, 60, timeout_s=0.5)
    assert time.monotonic() - start < 2.0
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)
    assert worker.call(os.getpid, timeout_s=5) != first_pid


def test_a_crash_is_reported_and_survived(worker: DeadlineWorker) -> None:
    with pytest.raises(WorkerCrashed):
        worker.call(os._exit, 3, timeout_s=5)
    assert worker.call(operator.mul, 6, 7, timeout_s=5) == 42


def test_threads_share_one_worker(worker: DeadlineWorker) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: worker.call(operator.mul, i, i, timeout_s=5), range(32)))
    assert results == [i * i for i in range(32)]


def test_close_stops_the_child() -> None:
    w = DeadlineWorker()
    pid = w.call(os.getpid, timeout_s=5)
    w.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert w.call(operator.add, 1, 1, timeout_s=5) == 2  # starts again on demand
    w.close()


def test_a_failing_initializer_is_reported() -> None:
    w = DeadlineWorker(initializer=functools.partial(int, "not a number"))
    with pytest.raises(WorkerError, match="initializer raised"):
        w.call(operator.add, 1, 1, timeout_s=5)
    w.close()


def test_a_pool_spreads_calls_over_its_children() -> None:
    pool = DeadlineWorkerPool(2)
    try:
        with ThreadPoolExecutor(4) as threads:
            pids = set(threads.map(lambda _: pool.call(os.getpid, timeout_s=5), range(8)))
        assert len(pids) == 2 and os.getpid() not in pids
        # A timeout replaces only the child it happened in.
        with pytest.raises(TimeoutError):
            pool.call(time.sleep, 5, timeout_s=0.2)
        after = {pool.call(os.getpid, timeout_s=5) for _ in range(2)}
        assert len(after & pids) == 1
    finally:
        pool.close()

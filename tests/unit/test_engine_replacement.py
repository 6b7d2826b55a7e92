"""A dead engine's replacement waits for the old processes to go, then retries its start.

The waits run on a fake clock; the process checks on real processes (a parent and the child it
leaves behind, as a killed Ray actor leaves vLLM's engine core).
"""

import subprocess
import sys
import time

import pytest

from olmorl.processes import process_tree, still_running
from olmorl.rl.replacement import ReplacementFailed, start_with_backoff, wait_until_gone


class FlakyStart:
    """Fails its first `failures` calls (vLLM finding the GPU memory still held), then starts."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ValueError(
                f"Free memory on device (9.1/79.2 GiB) is less than desired GPU memory "
                f"utilization (0.9, 71.3 GiB) [call {self.calls}]\nmore detail"
            )
        return "engine"


def test_a_start_that_fails_twice_is_retried_with_doubling_pauses(fake_clock):
    clock, start = fake_clock, FlakyStart(failures=2)
    engine = start_with_backoff(start, "rollout engine 3", first_pause_s=10, sleep=clock.sleep)
    assert engine == "engine" and start.calls == 3
    assert clock.sleeps == [10, 20]


def test_a_start_that_always_fails_gives_up_after_n_attempts_naming_the_engine(fake_clock):
    clock, start = fake_clock, FlakyStart(failures=99)
    with pytest.raises(ReplacementFailed) as failed:
        start_with_backoff(
            start, "rollout engine 3", attempts=4, first_pause_s=10, sleep=clock.sleep
        )
    message = str(failed.value)
    assert message.startswith("rollout engine 3 did not start in 4 attempts (attempt 1: ValueError")
    assert "[call 4]" in message and "more detail" not in message  # first lines only
    assert isinstance(failed.value.__cause__, ValueError) and "[call 4]" in str(
        failed.value.__cause__
    )
    assert start.calls == 4 and clock.sleeps == [10, 20, 40]  # no pause after the last


def test_the_replacement_waits_until_the_old_processes_are_gone(fake_clock):
    clock = fake_clock
    left = iter([[101, 102], [102], [102], []])
    wait_until_gone(lambda: next(left), "rollout engine 0", 60, clock.monotonic, clock.sleep)
    assert clock.sleeps == [0.1, 0.2, 0.4]


def test_processes_that_never_go_stop_the_replacement_at_the_timeout_naming_them(fake_clock):
    clock = fake_clock
    with pytest.raises(
        ReplacementFailed, match=r"rollout engine 2 .* \[102\] still run after 30 s"
    ):
        wait_until_gone(lambda: [102], "rollout engine 2", 30, clock.monotonic, clock.sleep)
    assert 30 <= clock.now <= 32  # checks at most every 2 s


def _wait_for(condition, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def test_the_processes_an_engine_leaves_behind_are_found_and_killed():
    # A parent with a child, as a Ray actor and vLLM's engine-core process under it.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)",
        ]
    )
    try:
        tree = _wait_for(lambda: len(process_tree(parent.pid)) == 2 and process_tree(parent.pid))
        assert tree[0][0] == parent.pid
        assert sorted(still_running(tree)) == sorted(pid for pid, _ in tree)
        # The same pid with another start time is another process (the pid was reused); a
        # start time off by a fraction of a second is a stepped clock, the same process.
        assert still_running([(parent.pid, tree[0][1] + 5)]) == []
        assert still_running([(parent.pid, tree[0][1] + 0.5)]) == [parent.pid]
        still_running(tree, kill=True)
        # Both end; the parent stays a zombie until reaped below, and counts as gone.
        assert _wait_for(lambda: still_running(tree) == [])
    finally:
        parent.kill()
        parent.wait(timeout=30)

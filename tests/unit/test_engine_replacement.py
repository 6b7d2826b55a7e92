"""A dead engine's replacement waits for the old processes to go, then retries its start.

The waits run on a fake clock; the process checks on real processes (a parent and the child it
leaves behind, as a killed Ray actor leaves vLLM's engine core); the cluster's replacement verbs
on fake engines.
"""

import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import psutil
import pytest

from olmorl.config import RLConfig, load_config
from olmorl.placement import rl_needs
from olmorl.processes import TAG_ENV, tagged
from olmorl.rl.replacement import ReplacementFailed, start_with_backoff, wait_until_gone

RECIPES = Path(__file__).parents[2] / "recipes"


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


def test_an_engine_s_processes_are_found_by_its_tag_even_once_orphaned():
    # A parent with a child in a session of its own, as a Ray actor and vLLM's engine-core
    # process under it; and a process of another engine beside them.
    spawn_child = (
        "import subprocess, time; "
        "subprocess.Popen(['sleep', '60'], start_new_session=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", spawn_child], env={**os.environ, TAG_ENV: "engine-0-aaaa"}
    )
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, TAG_ENV: "engine-1-bbbb"})
    try:
        found = _wait_for(lambda: len(tagged("engine-0-aaaa")) == 2 and tagged("engine-0-aaaa"))
        assert parent.pid in found and other.pid not in found
        parent.kill()
        parent.wait(timeout=30)
        # The actor's death leaves its child behind, no longer under it: the tag still finds it.
        [orphan] = _wait_for(lambda: tagged("engine-0-aaaa"))
        assert orphan != parent.pid and psutil.Process(orphan).ppid() != parent.pid
        assert tagged("engine-0-aaaa", kill=True) == [orphan]
        assert _wait_for(lambda: tagged("engine-0-aaaa") == [])
        assert tagged("engine-1-bbbb") == [other.pid]
    finally:
        parent.kill()
        other.kill()
        other.wait(timeout=30)


class FakeEngine:
    """An engine actor handle; `start.remote()` gives back the engine, for `wait_started`, and
    `shutdown.remote()` nothing (the fake `wait_quietly` ignores it), `where.remote()` its node
    (the fake `ray.get` passes it through)."""

    def __init__(self, tag: str):
        self.tag = tag
        self.start = types.SimpleNamespace(remote=lambda: self)
        self.shutdown = types.SimpleNamespace(remote=lambda: None)
        self.where = types.SimpleNamespace(
            remote=lambda: {"node_id": "n-engines", "ip": "10.0.0.2"}
        )

    def __repr__(self) -> str:
        return self.tag


class Replacements:
    """An RL cluster's replacement verbs on fake engines: each step (an engine made, started,
    killed, its tag reaped) is appended to `events`; `started(engine)` decides each start."""

    def __init__(self, monkeypatch, started):
        import olmorl.rl.cluster as cluster_module

        self.events: list[tuple[str, str]] = []
        tags = iter(f"tag-{i}" for i in range(100))

        def new_engine(cfg, index, placement, tag):
            self.events.append(("new", tag))
            return FakeEngine(tag)

        def wait_started(refs, timeout_s, check=None):
            [engine] = refs.values()
            self.events.append(("start", engine.tag))
            started(engine)

        def kill(actor):
            self.events.append(("kill", actor.tag))

        def reaped(tag):
            self.events.append(("reap", tag))
            return []

        monkeypatch.setattr(cluster_module, "new_engine", new_engine)
        monkeypatch.setattr(cluster_module, "wait_started", wait_started)
        monkeypatch.setattr(cluster_module.ray, "kill", kill)
        monkeypatch.setattr(cluster_module, "_kill_tagged", reaped)
        monkeypatch.setattr(cluster_module, "wait_quietly", lambda refs: None)
        monkeypatch.setattr(cluster_module.ray, "get", lambda value, timeout=None: value)
        self.nodes = [
            {"NodeID": "n-engines", "Alive": True, "Resources": {"CPU": 4.0, "engines": 1.0}}
        ]
        monkeypatch.setattr(cluster_module.ray, "nodes", lambda: self.nodes)
        monkeypatch.setattr(
            cluster_module.uuid, "uuid4", lambda: types.SimpleNamespace(hex=next(tags))
        )
        monkeypatch.setattr(
            cluster_module,
            "start_with_backoff",
            lambda start, name, **kw: start_with_backoff(start, name, first_pause_s=0, **kw),
        )
        cluster = cluster_module.RLCluster.__new__(cluster_module.RLCluster)
        cluster.cfg = load_config(
            RLConfig, RECIPES / "tiny/rl_target_token.yaml", ["rollout.ray_resources={engines: 1}"]
        )
        cluster.placement = types.SimpleNamespace(
            release=lambda: None, needs=rl_needs(cluster.cfg, gpus=False)
        )
        cluster.nodes = {"rollout engine 0": {"node_id": "n-engines", "ip": "10.0.0.2"}}
        cluster.learners = types.SimpleNamespace(shutdown=lambda: None)
        cluster.reward_workers, cluster.judge_server = [], None
        cluster._replacing = threading.Lock()
        cluster._replacements, cluster._starting, cluster._closing = {}, {}, False
        cluster._replacers = []
        monkeypatch.setattr(cluster_module, "REPLACER_JOIN_S", 0.1)
        cluster._lost, cluster._replacement_errors = set(), {}
        cluster._engine_tags = {}
        cluster.rollout_actors = [cluster._new_engine(0)]
        self.cluster = cluster

    def replaced(self) -> dict:
        return _wait_for(lambda: self.cluster._replacements or self.cluster._replacement_errors)


def test_a_failed_replacement_start_is_killed_and_reaped_before_the_next_attempt(monkeypatch):
    """vLLM's processes from a start that failed hold GPU memory, as the dead engine's did: the
    next attempt must not begin until they are gone."""

    def fail_first(engine: FakeEngine) -> None:
        if engine.tag.endswith("tag-1"):
            raise ValueError("Free memory on device (9.1/79.2 GiB) is less than desired")

    replacements = Replacements(monkeypatch, fail_first)
    replacements.cluster.replace_engine(0)
    assert isinstance(replacements.replaced()[0], FakeEngine)
    old, failed, new = (f"olmorl-engine-0-tag-{i}" for i in range(3))
    assert replacements.events[1:] == [
        ("kill", old),
        ("reap", old),  # the dead engine's processes
        ("new", failed),
        ("start", failed),
        ("kill", failed),
        ("reap", failed),  # the failed attempt's, before the next attempt
        ("new", new),
        ("start", new),
    ]


def test_a_replacement_starting_at_shutdown_is_killed_and_not_kept(monkeypatch):
    starting, release = threading.Event(), threading.Event()

    def block(engine: FakeEngine) -> None:
        starting.set()
        assert release.wait(timeout=30)

    replacements = Replacements(monkeypatch, block)
    cluster = replacements.cluster
    cluster.replace_engine(0)
    assert starting.wait(timeout=30)
    cluster.shutdown()
    replacing = "olmorl-engine-0-tag-1"
    assert ("kill", replacing) in replacements.events, "shutdown left the starting engine running"
    release.set()
    _wait_for(lambda: replacements.events.count(("kill", replacing)) == 2)
    assert cluster._replacements == {}
    # Nor does a replacement asked for after shutdown start an engine.
    cluster.replace_engine(0)
    cluster._replacers[-1].join(timeout=30)
    assert [e for e in replacements.events if e[0] == "new"] == [
        ("new", "olmorl-engine-0-tag-0"),
        ("new", replacing),
    ]


def test_an_engine_whose_node_left_with_the_resource_it_needs_stops_the_run_at_once(
    monkeypatch,
):
    """The engines' node died and no other node has the custom resource engines ask for: the
    replacement would wait run.stage_timeout_s (an hour by default) for nothing. It fails at
    once, naming the node, and install_replacements reports it (the loop then names the
    checkpoint to resume from)."""
    replacements = Replacements(monkeypatch, lambda engine: None)
    replacements.nodes[:] = [
        {"NodeID": "n-learners", "Alive": True, "Resources": {"CPU": 8.0, "learners": 2.0}},
        {"NodeID": "n-engines", "Alive": False, "Resources": {"CPU": 4.0, "engines": 1.0}},
    ]
    cluster = replacements.cluster
    cluster.replace_engine(0)
    replacements.replaced()
    with pytest.raises(Exception) as lost:
        cluster.install_replacements()
    message = str(lost.value)
    print(message)
    assert type(lost.value).__name__ == "EngineLost"
    assert "rollout engine 0 died with its node 10.0.0.2 (id n-engines)" in message
    assert (
        "no live node of the Ray cluster has what an engine asks for (CPU 1, engines 1)" in message
    )
    assert not [e for e in replacements.events[1:] if e[0] == "new"], "a replacement was started"


def test_an_engine_replacement_goes_on_while_a_live_node_has_room(monkeypatch):
    replacements = Replacements(monkeypatch, lambda engine: None)
    replacements.nodes[:] = [
        {"NodeID": "n-engines", "Alive": False, "Resources": {"CPU": 4.0, "engines": 1.0}},
        {"NodeID": "n-spare", "Alive": True, "Resources": {"CPU": 4.0, "engines": 1.0}},
    ]
    replacements.cluster.replace_engine(0)
    assert isinstance(replacements.replaced()[0], FakeEngine)


def test_a_stopped_run_names_the_nodes_that_left_with_their_actors(monkeypatch):
    from olmorl.run_errors import stopped

    replacements = Replacements(monkeypatch, lambda engine: None)
    cluster = replacements.cluster
    cluster.nodes["learner rank 0"] = {"node_id": "n-learners", "ip": "10.0.0.1"}
    replacements.nodes[:] = [{"NodeID": "n-learners", "Alive": True, "Resources": {}}]
    gone = cluster.departed()
    assert gone == "node 10.0.0.2 (id n-engines) has left the Ray cluster, with rollout engine 0"
    replacements.nodes.append({"NodeID": "n-engines", "Alive": True, "Resources": {}})
    assert cluster.departed() == ""
    message = str(stopped(RuntimeError("weight broadcast failed"), Path("/nonexistent"), gone))
    assert message.startswith("weight broadcast failed. node 10.0.0.2 (id n-engines) has left")
    assert "no checkpoint was written yet" in message

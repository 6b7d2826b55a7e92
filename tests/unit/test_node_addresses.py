"""Addresses other nodes are given: Ray's node IP inside a Ray job, never the host name's entry in
/etc/hosts (127.0.1.1 on Debian); loopback only outside Ray. No Ray is started: it is faked."""

import itertools
import tempfile
from types import SimpleNamespace

import pytest
import ray

from olmorl.node_ip import node_ip_address
from olmorl.rollout import judge_server
from olmorl.rollout.judge_server import JudgeServer, base_url


@pytest.fixture
def in_ray(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "10.1.2.3")


def test_node_ip_is_rays_inside_a_ray_job(in_ray):
    assert node_ip_address() == "10.1.2.3"


def test_node_ip_is_loopback_outside_ray(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: pytest.fail("asked Ray"))
    assert node_ip_address() == "127.0.0.1"


def test_learner_rendezvous_is_at_the_node_ip(in_ray, monkeypatch):
    import socket

    from olmorl.config import LearnerConfig, ModelConfig
    from olmorl.learner.worker import LearnerWorker

    monkeypatch.setattr(socket, "gethostbyname", lambda _: "127.0.1.1")
    worker = LearnerWorker(0, 1, ModelConfig(path="unused"), LearnerConfig())
    host, port = worker.address()
    assert host == "10.1.2.3" and port > 0


class FakeServerProcess:
    """A judge server that starts and stays up."""

    def __init__(self, command):
        self.command, self.pid, self.returncode = command, 999_999, None

    def poll(self):
        return self.returncode

    def terminate(self):
        pass

    def wait(self, timeout=None):
        return self.returncode


def test_judge_binds_every_interface_and_advertises_the_node_ip(in_ray, monkeypatch, tmp_path):
    started, checked = [], []

    def popen(command, **_):
        started.append(FakeServerProcess(command))
        return started[-1]

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(judge_server.subprocess, "Popen", popen)
    monkeypatch.setattr(
        "httpx.get", lambda url, **_: checked.append(url) or SimpleNamespace(status_code=200)
    )
    server = JudgeServer("judge-model", gpu_memory_utilization=0.5)  # 0.5: no platform probe
    url = server.start()

    command = started[0].command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert checked == [f"http://127.0.0.1:{server.port}/health"]  # the health check stays local
    assert url == server.url() == f"http://10.1.2.3:{server.port}/v1"


def test_a_judge_whose_port_was_taken_starts_again_on_another(in_ray, monkeypatch, tmp_path):
    """The port is free when chosen and taken before vLLM binds it: the server exits, and the
    next launch gets another port. Any other early exit is reported, not retried."""
    started, ports = [], itertools.count(4001)

    def popen(command, stdout, **_):
        process = FakeServerProcess(command)
        if len(started) < taken:
            stdout.write(failure)
            process.returncode = 1
        started.append(process)
        return process

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = []
    monkeypatch.setattr(judge_server.os, "killpg", lambda pid, _: killed.append(pid))
    monkeypatch.setattr(judge_server, "_free_port", lambda: next(ports))
    monkeypatch.setattr(judge_server.subprocess, "Popen", popen)
    monkeypatch.setattr("httpx.get", lambda url, **_: SimpleNamespace(status_code=200))

    failure, taken = b"OSError: [Errno 98] Address already in use\n", 2
    assert JudgeServer("judge", gpu_memory_utilization=0.5).start() == "http://10.1.2.3:4003/v1"
    assert [p.command[p.command.index("--port") + 1] for p in started] == ["4001", "4002", "4003"]
    assert len(killed) == 2  # each failed server's process group, engine processes and all

    started.clear()
    taken = 3  # every try: the third failure is reported with the log
    with pytest.raises(RuntimeError, match="(?s)exited with code 1 while starting.*already in use"):
        JudgeServer("judge", gpu_memory_utilization=0.5).start()
    assert len(started) == 3

    started.clear()
    failure = b"ValueError: no such model\n"
    with pytest.raises(RuntimeError, match="no such model"):
        JudgeServer("judge", gpu_memory_utilization=0.5).start()
    assert len(started) == 1


def test_ipv6_hosts_are_bracketed_in_the_url():
    assert base_url("fd00::5", 8000) == "http://[fd00::5]:8000/v1"
    assert base_url("10.0.0.5", 8000) == "http://10.0.0.5:8000/v1"

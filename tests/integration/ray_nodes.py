"""Private Ray clusters for one test, started as a real cluster's nodes are (launch/ray_node.sh),
on free ports, loopback only: the head on `head()`, more nodes on this machine with `worker()`.

Each node runs `ray start --block` in a session of its own, so `kill_node` SIGKILLs exactly that
node (its raylet and every worker process under it), as a machine that dies would, and `stop`
ends them all without touching the Ray cluster the other integration tests share.
"""

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).parents[2]


_RAY_WORKER_PORTS_END = 20000  # Ray's workers take ports 10002-19999
_given_ports: set[int] = set()


def free_port() -> int:
    """A free port outside the kernel's ephemeral range and Ray's worker ports, none given before.

    `ray start` binds it seconds later. A port from binding port 0 lies in the ephemeral range,
    where any process on the machine may take it meanwhile (vLLM's stores bind port 0, and every
    outgoing connection takes an ephemeral port for its own end); outside it only a process that
    names the port can.
    """
    first, last = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    outside = [*range(_RAY_WORKER_PORTS_END, first), *range(last + 1, 65536)]
    assert outside, f"no ports outside the ephemeral range {first}-{last} and Ray's"
    while True:
        port = random.SystemRandom().choice(outside)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port


def ray_env() -> dict[str, str]:
    """The environment of a test's own Ray commands and jobs: this Python's tools first, no
    inherited RAY_ADDRESS, and Ray's token authentication off (a loopback-only test cluster;
    a real one keeps it on and hands the token to its clients)."""
    bin_dir = Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RAY_ADDRESS": "",
        "RAY_AUTH_MODE": "disabled",
    }


def _own_ports() -> list[str]:
    """Ports each node of one machine needs for itself: the session's other Ray cluster and the
    test's other nodes hold the defaults (an agent that cannot bind leaves its node unusable)."""
    return [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


class RayNodes:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.port = free_port()
        self.dashboard_port = free_port()
        # Ray's unix sockets live under --temp-dir, and socket paths may not exceed ~107 bytes:
        # a pytest tmp_path is too deep.
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        self.nodes: dict[str, subprocess.Popen] = {}

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def head(self, *options: str) -> subprocess.Popen:
        """`ray_node.sh head`, with `options` for `ray start` (e.g. --num-cpus=4)."""
        return self._start(
            "head",
            ["head", "--block", *options, f"--temp-dir={self.temp_dir}"],
            f"--ray-client-server-port={free_port()}",
        )

    def worker(self, name: str, *options: str) -> subprocess.Popen:
        """`ray_node.sh worker 127.0.0.1`: one more node of the cluster on this machine."""
        return self._start(name, ["worker", "127.0.0.1", "--block", *options])

    def _start(self, name: str, args: list[str], *extra: str) -> subprocess.Popen:
        env = {
            **ray_env(),
            "RAY_PORT": str(self.port),
            "RAY_DASHBOARD_PORT": str(self.dashboard_port),
            "RAY_DASHBOARD_HOST": "127.0.0.1",
        }
        log = (self.log_dir / f"{name}.log").open("w")
        self.nodes[name] = subprocess.Popen(
            [str(REPO / "launch" / "ray_node.sh"), *args, *_own_ports(), *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self.nodes[name]

    def kill_node(self, name: str) -> None:
        node = self.nodes.pop(name)
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=60)

    def stop(self) -> None:
        """Kills every node outright: nothing in a test's cluster needs a graceful stop, which
        took `ray start --block` 40 s."""
        for node in self.nodes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=60)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def alive_nodes(self, count: int, timeout_s: float = 120) -> dict[str, dict[str, float]]:
        """Each live node's id and resources, once `count` nodes are up; asked by a driver
        process of its own (this one may already hold the shared cluster)."""
        ask = (
            f"import json, ray; ray.init(address='{self.gcs_address}', logging_level='ERROR'); "
            "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))"
        )
        deadline = time.monotonic() + timeout_s
        while True:
            for name, node in self.nodes.items():
                assert node.poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"
            found = subprocess.run(
                [sys.executable, "-c", ask],
                env=ray_env(),
                capture_output=True,
                text=True,
                check=False,
            )
            nodes = json.loads(found.stdout.splitlines()[-1]) if found.returncode == 0 else {}
            if len(nodes) >= count:
                return nodes
            assert time.monotonic() < deadline, f"{count} nodes not up: {found.stderr[-2000:]}"
            time.sleep(2)

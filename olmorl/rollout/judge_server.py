"""A vLLM OpenAI-compatible server for the `judge` verifier, run as a subprocess.

A plain class; `ray.remote(JudgeServer)` places it as an actor (give it the judge's GPU). `start()`
launches `python -m vllm.entrypoints.openai.api_server` on a free port of every interface and
returns once `/health` answers; `url()`, at the node's IP, is the base URL for the verifier's `url`
option, reachable from reward workers on any node.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from olmorl.actor_logs import capture_output
from olmorl.node_ip import node_ip_address

_LOG_TAIL_CHARS = 4000
_PORT_TRIES = 3
_ADDRESS_IN_USE = "Address already in use"  # what binding a taken port raises (errno 98)

# The actor's direct child, which runs the server as its own child. When the actor dies, Ray kills
# its direct children with SIGKILL; vLLM's engine processes would outlive a killed server (holding
# the GPU), but the server gets SIGTERM when this guard dies (PR_SET_PDEATHSIG) and then shuts its
# engine down. Set from the guard, not the actor: the signal follows the forking *thread*'s death.
_GUARD = """
import ctypes, signal, subprocess, sys
def die_with_parent():
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
server = subprocess.Popen(sys.argv[1:], preexec_fn=die_with_parent)
signal.signal(signal.SIGTERM, lambda *_: server.terminate())
sys.exit(server.wait())
"""


class JudgeServer:
    def __init__(
        self,
        model_path: str,
        served_model_name: str = "judge",
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 600.0,
    ):
        """`gpu_memory_utilization` None: 0.2 on CPU (there the share of node memory for the KV
        cache; vLLM's default 0.9 fails), vLLM's default on a GPU. `extra_args` go to vLLM as is."""
        capture_output()
        self.model_path, self.served_model_name = model_path, served_model_name
        self.dtype, self.max_model_len = dtype, max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.extra_args, self.startup_timeout_s = list(extra_args), startup_timeout_s
        self.host = ""
        """The address `url()` gives: the node's IP (set by `start()`)."""
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.log_path: str | None = None

    def start(self) -> str:
        """Launches the server and waits until it is healthy; returns `url()`.

        The port is chosen free, then bound by vLLM seconds later: any process on the node may
        take it meanwhile (every outgoing connection takes a free port for its own end). A server
        that exits because its port was taken is launched again on another one.
        """
        import httpx

        if self.process is not None:
            return self.url()
        self._launch()
        tries_left = _PORT_TRIES - 1
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.shutdown(timeout_s=0)  # any engine process it had started
                if tries_left and _ADDRESS_IN_USE in self._log_tail():
                    tries_left -= 1
                    self._launch()
                    continue
                raise RuntimeError(
                    f"the judge server exited with code {code} while starting; "
                    f"log {self.log_path} ends:\n{self._log_tail()}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200:
                    return self.url()
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.shutdown()
                raise TimeoutError(
                    f"the judge server was not healthy after {self.startup_timeout_s:.0f} s; "
                    f"log {self.log_path} ends:\n{self._log_tail()}"
                )
            time.sleep(0.5)

    def _launch(self) -> None:
        """Starts the server process on a free port, its output to a new log file."""
        self.host, self.port = node_ip_address(), _free_port()
        fd, self.log_path = tempfile.mkstemp(prefix="olmorl_judge_server_", suffix=".log")
        command = [
            sys.executable, "-c", _GUARD,
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_path,
            "--served-model-name", self.served_model_name,
            # Every interface: reward workers on other nodes call it at the node's IP.
            "--host", "0.0.0.0",
            "--port", str(self.port),
            "--dtype", self.dtype,
            "--disable-log-stats",
            # Compact JSON under `response_format`: a weak judge otherwise pads it with
            # whitespace until max_tokens cuts it off before the closing brace. (vLLM allows
            # this only with a named backend; `extra_args` may give another config.)
            "--structured-outputs-config",
            '{"backend": "xgrammar", "disable_any_whitespace": true}',
        ]  # fmt: skip
        if self.max_model_len is not None:
            command += ["--max-model-len", str(self.max_model_len)]
        memory = self.gpu_memory_utilization
        if memory is None and _on_cpu():
            memory = 0.2
        if memory is not None:
            command += ["--gpu-memory-utilization", str(memory)]
        command += self.extra_args
        with os.fdopen(fd, "wb") as log:
            # Its own process group, so that shutdown() reaches vLLM's engine processes too.
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def url(self) -> str:
        """The OpenAI-compatible base URL at the node's IP, e.g. http://10.0.0.5:PORT/v1."""
        if self.port is None:
            raise RuntimeError("the judge server is not started; call start() first")
        return base_url(self.host, self.port)

    def where(self) -> dict[str, str]:
        """This server's Ray node id and IP."""
        from olmorl.node_ip import this_node

        return this_node()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stops the server (SIGTERM); past `timeout_s`, kills its whole process group."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever is left: a hung server, engine processes
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def _log_tail(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(self.log_path) - _LOG_TAIL_CHARS))
            return f.read().decode(errors="replace")


def base_url(host: str, port: int) -> str:
    """The server's OpenAI-compatible base URL at `host` (an IPv6 address goes in brackets)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def _free_port() -> int:
    """A port free on every interface, as the server binds it."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()

"""Actor output in the run directory, and only what needs a person's eye on the console.

The driver names a log folder (`send_actor_logs_to`); every actor it then starts with
`actor_options(name)` sends its stdout and stderr, and those of the processes it starts (vLLM's
engine core and workers), to `logs/<name>.log` from the first line of its `__init__`
(`capture_output`). A thread in the actor copies each distinct warning or error line to the
actor's original stderr, which Ray shows on the driver's console prefixed with the actor.
"""

import os
import re
import threading
import time
from pathlib import Path

from olmorl.config import RunConfig
from olmorl.faults import FAULTS_ENV
from olmorl.processes import TAG_ENV

LOG_ENV = "OLMORL_ACTOR_LOG"
"""The file an actor's output goes to; set by the driver through the actor's runtime env."""

# vLLM and Ray write `WARNING 12-06 …` / `ERROR …`; Python writes `Traceback` and `XError: …`.
_NOTEWORTHY = re.compile(r"\b(WARNING|ERROR|CRITICAL|FATAL)\b|^Traceback|^\w*(Error|Exception):")
_PROCESS_PREFIX = re.compile(r"^(\([\w-]+ pid=\d+\)\s*)+")
_POLL_S = 0.2

_log_dir: Path | None = None


def send_actor_logs_to(log_dir: Path | None) -> None:
    """Driver: actors started from now on write to `log_dir` (None: to the console, all of it)."""
    global _log_dir
    _log_dir = log_dir
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)


def actor_log_dir(run: RunConfig, run_dir: Path) -> Path | None:
    """Where a run's actors write: `run_dir/logs`, or None (the console) with run.verbose."""
    return None if run.verbose else run_dir / "logs"


def actor_options(name: str, threads: int | None = None, tag: str | None = None) -> dict:
    """Ray actor options for actor `name`: its log file, the driver's fault specs, with `threads`
    its OpenMP thread count, and with `tag` the tag its processes are found by (processes.py)."""
    env = {}
    if tag:
        env[TAG_ENV] = tag
    if threads:
        # Ray sets OMP_NUM_THREADS to the actor's CPUs (1), and OpenMP reads it for every thread
        # the actor runs verbs on: torch.set_num_threads in one of them leaves the others at 1.
        env["OMP_NUM_THREADS"] = str(threads)
    if _log_dir is not None:
        env[LOG_ENV] = str(_log_dir / f"{name}.log")
    if os.environ.get(FAULTS_ENV):
        env[FAULTS_ENV] = os.environ[FAULTS_ENV]
    return {"runtime_env": {"env_vars": env}} if env else {}


def capture_output() -> None:
    """Actor: when the driver named a log file, sends this process's output there (children
    inherit it) and relays warnings and errors, each distinct one once, to the console."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    console = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = os.lseek(log, 0, os.SEEK_END)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    threading.Thread(
        target=_relay, args=(path, start, console), name="relay-warnings", daemon=True
    ).start()


def noteworthy_lines(lines: list[str], seen: set[str]) -> list[str]:
    """The warning and error lines among `lines` not `seen` before, whichever of the actor's
    processes wrote them and when (vLLM's `(EngineCore pid=…)` prefixes, timestamps and other
    numbers aside); adds them to `seen`."""
    out = []
    for line in lines:
        key = re.sub(r"\d+", "#", _PROCESS_PREFIX.sub("", line.strip()))
        if _NOTEWORTHY.search(line.strip()) and key not in seen:
            seen.add(key)
            out.append(line)
    return out


def _relay(path: str, start: int, console: int) -> None:
    seen: set[str] = set()
    with open(path, "rb") as log:
        log.seek(start)
        pending = b""
        while True:
            chunk = log.read()
            if not chunk:
                time.sleep(_POLL_S)
                continue
            pending += chunk
            *complete, pending = pending.split(b"\n")
            lines = [line.decode("utf-8", errors="replace") for line in complete]
            for line in noteworthy_lines(lines, seen):
                os.write(console, (line.rstrip() + "\n").encode())

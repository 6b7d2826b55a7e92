"""Helpers for tests that run an olmorl job as a process of its own and kill it mid-run."""

import json
import os
import signal
from pathlib import Path


def logged_steps(run_dir: Path) -> int:
    """The last training step logged (step 0 is the evaluation before training)."""
    log = run_dir / "metrics.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return max((json.loads(line)["step"] for line in lines if line.endswith("}")), default=0)


def kill_session(session: int) -> None:
    """SIGKILL every process of a session: the job and the Ray cluster it started."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getsid(int(proc.name)) == session:
                os.kill(int(proc.name), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

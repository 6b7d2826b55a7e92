"""The processes an actor runs as, so that they can be checked for (and killed) after it dies.

A rollout engine reports `process_tree()` when it has started (the actor and vLLM's engine-core
and worker processes under it); once the actor is killed, `still_running` on its node tells
whether any of them, which may hold its GPU memory, outlived it. A process is known by its pid
and start time together, so a pid the system has since given to another process is not it.
"""

import os
import signal

import psutil

Process = tuple[int, float]
"""(pid, start time in seconds since the epoch, as psutil reports it)."""


def process_tree(pid: int | None = None) -> list[Process]:
    """Process `pid` (default: this one) and all its descendants."""
    root = psutil.Process(pid)
    processes = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            processes.append((proc.pid, proc.create_time()))
        except psutil.NoSuchProcess:
            continue  # ended while being listed
    return processes


def still_running(processes: list[Process], kill: bool = False) -> list[int]:
    """The pids of `processes` that still run (a zombie has ended: it holds no memory). `kill`
    sends SIGKILL to each first: used on processes whose actor is already dead."""
    running = []
    for pid, started in processes:
        try:
            proc = psutil.Process(pid)
            # A stepped system clock moves create_time (boot time + ticks) for every process
            # alike; a reused pid starts far later than a second from the recorded time.
            if abs(proc.create_time() - started) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if kill:
                os.kill(pid, signal.SIGKILL)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
        running.append(pid)
    return running

"""The processes of one actor, found by a tag in their environment, so that they can be killed
after it dies.

A rollout engine is started with `TAG_ENV` set to a tag of its own (`actor_options(tag=...)`). Ray
starts the actor's process with it in its environment, and every process under it (vLLM's engine
core and workers) inherits it, and keeps it when the actor's death leaves it orphaned. So the
processes that may still hold a dead engine's GPU memory are found by the tag alone, whether the
engine died after starting, during its start, or before it could report anything.
"""

import psutil

TAG_ENV = "OLMORL_PROCESS_TAG"


def tagged(tag: str, kill: bool = False) -> list[int]:
    """The pids of this host's running processes started with `TAG_ENV` = `tag` (a zombie has
    ended: it holds no memory). `kill` sends SIGKILL to each first."""
    running = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TAG_ENV) != tag or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if kill:
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # ended while being looked at, or another user's (not ours to find)
        running.append(proc.pid)
    return running

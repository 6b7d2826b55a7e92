"""Joining or starting the Ray cluster a job runs on."""

import logging
import os
from pathlib import Path

from olmorl.actor_logs import send_actor_logs_to


def init_ray(num_actors: int, log_dir: Path | None = None) -> bool:
    """Joins the cluster `ray job submit` (or RAY_ADDRESS) names, else starts a local one with a
    logical CPU for each of `num_actors` actors at least. With `log_dir`, the actors started
    next write their output there and Ray's own messages on the console are warnings only."""
    import ray

    send_actor_logs_to(log_dir)
    if ray.is_initialized():
        return False
    level = logging.WARNING if log_dir is not None else logging.INFO
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=level)
        return False
    # Logical CPUs: every actor asks for one, and a laptop may have fewer cores than actors.
    ray.init(
        num_cpus=max(os.cpu_count() or 1, num_actors), include_dashboard=False, logging_level=level
    )
    return True

"""Joining or starting the Ray cluster a job runs on."""

import os


def init_ray(num_actors: int) -> bool:
    """Joins the cluster `ray job submit` (or RAY_ADDRESS) names, else starts a local one with a
    logical CPU for each of `num_actors` actors at least."""
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return False
    # Logical CPUs: every actor asks for one, and a laptop may have fewer cores than actors.
    ray.init(num_cpus=max(os.cpu_count() or 1, num_actors), include_dashboard=False)
    return True

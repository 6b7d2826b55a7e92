"""Joining or starting the Ray cluster a job runs on, and making sure its actors fit there.

`init_ray` joins or starts the cluster. `reserve` checks, before any actor starts, that the cluster
can hold the job's actors (placement.py) and, on GPUs, reserves them in a placement group that
each actor is then scheduled into (`Reservation.actor_options`). `wait_started` bounds every
wait on an actor's start-up and names the actors that did not start.
"""

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from olmorl.actor_logs import send_actor_logs_to
from olmorl.placement import ClusterNeeds, uses_gpus


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


class ClusterTooSmall(RuntimeError):
    """The Ray cluster lacks, or could not free in time, what a job's actors ask for."""


class ActorStartTimeout(RuntimeError):
    """Actors did not finish starting within the limit."""


def cluster_uses_gpus() -> bool:
    """Whether jobs on the joined cluster run on GPUs (placement.uses_gpus)."""
    import ray

    return uses_gpus(ray.cluster_resources())


def gpus_per_node() -> list[int]:
    """The GPU count of each live node that has GPUs."""
    import ray

    return [
        int(n["Resources"]["GPU"]) for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")
    ]


def gpu_memory_gib(timeout_s: float, resources: Mapping[str, float]) -> float | None:
    """One GPU's memory in GiB, measured by a task on a node that also holds `resources` (an
    actor group's custom resources: the kind of node it will get); None when none was free
    within `timeout_s` or the task failed."""
    import ray
    from ray.exceptions import GetTimeoutError, RayError

    task = ray.remote(num_gpus=1, num_cpus=0)(_gpu_memory_bytes)
    probe = task.options(resources=dict(resources)).remote()
    try:
        return ray.get(probe, timeout=timeout_s) / 2**30
    except GetTimeoutError:
        ray.cancel(probe, force=True)
        return None
    except RayError:
        return None


def _gpu_memory_bytes() -> int:
    import torch

    return torch.cuda.get_device_properties(0).total_memory


class Reservation:
    """Where each actor of a job goes and what it asks for: `actor_options(role, index)`."""

    def __init__(self, needs: ClusterNeeds, group=None):
        self.needs = needs
        self._group = group  # a ray PlacementGroup, or None (CPU jobs: see `reserve`)

    def actor_options(self, role: str, index: int) -> dict[str, Any]:
        """Ray options of actor `index` of group `role` (placement.ActorGroup.role): its CPUs
        and GPUs and, when GPUs are reserved, the bundle held for it."""
        group = self.needs.group(role)
        options: dict[str, Any] = {"num_cpus": group.cpus, "num_gpus": group.gpus}
        if group.custom:
            options["resources"] = dict(group.custom)
        if self._group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self._group, placement_group_bundle_index=self.needs.bundle_index(role, index)
            )
        return options

    def release(self) -> None:
        """Frees what was reserved (Ray kills any actor still in it)."""
        if self._group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self._group)
            self._group = None


def reserve(needs: ClusterNeeds, timeout_s: float) -> Reservation:
    """Raises ClusterTooSmall, naming what is missing, if the cluster cannot hold `needs`; on
    GPUs, then holds every actor's bundle, waiting at most `timeout_s` for other jobs to free
    them (ClusterTooSmall again past it)."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    largest = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
    problem = needs.shortfall(ray.cluster_resources(), largest if needs.gpus else None)
    if problem:
        raise ClusterTooSmall(problem)
    if not needs.gpus:
        # CPU jobs are only checked. Their CPUs are logical: init_ray gives every actor one
        # however many cores there are, so a reservation would protect no hardware, and bundles
        # held in a small CPU count (the integration tests' shared 8) could starve actors that
        # start outside them, such as a test's own.
        return Reservation(needs)
    from ray.exceptions import GetTimeoutError
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group(needs.bundles(), strategy="PACK")
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except GetTimeoutError:
        remove_placement_group(group)
        free = ray.available_resources().get("GPU", 0.0)
        raise ClusterTooSmall(
            f"could not reserve {needs.describe('GPU')} within {timeout_s:g} s "
            f"(run.stage_timeout_s): the Ray cluster has {ray.cluster_resources().get('GPU', 0):g} "
            f"GPUs, {free:g} of them free now; other jobs hold the rest, or no node has room for "
            "one actor's GPUs"
        ) from None
    except BaseException:  # an interrupt or a Ray error: the group must not outlive the run
        remove_placement_group(group)
        raise
    return Reservation(needs, group)


def wait_started(
    refs: Mapping[str, Any],
    timeout_s: float,
    check: Callable[[], None] | None = None,
    check_every_s: float = 5.0,
) -> dict[str, Any]:
    """The results of named actors' start-up calls (e.g. {"rollout engine 0": ref}). A start-up
    that fails raises at once; past `timeout_s`, ActorStartTimeout names those still starting.
    `check`, run every `check_every_s` while waiting, raises when waiting on is pointless."""
    import ray

    deadline = time.monotonic() + timeout_s
    pending = list(refs.values())
    while pending:
        left = max(0.0, deadline - time.monotonic())
        wait_s = left if check is None else min(left, check_every_s)
        ready, pending = ray.wait(pending, num_returns=1, timeout=wait_s)
        if not ready and check is not None and time.monotonic() < deadline:
            check()
            continue
        if not ready:
            stuck = ", ".join(name for name, ref in refs.items() if ref in pending)
            raise ActorStartTimeout(
                f"{stuck} did not start within {timeout_s:g} s (run.stage_timeout_s): Ray found "
                "no room for it (`ray status` lists what is pending) or its start-up hangs (see "
                "its log)"
            )
        ray.get(ready)
    return {name: ray.get(ref) for name, ref in refs.items()}

"""The planner's memory check of an RL run against the GPUs of the Ray cluster it joined, before
any actor starts: a learner rank or an engine that would run out of memory at its first step or
its start stops the run at once, with what would fit (`olmorl plan` prints the same)."""

from olmorl.config import RLConfig
from olmorl.plan.planner import ClusterShape, plan_rl
from olmorl.plan.shapes import model_shape
from olmorl.ray_init import ClusterTooSmall, gpu_memory_gib, gpus_per_node


def check_gpu_memory(cfg: RLConfig, timeout_s: float) -> list[str]:
    """Raises ClusterTooSmall with the planner's memory problems for `cfg` on the joined
    cluster's GPUs. Returns why nothing was checked (empty when it was): the model's shape or
    the GPUs' memory could not be known. Counting GPUs is `ray_init.reserve`'s job."""
    try:
        shape = model_shape(cfg.model.path)
    except ValueError as e:
        return [f"GPU memory not checked: {e}"]
    # The GPUs each group would get: on a cluster of mixed GPUs, its custom resources say which.
    measured = [
        gpu_memory_gib(timeout_s, resources)
        for resources in (cfg.learner.ray_resources, cfg.rollout.ray_resources)
    ]
    if None in measured:
        why = f"no GPU of the cluster could be measured within {timeout_s:g} s"
        return [f"GPU memory not checked: {why} (run.check_gpu_memory=false skips the check)"]
    per_node = gpus_per_node()
    memory = min(measured)
    cluster = ClusterShape(len(per_node), max(per_node), memory)
    problems = plan_rl(cfg, cluster, shape).memory_problems
    if problems:
        raise ClusterTooSmall(
            "this run would run out of GPU memory: " + "; ".join(problems) + " (`olmorl plan "
            f"RECIPE --cluster {cluster.nodes}x{cluster.gpus_per_node}:{memory:g}` prints the "
            "whole plan; run.check_gpu_memory=false skips this check)"
        )
    return []

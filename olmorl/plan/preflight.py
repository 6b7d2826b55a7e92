"""The planner's memory check of an RL run against the GPUs of the Ray cluster it joined, before
any actor starts: a learner rank or an engine that would run out of memory at its first step or
its start stops the run at once, with what would fit (`olmorl plan` prints the same)."""

from olmorl.config import RLConfig
from olmorl.plan.planner import ClusterShape, plan_rl
from olmorl.plan.shapes import model_shape
from olmorl.ray_init import ClusterTooSmall, cluster_gpus


def check_gpu_memory(cfg: RLConfig, timeout_s: float) -> list[str]:
    """Raises ClusterTooSmall with the planner's memory problems for `cfg` on the joined
    cluster's GPUs. Returns why nothing was checked (empty when it was): the model's shape or
    the GPUs' memory could not be known. Counting GPUs is `ray_init.reserve`'s job."""
    try:
        shape = model_shape(cfg.model.path)
    except ValueError as e:
        return [f"GPU memory not checked: {e}"]
    gpus = cluster_gpus(timeout_s)
    if gpus is None:
        return [f"GPU memory not checked: no GPU of the cluster was free within {timeout_s:g} s"]
    per_node, gpu_memory_gib = gpus
    cluster = ClusterShape(len(per_node), max(per_node), gpu_memory_gib)
    problems = plan_rl(cfg, cluster, shape).memory_problems
    if problems:
        raise ClusterTooSmall(
            "this run would run out of GPU memory: " + "; ".join(problems) + " (`olmorl plan "
            f"RECIPE --cluster {cluster.nodes}x{cluster.gpus_per_node}:{gpu_memory_gib:g}` "
            "prints the whole plan)"
        )
    return []

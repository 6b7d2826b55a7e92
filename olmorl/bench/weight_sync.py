"""`olmorl bench weight-sync`: bytes/s of a weight push from the learners to every engine, by each
transport, against a plain in-memory copy of the same bytes on the same device.

The push is the RL loop's own (`RLCluster.push_weights`): gather full tensors from the shards
bucket by bucket, ship each bucket (as a file, or by one broadcast), load it into every engine,
with the engines paused around it. The copy is a `clone()` of the same tensors in one process,
the floor any transfer is measured against. Bytes count once per receiving engine.

The driver never touches a GPU: the copy runs in a Ray task of its own (on a GPU when the cluster
has any) whose process exits after it, so no CUDA context or cached memory of the driver's sits on
GPU 0 beside the engines and learners.
"""

import os
import time

from olmorl.bench.table import BenchResult
from olmorl.config import ModelConfig, RLConfig


def bench_weight_sync(cfg: RLConfig, pushes: int) -> list[BenchResult]:
    import ray

    from olmorl.ray_init import cluster_uses_gpus, init_ray
    from olmorl.rl.cluster import RLCluster

    started = init_ray(cfg.num_actors)
    try:
        gpus = int(cluster_uses_gpus())
        # max_calls=1: the worker process exits after the copy, releasing what it allocated.
        copy_task = ray.remote(num_cpus=1, num_gpus=gpus, max_calls=1)(_plain_copy)
        size, seconds, device = ray.get(copy_task.remote(cfg.model, pushes))
        results = [BenchResult(f"plain copy ({device})", size * pushes, seconds)]
        cluster = RLCluster(cfg, [])
        try:
            for transfer in ("file", "broadcast"):
                cluster.push_weights(transfer=transfer)  # warm-up: allocations, the rendezvous
                start = time.perf_counter()
                for _ in range(pushes):
                    cluster.push_weights(transfer=transfer)
                results.append(
                    BenchResult(
                        f"{transfer} push to {cfg.rollout.num_actors} engine(s)",
                        size * pushes * cfg.rollout.num_actors,
                        time.perf_counter() - start,
                    )
                )
        finally:
            cluster.shutdown()
    finally:
        if started:
            ray.shutdown()
    return results


def _plain_copy(model_cfg: ModelConfig, pushes: int) -> tuple[int, float, str]:
    """(bytes of the weights in the model dtype, seconds for `pushes` clones of them, device)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)  # Ray gives a task 1 thread; the driver had all
    model = AutoModelForCausalLM.from_pretrained(
        model_cfg.path, dtype=getattr(torch, model_cfg.dtype)
    )
    state = {name: tensor.to(device) for name, tensor in model.state_dict().items()}
    del model
    size = sum(t.numel() * t.element_size() for t in state.values())
    start = time.perf_counter()
    for _ in range(pushes):
        copies = {name: tensor.clone() for name, tensor in state.items()}
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del copies
    return size, seconds, device

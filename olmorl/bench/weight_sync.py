"""`olmorl bench weight-sync`: bytes/s of a weight push from the learners to every engine, by each
transport, against a plain in-memory copy of the same bytes on the same device.

The push is the RL loop's own (`RLCluster.push_weights`): gather full tensors from the shards
bucket by bucket, ship each bucket (as a file, or by one broadcast), load it into every engine,
with the engines paused around it. The copy is a `clone()` of the same tensors in one process,
the floor any transfer is measured against. Bytes count once per receiving engine.
"""

import time

from olmorl.bench.table import BenchResult
from olmorl.config import RLConfig


def bench_weight_sync(cfg: RLConfig, pushes: int) -> list[BenchResult]:
    import ray
    import torch
    from transformers import AutoModelForCausalLM

    from olmorl.ray_init import init_ray
    from olmorl.rl.cluster import RLCluster

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        cfg.model.path, dtype=getattr(torch, cfg.model.dtype)
    )
    state = {name: tensor.to(device) for name, tensor in model.state_dict().items()}
    del model
    size = sum(t.numel() * t.element_size() for t in state.values())
    start = time.perf_counter()
    for _ in range(pushes):
        copies = {name: tensor.clone() for name, tensor in state.items()}
    if device == "cuda":
        torch.cuda.synchronize()
    copy = BenchResult(f"plain copy ({device})", size * pushes, time.perf_counter() - start)
    del copies, state

    started = init_ray(cfg.num_actors)
    cluster = RLCluster(cfg, [])
    results = [copy]
    try:
        for transfer in ("file", "broadcast"):
            cluster.push_weights(transfer=transfer)  # warm-up: allocations, the group's rendezvous
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
        if started:
            ray.shutdown()
    return results

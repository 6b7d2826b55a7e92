"""Which device a learner rank trains on (the one GPU Ray gave it, by its index in this process),
and how fast it multiplies matrices.

Ray sets CUDA_VISIBLE_DEVICES of an actor with GPUs to those GPUs alone, so the rank's GPU is
usually `cuda:0`; without that isolation (RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES) every rank
on a node sees all of its GPUs and `cuda:0` would put them all on one. Looking the assigned id up
in the visible list is right in both cases.
"""

import time
from collections.abc import Sequence


class LearnerDeviceError(RuntimeError):
    """A learner rank on a GPU run does not own exactly one GPU it can see."""


def cuda_index(gpu_ids: Sequence[int | str], visible_devices: str | None, rank: int) -> int:
    """The torch CUDA index of the single GPU in `gpu_ids` (`ray.get_gpu_ids()`), given this
    process's CUDA_VISIBLE_DEVICES (None: unset, every GPU visible by its own id)."""
    if len(gpu_ids) != 1:
        raise LearnerDeviceError(
            f"learner rank {rank} was given {len(gpu_ids)} GPUs ({list(gpu_ids)}) and must own "
            "exactly one: it is started with num_gpus=1, so Ray placed it outside its "
            "reservation, or something else changed its resources"
        )
    gpu = str(gpu_ids[0])
    if visible_devices is None:
        return int(gpu)
    visible = [d.strip() for d in visible_devices.split(",") if d.strip()]
    if gpu not in visible:
        raise LearnerDeviceError(
            f"learner rank {rank} was given GPU {gpu}, which is not among the devices this "
            f"process can see (CUDA_VISIBLE_DEVICES={visible_devices!r})"
        )
    return visible.index(gpu)


def measure_matmul_flops(device: str, dtype, size: int = 1024, seconds: float = 0.5) -> float:
    """FLOP/s of a square matmul in `dtype` on `device`, best of repeated runs for about
    `seconds`: the peak MFU is measured against where no vendor figure applies (CPUs)."""
    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    a @ b  # warm-up: kernel selection, thread pool start
    sync()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best

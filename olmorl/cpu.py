"""Pinning a process to CPU cores, so that actors sharing a machine do not time-slice."""

import os


def pin_to_cores(cores: list[int]) -> None:
    """This process and the processes it starts later run on `cores` only; torch uses as many
    threads as there are cores."""
    import torch

    available = os.sched_getaffinity(0)
    missing = sorted(set(cores) - available)
    if missing:
        raise ValueError(
            f"cpu_cores {cores}: cores {missing} are not available here ({sorted(available)})"
        )
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))

"""A pushed parameter is cast to the push dtype on each shard before the all-gather: the gather
moves bf16, not the float32 masters (half the bytes), and the full tensor is bit-identical to
casting after it. Two gloo processes hold an unevenly sharded DTensor (5 rows over 2 ranks)."""

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rendezvous_file import file_rendezvous
from torch.utils._python_dispatch import TorchDispatchMode

from olmorl.learner.backend import gather_full

WORLD_SIZE = 2


class GatherDtypes(TorchDispatchMode):
    """Records the dtype of every tensor an all-gather is given."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "all_gather" in str(func):
            self.dtypes += [a.dtype for a in args if isinstance(a, torch.Tensor)]
        return func(*args, **(kwargs or {}))


def _gather_on_rank(rank: int, init_method: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        master = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))  # [5, 3] float32
        mesh = init_device_mesh("cpu", (WORLD_SIZE,))
        param = torch.nn.Parameter(distribute_tensor(master, mesh, [Shard(0)]))
        with GatherDtypes() as seen:
            full = gather_full(param, torch.bfloat16)
        assert seen.dtypes and set(seen.dtypes) == {torch.bfloat16}, seen.dtypes
        assert full.dtype == torch.bfloat16 and not full.requires_grad
        assert torch.equal(full, master.to(torch.bfloat16))
    finally:
        dist.destroy_process_group()


def test_shards_are_cast_before_the_all_gather(tmp_path: Path):
    mp.start_processes(
        _gather_on_rank,
        args=(file_rendezvous(tmp_path),),
        nprocs=WORLD_SIZE,
        start_method="spawn",
        join=True,
    )


def test_a_plain_parameter_is_only_cast():
    param = torch.nn.Parameter(torch.tensor([1.0, 1 + 2**-10]))
    full = gather_full(param, torch.bfloat16)
    assert full.dtype == torch.bfloat16 and not full.requires_grad
    assert full.tolist() == [1.0, 1.0]  # 1 + 2^-10 rounds to 1 in bf16 (8 significand bits)

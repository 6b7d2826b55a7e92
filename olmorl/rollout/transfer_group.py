"""The process group a weight broadcast runs in: learner rank 0 (root) and every engine worker.

It is made without torch.distributed's default group, which the learners' FSDP group and vLLM's
own tensor-parallel group already hold in their processes: a TCPStore rendezvous and a process
group object of its own, gloo between CPU processes, NCCL between GPUs. The code is the same on
both; only the buffers' device and the group class differ.
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class TransferGroupInfo:
    """Where and how an engine worker joins a weight-broadcast group."""

    host: str
    """Address of the root's rendezvous store (learner rank 0's host)."""
    port: int
    """Port of that store."""
    name: str
    """The group's name, new for every group formed."""
    backend: str
    """"gloo" (CPU buffers) or "nccl" (GPU buffers): the root's, which every member must share."""
    rank_offset: int
    """Rank of this engine's first worker; its tensor-parallel workers follow."""
    world_size: int
    """The root plus every worker of every engine."""
    timeout_s: float
    """How long a rendezvous or one broadcast may wait for a peer."""

    def as_dict(self) -> dict:
        return asdict(self)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def open_store(host: str, world_size: int, timeout_s: float) -> dist.TCPStore:
    """The root's rendezvous store on a free port (`store.port`)."""
    return dist.TCPStore(
        host,
        0,
        world_size,
        is_master=True,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
    )


def join_store(info: TransferGroupInfo) -> dist.TCPStore:
    return dist.TCPStore(
        info.host,
        info.port,
        info.world_size,
        is_master=False,
        timeout=timedelta(seconds=info.timeout_s),
    )


def new_group(
    store: dist.Store, name: str, rank: int, world_size: int, device: torch.device, timeout_s: float
) -> dist.ProcessGroup:
    """Joins group `name` as `rank`. gloo returns once every rank has joined (or raises at the
    timeout); NCCL connects at the group's first collective."""
    store = dist.PrefixStore(name, store)
    timeout = timedelta(seconds=timeout_s)
    if backend_for(device) == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        return dist.ProcessGroupNCCL(store, rank, world_size, options)
    return dist.ProcessGroupGloo(store, rank, world_size, timeout)


def broadcast_from_root(
    group: dist.ProcessGroup,
    buffer: torch.Tensor,
    check_peers: Callable[[], None] | None = None,
    poll_s: float = 0.2,
) -> None:
    """Rank 0's `buffer` into every other rank's `buffer` (same size); returns once this rank's
    part is done. `check_peers` runs while waiting and raises if a peer has failed, so a dead or
    refusing peer stops the wait instead of holding it until the group's timeout."""
    work = group.broadcast(buffer, 0)
    if check_peers is not None:
        wait_watching(work.is_completed, check_peers, poll_s)
    work.wait()
    if buffer.is_cuda:
        torch.cuda.current_stream(buffer.device).synchronize()


def wait_watching(
    is_done: Callable[[], bool], check_peers: Callable[[], None], poll_s: float = 0.2
) -> None:
    """Returns once `is_done()`; meanwhile `check_peers()` raises if a peer has failed."""
    pause = 1e-4  # short at first: most waits end within milliseconds
    while not is_done():
        check_peers()
        time.sleep(pause)
        pause = min(2 * pause, poll_s)


def close_group(group: dist.ProcessGroup | None) -> None:
    """Releases a group's connections (and NCCL communicators) now rather than at collection."""
    if group is not None:
        group.shutdown()

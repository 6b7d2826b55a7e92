"""The process group a weight broadcast runs in: learner rank 0 (root) and every engine worker.

It is made without torch.distributed's default group, which the learners' FSDP group and vLLM's
own tensor-parallel group already hold in their processes: a TCPStore rendezvous and a process
group object of its own, gloo between CPU processes, NCCL between GPUs. The code is the same on
both; only the buffers' device and the group class differ. A group is connected (warmed up) before
`new_group` returns, and a group a collective failed in is aborted, never reused.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from olmorl.rendezvous import join_store

# Watching a wait: the pause between two checks is this share of the time waited so far, so the
# root sees a bucket's broadcast end at most ~10% (plus one check) after it did, whether it takes
# 2 ms (NCCL over NVLink) or 200 ms (gloo on CPU). A pause doubled at every check can overshoot by
# the whole broadcast time again (from 0.1 ms, a 220 ms bucket is seen done at ~405 ms). The floor
# keeps the first checks from spinning on Ray calls; the cap (`poll_s`) bounds how late a failed
# peer is noticed, and the overshoot, during a long wait.
_PAUSE_SHARE = 0.1
_MIN_PAUSE_S = 1e-4
_MAX_PAUSE_S = 0.05


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

    def join_rendezvous(self) -> dist.TCPStore:
        """This member's connection to the root's rendezvous store."""
        return join_store(self.host, self.port, self.world_size, self.timeout_s)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def new_group(
    store: dist.Store, name: str, rank: int, world_size: int, device: torch.device, timeout_s: float
) -> dist.ProcessGroup:
    """Joins group `name` as `rank`; returns once every rank has joined and the group has carried
    one broadcast, or raises within `timeout_s` (and the group is aborted)."""
    deadline = time.monotonic() + timeout_s
    store = dist.PrefixStore(name, store)
    timeout = timedelta(seconds=timeout_s)
    if backend_for(device) == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        # A non-blocking communicator connects while its first collective waits, and `abort()`
        # from another thread ends that wait; a blocking one could only be waited out.
        options.config.blocking = 0
        group = dist.ProcessGroupNCCL(store, rank, world_size, options)
    else:
        group = dist.ProcessGroupGloo(store, rank, world_size, timeout)
    try:
        _warm_up(group, name, rank, device, deadline, timeout_s)
    except BaseException:
        abort_group(group)
        raise
    return group


def _warm_up(
    group: dist.ProcessGroup,
    name: str,
    rank: int,
    device: torch.device,
    deadline: float,
    timeout_s: float,
) -> None:
    """One 1-element broadcast, run on a daemon thread that the caller waits for until
    `deadline`. gloo connects every pair while the group is made, but NCCL only at its first
    collective, and it connects inside the `broadcast` call itself: no work comes back to poll
    until every member has joined. Waited for from here, the deadline holds however the broadcast
    blocks; the caller then aborts the group, which ends a non-blocking communicator's wait on
    the thread."""
    connected = threading.Event()
    failures: list[BaseException] = []

    def connect() -> None:
        try:
            broadcast_from_root(group, torch.zeros(1, device=device))
        except BaseException as e:  # noqa: BLE001 -- raised again by the waiting caller
            failures.append(e)
        finally:
            connected.set()

    threading.Thread(target=connect, name=f"warm-up-{name}", daemon=True).start()
    if not connected.wait(max(0.0, deadline - time.monotonic())):
        raise RuntimeError(
            f"weight group {name!r}: rank {rank}'s first broadcast (the warm-up that connects "
            f"the group) did not finish within {timeout_s:g} s; a member never joined or "
            "cannot reach the others"
        )
    if failures:
        raise failures[0]


def broadcast_from_root(
    group: dist.ProcessGroup,
    buffer: torch.Tensor,
    check_peers: Callable[[], None] | None = None,
    poll_s: float = _MAX_PAUSE_S,
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
    is_done: Callable[[], bool], check_peers: Callable[[], None], poll_s: float = _MAX_PAUSE_S
) -> None:
    """Returns once `is_done()`; meanwhile `check_peers()` raises if a peer has failed. Checks
    every tenth of the time waited so far (from 0.1 ms), at most every `poll_s` seconds."""
    start = time.monotonic()
    while not is_done():
        check_peers()
        waited = time.monotonic() - start
        time.sleep(min(max(_PAUSE_SHARE * waited, _MIN_PAUSE_S), poll_s))


def close_group(group: dist.ProcessGroup | None) -> None:
    """Releases a group's connections (and NCCL communicators) now rather than at collection."""
    if group is not None:
        group.shutdown()


def abort_group(group: dist.ProcessGroup | None) -> None:
    """Tears down a group a collective failed in, without waiting for that collective (which
    `close_group` would, possibly for ever). NCCL aborts this rank's communicators, ending its
    pending kernels; peers' collectives end at their own timeout or abort. On gloo (torch 2.13)
    `abort` only marks the group: a pending collective still ends at the group's timeout."""
    if group is not None:
        group.abort()

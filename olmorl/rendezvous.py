"""TCPStore rendezvous on a port the operating system picks.

The root opens the store on port 0 and hands `store.port` to its peers. Choosing a free port first
and binding it later leaves a window in which another process on the node (a vLLM engine's own
store, a Ray worker) takes the port, and a peer then joins a stranger's store.
"""

from datetime import timedelta

import torch.distributed as dist


def open_store(world_size: int, timeout_s: float) -> dist.TCPStore:
    """The root's rendezvous store, bound on a free port (`store.port`) as it is made. It listens
    on every interface; the root itself reaches it over loopback."""
    return dist.TCPStore(
        "127.0.0.1",
        0,
        world_size,
        is_master=True,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
    )


def join_store(host: str, port: int, world_size: int, timeout_s: float) -> dist.TCPStore:
    """A peer's connection to the root's store."""
    return dist.TCPStore(
        host, port, world_size, is_master=False, timeout=timedelta(seconds=timeout_s)
    )

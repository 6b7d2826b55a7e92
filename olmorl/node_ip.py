"""The address other nodes reach this process's node at, for the rendezvous and servers it opens.

Ray's node IP inside a Ray job, not `gethostbyname(gethostname())`, which Debian-style hosts map
to 127.0.1.1 in /etc/hosts.
"""


def node_ip_address() -> str:
    """Ray's IP of this node inside a Ray job (an actor or the driver); loopback outside one (the
    processes of a single-machine test)."""
    import ray

    if not ray.is_initialized():
        return "127.0.0.1"
    return ray.util.get_node_ip_address()


def this_node() -> dict[str, str]:
    """This process's Ray node: its id and its IP (what a run's placement.json lists per actor)."""
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "ip": node_ip_address()}

"""The rendezvous of ranks that a test spawns on this machine."""

from pathlib import Path


def file_rendezvous(directory: Path) -> str:
    """A `file://` init method in `directory` (one per group). A free TCP port chosen in the
    parent can be taken by another process, a Ray worker or a vLLM engine's own store, before rank
    0 binds it; a rank then joins a stranger's store and the group aborts."""
    return f"file://{Path(directory) / 'rendezvous'}"

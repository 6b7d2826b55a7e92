"""A cgroup per sandbox, so that one memory budget (no swap) and one process budget hold for all
of it: `SandboxCgroup.create`, made below this process's own cgroup, in v2 where the memory and pids
controllers are (or can be) enabled there, else in v1's memory and pids hierarchies. Where none can
be made (not root, none delegated), it says why once in the log and the sandbox keeps its rlimits.
"""

import contextlib
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_log = logging.getLogger(__name__)
_warned = False
CONTROLLERS = ("memory", "pids")


@dataclass(frozen=True)
class SandboxCgroup:
    version: str
    """"v2", or "v1" for the legacy per-controller hierarchies."""
    directories: tuple[Path, ...]
    """The cgroup's directory: one in v2; in v1 the memory one, then the pids one."""

    @classmethod
    def create(cls, memory_bytes: int, max_tasks: int) -> "SandboxCgroup | None":
        """A new cgroup holding at most `memory_bytes` and `max_tasks` processes and threads."""
        name = f"olmorl-sandbox-{secrets.token_hex(8)}"
        try:
            own = _own_cgroups()
            if "" in own and _enable_v2_controllers(own[""]):
                cgroup = cls("v2", (own[""] / name,))
            elif all(c in own for c in CONTROLLERS):
                cgroup = cls("v1", tuple(own[c] / name for c in CONTROLLERS))
            else:
                raise OSError("no cgroup hierarchy offers the memory and pids controllers")
        except OSError as error:
            _warn_once(f"cannot find a cgroup to nest sandboxes in: {error}")
            return None
        try:
            cgroup._make(memory_bytes, max_tasks)
        except OSError as error:
            cgroup.remove()
            _warn_once(f"cannot make a cgroup for a sandbox: {error}")
            return None
        return cgroup

    @property
    def procs_files(self) -> list[str]:
        """Where the sandbox's init writes "0" to move itself in."""
        return [str(directory / "cgroup.procs") for directory in self.directories]

    def peak_memory_bytes(self) -> int | None:
        """The most memory the cgroup held at once; None where the kernel does not say."""
        name = "memory.peak" if self.version == "v2" else "memory.max_usage_in_bytes"
        try:
            return int((self.directories[0] / name).read_text())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Kills every process left in the cgroup, then deletes it."""
        deadline = time.monotonic() + 5
        for directory in self.directories:
            while directory.exists():
                for pid in _read_pids(directory / "cgroup.procs"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while killed processes finish exiting
                    if time.monotonic() > deadline:
                        _log.warning("could not remove the sandbox cgroup %s", directory)
                        break
                    time.sleep(0.01)

    def _make(self, memory_bytes: int, max_tasks: int) -> None:
        for directory in self.directories:
            directory.mkdir()
        if self.version == "v2":
            directory = self.directories[0]
            _write(directory / "memory.max", memory_bytes)
            _write(directory / "pids.max", max_tasks)
            swap = directory / "memory.swap.max"
        else:
            memory, pids = self.directories
            _write(memory / "memory.limit_in_bytes", memory_bytes)
            _write(pids / "pids.max", max_tasks)
            swap = memory / "memory.memsw.limit_in_bytes"  # memory plus swap: no swap beyond it
        if swap.exists():  # the kernel accounts swap
            _write(swap, 0 if self.version == "v2" else memory_bytes)


def _own_cgroups() -> dict[str, Path]:
    """This process's cgroup directory per v1 controller we use, and under "" the v2 one."""
    mounts: dict[str, tuple[str, str]] = {}  # controller or "" -> (mounted root, mount point)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        fstype, _, options = rest.split()[:3]
        root, point = fields.split()[3:5]
        if fstype == "cgroup2":
            mounts[""] = (root, point)
        elif fstype == "cgroup":
            for controller in set(options.split(",")) & set(CONTROLLERS):
                mounts[controller] = (root, point)
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            if controller in mounts:
                root, point = mounts[controller]
                relative = os.path.relpath(path, root)
                if not relative.startswith(".."):  # else it lies outside what is mounted here
                    own[controller] = Path(point, relative)
    return own


def _enable_v2_controllers(directory: Path) -> bool:
    """Whether children of `directory` get the memory and pids controllers, enabling them if
    we may (which fails where processes live in `directory` itself and it is not the root)."""
    enabled = set((directory / "cgroup.subtree_control").read_text().split())
    missing = [c for c in CONTROLLERS if c not in enabled]
    if missing:
        try:
            _write(directory / "cgroup.subtree_control", " ".join("+" + c for c in missing))
        except OSError:
            return False
    return True


def _write(path: Path, value: object) -> None:
    path.write_text(str(value))


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(pid) for pid in path.read_text().split()]
    except FileNotFoundError:
        return []


def _warn_once(reason: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        _log.warning(
            "sandboxes run without a cgroup (%s): memory is limited per process, not per "
            "sandbox, and processes by RLIMIT_NPROC alone",
            reason,
        )

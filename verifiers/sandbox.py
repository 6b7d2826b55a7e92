"""Runs untrusted Python source in a throwaway sandbox: `run_python(source, stdin, limits)`.

`unshare` makes new network, PID, mount, IPC and UTS namespaces, as root or, rootless, inside a new
user namespace (sandbox_probe picks). Their init (sandbox_init) pivots into a capped tmpfs showing
only read-only /usr and the interpreter's prefix, /dev/{null,zero,random,urandom}, and writable
/scratch (the cwd), /tmp and /dev/shm: no /etc, /proc, /sys, /home, /work. The program runs without
privilege, loopback down, empty environment, under rlimits and a cgroup (sandbox_cgroup) if any.
"""

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from verifiers import sandbox_init
from verifiers.base import VerifierUnavailable
from verifiers.sandbox_cgroup import SandboxCgroup

UNSHARE = "/usr/bin/unshare"
# Rootful sandboxes run as a uid drawn from here, one per call, so that RLIMIT_NPROC (counted per
# uid across the whole host) is a per-sandbox budget and no host user's files or processes match.
UID_RANGE = (1 << 20, 1 << 30)
TOP_LEVEL_LINKS = sandbox_init.TOP_LEVEL_LINKS
Isolation = Literal["rootful", "rootless"]


@dataclass(frozen=True)
class SandboxLimits:
    cpu_s: int = 5
    """CPU seconds per process (RLIMIT_CPU); past it the process gets SIGXCPU, then SIGKILL."""
    wall_s: float = 10.0
    """Wall-clock seconds for the whole run; past it every process of the sandbox is killed."""
    memory_mb: int = 512
    """Memory the whole sandbox may hold at once, its tmpfs included, in MiB: the limit of its
    cgroup, without swap. Without a cgroup, only the address space of each process is limited."""
    process_memory_mb: int | None = None
    """Address space per process (RLIMIT_AS), in MiB; None means `memory_mb`. A second line under
    the cgroup, and the only one without it."""
    max_processes: int = 32
    """Processes and threads the sandbox may hold at once: its cgroup's pids.max (the init aside),
    and RLIMIT_NPROC of its own uid (rootful) or of its user namespace (rootless, Linux >= 5.14)."""
    max_file_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE), in MiB."""
    scratch_mb: int = 64
    """Size of the tmpfs holding /scratch, /tmp and /dev/shm together, in MiB."""
    max_files: int = 4096
    """Files, directories and links the tmpfs may hold (its nr_inodes), the sandbox's own too."""
    max_output_bytes: int = 1 << 20
    """Cap on each of stdout and stderr; past it the run is killed and the output cut."""


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int
    """The program's exit status; minus the signal number when a signal ended it."""
    stdout: str
    """What it wrote to stdout (UTF-8, bad bytes replaced), at most `max_output_bytes`."""
    stderr: str
    """What it wrote to stderr, likewise capped."""
    timed_out: bool
    """Whether it was killed at `wall_s`."""
    output_truncated: bool
    """Whether it was killed for writing more than `max_output_bytes` to a stream."""
    isolation: Isolation
    """How the sandbox was made: as root, or inside a user namespace."""
    cgroup: str | None
    """The version ("v1", "v2") of the cgroup that held the sandbox; None where only rlimits did."""
    peak_memory_bytes: int | None
    """The most memory the sandbox held at once, by its cgroup; None without one."""


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not root, no `unshare`, a mount refused)."""


class SandboxUnavailable(SandboxError, VerifierUnavailable):
    """No way of making a sandbox works on this host; the message says what each try met."""


def run_python(
    source: str,
    stdin: str = "",
    limits: SandboxLimits = SandboxLimits(),
    isolation: Isolation | None = None,
) -> SandboxResult:
    """Runs `source` as /scratch/main.py with `python -I`, feeding it `stdin`; blocks until done.
    `isolation` forces a way of making the sandbox; by default, the one this host allows."""
    if isolation is None:
        # Imported here: the probe runs sandboxes through this very function.
        from verifiers.sandbox_probe import host_isolation

        isolation = host_isolation()
    work, cgroup = Path(tempfile.mkdtemp(prefix="olmorl-sandbox-")), None
    try:
        # The init counts against pids.max too, hence one more than the program may hold.
        cgroup = SandboxCgroup.create(limits.memory_mb << 20, limits.max_processes + 1)
        (work / "main.py").write_text(source, encoding="utf-8")
        (work / "root").mkdir()
        spec = _spec(work, limits, isolation, cgroup)
        return _run(spec, stdin.encode(), limits, cgroup)
    finally:
        if cgroup is not None:
            cgroup.remove()
        # The program wrote only into the tmpfs, which went away with its mount namespace.
        shutil.rmtree(work, ignore_errors=True)


def _spec(
    work: Path, limits: SandboxLimits, isolation: Isolation, cgroup: SandboxCgroup | None
) -> dict:
    """What the init needs to know, passed to it as JSON."""
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    prefix = os.path.realpath(sys.base_prefix)
    ro_binds = ["/usr"] if prefix.startswith("/usr/") else ["/usr", prefix]
    if not python.startswith(prefix + "/") and not python.startswith("/usr/"):
        raise SandboxError(f"interpreter {python} lies outside its prefix {prefix}")
    rootful = isolation == "rootful"
    return {
        "work": str(work),
        "python": python,
        "ro_binds": ro_binds,
        "isolation": isolation,
        "uid": secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0] if rootful else 0,
        "nproc": _nproc(limits, rootful),
        "cgroup_procs": cgroup.procs_files if cgroup is not None else [],
        "limits": {
            "cpu_s": limits.cpu_s,
            "wall_s": limits.wall_s,
            "process_memory_mb": limits.process_memory_mb or limits.memory_mb,
            "max_file_mb": limits.max_file_mb,
            "scratch_mb": limits.scratch_mb,
            "max_files": limits.max_files,
        },
    }


def _nproc(limits: SandboxLimits, rootful: bool) -> int | None:
    """The program's RLIMIT_NPROC, or None for none."""
    if rootful:
        return limits.max_processes
    # Rootless, the one uid is the caller's: RLIMIT_NPROC would count all of the caller's
    # processes, unless the kernel counts them per user namespace (5.14 on); then `unshare` and
    # the init, which entered the namespace with that uid, count too.
    return limits.max_processes + 2 if _kernel_at_least(5, 14) else None


def _kernel_at_least(*version: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    return tuple(int(part) for part in release[:2] if part.isdigit()) >= version


def _run(
    spec: dict, stdin: bytes, limits: SandboxLimits, cgroup: SandboxCgroup | None
) -> SandboxResult:
    status_r, status_w = os.pipe()
    user = ["--user", "--map-root-user"] if spec["isolation"] == "rootless" else []
    command = [
        UNSHARE, *user, "--net", "--pid", "--mount", "--ipc", "--uts", "--fork", "--kill-child",
        # -I: no environment, no user site, and not the init's directory (verifiers/) on sys.path,
        # where math.py would shadow the standard library's.
        "--", spec["python"], "-I", "-S", sandbox_init.__file__, json.dumps(spec), str(status_w),
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            pass_fds=(status_w,),
            start_new_session=True,  # one killpg reaches unshare and the namespace's init
        )
    finally:
        os.close(status_w)
    feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)
    feeder.start()
    try:
        stdout, stderr, timed_out, truncated = _collect(proc, limits)
    finally:
        _kill(proc)
        # With the program dead, a pending write to stdin fails at once and the feeder ends.
        feeder.join()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        with os.fdopen(status_r, "rb") as status_file:
            status = [json.loads(line) for line in status_file.read().splitlines()]
    errors = [s["error"] for s in status if "error" in s]
    if errors:
        raise SandboxError(f"sandbox setup failed:\n{errors[0]}")
    finished = [s for s in status if "exit" in s or "signal" in s]
    if finished:
        exit_code = finished[0].get("exit", -finished[0].get("signal", 0))
    elif timed_out or truncated:
        exit_code = -signal.SIGKILL
    else:
        raise SandboxError(f"sandbox ended without a status (exit {proc.returncode}): {stderr!r}")
    return SandboxResult(
        exit_code=exit_code,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=stderr.decode("utf-8", errors="replace"),
        timed_out=timed_out,
        output_truncated=truncated,
        isolation=spec["isolation"],
        cgroup=cgroup.version if cgroup is not None else None,
        peak_memory_bytes=cgroup.peak_memory_bytes() if cgroup is not None else None,
    )


def _feed(pipe, data: bytes) -> None:
    # A thread, so that a program that never reads stdin cannot block the caller on a full pipe.
    # Either step fails when the program exited or was killed without reading it all.
    with contextlib.suppress(OSError):
        pipe.write(data)
    with contextlib.suppress(OSError):
        pipe.close()


def _collect(proc: subprocess.Popen, limits: SandboxLimits) -> tuple[bytes, bytes, bool, bool]:
    """Reads stdout and stderr until both close, the deadline passes or one exceeds the cap."""
    deadline = time.monotonic() + limits.wall_s
    cap = limits.max_output_bytes
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    timed_out = truncated = False
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map() and not truncated:
            remaining = deadline - time.monotonic()
            # Past the deadline only a run still going is timed out: one that ended may have left
            # its output in the pipes, which is read, without waiting, to their end.
            if remaining <= 0 and proc.poll() is None:
                timed_out = True
                break
            events = selector.select(max(remaining, 0))
            if remaining <= 0 and not events:
                break
            for key, _ in events:
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                buffer = buffers[key.fd]
                buffer += chunk
                if len(buffer) > cap:
                    del buffer[cap:]
                    truncated = True
    if not (timed_out or truncated):
        # Both streams closed: the program is done, and the init exits right after it.
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
    out, err = buffers.values()
    return bytes(out), bytes(err), timed_out, truncated


def _kill(proc: subprocess.Popen) -> None:
    # Killing the namespace's init makes the kernel kill every process in the namespace; the init
    # also dies with unshare (--kill-child). Harmless when everything already exited.
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()

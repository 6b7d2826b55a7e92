"""Runs untrusted Python source in a throwaway sandbox: `run_python(source, stdin, limits)`.

Each call starts `unshare` (new network, PID, mount, IPC and UTS namespaces; needs root) whose init,
this file run as a script, builds a new root on a size-capped tmpfs and `pivot_root`s into it. The
program sees only: read-only /usr (and the /bin, /lib… links into it) and the interpreter's prefix;
/dev/{null,zero,random,urandom}; writable /scratch (its cwd), /tmp and /dev/shm, all on that tmpfs.
No /etc, /proc, /sys, /home, /root (but the prefix), /work. It runs as a fresh unprivileged uid
with rlimits (CPU, address space, processes, file size, no core) and no-new-privs, loopback down.
"""

import contextlib
import json
import os
import resource
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

UNSHARE = "/usr/bin/unshare"
# Sandboxed programs run as a uid drawn from here, one per call, so that RLIMIT_NPROC (counted per
# uid across the whole host) is a per-sandbox budget and no host user's files or processes match.
UID_RANGE = (1 << 20, 1 << 30)


@dataclass(frozen=True)
class SandboxLimits:
    cpu_s: int = 5
    """CPU seconds per process (RLIMIT_CPU); past it the process gets SIGXCPU, then SIGKILL."""
    wall_s: float = 10.0
    """Wall-clock seconds for the whole run; past it every process of the sandbox is killed."""
    memory_mb: int = 512
    """Address space per process (RLIMIT_AS), in MiB."""
    max_processes: int = 32
    """Processes and threads the sandbox may hold at once (RLIMIT_NPROC of its private uid)."""
    max_file_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE), in MiB."""
    scratch_mb: int = 64
    """Size of the tmpfs holding /scratch, /tmp and /dev/shm together, in MiB."""
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


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not root, no `unshare`, a mount refused)."""


def run_python(
    source: str, stdin: str = "", limits: SandboxLimits = SandboxLimits()
) -> SandboxResult:
    """Runs `source` as /scratch/main.py with `python -I`, feeding it `stdin`; blocks until done."""
    work = Path(tempfile.mkdtemp(prefix="olmorl-sandbox-"))
    try:
        (work / "main.py").write_text(source, encoding="utf-8")
        (work / "root").mkdir()
        return _run(_spec(work, limits), stdin.encode(), limits)
    finally:
        # The program wrote only into the tmpfs, which went away with its mount namespace.
        shutil.rmtree(work, ignore_errors=True)


def _spec(work: Path, limits: SandboxLimits) -> dict:
    """What the init needs to know, passed to it as JSON."""
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    prefix = os.path.realpath(sys.base_prefix)
    ro_binds = ["/usr"] if prefix.startswith("/usr/") else ["/usr", prefix]
    if not python.startswith(prefix + "/") and not python.startswith("/usr/"):
        raise SandboxError(f"interpreter {python} lies outside its prefix {prefix}")
    return {
        "work": str(work),
        "python": python,
        "ro_binds": ro_binds,
        "uid": secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0],
        "limits": {
            "cpu_s": limits.cpu_s,
            "wall_s": limits.wall_s,
            "memory_mb": limits.memory_mb,
            "max_processes": limits.max_processes,
            "max_file_mb": limits.max_file_mb,
            "scratch_mb": limits.scratch_mb,
        },
    }


def _run(spec: dict, stdin: bytes, limits: SandboxLimits) -> SandboxResult:
    status_r, status_w = os.pipe()
    command = [
        UNSHARE, "--net", "--pid", "--mount", "--ipc", "--uts", "--fork", "--kill-child",
        # -I: no environment, no user site, and not this file's directory (verifiers/) on sys.path,
        # where math.py would shadow the standard library's.
        "--", spec["python"], "-I", "-S", os.path.abspath(__file__), json.dumps(spec), str(status_w),
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
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(remaining):
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


# --- Everything below runs inside the namespaces, as root, in `python -I -S sandbox.py`. ---

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
DEVICES = ("null", "zero", "random", "urandom")
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _init(spec_json: str, status_fd: int) -> None:
    """PID 1 of the new PID namespace: builds the root, runs the program, reports how it ended."""
    import traceback

    os.set_inheritable(status_fd, False)  # the program must not be able to forge a status

    def report(**status) -> None:
        os.write(status_fd, (json.dumps(status) + "\n").encode())

    try:
        spec = json.loads(spec_json)
        _build_root(spec)
        pid = os.fork()
        if pid == 0:
            try:
                _exec_program(spec)
            except BaseException:  # noqa: BLE001 - the forked child must never return into _init
                report(error=traceback.format_exc())
                os._exit(127)
        # A backstop should the caller die: PID 1 ignores signals it has no handler for, hence one.
        signal.signal(signal.SIGALRM, lambda *_: os._exit(137))
        signal.alarm(int(spec["limits"]["wall_s"]) + 2)
        _, wait_status = os.waitpid(pid, 0)
    except Exception:  # noqa: BLE001 - any failure goes back to the caller, with its traceback
        report(error=traceback.format_exc())
        os._exit(1)
    if os.WIFSIGNALED(wait_status):
        report(signal=os.WTERMSIG(wait_status))
    else:
        report(exit=os.WEXITSTATUS(wait_status))
    # Exiting tears the namespace down: the kernel kills whatever the program left running.
    os._exit(0)


def _build_root(spec: dict) -> None:
    root = os.path.join(spec["work"], "root")
    limits, uid = spec["limits"], spec["uid"]
    # Nothing mounted from here on may propagate back to the host's mount namespace.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("sandbox", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={limits['scratch_mb']}m,mode=755")
    for name in TOP_LEVEL_LINKS:  # merged-/usr systems link these into /usr
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(root, name))
        elif os.path.isdir(host):
            _bind(host, root + host, MS_RDONLY | MS_NOSUID | MS_NODEV)
    for path in spec["ro_binds"]:
        _bind(path, root + path, MS_RDONLY | MS_NOSUID | MS_NODEV)
    for device in DEVICES:
        target = os.path.join(root, "dev", device)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "w").close()
        _bind("/dev/" + device, target, MS_NOSUID | MS_NOEXEC)
    for shared in ("tmp", "dev/shm"):
        os.makedirs(os.path.join(root, shared))
        os.chmod(os.path.join(root, shared), 0o1777)
    scratch = os.path.join(root, "scratch")
    os.mkdir(scratch, 0o700)
    shutil.copyfile(os.path.join(spec["work"], "main.py"), os.path.join(scratch, "main.py"))
    for path in (scratch, os.path.join(scratch, "main.py")):
        os.chown(path, uid, uid)
    # pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no path, and
    # no mount in this namespace, by which the host's files could be reached again.
    os.chdir(root)
    _syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b".")
    _libc().umount2(b".", MNT_DETACH)
    os.chdir("/")


def _exec_program(spec: dict) -> None:
    limits, uid = spec["limits"], spec["uid"]
    mib = 1 << 20
    os.chdir("/scratch")
    # Hard CPU limit one second past the soft one: SIGXCPU first, SIGKILL if it is caught.
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["max_file_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Root ignores RLIMIT_NPROC and could undo every mount: drop to the private uid for good.
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError("prctl(PR_SET_NO_NEW_PRIVS) failed")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/scratch", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    # -I without -S: site still defines exit() and quit(), which contest solutions call.
    os.execve(spec["python"], [spec["python"], "-I", "main.py"], env)


def _bind(source: str, target: str, flags: int) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    # Not recursive: mounts below `source` (none expected) stay hidden rather than writable.
    _mount(source, target, None, MS_BIND)
    # Bind mounts ignore flags on creation; they take effect on a remount.
    _mount(None, target, None, MS_REMOUNT | MS_BIND | flags)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    args = [None if arg is None else arg.encode() for arg in (source, target, fstype)]
    if _libc().mount(*args, flags, data.encode()) != 0:
        _raise_errno(f"mount {source} on {target}")


def _syscall(number: int, *args: bytes) -> None:
    if _libc().syscall(number, *args) != 0:
        _raise_errno(f"syscall {number}")


def _raise_errno(what: str) -> None:
    import ctypes

    errno = ctypes.get_errno()
    raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


if __name__ == "__main__":
    _init(sys.argv[1], int(sys.argv[2]))

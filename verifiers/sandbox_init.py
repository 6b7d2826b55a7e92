"""PID 1 of a sandbox's namespaces (sandbox.py starts it as `python -I -S sandbox_init.py SPEC FD`).

It joins the sandbox's cgroup, builds the new root on a tmpfs and pivot_roots into it, then forks
the program: limited by rlimits and without any privilege (rootful: a fresh uid; rootless: no
capabilities, ever). It reports how the program ended, as a JSON line on FD. Standard library only:
with -I, this file's directory is not on sys.path.
"""

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import traceback

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 4096
# A bind mount in a user namespace must keep the flags its source has (they are locked): statvfs
# reports them with the same bit values.
KEPT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS, PR_SET_SECUREBITS, PR_CAPBSET_DROP = 38, 28, 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
# SECBIT_NOROOT, SECBIT_KEEP_CAPS_LOCKED and SECBIT_NO_CAP_AMBIENT_RAISE, each with its lock:
# uid 0 gains no capabilities on execve, and nothing can clear these bits again.
SECURE_BITS = 0b1 | 0b10 | 0b10_0000 | 0b100_0000 | 0b1000_0000
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
DEVICES = ("null", "zero", "random", "urandom")
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def main(spec_json: str, status_fd: int) -> None:
    """Builds the root, runs the program, reports how it ended; never returns."""
    os.set_inheritable(status_fd, False)  # the program must not be able to forge a status
    # Signals from inside the namespace reach PID 1 only where it has a handler: with none, the
    # program (in rootless mode the init's own uid) cannot interrupt it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    def report(**status) -> None:
        os.write(status_fd, (json.dumps(status) + "\n").encode())

    try:
        spec = json.loads(spec_json)
        for procs in spec["cgroup_procs"]:  # first, so that everything after is accounted there
            with open(procs, "w") as file:
                file.write("0")
        build_root(spec)
        pid = os.fork()
        if pid == 0:
            try:
                exec_program(spec)
            except BaseException:  # noqa: BLE001 - the forked child must never return into main
                report(error=traceback.format_exc())
                os._exit(127)
        # A backstop should the caller die; a pidfd, not SIGALRM, which the program could send.
        ready, _, _ = select.select([os.pidfd_open(pid)], [], [], spec["limits"]["wall_s"] + 2)
        if not ready:
            os._exit(137)
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


def build_root(spec: dict) -> None:
    root = os.path.join(spec["work"], "root")
    limits, uid = spec["limits"], spec["uid"]
    # Nothing mounted from here on may propagate back to the host's mount namespace.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    options = f"size={limits['scratch_mb']}m,nr_inodes={limits['max_files']},mode=755"
    mount("sandbox", root, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for name in TOP_LEVEL_LINKS:  # merged-/usr systems link these into /usr
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(root, name))
        elif os.path.isdir(host):
            bind(host, root + host, MS_RDONLY | MS_NOSUID | MS_NODEV)
    for path in spec["ro_binds"]:
        bind(path, root + path, MS_RDONLY | MS_NOSUID | MS_NODEV)
    for device in DEVICES:
        target = os.path.join(root, "dev", device)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "w").close()
        bind("/dev/" + device, target, MS_NOSUID | MS_NOEXEC)
    for shared in ("tmp", "dev/shm"):
        os.makedirs(os.path.join(root, shared))
        os.chmod(os.path.join(root, shared), 0o1777)
    scratch = os.path.join(root, "scratch")
    os.mkdir(scratch, 0o700)
    shutil.copyfile(os.path.join(spec["work"], "main.py"), os.path.join(scratch, "main.py"))
    for path in (scratch, os.path.join(scratch, "main.py")):
        os.chown(path, uid, uid)
    # Rootless, the program's uid owns the whole tmpfs: only a read-only mount keeps it out of
    # everything but these three, each made a mount of its own on the same tmpfs (one size cap).
    for writable in ("scratch", "tmp", "dev/shm"):
        path = os.path.join(root, writable)
        bind(path, path, MS_NOSUID | MS_NODEV)
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no path, and
    # no mount in this namespace, by which the host's files could be reached again.
    os.chdir(root)
    syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b".")
    libc().umount2(b".", MNT_DETACH)
    os.chdir("/")


def exec_program(spec: dict) -> None:
    limits, mib = spec["limits"], 1 << 20
    os.chdir("/scratch")
    # Hard CPU limit one second past the soft one: SIGXCPU first, SIGKILL if it is caught.
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["process_memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["max_file_mb"] * mib,) * 2)
    if spec["nproc"] is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (spec["nproc"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if spec["isolation"] == "rootful":
        # Root ignores RLIMIT_NPROC and could undo every mount: drop to the private uid for good.
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
    else:
        # The user namespace maps one uid, so there is no other to drop to: stay its uid 0, which
        # holds no capability from here on and gains none by exec, so no mount can be undone.
        drop_capabilities()
    if libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise_errno("prctl(PR_SET_NO_NEW_PRIVS)")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/scratch", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    # -I without -S: site still defines exit() and quit(), which contest solutions call.
    os.execve(spec["python"], [spec["python"], "-I", "main.py"], env)


def drop_capabilities() -> None:
    if libc().prctl(PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0) != 0:
        raise_errno("prctl(PR_SET_SECUREBITS)")
    capability = 0
    while libc().prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) == 0:  # EINVAL past the last one
        capability += 1
    if libc().prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
        raise_errno("prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    if libc().capset(header, (ctypes.c_uint32 * 6)()) != 0:  # effective, permitted, inheritable
        raise_errno("capset")


def bind(source: str, target: str, flags: int) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    # Not recursive: mounts below `source` (none expected) stay hidden rather than writable.
    mount(source, target, None, MS_BIND)
    # Bind mounts ignore flags on creation; they take effect on a remount.
    kept = os.statvfs(target).f_flag & KEPT_FLAGS
    mount(None, target, None, MS_REMOUNT | MS_BIND | flags | kept)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    args = [None if arg is None else arg.encode() for arg in (source, target, fstype)]
    if libc().mount(*args, flags, data.encode()) != 0:
        raise_errno(f"mount {source} on {target}")


def syscall(number: int, *args: bytes) -> None:
    if libc().syscall(number, *args) != 0:
        raise_errno(f"syscall {number}")


def raise_errno(what: str) -> None:
    errno = ctypes.get_errno()
    raise OSError(errno, f"{what}: {os.strerror(errno)}")


def libc():
    return ctypes.CDLL(None, use_errno=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

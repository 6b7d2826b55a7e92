"""Hostile programs in the sandbox: each must fail, be killed or be contained, and the host must be
unchanged afterwards (its files, environment, processes and network listener). Most run under both
ways of making a sandbox: as root, and inside a user namespace (rootless), here made by root; the
last tests make it as an unprivileged user, as on a SLURM cluster."""

import ast
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from verifiers import sandbox, sandbox_cgroup, sandbox_probe
from verifiers.sandbox import TOP_LEVEL_LINKS, UID_RANGE, SandboxLimits, run_python

PROJECT = Path(__file__).resolve().parents[2]
# Short limits keep the file fast; the timing asserts leave room for a loaded machine.
FAST = SandboxLimits(cpu_s=1, wall_s=3.0)
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@cache
def unavailable(isolation: str) -> str | None:
    """Why this host cannot make sandboxes that way; None when it can."""
    if isolation == "rootful" and os.geteuid() != 0:
        return "rootful sandboxes need root"
    return sandbox_probe._try(isolation)


@pytest.fixture(params=["rootful", "rootless"])
def isolation(request) -> str:
    reason = unavailable(request.param)
    if reason:
        pytest.skip(f"no {request.param} sandbox here: {reason}")
    return request.param


@pytest.fixture
def default_isolation() -> None:
    """Skips unless run_python's default, the host's own choice, works."""
    try:
        sandbox_probe.host_isolation()
    except sandbox_probe.SandboxUnavailable as error:
        pytest.skip(str(error))


def sandbox_processes() -> list[int]:
    """Host PIDs of live processes in a PID namespace other than ours: the sandboxes'. Not
    zombies: a killed sandbox's init is reaped by the host's init, which may take a while."""
    own, pids = os.readlink("/proc/self/ns/pid"), []
    for entry in Path("/proc").iterdir():
        try:
            namespace = os.readlink(entry / "ns" / "pid") if entry.name.isdigit() else own
            state = (
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if namespace != own
                else ""
            )
        except OSError:  # exited while listed
            continue
        if namespace != own and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def host_unchanged() -> Iterator[None]:
    """Checks, after the test, that the test process's helpers live and no sandbox process does."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield
    assert sleeper.poll() is None, "a host process was killed"
    sleeper.kill()
    sleeper.wait()
    # The namespace's processes are killed as its init exits, which may trail the call by a moment.
    deadline = time.monotonic() + 5
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes() == []


def test_runs_a_program_with_stdin_and_exit_code(isolation) -> None:
    code = "import sys\nprint(input()[::-1])\nsys.exit(3)"
    result = run_python(code, stdin="abc\n", isolation=isolation)
    assert (result.stdout, result.exit_code) == ("cba\n", 3)
    assert not result.timed_out and not result.output_truncated
    assert result.isolation == isolation


def test_default_isolation_is_the_hosts(default_isolation) -> None:
    result = run_python("print('ok')")
    assert result.stdout == "ok\n" and result.isolation == sandbox_probe.host_isolation()


def test_scratch_is_writable_and_removed_afterwards(isolation, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where run_python makes its own
    code = "import os\nopen('f.txt', 'w').write('x')\nprint(os.getcwd(), sorted(os.listdir('.')))"
    result = run_python(code, isolation=isolation)
    assert result.stdout.split(maxsplit=1) == ["/scratch", "['f.txt', 'main.py']\n"]
    assert list(tmp_path.iterdir()) == []


def test_fork_bomb_is_contained(isolation, host_unchanged) -> None:
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    start = time.monotonic()
    limits = SandboxLimits(cpu_s=1, wall_s=1.5)  # long enough for it to hit the process cap
    result = run_python(code, limits=limits, isolation=isolation)
    assert result.timed_out and result.exit_code != 0
    assert time.monotonic() - start < limits.wall_s + 3
    assert (
        subprocess.run(["true"], check=False).returncode == 0
    )  # the host can still start processes


def test_memory_bomb_fails(isolation, host_unchanged) -> None:
    result = run_python("x = bytearray(4 * 2**30)\nprint('allocated')", isolation=isolation)
    assert result.exit_code != 0 and "MemoryError" in result.stderr
    assert "allocated" not in result.stdout


# Sixteen children that each allocate and touch 400 MiB, and hold it for half a second.
CHILDREN_HOLDING_400_MIB = """
import os, time
pids = []
for _ in range(16):
    pid = os.fork()
    if pid == 0:
        block = bytearray(400 << 20)
        block[::4096] = b"\\1" * (len(block) // 4096)  # a write to every page
        os.write(1, b"held\\n")
        time.sleep(0.5)
        os._exit(0)
    pids.append(pid)
print("killed", sum(os.WIFSIGNALED(os.waitpid(pid, 0)[1]) for pid in pids))
"""


def test_whole_sandbox_memory_is_capped(default_isolation, host_unchanged) -> None:
    # Each process may map 1 GiB, so RLIMIT_AS stops none of them: only the cgroup's 512 MiB can.
    # (Once, not per isolation: the rootless init's joining the cgroup shows in the process cap.)
    limits = SandboxLimits(memory_mb=512, process_memory_mb=1024, cpu_s=10, wall_s=20)
    result = run_python(CHILDREN_HOLDING_400_MIB, limits=limits)
    if result.cgroup is None:
        pytest.skip("no cgroup on this host: the sandbox falls back to per-process limits")
    # A child did reach its 400 MiB, and none met a MemoryError: the cgroup is what stopped them.
    assert 400 << 20 <= result.peak_memory_bytes <= 512 << 20
    assert "MemoryError" not in result.stderr and 0 < result.stdout.count("held") < 16


def test_tmpfs_inodes_are_capped(isolation) -> None:
    code = (
        "import os\ncount = 0\ntry:\n    for count in range(1000):\n"
        "        open(f'/tmp/{count}', 'w').close()\nexcept OSError as error:\n"
        "    print(count, error.strerror)\n"
    )
    result = run_python(code, limits=SandboxLimits(max_files=100), isolation=isolation)
    count, reason = result.stdout.split(maxsplit=1)
    assert int(count) < 100 and reason == "No space left on device\n"


def test_program_cannot_undo_mounts_or_gain_privileges(isolation, host_unchanged) -> None:
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "caps = (ctypes.c_uint32 * 6)()\n"
        "libc.capget((ctypes.c_uint32 * 2)(0x20080522, 0), caps)\n"
        "print(libc.umount2(b'/usr', 2), libc.mount(b'x', b'/usr', b'tmpfs', 0, b''), list(caps))\n"
        # A new user namespace gives capabilities over its own mounts only, with no host above.
        "print(libc.unshare(0x10000000 | 0x00020000), sorted(os.listdir('/')))\n"
    )
    result = run_python(code, isolation=isolation)
    refused, nested = result.stdout.splitlines()
    assert refused == "-1 -1 [0, 0, 0, 0, 0, 0]"
    assert "etc" not in nested and "work" not in nested


@pytest.mark.parametrize(
    "code",
    ["while True:\n    pass", "sum(range(10**12))", "import time\ntime.sleep(100)"],
    ids=["python_loop", "c_loop", "sleep"],
)
def test_endless_programs_are_stopped(code, default_isolation, host_unchanged) -> None:
    start = time.monotonic()
    result = run_python(code, limits=FAST)
    # Spinning ones hit the CPU limit (SIGXCPU) after 1 s, the sleeping one the 3 s wall limit.
    assert result.exit_code in (-signal.SIGXCPU, -signal.SIGKILL)
    assert time.monotonic() - start < FAST.wall_s + 3


def test_network_is_unreachable(isolation, host_unchanged) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(0.1)
        for address in [("1.1.1.1", 53), ("127.0.0.1", port)]:
            code = f"import socket\nsocket.create_connection({address!r}, timeout=2)\nprint('up')"
            # Default limits: under load, start-up plus the 2 s connect timeout can exceed FAST's wall.
            result = run_python(code, isolation=isolation)
            assert result.exit_code == 1 and "Network is unreachable" in result.stderr
        with pytest.raises(TimeoutError):
            server.accept()


@pytest.mark.parametrize(
    "path", ["/etc/passwd", str(PROJECT / "pyproject.toml"), "/root/.bashrc", "/proc/1/environ"]
)
def test_host_files_are_invisible(path, isolation, host_unchanged) -> None:
    result = run_python(f"print(open({path!r}).read())", isolation=isolation)
    assert result.exit_code == 1 and "FileNotFoundError" in result.stderr


def test_only_the_sandbox_tree_is_visible(isolation) -> None:
    code = "import os\nprint(sorted(os.listdir('/')))\nprint(sorted(os.listdir('/dev')))"
    root, dev = run_python(code, isolation=isolation).stdout.splitlines()
    # /root appears only as the path down to a pyenv interpreter's prefix.
    allowed = {*TOP_LEVEL_LINKS, "dev", "root", "scratch", "tmp", "usr"}
    top = set(ast.literal_eval(root))
    assert top <= allowed and {"scratch", "usr", "tmp"} <= top
    assert ast.literal_eval(dev) == ["null", "random", "shm", "urandom", "zero"]


def test_writes_outside_scratch_do_not_reach_the_host(isolation, host_unchanged) -> None:
    marker = f"olmorl-sandbox-test-{os.getpid()}"
    host_tmp, host_project = Path("/tmp") / marker, PROJECT / marker
    code = (
        f"open('/tmp/{marker}', 'w').write('x')\n"  # the sandbox's own /tmp: allowed, in its tmpfs
        "print('tmp ok', flush=True)\n"
        f"open({str(host_project)!r}, 'w').write('x')\n"
    )
    result = run_python(code, isolation=isolation)
    assert result.stdout == "tmp ok\n" and result.exit_code == 1
    assert not host_tmp.exists() and not host_project.exists()
    for target in ["/usr/evil", "/root/.pyenv/evil", "/evil"]:
        result = run_python(f"open({target!r}, 'w')", isolation=isolation)
        assert result.exit_code == 1 and "Error" in result.stderr
        assert not Path(target).exists()


def test_host_environment_is_not_inherited(default_isolation, monkeypatch) -> None:
    monkeypatch.setenv("OLMORL_TEST_SECRET", "hunter2")
    result = run_python("import os\nprint(dict(os.environ))")
    assert "hunter2" not in result.stdout and "OLMORL_TEST_SECRET" not in result.stdout


def test_cannot_signal_the_host(isolation, host_unchanged) -> None:
    code = (
        "import os, signal\n"
        f"for pid, sig in ((1, 'SIGKILL'), (1, 'SIGINT'), ({os.getpid()}, 'SIGKILL'),"
        " (-1, 'SIGKILL')):\n"
        "    try:\n"
        "        os.kill(pid, getattr(signal, sig))\n"
        "        print(pid, sig, 'sent')\n"
        "    except OSError as e:\n"
        "        print(pid, sig, type(e).__name__)\n"
    )
    result = run_python(code, isolation=isolation)
    # The test's PID does not exist in the namespace, and kill(-1) finds no process but itself
    # and the init. Rootful, the init is root's: not ours to signal. Rootless it has our uid, but
    # PID 1 gets no signal from inside its namespace that it has no handler for, and it has none:
    # it lives on to report the exit.
    init = "PermissionError" if isolation == "rootful" else "sent"
    assert result.stdout.splitlines() == [
        f"1 SIGKILL {init}",
        f"1 SIGINT {init}",
        f"{os.getpid()} SIGKILL ProcessLookupError",
        "-1 SIGKILL ProcessLookupError",
    ]
    assert result.exit_code == 0


def test_subprocesses_are_allowed_but_stay_inside(isolation, host_unchanged) -> None:
    code = (
        "import subprocess\n"
        "print(subprocess.run(['sh', '-c', 'id -u; ls /work /etc 2>&1'], text=True,"
        " capture_output=True).stdout)"
    )
    result = run_python(code, isolation=isolation)
    uid, *rest = result.stdout.splitlines()
    # Rootless, the user namespace maps a single uid: its 0, which holds no capability.
    assert UID_RANGE[0] <= int(uid) < UID_RANGE[1] if isolation == "rootful" else uid == "0"
    assert all("No such file or directory" in line for line in rest if line)


def test_huge_output_is_truncated_quickly(default_isolation, host_unchanged) -> None:
    start = time.monotonic()
    result = run_python("import sys\nsys.stdout.write('x' * 10**8)")
    assert result.output_truncated and len(result.stdout) == SandboxLimits().max_output_bytes
    assert time.monotonic() - start < 5


def test_process_count_is_capped(isolation, host_unchanged) -> None:
    code = (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError:\n"
        "    print(children)\n"
    )
    result = run_python(code, limits=SandboxLimits(max_processes=8), isolation=isolation)
    # The program itself counts against the limit, as does each child. Rootless made by root, only
    # the cgroup's pids.max holds: the kernel exempts real root from RLIMIT_NPROC.
    assert result.stdout == "7\n" and result.exit_code == 0


def test_without_a_cgroup_the_sandbox_warns_once_and_keeps_rlimits(
    isolation, monkeypatch, caplog
) -> None:
    def refused() -> dict:
        raise PermissionError(13, "Permission denied", "/sys/fs/cgroup/memory")

    monkeypatch.setattr(sandbox_cgroup, "_own_cgroups", refused)
    monkeypatch.setattr(sandbox_cgroup, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=sandbox_cgroup.__name__):
        results = [run_python("x = bytearray(2**30)", isolation=isolation) for _ in range(2)]
    assert [r.cgroup for r in results] == [None, None]
    assert all("MemoryError" in r.stderr for r in results)  # RLIMIT_AS still holds
    (warning,) = caplog.records
    assert (
        "without a cgroup" in warning.getMessage() and "Permission denied" in warning.getMessage()
    )


# Run by an unprivileged user (see `as_unprivileged_user`), each through run_python's default.
ATTACKS = {
    "host_file": "print(open('/etc/passwd').read())",
    "project_file": f"print(open({str(PROJECT / 'pyproject.toml')!r}).read())",
    "write_outside": "open('/evil', 'w')",
    "network": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)",
    "memory_bomb": "x = bytearray(4 * 2**30)\nprint('allocated')",
    "privileges": (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "caps = (ctypes.c_uint32 * 6)()\nlibc.capget((ctypes.c_uint32 * 2)(0x20080522, 0), caps)\n"
        "print(libc.umount2(b'/usr', 2), libc.mount(b'x', b'/usr', b'tmpfs', 0, b''), list(caps))"
    ),
    "signal_init": "import os, signal\nfor s in ('SIGINT', 'SIGTERM', 'SIGALRM', 'SIGKILL'):\n"
    "    os.kill(1, getattr(signal, s))\nprint('init lives')",
    "processes": (
        "import os, time\nchildren = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(30)\n            os._exit(0)\n        children += 1\n"
        "except OSError:\n    print(children)\n"
    ),
}
DRIVER = """
import json, logging, os, sys
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from verifiers.sandbox import SandboxLimits, run_python
report = {"uid": os.getuid()}
for name, code in json.load(sys.stdin).items():
    r = run_python(code, limits=SandboxLimits(max_processes=8))
    report[name] = [r.exit_code, r.stdout, r.stderr[-300:], r.isolation, r.cgroup]
print(json.dumps(report))
"""


def world_usable(path: Path) -> bool:
    """Whether any user may read `path` (and enter each directory down to it)."""
    parts = [*reversed(path.parents), path]
    return all(p.stat().st_mode & (stat.S_IXOTH if p.is_dir() else stat.S_IROTH) for p in parts)


@pytest.fixture(scope="module")
def as_unprivileged_user() -> dict:
    """ATTACKS, run by uid 65534 (`nobody`) through run_python, and what it logged."""
    if os.geteuid() != 0 or not shutil.which(NOBODY[0]):
        pytest.skip("needs root and setpriv to become an unprivileged user")
    pythons = [
        os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        "/usr/bin/python3",
    ]
    python = next((p for p in pythons if os.path.exists(p) and world_usable(Path(p))), None)
    if python is None or not all(world_usable(p) for p in (PROJECT / "verifiers").glob("*.py")):
        pytest.skip(f"the unprivileged user cannot read an interpreter or {PROJECT / 'verifiers'}")
    done = subprocess.run(
        [*NOBODY, python, "-I", "-c", DRIVER, str(PROJECT)],
        input=json.dumps(ATTACKS), capture_output=True, text=True, cwd="/", env={}, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"report": json.loads(done.stdout), "log": done.stderr}


def test_unprivileged_user_gets_a_rootless_sandbox(as_unprivileged_user) -> None:
    report, log = as_unprivileged_user["report"], as_unprivileged_user["log"]
    assert report["uid"] == 65534
    assert {isolation for _, _, _, isolation, _ in list(report.values())[1:]} == {"rootless"}
    assert log.count("sandboxes run rootless") == 1
    # Its user cannot make cgroups here: said once, and rlimits alone hold.
    assert {cgroup for *_, cgroup in list(report.values())[1:]} == {None}
    assert log.count("sandboxes run without a cgroup") == 1


@pytest.mark.parametrize(
    ("attack", "exit_code", "stdout", "error"),
    [
        ("host_file", 1, "", "FileNotFoundError"),
        ("project_file", 1, "", "FileNotFoundError"),
        ("write_outside", 1, "", "Read-only file system"),
        ("network", 1, "", "Network is unreachable"),
        ("memory_bomb", 1, "", "MemoryError"),
        ("privileges", 0, "-1 -1 [0, 0, 0, 0, 0, 0]\n", ""),
        ("signal_init", 0, "init lives\n", ""),
        # RLIMIT_NPROC counted in the sandbox's own user namespace (Linux >= 5.14).
        ("processes", 0, "7\n", ""),
    ],
)
def test_unprivileged_user_attacks_fail(as_unprivileged_user, attack, exit_code, stdout, error):
    if attack == "processes" and not sandbox._kernel_at_least(5, 14):
        pytest.skip("before Linux 5.14 RLIMIT_NPROC counts every process of the user: unset")
    got_exit, got_stdout, got_stderr, *_ = as_unprivileged_user["report"][attack]
    assert (got_exit, got_stdout) == (exit_code, stdout) and error in got_stderr

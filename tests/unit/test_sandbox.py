"""Hostile programs in the sandbox: each must fail, be killed or be contained, and the host must be
unchanged afterwards (its files, environment, processes and network listener). Needs root."""

import ast
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from verifiers.sandbox import TOP_LEVEL_LINKS, UID_RANGE, SandboxLimits, run_python

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root for namespaces")

PROJECT = Path(__file__).resolve().parents[2]
# Short limits keep the file fast; the timing asserts leave room for a loaded machine.
FAST = SandboxLimits(cpu_s=1, wall_s=3.0)


def sandbox_processes() -> list[int]:
    """Host PIDs of processes running as a sandbox uid."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            uid = entry.stat().st_uid if entry.name.isdigit() else -1
        except FileNotFoundError:  # exited while listed
            continue
        if UID_RANGE[0] <= uid < UID_RANGE[1]:
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


def test_runs_a_program_with_stdin_and_exit_code() -> None:
    result = run_python("import sys\nprint(input()[::-1])\nsys.exit(3)", stdin="abc\n")
    assert (result.stdout, result.exit_code) == ("cba\n", 3)
    assert not result.timed_out and not result.output_truncated


def test_scratch_is_writable_and_removed_afterwards(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where run_python makes its own
    code = "import os\nopen('f.txt', 'w').write('x')\nprint(os.getcwd(), sorted(os.listdir('.')))"
    result = run_python(code)
    assert result.stdout.split(maxsplit=1) == ["/scratch", "['f.txt', 'main.py']\n"]
    assert list(tmp_path.iterdir()) == []


def test_fork_bomb_is_contained(host_unchanged) -> None:
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    start = time.monotonic()
    result = run_python(code, limits=FAST)
    assert result.timed_out and result.exit_code != 0
    assert time.monotonic() - start < FAST.wall_s + 3
    assert (
        subprocess.run(["true"], check=False).returncode == 0
    )  # the host can still start processes


def test_memory_bomb_fails(host_unchanged) -> None:
    result = run_python("x = bytearray(4 * 2**30)\nprint('allocated')")
    assert result.exit_code != 0 and "MemoryError" in result.stderr
    assert "allocated" not in result.stdout


@pytest.mark.parametrize(
    "code",
    ["while True:\n    pass", "sum(range(10**12))", "import time\ntime.sleep(100)"],
    ids=["python_loop", "c_loop", "sleep"],
)
def test_endless_programs_are_stopped(code, host_unchanged) -> None:
    start = time.monotonic()
    result = run_python(code, limits=FAST)
    # Spinning ones hit the CPU limit (SIGXCPU) after 1 s, the sleeping one the 3 s wall limit.
    assert result.exit_code in (-signal.SIGXCPU, -signal.SIGKILL)
    assert time.monotonic() - start < FAST.wall_s + 3


def test_network_is_unreachable(host_unchanged) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(0.1)
        for address in [("1.1.1.1", 53), ("127.0.0.1", port)]:
            code = f"import socket\nsocket.create_connection({address!r}, timeout=2)\nprint('up')"
            # Default limits: under load, start-up plus the 2 s connect timeout can exceed FAST's wall.
            result = run_python(code)
            assert result.exit_code == 1 and "Network is unreachable" in result.stderr
        with pytest.raises(TimeoutError):
            server.accept()


@pytest.mark.parametrize(
    "path", ["/etc/passwd", str(PROJECT / "pyproject.toml"), "/root/.bashrc", "/proc/1/environ"]
)
def test_host_files_are_invisible(path, host_unchanged) -> None:
    result = run_python(f"print(open({path!r}).read())")
    assert result.exit_code == 1 and "FileNotFoundError" in result.stderr


def test_only_the_sandbox_tree_is_visible() -> None:
    code = "import os\nprint(sorted(os.listdir('/')))\nprint(sorted(os.listdir('/dev')))"
    root, dev = run_python(code).stdout.splitlines()
    # /root appears only as the path down to a pyenv interpreter's prefix.
    allowed = {*TOP_LEVEL_LINKS, "dev", "root", "scratch", "tmp", "usr"}
    top = set(ast.literal_eval(root))
    assert top <= allowed and {"scratch", "usr", "tmp"} <= top
    assert ast.literal_eval(dev) == ["null", "random", "shm", "urandom", "zero"]


def test_writes_outside_scratch_do_not_reach_the_host(host_unchanged) -> None:
    marker = f"olmorl-sandbox-test-{os.getpid()}"
    host_tmp, host_project = Path("/tmp") / marker, PROJECT / marker
    code = (
        f"open('/tmp/{marker}', 'w').write('x')\n"  # the sandbox's own /tmp: allowed, in its tmpfs
        "print('tmp ok', flush=True)\n"
        f"open({str(host_project)!r}, 'w').write('x')\n"
    )
    result = run_python(code)
    assert result.stdout == "tmp ok\n" and result.exit_code == 1
    assert not host_tmp.exists() and not host_project.exists()
    for target in ["/usr/evil", "/root/.pyenv/evil", "/evil"]:
        result = run_python(f"open({target!r}, 'w')")
        assert result.exit_code == 1 and "Error" in result.stderr
        assert not Path(target).exists()


def test_host_environment_is_not_inherited(monkeypatch) -> None:
    monkeypatch.setenv("OLMORL_TEST_SECRET", "hunter2")
    result = run_python("import os\nprint(dict(os.environ))")
    assert "hunter2" not in result.stdout and "OLMORL_TEST_SECRET" not in result.stdout


def test_cannot_signal_the_host(host_unchanged) -> None:
    code = (
        "import os, signal\n"
        f"for pid in (os.getppid(), {os.getpid()}, -1):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as e:\n"
        "        print(pid, type(e).__name__)\n"
    )
    result = run_python(code)
    # The parent is the namespace's init, run by root: not ours to signal. The test's PID does not
    # exist in the namespace, and kill(-1) finds no process of the sandbox's uid but itself.
    assert result.stdout.split("\n")[:3] == [
        "1 PermissionError",
        f"{os.getpid()} ProcessLookupError",
        "-1 ProcessLookupError",
    ]


def test_subprocesses_are_allowed_but_stay_inside(host_unchanged) -> None:
    code = (
        "import subprocess\n"
        "print(subprocess.run(['sh', '-c', 'id -u; ls /work /etc 2>&1'], text=True,"
        " capture_output=True).stdout)"
    )
    result = run_python(code)
    uid, *rest = result.stdout.splitlines()
    assert UID_RANGE[0] <= int(uid) < UID_RANGE[1]
    assert all("No such file or directory" in line for line in rest if line)


def test_huge_output_is_truncated_quickly(host_unchanged) -> None:
    start = time.monotonic()
    result = run_python("import sys\nsys.stdout.write('x' * 10**8)")
    assert result.output_truncated and len(result.stdout) == SandboxLimits().max_output_bytes
    assert time.monotonic() - start < 5


def test_process_count_is_capped(host_unchanged) -> None:
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
    result = run_python(code, limits=SandboxLimits(max_processes=8))
    # The program itself counts against the limit of its uid, as does each child.
    assert result.stdout == "7\n" and result.exit_code == 0

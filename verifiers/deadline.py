"""Runs a function in a warm child process and gives up on it after a deadline.

A deadline that really holds needs a process: signal.alarm only works in the main thread, and no
in-process timer stops C code that never checks for signals (gmpy2 arithmetic, which sympy uses
when it is installed; a regex). On a timeout the child is killed and a fresh one started.
"""

import atexit
import queue
import signal
import socket
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")

# The child is a fresh interpreter started by subprocess: its fork+exec runs no Python in between,
# so threads the caller holds (Ray, torch) cannot leave locks held in it, as a bare fork could.
# Not multiprocessing's "spawn": that re-runs the caller's __main__ in the child, which breaks
# scripts without an `if __name__ == "__main__"` guard and drags their imports along.
# The child gets the caller's sys.path, so the functions sent to it import as they do here.
_BOOT = (
    "import sys; sys.path[:0] = sys.argv[2:]; "
    "from verifiers.deadline import _serve; _serve(int(sys.argv[1]))"
)

_live_workers: "weakref.WeakSet[DeadlineWorker]" = weakref.WeakSet()


class WorkerCrashed(RuntimeError):
    """The child process died or failed to start (killed for memory, a segfault in native code)."""


class WorkerError(RuntimeError):
    """The function raised in the child; the message carries the child's traceback."""


class DeadlineWorker:
    """One warm child process; `call` is thread-safe and runs one function at a time.

    `initializer` (a module-level function) runs once in each new child, before its first call,
    so imports it does are not charged to any call's deadline.
    """

    def __init__(
        self, initializer: Callable[[], None] | None = None, start_timeout_s: float = 120.0
    ):
        self._initializer = initializer
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        _live_workers.add(self)

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float) -> T:
        """`fn(*args)` in the child; raises TimeoutError past `timeout_s` seconds.

        `fn` must be picklable (defined at module level), and so must its arguments and result.
        The deadline starts once the child is up, so a first call is not charged for its start.
        """
        with self._lock:
            conn = self._ensure_started()
            try:
                conn.send((fn, args))
                finished = conn.poll(timeout_s)
                ok, value = conn.recv() if finished else (False, None)
            except (EOFError, OSError) as e:
                self._stop()
                raise WorkerCrashed(f"worker process died while running {_name(fn)}") from e
            except BaseException:
                # Interrupted mid-call: the child's late reply would answer the next call.
                self._stop()
                raise
            if not finished:
                self._stop()
                raise TimeoutError(f"{_name(fn)} did not finish within {timeout_s} s")
        if not ok:
            raise WorkerError(f"{_name(fn)} raised in the worker process:\n{value}")
        return value

    def close(self) -> None:
        """Stops the child; a later `call` starts a new one."""
        with self._lock:
            self._stop()

    def _ensure_started(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.poll() is None:
            return self._conn
        self._stop()
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), *sys.path],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        self._conn = Connection(ours.detach())
        try:
            self._conn.send(self._initializer)
            if not self._conn.poll(self._start_timeout_s):
                raise WorkerCrashed(
                    f"worker process did not start within {self._start_timeout_s} s"
                )
            ready = self._conn.recv()
        except (EOFError, OSError) as e:
            self._stop()
            raise WorkerCrashed("worker process died while starting") from e
        except BaseException:
            self._stop()
            raise
        if ready is not True:
            self._stop()
            raise WorkerError(f"worker initializer raised:\n{ready}")
        return self._conn

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None


class DeadlineWorkerPool:
    """`size` DeadlineWorkers; `call` runs on whichever is free, so calls run in parallel.

    Children start on first use, so a pool larger than the load costs nothing.
    """

    def __init__(self, size: int, initializer: Callable[[], None] | None = None):
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {size}")
        self._workers = [DeadlineWorker(initializer) for _ in range(size)]
        self._free: queue.SimpleQueue[DeadlineWorker] = queue.SimpleQueue()
        for worker in self._workers:
            self._free.put(worker)

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float) -> T:
        """As `DeadlineWorker.call`; waiting for a free worker is not charged to the deadline."""
        worker = self._free.get()
        try:
            return worker.call(fn, *args, timeout_s=timeout_s)
        finally:
            self._free.put(worker)

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


@atexit.register
def _stop_all() -> None:
    # A child busy in C code would not notice the closed socket until it finished.
    for worker in list(_live_workers):
        worker.close()


def _serve(fd: int) -> None:
    """The child's loop: one (fn, args) in, one (ok, result or traceback) out, until EOF."""
    # Ctrl-C reaches the whole process group; the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        initializer = conn.recv()
        if initializer is not None:
            initializer()
    except EOFError:
        return
    except Exception:  # noqa: BLE001 - any failure goes back to the caller, with its traceback
        conn.send(traceback.format_exc())
        return
    conn.send(True)
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:  # the parent closed the socket or exited
            return
        try:
            reply = (True, fn(*args))
        except Exception:  # noqa: BLE001 - any failure goes back to the caller, with its traceback
            reply = (False, traceback.format_exc())
        conn.send(reply)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))

"""Which way of making a sandbox this host allows: `host_isolation()`, found once per process.

"rootful" (namespaces made as root; needs CAP_SYS_ADMIN) is tried first, then "rootless" (the same
inside a new user namespace, for SLURM jobs and pods without CAP_SYS_ADMIN). Each try runs a trivial
program through the whole sandbox, so a mount or pivot_root that the host refuses counts too. The
choice is logged once; where neither works, every call raises SandboxUnavailable naming why.
"""

import logging
import os
import threading
from pathlib import Path

from verifiers.sandbox import Isolation, SandboxError, SandboxUnavailable, run_python

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_found: Isolation | SandboxUnavailable | None = None
# Settings that turn user namespaces off for unprivileged users, where the kernel has them.
_USERNS_SETTINGS = (
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
)


def host_isolation() -> Isolation:
    """The isolation sandboxes use on this host; raises SandboxUnavailable where none works."""
    global _found
    with _lock:
        if _found is None:
            _found = _probe()
            if isinstance(_found, str):
                _log.info("sandboxes run %s", _found)
    if isinstance(_found, SandboxUnavailable):
        raise SandboxUnavailable(str(_found))
    return _found


def _probe() -> Isolation | SandboxUnavailable:
    failures = []
    for isolation in ("rootful", "rootless"):
        if isolation == "rootful" and os.geteuid() != 0:
            failures.append(f"rootful needs root, and this process runs as uid {os.geteuid()}")
            continue
        failure = _try(isolation)
        if failure is None:
            return isolation
        if isolation == "rootless":
            failure += _userns_settings()
        failures.append(f"{isolation} failed ({failure})")
    return SandboxUnavailable("the code verifiers need a sandbox: " + "; ".join(failures))


def _try(isolation: Isolation) -> str | None:
    """Why a trivial program does not run in such a sandbox; None when it does."""
    try:
        result = run_python("print('ok')", isolation=isolation)
    except (SandboxError, OSError) as error:
        return str(error).strip().splitlines()[-1]
    if result.stdout != "ok\n":
        return f"a trivial program exited {result.exit_code}: {result.stderr.strip()[-300:]!r}"
    return None


def _userns_settings() -> str:
    found = [
        f"{path}={Path(path).read_text().strip()}"
        for path in _USERNS_SETTINGS
        if os.path.exists(path)
    ]
    return f"; user namespace settings: {', '.join(found)}" if found else ""

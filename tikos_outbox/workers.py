"""Who a worker is, and whether a worker on this host still runs."""

from __future__ import annotations

import os
import socket
import sys


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # no cheap check; the lease decides there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_worker(worker: str) -> bool:
    """Whether a claim's worker is a process on this host that no longer runs."""
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))

"""`tikos-outbox` with a probe of its native memory, for the soak (Linux, glibc).

    python -m bench.probe SAMPLES_FILE SAMPLE_S tikos-outbox-arguments…

Every SAMPLE_S seconds a thread appends one line of JSON to SAMPLES_FILE: what
glibc's malloc holds for the process (`mallinfo2`: in use and free, in KB), what
SQLite allocated (`sqlite3_memory_used`), and per open SQLite connection its page
cache and its prepared statements (`sqlite3_db_status`); what Python's own
allocator holds (pymalloc's arenas of 1 MiB, which it takes from the system
directly, not through malloc, and the bytes of its live blocks: from
`sys._debugmallocstats`), the live objects the garbage collector tracks by type,
the open file descriptors and the threads. RSS alone cannot tell a leak from
fragmentation, nor SQLite from Python, nor Python's objects from its arenas:
these can. The service itself
runs unchanged, in this process's main thread.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import runpy
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

_MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
              "uordblks", "fordblks", "keepcost")
_DBSTATUS_CACHE_USED, _DBSTATUS_STMT_USED = 1, 3


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2]


def _db_handle(conn: sqlite3.Connection) -> int | None:
    """The `sqlite3 *` of a connection of CPython's sqlite3 module: the first field
    after the object header (Modules/_sqlite/connection.h)."""
    return ctypes.c_void_p.from_address(id(conn) + 2 * ctypes.sizeof(ctypes.c_void_p)).value


def _db_status(lib: ctypes.CDLL, db: int, op: int) -> int:
    current, highest = ctypes.c_int(), ctypes.c_int()
    lib.sqlite3_db_status(ctypes.c_void_p(db), op, ctypes.byref(current),
                          ctypes.byref(highest), 0)
    return current.value


def pymalloc() -> dict[str, int]:
    """pymalloc's current arenas and the bytes in its live blocks. CPython prints
    them only to the C stderr, so that is pointed at a file for the call (the soak
    sends the service's stderr to /dev/null: no log line of it is lost)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode("ascii", "replace")

    def figure(label: str) -> int:
        found = re.search(rf"^# {label}\s*=\s*([\d,]+)", text, re.M)
        return int(found.group(1).replace(",", "")) if found else -1

    return {"py_arenas": figure("arenas allocated current"),
            "py_blocks_kb": figure("bytes in allocated blocks") >> 10}


def sample(libc: ctypes.CDLL, lib: ctypes.CDLL) -> dict[str, object]:
    info = libc.mallinfo2()
    connections = []
    types: Counter[str] = Counter()
    for obj in gc.get_objects():
        types[type(obj).__qualname__] += 1
        if isinstance(obj, sqlite3.Connection) and (db := _db_handle(obj)):
            connections.append({"cache_kb": _db_status(lib, db, _DBSTATUS_CACHE_USED) >> 10,
                                "statements_kb": _db_status(lib, db, _DBSTATUS_STMT_USED) >> 10})
    return {"at": time.monotonic(), "malloc_used_kb": info.uordblks >> 10,
            "malloc_free_kb": info.fordblks >> 10, "mmapped_kb": info.hblkhd >> 10,
            "malloc_arena_kb": info.arena >> 10,
            "sqlite_kb": lib.sqlite3_memory_used() >> 10, "connections": connections,
            **pymalloc(), "gc_objects": sum(types.values()), "types": dict(types.most_common(40)),
            "fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count()}


def main() -> None:
    samples, every_s, args = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    lib = ctypes.CDLL("libsqlite3.so.0")  # the one _sqlite3 is linked with: loaded once
    lib.sqlite3_memory_used.restype = ctypes.c_int64

    def probe() -> None:
        with samples.open("a", encoding="utf-8") as f:
            while True:
                f.write(json.dumps(sample(libc, lib)) + "\n")
                f.flush()
                time.sleep(every_s)

    threading.Thread(target=probe, name="probe", daemon=True).start()
    sys.argv = ["tikos-outbox", *args]
    runpy.run_module("tikos_outbox", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""`tikos-outbox` with a probe of its native memory, for the soak (Linux, glibc).

    python -m bench.probe SAMPLES_FILE SAMPLE_S tikos-outbox-arguments…

Every SAMPLE_S seconds a thread appends one line of JSON to SAMPLES_FILE: what
glibc's malloc holds for the process (`mallinfo2`: in use and free, in KB), what
SQLite allocated (`sqlite3_memory_used`), and per open SQLite connection its page
cache and its prepared statements (`sqlite3_db_status`). RSS alone cannot tell
a leak from fragmentation, nor SQLite from Python: these can. The service itself
runs unchanged, in this process's main thread.
"""

from __future__ import annotations

import ctypes
import gc
import json
import runpy
import sqlite3
import sys
import threading
import time
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


def sample(libc: ctypes.CDLL, lib: ctypes.CDLL) -> dict[str, object]:
    info = libc.mallinfo2()
    connections = []
    for obj in gc.get_objects():
        if isinstance(obj, sqlite3.Connection) and (db := _db_handle(obj)):
            connections.append({"cache_kb": _db_status(lib, db, _DBSTATUS_CACHE_USED) >> 10,
                                "statements_kb": _db_status(lib, db, _DBSTATUS_STMT_USED) >> 10})
    return {"at": time.monotonic(), "malloc_used_kb": info.uordblks >> 10,
            "malloc_free_kb": info.fordblks >> 10, "mmapped_kb": info.hblkhd >> 10,
            "sqlite_kb": lib.sqlite3_memory_used() >> 10, "connections": connections}


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

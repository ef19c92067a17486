"""The sizes a big site reaches: a month's end through one server without limits,
and several workers on PostgreSQL sharing one queue. The sink counts every
Message-ID it takes, so "each document once" is measured, not assumed."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.site import make_site, open_site, write_pdfs

SENDER = "rechnung@musterwaescherei.example"


def _received(ids: Path) -> Counter[str]:
    if not ids.exists():
        return Counter()
    return Counter(line for line in ids.read_text(encoding="ascii").splitlines() if line)


def _once(ids: Path, m: int) -> dict[str, int]:
    seen = _received(ids)
    return {"duplicates": sum(n - 1 for n in seen.values() if n > 1),
            "missing": m - len(seen)}


def _flush(configs: list[Path]) -> float:
    """`tikos-outbox flush` in one process per config (all at once); the seconds
    until the last has ended. Each must end with 0 (everything sent)."""
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "tikos_outbox", "--config", str(c),
                               "flush"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for c in configs]
    for proc in procs:
        _, err = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"flush ended with {proc.returncode}: {err.decode()[-2000:]}")
    return time.perf_counter() - started


def month_end(m: int) -> dict[str, Any]:
    """`m` due invoices of 30–200 KB through one server without limits (offering
    PIPELINING, like a local Exchange), sent by the `flush` command as an admin
    types it; the limit is a bare smtplib loop over the same messages, prepared."""
    from bench.cases import prepared_messages, sink, workdir

    with workdir() as root:
        ids = root / "ids.txt"
        with sink(3600, "--pipelining", "--ids", str(ids)) as port:
            config = make_site(root, port=port)
            write_pdfs(root / "archive", m, 30_000, 200_000)
            svc = open_site(config)
            svc.scan()
            messages = prepared_messages(svc, m)
            svc.store.close()
            started = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as conn:
                for msg in messages:
                    conn.sendmail(SENDER, ["kunde@example.org"], msg)
            limit_s = time.perf_counter() - started
            del messages
            os.truncate(ids, 0)  # the limit loop's copies are not ours to count
            seconds = _flush([config])
        once = _once(ids, m)
    rate, limit_rate = m / seconds, m / limit_s
    return {"messages": m, "msgs_per_s": round(rate, 1),
            "limit_msgs_per_s": round(limit_rate, 1),
            "ratio_to_limit": round(rate / limit_rate, 3), **once}


@contextmanager
def pg_database(base_url: str) -> Iterator[str]:
    """A fresh database on the server of `base_url` (a role that may create
    databases), dropped afterwards; yields its URL."""
    from sqlalchemy import create_engine, make_url, text

    name = f"tikos_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _pg_site(root: Path, port: int, url: str, m: int) -> Path:
    config = make_site(root, port=port)
    text = config.read_text(encoding="utf-8").replace('database = "outbox.db"',
                                                      f"database = '{url}'", 1)
    config.write_text(text, encoding="utf-8")
    write_pdfs(root / "archive", m, 30_000, 60_000)
    svc = open_site(config)
    svc.scan()
    svc.store.close()
    return config


def workers(m: int, n: int = 4) -> dict[str, Any]:
    """`n` `flush` processes at once on one PostgreSQL outbox of `m` due entries,
    against one sink; the baseline is one process on another outbox of the same
    size, in the same run. Needs TIKOS_OUTBOX_TEST_PG (as the tests do)."""
    from bench.cases import sink, workdir

    base = os.environ.get("TIKOS_OUTBOX_TEST_PG") or os.environ.get("TIKOS_OUTBOX_BENCH_PG")
    if not base:
        return {"skipped": "no PostgreSQL: set TIKOS_OUTBOX_TEST_PG=postgresql+psycopg://…"}
    with workdir() as root:
        ids_one, ids_many = root / "one.txt", root / "many.txt"
        with pg_database(base) as url_one, pg_database(base) as url_many, \
                sink(3600, "--pipelining", "--ids", str(ids_one)) as port_one, \
                sink(3600, "--pipelining", "--ids", str(ids_many)) as port_many:
            one = _pg_site(root / "one", port_one, url_one, m)
            many = _pg_site(root / "many", port_many, url_many, m)
            one_s = _flush([one])
            many_s = _flush([many] * n)
        once, once_one = _once(ids_many, m), _once(ids_one, m)
    rate, one_rate = m / many_s, m / one_s
    return {"workers": n, "messages": m, "msgs_per_s": round(rate, 1),
            "one_worker_msgs_per_s": round(one_rate, 1),
            "ratio_to_one": round(rate / one_rate, 3), **once,
            "one_worker_duplicates": once_one["duplicates"]}

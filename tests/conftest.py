from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BounceBox, Cert, make_cert

PG_ENV = "TIKOS_OUTBOX_TEST_PG"


def pg_base_url() -> str | None:
    """The PostgreSQL server for the tests (.ci/run sets it), or None locally."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: .ci/run must start PostgreSQL for the store tests")
        pytest.skip(f"no PostgreSQL server configured (set {PG_ENV}="
                    "postgresql+psycopg://user:pw@127.0.0.1/db to run these tests)")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(pg_base_url() or "")
    name = f"tikos_t_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The outbox database of a test: the same tests run on both engines."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'outbox.db').as_posix()}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKOS_OUTBOX_CONFIG", raising=False)


def _odbc_driver_present() -> bool:
    try:
        import pyodbc
    except ImportError:
        return False
    return "SQLite3" in pyodbc.drivers()


@pytest.fixture
def odbc_sqlite(tmp_path: Path) -> str:
    """A real ODBC data source: unixODBC + the SQLite3 ODBC driver, a TIKOS-like table."""
    if not _odbc_driver_present():
        if os.environ.get("CI"):
            pytest.fail("the SQLite3 ODBC driver is missing; .ci/run must install libsqliteodbc")
        pytest.skip("the SQLite3 ODBC driver is not installed (apt-get install libsqliteodbc)")
    import pyodbc

    db = tmp_path / "tikos.sqlite"
    dsn = f"Driver=SQLite3;Database={db}"
    conn = pyodbc.connect(dsn, autocommit=True)
    conn.execute("CREATE TABLE Kunde (Mandant INTEGER, KundenNr TEXT, EMail TEXT)")
    rows = [
        (1, "4711", "einkauf@hotel-adler.example"),
        (1, "4711", "buchhaltung@hotel-adler.example; chef@hotel-adler.example"),
        (1, "4712", "kueche@gasthof-sonne.example"),
        (2, "4711", "andere@mandant-zwei.example"),
        (1, "4713", None),
    ]
    conn.cursor().executemany("INSERT INTO Kunde VALUES (?, ?, ?)", rows)
    conn.close()
    return dsn


POSTFIX_ENV = "TIKOS_OUTBOX_TEST_POSTFIX"
DOVECOT_ENV = "TIKOS_OUTBOX_TEST_DOVECOT"


def _server(env: str, script: str) -> dict[str, Any]:
    """A private test server that .ci/run starts (tests/servers/SCRIPT), from the
    info.json in the folder that `env` names."""
    folder = os.environ.get(env)
    if not folder:
        if os.environ.get("CI"):
            pytest.fail(f"{env} is not set: .ci/run must start tests/servers/{script}")
        pytest.skip(f"no test server (run `bash tests/servers/{script} start DIR` as root and"
                    f" set {env}=DIR)")
    info: dict[str, Any] = json.loads(Path(folder, "info.json").read_text(encoding="utf-8"))
    return info


@pytest.fixture(scope="session")
def postfix() -> dict[str, Any]:
    """The private Postfix: its ports, users, senders, Maildir and log."""
    return _server(POSTFIX_ENV, "postfix.sh")


@pytest.fixture(scope="session")
def dovecot() -> dict[str, Any]:
    """The private Dovecot: its IMAP and LMTP ports, the bounce mailbox's login and
    the Maildirs."""
    return _server(DOVECOT_ENV, "dovecot.sh")


@pytest.fixture
def bounce_box(dovecot: dict[str, Any]) -> Iterator[BounceBox]:
    box = BounceBox(dovecot)
    box.empty()
    yield box
    box.close()

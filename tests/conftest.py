from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import Cert, make_cert


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

"""Bad config and a bad environment: exit 2 naming the key, never a traceback; a
locked, read-only or full database says so and loses nothing."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import write_site
from tests.test_run import running, wait_until
from tikos_outbox.cli import main
from tikos_outbox.cli.context import log_file_of
from tikos_outbox.config import load_config
from tikos_outbox.samples import make_pdf

pytestmark = pytest.mark.reliability

WRONG_VALUES = st.one_of(
    st.integers(-10**6, 10**6), st.floats(allow_nan=False), st.booleans(),
    st.text(max_size=20), st.lists(st.integers(), max_size=2), st.just({"x": 1}),
    st.datetimes())


@pytest.fixture(scope="module")
def valid_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = write_site(tmp_path_factory.mktemp("valid"), extra=(
        "[schedule]\ntimezone = 'Europe/Berlin'\nfirst = '08:00'\nlast = '18:00'\n"
        "every_minutes = 60\ndays = ['mon']\n"))
    return site.config


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_broken_value_is_exit_2_naming_the_key(
        valid_site: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    doc = tomlkit.parse(valid_site.read_text(encoding="utf-8"))
    plain: dict[str, Any] = tomllib.loads(valid_site.read_text(encoding="utf-8"))
    section = data.draw(st.sampled_from(["outbox", "schedule", "smtp", "sender", "watch",
                                         "recipients"]))
    keys = sorted(plain[section])
    mode = data.draw(st.sampled_from(["wrong value", "unknown key"]))
    if mode == "unknown key":
        key = data.draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12)
                        .filter(lambda k: k not in plain[section]))
        doc[section][key] = 1  # type: ignore[index]
    else:
        key = data.draw(st.sampled_from(keys))
        value = data.draw(WRONG_VALUES.filter(lambda v: type(v) is not type(plain[section][key])))
        doc[section][key] = value  # type: ignore[index]
    folder = tmp_path_factory.mktemp("broken")
    config = folder / "tikos-outbox.toml"
    config.write_text(tomlkit.dumps(doc), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), "check"])
    assert "Traceback" not in err.getvalue() + out.getvalue()
    if code == 2:  # rejected: one line naming the file and the key
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
        assert str(config) in err.getvalue() and f"'{section}." in err.getvalue()
    else:  # a value of another type that is still valid, e.g. 5.0 for 5
        assert out.getvalue().startswith("ok    config"), (out.getvalue(), err.getvalue())


def test_read_only_database_is_a_clear_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, watch={"baseline": False})
    assert site.cli("migrate") == 0
    url = f"sqlite:///file:{tmp_path / 'outbox.db'}?mode=ro&uri=true"
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('database = "outbox.db"', f'database = "{url}"'),
                           encoding="utf-8")
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(make_pdf(["x"]))
    assert site.cli("scan") in (1, 2)
    err = capsys.readouterr().err
    assert "readonly database" in err and "Traceback" not in err
    assert log_file_of(load_config(site.config)) == tmp_path / "tikos-outbox.log"  # not ./file:/…


def test_database_locked_longer_than_the_busy_timeout(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, watch={"baseline": False})
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace('key_file = "tikos-outbox.key"',
                                        'key_file = "tikos-outbox.key"\nbusy_timeout_s = 0.5'),
                           encoding="utf-8")
    assert site.cli("migrate") == 0
    (site.mandant_folder() / "RE_1_4711.pdf").write_bytes(make_pdf(["x"]))
    locker = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(tmp_path / 'outbox.db')!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        started = time.monotonic()
        assert site.cli("scan") in (1, 2)
        assert time.monotonic() - started < 20
        err = capsys.readouterr().err
        assert "database is locked" in err and "Traceback" not in err
    finally:
        locker.kill()
        locker.wait()
    assert site.cli("scan") == 0  # nothing lost: recorded once the lock is gone
    capsys.readouterr()
    assert site.cli("status", "--json") == 0
    assert '"pending": 1' in capsys.readouterr().out


def test_disk_full_while_storing_a_copy(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's own limit makes the database full for real (SQLITE_FULL)."""
    site = write_site(tmp_path, watch={"baseline": False, "settle_s": 0})
    folder = site.mandant_folder()
    with running(site) as svc:
        with svc.store.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        full = svc.store.engine
        from sqlalchemy import event

        @event.listens_for(full, "connect")
        def _small(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.execute(f"PRAGMA max_page_count = {int(pages or 0) + 8}")

        full.dispose()  # new connections get the limit
        with caplog.at_level("ERROR", logger="tikos_outbox"):
            (folder / "RE_1_4711.pdf").write_bytes(make_pdf(["big"], padding=200_000))
            wait_until(lambda: "database or disk is full" in caplog.text, timeout=20)
        assert "the disk that holds the outbox database is full; free space there" in caplog.text
        assert svc.store.queries.counts()["pending"] == 0
        event.remove(full, "connect", _small)
        full.dispose()  # space again
        wait_until(lambda: svc.store.queries.counts()["pending"] == 1, timeout=20)


def test_missing_key_file_and_wrong_key_name_the_file(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path, smtp={"auth": "password", "username": "u"}, password="pw")
    os.remove(tmp_path / "tikos-outbox.key")
    assert main(["--config", str(site.config), "check"]) == 1
    out = capsys.readouterr().out
    assert f"key file {tmp_path / 'tikos-outbox.key'} is missing" in out

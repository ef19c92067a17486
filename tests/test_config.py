"""Config: one clear error naming the key and the file, exit 2, nothing touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_site
from tikos_outbox.cli import main
from tikos_outbox.config import ConfigError, find_config_path, load_config


def test_valid_site_loads_with_relative_paths(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    cfg = load_config(site.config)
    assert cfg.outbox.database == f"sqlite:///{(tmp_path / 'outbox.db').as_posix()}"
    assert cfg.outbox.key_file == tmp_path / "tikos-outbox.key"
    assert cfg.mandants[0].folder == tmp_path / "archive" / "M1"
    assert cfg.window.tz.key == "Europe/Berlin"
    assert cfg.template("RE").subject == "Ihre Rechnung {docno}"
    assert cfg.template("XY").subject == "Ihr Dokument {docno}"  # the default template


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (("port = 25", "port = 'fünfundzwanzig'"), "smtp.port", "whole number"),
        (("port = 25", "port = 70000"), "smtp.port", "between 1 and 65535"),
        (("security = 'none'", "security = 'tls'"), "smtp.security", "one of none, starttls, ssl"),
        (("[smtp]", "[smtp]\nhots = 'x'"), "smtp.hots", "not a known key"),
        (("[sender]", "[sendr]"), "sendr", "not a known section"),
        (("address = 'rechnung@musterwaescherei.example'", "address = 'kein-at'"),
         "sender.address", "not a valid e-mail address"),
        (("settle_s = 0", "settle_s = -1"), "watch.settle_s", "between"),
        (("auth = 'anonymous'", "auth = 'password'\nusername = 'u'"), "smtp.password",
         "secret set"),
        (("auth = 'anonymous'", "auth = 'password'\nusername = 'u'\npassword = 'klartext'"),
         "smtp.password", "never the password itself"),
        (("id = 1", "id = 'eins'"), "mandant[0].id", "whole number"),
        (("pattern = ", "pattern = '(' #"), "mandant[0].pattern", "regular expression"),
    ],
)
def test_bad_key_names_key_and_file_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], key: str,
        words: str) -> None:
    site = write_site(tmp_path)
    text = site.config.read_text(encoding="utf-8")
    assert edit[0] in text
    site.config.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    assert site.cli("status") == 2
    err = capsys.readouterr().err
    assert f"key '{key}'" in err
    assert str(site.config) in err
    assert words in err
    assert "Traceback" not in err
    assert not (tmp_path / "outbox.db").exists()  # nothing touched


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "status"]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_invalid_toml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "tikos-outbox.toml"
    cfg.write_text("[smtp\nhost = ", encoding="utf-8")
    assert main(["--config", str(cfg), "list"]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_template_with_unknown_field_is_rejected(tmp_path: Path) -> None:
    site = write_site(tmp_path, extra="[templates.RE]\nsubject = 'Rechnung {rechnungsnr}'\n"
                                      "body = 'x'\n")
    with pytest.raises(ConfigError, match=r"templates.RE.subject.*unknown field \{rechnungsnr\}"):
        load_config(site.config)


def test_config_path_from_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_config_path(None, cwd=tmp_path) == tmp_path / "tikos-outbox.toml"
    monkeypatch.setenv("TIKOS_OUTBOX_CONFIG", str(tmp_path / "x.toml"))
    assert find_config_path(None) == tmp_path / "x.toml"
    assert find_config_path("y.toml") == Path("y.toml")


def test_env_config_is_used_by_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    site = write_site(tmp_path)
    monkeypatch.setenv("TIKOS_OUTBOX_CONFIG", str(site.config))
    assert main(["status", "--json"]) == 0
    assert '"counts"' in capsys.readouterr().out


def test_mandant_overrides_smtp_and_sender(tmp_path: Path) -> None:
    site = write_site(tmp_path, mandants=[
        {"id": 1}, {"id": 2}])
    text = site.config.read_text(encoding="utf-8")
    text += "\n[mandant.smtp]\nport = 2525\n[mandant.sender]\nname = 'Wäscherei Süd'\n"
    site.config.write_text(text, encoding="utf-8")
    cfg = load_config(site.config)
    assert cfg.mandants[0].smtp.port == 25
    assert cfg.mandants[1].smtp.port == 2525
    assert cfg.mandants[1].sender.name == "Wäscherei Süd"
    assert cfg.mandants[1].sender.address == cfg.sender.address


def test_overlapping_mandant_folders_are_accepted_without_a_word(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One folder for two mandants (told apart by pattern) or one folder inside
    another: accepted; which mandant a file belongs to is decided per file
    (core.naming.owner: the deepest matching folder, then the first mandant)."""
    import logging

    site = write_site(tmp_path, mandants=[
        {"id": 1, "folder": "archive/shared", "pattern": r"^RE_1_.*"},
        {"id": 2, "folder": "archive/shared", "pattern": r"^RE_2_.*"},
        {"id": 3, "folder": "archive/shared/filiale"}])
    with caplog.at_level(logging.DEBUG):
        cfg = load_config(site.config)
    shared = tmp_path / "archive" / "shared"
    assert [m.folder for m in cfg.mandants] == [shared, shared, shared / "filiale"]
    assert caplog.records == []

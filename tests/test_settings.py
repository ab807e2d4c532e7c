"""Settings from the environment, and from ``HOMEWARD_*_FILE`` files (Docker secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from pydantic import ValidationError

from alerts.channels import ChannelSettings
from homeward.settings import Settings
from server.broker_cli import password_from_environment


def test_a_secret_is_read_from_the_file_its_file_variable_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "secret_key"
    key.write_text("s3cret-from-a-file\n")  # as `echo ... > file` leaves it
    monkeypatch.setenv("HOMEWARD_SECRET_KEY_FILE", str(key))
    monkeypatch.setenv("HOMEWARD_ENV", "production")
    assert Settings().secret_key == "s3cret-from-a-file"


def test_the_channel_settings_read_files_too(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "smtp").write_text("mail-pass")
    monkeypatch.setenv("HOMEWARD_SMTP_PASSWORD_FILE", str(tmp_path / "smtp"))
    monkeypatch.setenv("HOMEWARD_SMTP_HOST", "mail.example")
    channels = ChannelSettings()
    assert (channels.smtp_password, channels.smtp_host) == ("mail-pass", "mail.example")


def test_a_setting_named_file_is_itself_not_read_as_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEWARD_MQTT_CA_FILE", str(tmp_path / "ca.crt"))  # not read
    assert Settings().mqtt_ca_file == tmp_path / "ca.crt"


@pytest.mark.parametrize(("env", "words"), [
    ({"HOMEWARD_SECRET_KEY": "k1", "HOMEWARD_SECRET_KEY_FILE": "{tmp}/key"},
     "both HOMEWARD_SECRET_KEY and HOMEWARD_SECRET_KEY_FILE are set"),
    ({"HOMEWARD_SECRET_KEY_FILE": "{tmp}/missing"},
     "HOMEWARD_SECRET_KEY_FILE: cannot read {tmp}/missing: No such file or directory"),
])
def test_a_file_variable_that_cannot_be_honoured_stops_the_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
        words: str) -> None:
    (tmp_path / "key").write_text("k2")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    with pytest.raises((ValueError, ValidationError), match=words.format(tmp=tmp_path)):
        Settings()


def test_a_placeholder_read_from_a_file_is_refused_in_production(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key").write_text("changeme\n")
    monkeypatch.setenv("HOMEWARD_SECRET_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("HOMEWARD_ENV", "production")
    with pytest.raises(ValidationError, match="HOMEWARD_SECRET_KEY is a placeholder"):
        Settings()


def test_the_broker_passwords_follow_the_same_file_rule(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("ingest-from-file\n")
    file_only = {"HOMEWARD_MQTT_INGEST_PASSWORD_FILE": str(tmp_path / "pw")}
    assert password_from_environment("homeward-ingest", file_only) == "ingest-from-file"
    with pytest.raises(typer.BadParameter, match="both HOMEWARD_MQTT_INGEST_PASSWORD and"):
        password_from_environment("homeward-ingest", {
            **file_only, "HOMEWARD_MQTT_INGEST_PASSWORD": "from-env"})
    with pytest.raises(typer.BadParameter, match="set HOMEWARD_MQTT_INGEST_PASSWORD"):
        password_from_environment("homeward-ingest", {})

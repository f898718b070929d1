"""Settings: defaults, the file `init` writes, and one clear line naming a bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mailcircle import config
from mailcircle.cli import main
from mailcircle.config import HostPort
from mailcircle.errors import ConfigError


def load_text(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "mailcircle.toml"
    path.write_text(text)
    return config.load(path)


def test_every_key_has_a_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = config.load()
    assert settings.database == tmp_path / "mailcircle.db"
    assert settings.inbound.smtp == HostPort("127.0.0.1", 8025)
    assert settings.inbound.lmtp is None
    assert settings.inbound.max_message_bytes == 26214400
    assert settings.outbound.relay is None
    assert settings.outbound.maildir == tmp_path / "outgoing"


def test_the_file_init_writes_loads_back_to_the_defaults(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "mailcircle.toml"
    target.parent.mkdir()
    result = CliRunner().invoke(main, ["init", str(target)])
    assert result.exit_code == 0, result.output
    settings = config.load(target)
    assert settings.database == target.parent / "mailcircle.db"  # relative to the file
    assert settings.inbound == config.InboundSettings()
    assert settings.outbound.relay is None and settings.outbound.starttls is False
    again = CliRunner().invoke(main, ["init", str(target)])
    assert again.exit_code == 1
    assert again.output == f"Error: {target} already exists; use --force to overwrite it\n"


def test_the_settings_file_is_found_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[inbound]\nsmtp = "127.0.0.1:2525"\n')
    monkeypatch.setenv(config.ENV_VAR, str(path))
    assert config.load().inbound.smtp == HostPort("127.0.0.1", 2525)


def test_relay_and_lmtp_are_read(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        '[inbound]\nlmtp = "[::1]:24"\n[outbound]\nrelay = "mail.example.org:587"\n'
        'starttls = true\nuser = "circle"\npassword_env = "RELAY_PW"\n',
    )
    assert settings.inbound.lmtp == HostPort("::1", 24)
    assert settings.outbound.relay == HostPort("mail.example.org", 587)
    assert settings.outbound.starttls is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[inbound]\nsmpt = "x"\n', "unknown setting inbound.smpt; did you mean inbound.smtp?"),
        (
            '[inbound]\ncolour = "x"\n',
            "unknown setting inbound.colour (known here: inbound.lmtp, "
            "inbound.max_message_bytes, inbound.max_recipients, "
            "inbound.sender_bytes_per_hour, inbound.smtp, inbound.trusted_authserv_ids)",
        ),
        ('databse = "x.db"\n', "unknown setting databse; did you mean database?"),
        (
            'colour = "blue"\n',
            "unknown setting colour (known here: database, imap, inbound, outbound, worker)",
        ),
        (
            '[inbound]\nsmtp = "localhost"\n',
            "setting inbound.smtp must be host:port like "
            "\"127.0.0.1:8025\" (port 1-65535), not 'localhost'",
        ),
        (
            '[inbound]\nsmtp = "127.0.0.1:70000"\n',
            "setting inbound.smtp must be host:port like "
            "\"127.0.0.1:8025\" (port 1-65535), not '127.0.0.1:70000'",
        ),
        (
            '[inbound]\nmax_message_bytes = "big"\n',
            "setting inbound.max_message_bytes must be a whole number, not 'big'",
        ),
        (
            "[inbound]\nmax_message_bytes = 10\n",
            "setting inbound.max_message_bytes must be at least 1024, not 10",
        ),
        (
            '[outbound]\nstarttls = "yes"\n',
            "setting outbound.starttls must be true or false, not 'yes'",
        ),
        (
            '[outbound]\npassword_env = "PW"\n',
            "setting outbound.password_env is set but outbound.user is empty",
        ),
        ("inbound = 3\n", "setting inbound must be a table ([inbound]), not 3"),
    ],
)
def test_a_bad_setting_is_one_sentence_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert str(err.value) == f"in {tmp_path / 'mailcircle.toml'}: {message}"  # which file, too


def test_serve_stops_at_start_up_on_a_bad_setting(tmp_path: Path) -> None:
    path = tmp_path / "mailcircle.toml"
    path.write_text("[outbound]\nrelay = 25\n")
    result = CliRunner().invoke(main, ["--config", str(path), "serve"])
    assert result.exit_code == 1
    assert result.output == (
        f'Error: in {path}: setting outbound.relay must be a string like "127.0.0.1:8025", not 25\n'
    )


def test_broken_toml_and_missing_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not valid TOML"):
        load_text(tmp_path, "database = \n")
    with pytest.raises(ConfigError, match=r"does not exist \(run `mailcircle init`"):
        config.load(tmp_path / "nope.toml")


def test_the_relay_password_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    out = config.OutboundSettings(user="circle", password_env="MC_TEST_PW")
    monkeypatch.delenv("MC_TEST_PW", raising=False)
    with pytest.raises(ConfigError, match="MC_TEST_PW, but it is not set"):
        out.password()
    monkeypatch.setenv("MC_TEST_PW", "s3cret")
    assert out.password() == "s3cret"

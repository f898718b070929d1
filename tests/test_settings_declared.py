"""Every setting is declared once; the checks, the sample file, `circle show` and README's
tables all come from that one declaration, and this keeps them so."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailcircle import config, setting
from mailcircle.circle import settings as circle_settings
from mailcircle.circle.settings import CircleSettings, check_together, parse_value
from mailcircle.cli import main
from mailcircle.errors import ConfigError

README = Path(__file__).parents[1] / "README.md"


def test_readme_tables_are_the_declarations() -> None:
    readme = README.read_text(encoding="utf-8")
    assert setting.between(readme, "circle") == setting.markdown_table(circle_settings.DECLARED), (
        "README's circle settings differ from circle/settings.py: "
        "run python scripts/settings-readme.py"
    )
    assert setting.between(readme, "file") == setting.file_tables(
        config.DECLARED, config.TABLE_NOTES
    ), "README's settings file tables differ from config.py: run python scripts/settings-readme.py"


def test_the_readme_script_writes_what_the_test_expects(tmp_path: Path) -> None:
    import runpy

    script = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "settings-readme.py"))
    readme = README.read_text(encoding="utf-8")
    for marker, body in script["sections"]().items():
        assert setting.between(readme, marker) == body
    assert setting.put_between(
        "a\n<!-- settings:x -->\nold\n<!-- /settings -->\nb", "x", "new\n"
    ) == ("a\n<!-- settings:x -->\nnew\n<!-- /settings -->\nb")


def test_every_field_is_a_declared_setting() -> None:
    for name, cls in config.TABLES.items():
        assert [f.name for f in dataclasses.fields(cls)] == [
            s.name for s in setting.declared(cls, name)
        ]
    assert [s.name for s in setting.declared(config.Settings, "")] == ["database"]
    assert [f.name for f in dataclasses.fields(CircleSettings)] == list(circle_settings.HELP)
    for s in (*config.DECLARED, *circle_settings.DECLARED):
        assert s.meaning and s.meaning == s.meaning.strip() and "\n" not in s.meaning, s.key


def test_the_sample_file_loads_back_to_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mailcircle.toml"
    path.write_text(config.sample_file(), encoding="utf-8")
    loaded = config.load(path)
    assert dataclasses.replace(loaded, source=None) == config.from_dict({}, tmp_path)
    assert loaded.inbound == config.InboundSettings()
    assert loaded.imap == config.ImapSettings()
    assert loaded.worker == config.WorkerSettings()
    assert loaded.outbound == dataclasses.replace(
        config.OutboundSettings(), maildir=tmp_path / "outgoing"
    )
    assert loaded.database == tmp_path / "mailcircle.db"
    for s in config.DECLARED:  # each key once, after its meaning
        assert f"\n{s.toml()}\n" in config.sample_file()


def test_init_writes_the_sample_file(tmp_path: Path) -> None:
    target = tmp_path / "mailcircle.toml"
    assert CliRunner().invoke(main, ["init", str(target)]).exit_code == 0
    assert target.read_text(encoding="utf-8") == config.sample_file()


def test_every_circle_default_passes_its_own_checks() -> None:
    defaults = CircleSettings()
    for s in circle_settings.DECLARED:
        assert parse_value(s.name, str(s.default)) == s.default == getattr(defaults, s.name)
    check_together(defaults)


def load(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "mailcircle.toml"
    path.write_text(text)
    return config.load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[imap]\nport = "abc"\n',
            "setting imap.port must be a whole number from 1 to 65535, not 'abc'",
        ),
        (
            '[imap]\nport = "993"\n',  # declared a number: a string of digits is not one
            "setting imap.port must be a whole number from 1 to 65535, not '993'",
        ),
        ("[imap]\nport = 0\n", "setting imap.port must be a whole number from 1 to 65535, not 0"),
        (
            '[imap]\nsecurity = "ssl"\n',
            'setting imap.security must be "tls", "starttls" or "none", not \'ssl\'',
        ),
        ("[imap]\npoll_seconds = 0\n", "setting imap.poll_seconds must be at least 1, not 0"),
        ('[imap]\nfolder = ""\n', "setting imap.folder must not be empty"),
        (
            "[worker]\nmail_memory_mb = 8\n",
            "setting worker.mail_memory_mb must be at least 64, not 8",
        ),
        ('database = "  "\n', "setting database must not be empty"),
        (
            '[inbound]\ntrusted_authserv_ids = "mx"\n',
            'setting inbound.trusted_authserv_ids must be a list of names like ["mx.example.org"], '
            "not 'mx'",
        ),
        (
            "[inbound]\nmax_message_bytes = 2048\nsender_bytes_per_hour = 1500\n",
            "setting inbound.sender_bytes_per_hour must be at least 2048, not 1500",
        ),
        (
            '[outbound]\nhelo_name = "my host"\n',
            "setting outbound.helo_name must be a host name, not 'my host'",
        ),
        (
            '[inbound]\nsmtp = "127.0.0.1:2525"\nlmtp = "127.0.0.1:2525"\n',
            "settings inbound.smtp and inbound.lmtp both use 127.0.0.1:2525",
        ),
        ('[imap]\nhost = "imap.example.org"\n', "setting imap.host is set but imap.user is empty"),
    ],
)
def test_a_bad_value_says_the_key_and_what_it_expects(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value) == f"in {tmp_path / 'mailcircle.toml'}: {message}"  # which file, too


def test_values_are_read_by_their_declared_kind(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        '[inbound]\ntrusted_authserv_ids = [" MX.Example.org "]\n'
        '[outbound]\nhelo_name = " mail.example.org "\nca_file = "ca.pem"\n'
        '[imap]\nsecurity = "STARTTLS"\nport = 143\n',
    )
    assert loaded.inbound.trusted_authserv_ids == ("mx.example.org",)
    assert loaded.outbound.helo_name == "mail.example.org"
    assert loaded.outbound.ca_file == tmp_path / "ca.pem"
    assert (loaded.imap.security, loaded.imap.port) == ("starttls", 143)
    assert loaded.imap.ca_file is None


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("max_word", "9000", "unknown circle setting 'max_word'; did you mean max_words?"),
        ("critique_days", "-1", "critique_days must be at least 1, not -1"),
        ("max_words", "8,000", "max_words must be a whole number, not '8,000'"),
        (
            "round_day",
            "someday",
            "round_day must be monday, tuesday, wednesday, thursday, friday, saturday or sunday, "
            "not 'someday'",
        ),
        ("round_time", "nine", "round_time must look like 09:00, not 'nine'"),
        ("sender_check", "trust", "sender_check must be verify or accept, not 'trust'"),
        ("address_separator", ".", "address_separator must be + or -, not '.'"),
        ("talk_reply_to", "all", "talk_reply_to must be list or author, not 'all'"),
        ("templates_dir", "/no/such/folder", "templates_dir '/no/such/folder' is not a folder"),
    ],
)
def test_a_bad_circle_value_says_the_key_and_what_it_expects(
    key: str, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_value(key, text)
    assert str(err.value) == message


def test_circle_values_are_read_by_their_declared_kind() -> None:
    assert parse_value("remind_days", " 0 ") == 0
    assert parse_value("digest_day", "Sunday") == "sunday"
    assert parse_value("sender_check", "ACCEPT") == "accept"
    assert parse_value("timezone", " Europe/Paris ") == "Europe/Paris"
    assert parse_value("talk_subject_tag", "") == ""


def test_circle_show_prints_every_declared_meaning(tmp_path: Path) -> None:
    path = tmp_path / "mailcircle.toml"
    path.write_text('database = "circle.db"\n')

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(path), *args])
        assert result.exit_code == 0, result.output
        return result.output

    run("circle", "create", "poets@example.org", "--name", "Poets")
    run("circle", "set", "poets@example.org", "max_words", "9000")
    lines = run("circle", "show", "poets@example.org").splitlines()
    for s in circle_settings.DECLARED:
        [line] = [line for line in lines if line[2:].startswith(s.name + " ")]
        assert line.endswith(s.meaning), line
    [changed] = [line for line in lines if line.startswith("* ")]
    assert changed.split()[1:3] == ["max_words", "9000"]

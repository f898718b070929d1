"""Every template has a documented context dataclass, uses exactly its fields, and renders."""

from __future__ import annotations

import dataclasses

import jinja2
import jinja2.meta
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcircle.outbound.compose import CONTEXTS, Composer, default_templates_dir, sample_context


def sample(context_type: type) -> object:
    name = next(n for n, kind in CONTEXTS.items() if kind is context_type)
    return sample_context(name)


def test_every_template_file_has_a_context() -> None:
    names = {path.stem for path in default_templates_dir().glob("*.txt")}
    assert names == set(CONTEXTS)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_a_template_uses_exactly_its_contexts_fields(name: str) -> None:
    context_type = CONTEXTS[name]
    assert context_type.__doc__ and context_type.__doc__.startswith(f"{name}.txt:")
    source = (default_templates_dir() / f"{name}.txt").read_text()
    used = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(source))
    assert used == {f.name for f in dataclasses.fields(context_type)}


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_a_template_renders_a_subject_and_a_body(clock, name: str) -> None:
    subject, body = Composer(clock).render(name, sample(CONTEXTS[name]))
    assert subject and "\n" not in subject and "{{" not in subject
    assert body.strip() and "{{" not in body and "{%" not in body


def test_a_context_of_the_wrong_kind_is_refused(clock) -> None:
    with pytest.raises(Exception, match="template submission_ack needs"):
        Composer(clock).render("submission_ack", sample(CONTEXTS["not_a_member"]))


def test_a_circle_can_replace_a_template_with_its_own(db, clock, poets, tmp_path) -> None:
    from click.testing import CliRunner

    from mailcircle.circle import circles
    from mailcircle.cli import main

    own = tmp_path / "poets-templates"
    own.mkdir()
    (own / "welcome.txt").write_text(
        "Subject: Bienvenue, {{ member_name }}\n\nBienvenue dans {{ circle_name }} !\n"
    )
    circle = circles.set_setting(db, poets, "templates_dir", str(own))
    composer = Composer(clock)
    welcome = sample_context("welcome")
    assert composer.render("welcome", welcome, circle) == (
        "Bienvenue, <member_name>",
        "Bienvenue dans <circle_name> !\n",
    )
    assert composer.render("welcome", welcome)[0] == "Welcome to <circle_name>"  # others: built-in
    assert composer.render("reminder", sample_context("reminder"), circle)[0].startswith("Reminder")

    config = tmp_path / "mc.toml"
    config.write_text(f'database = "{db.conn.execute("PRAGMA database_list").fetchone()[2]}"\n')
    listing = CliRunner().invoke(
        main, ["--config", str(config), "templates", "list", "--circle", "poets@example.org"]
    )
    assert "* welcome" in listing.output and "  reminder" in listing.output
    preview = CliRunner().invoke(
        main,
        [
            "--config",
            str(config),
            "templates",
            "preview",
            "welcome",
            "--circle",
            "poets@example.org",
        ],
    )
    assert "Subject: Bienvenue, <member_name>" in preview.output
    assert "Bienvenue dans <circle_name> !" in preview.output
    missing = CliRunner().invoke(main, ["--config", str(config), "templates", "preview", "nope"])
    assert (
        missing.output == "Error: there is no template 'nope' (see `mailcircle templates list`)\n"
    )


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), max_size=3000))
@settings(max_examples=300, deadline=None)
def test_text_parts_are_exactly_what_mimetext_makes(text: str) -> None:
    """compose writes text parts directly; the bytes must be those of email's MIMEText."""
    from email.charset import QP, Charset
    from email.mime.text import MIMEText

    from mailcircle.outbound.compose import _text_part

    for subtype in ("plain", "html"):
        if text.isascii() and all(len(line) < 990 for line in text.split("\n")):
            expected = MIMEText(text, subtype, "us-ascii")
        else:
            charset = Charset("utf-8")
            charset.body_encoding = QP
            expected = MIMEText(text, subtype, charset)  # type: ignore[arg-type]
        assert _text_part(text, subtype).as_bytes() == expected.as_bytes()

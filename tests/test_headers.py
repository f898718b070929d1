"""The headers every mail carries, checked over every template with a non-ASCII circle name
and subject, on the bytes the outbox hands to the relay: RFC 2047 encoded words within 75
characters, header lines within 78, a List-Id valid for any name, the "-- " footer, and
List-Unsubscribe-Post only with an HTTPS unsubscribe URL."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from email.header import decode_header, make_header

import pytest

from mailcircle.circle import circles
from mailcircle.outbound import outbox
from mailcircle.outbound.compose import CONTEXTS, Composer, clean, list_id, sample_context

NAME = "Poètes d'Île-de-France — « cercle » 詩の会"
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
LIST_ID = re.compile(r'\A(?:"[ !#-\[\]-~]*" )?<[A-Za-z0-9!#$%&\'*+/=?^_`{|}~.-]+>\Z')


def non_ascii(context: object) -> object:
    """The template's sample context with every text field long and non-ASCII."""
    values = {
        field.name: f"Ünïcödé {field.name} — « très longue » 詩 " * 2
        for field in dataclasses.fields(context)  # type: ignore[arg-type]
        if isinstance(getattr(context, field.name), str)
    }
    return dataclasses.replace(context, **values)  # type: ignore[type-var]


@pytest.fixture
def circle(db, clock):
    return circles.create(db, clock, "poets@example.org", NAME)


def wire(message: email.message.Message) -> bytes:
    return message.as_bytes(policy=outbox.WIRE)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_template_has_standard_headers(clock, circle, name: str) -> None:
    composer = Composer(clock)
    context = non_ascii(sample_context(name))
    subject, _ = composer.render(name, context, circle)
    raw = wire(composer.compose(circle, name, context, to="ann@example.net", on_behalf_of="Zoë"))

    head, _, _ = raw.partition(b"\r\n\r\n")
    assert head.isascii()
    assert [line for line in head.split(b"\r\n") if len(line) > 78] == []
    words = ENCODED_WORD.findall(head)
    assert len(words) >= (1 if subject.isascii() else 3)  # From:'s name, and the subject
    assert [w for w in words if len(w) > 75] == []

    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == clean(subject)  # decodes back to exactly what was written
    # RFC 2047 §6.2: space between adjacent encoded words is dropped (the legacy decoder
    # does; the modern address parser keeps it, a known difference of Python's).
    legacy = email.message_from_bytes(raw, policy=email.policy.compat32)
    sender = str(make_header(decode_header(str(legacy["From"]))))
    assert sender == f"Zoë via {NAME} <poets@example.org>"
    assert "=?" not in message["List-Id"] and LIST_ID.match(message["List-Id"])
    assert message["List-Id"] == '"Poetes d\'Ile-de-France cercle" <poets.example.org>'
    assert message["List-Unsubscribe"] == "<mailto:poets+leave@example.org?subject=unsubscribe>"
    assert "List-Unsubscribe-Post" not in message
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    assert "\n-- \n" in text.get_content().replace("\r\n", "\n")  # the standard separator


def test_most_templates_carry_the_title_or_name_in_their_subject(clock, circle) -> None:
    composer = Composer(clock)
    subjects = [composer.render(n, non_ascii(sample_context(n)), circle)[0] for n in CONTEXTS]
    assert sum(not s.isascii() for s in subjects) > len(subjects) // 2  # the check above bites


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Poets", '"Poets" <poets.example.org>'),
        ('The "Quoted" \\ Circle', '"The Quoted Circle" <poets.example.org>'),
        ("詩の会", "<poets.example.org>"),  # nothing ASCII left: no phrase at all
        ("Ærø  Ñ", '"r N" <poets.example.org>'),
    ],
)
def test_list_id_is_valid_for_any_circle_name(name: str, expected: str) -> None:
    value = list_id(name, "poets.example.org")
    assert value == expected and LIST_ID.match(value)


def test_one_click_unsubscribe_only_with_an_https_url(db, clock, circle) -> None:
    from mailcircle.errors import MailcircleError

    with pytest.raises(MailcircleError, match="unsubscribe_url must be an https:// URL"):
        circles.set_setting(db, circle, "unsubscribe_url", "http://lists.example.org/u")
    circle = circles.set_setting(
        db, circle, "unsubscribe_url", "https://lists.example.org/unsubscribe?who={address}"
    )
    composer = Composer(clock)
    message = email.message_from_bytes(
        wire(composer.compose(circle, "help", sample_context("help"), to="ann+x@example.net")),
        policy=email.policy.default,
    )
    assert message["List-Unsubscribe"].strip() == (  # folded: it is long
        "<https://lists.example.org/unsubscribe?who=ann%2Bx%40example.net>, "
        "<mailto:poets+leave@example.org?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

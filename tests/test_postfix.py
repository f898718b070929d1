"""mailcircle behind a real Postfix, configured from deploy/postfix-main.cf.example.

Postfix already delivers its users' domain (members.example.net) to maildirs; the example's
lines add the circles' domain. A draft goes Postfix -> LMTP -> `mailcircle serve` -> relay
(the same Postfix) -> the member's maildir; an unknown circle address is refused with 550 in
the SMTP dialogue, even from a local client, and a circle created a moment later is accepted.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Serve, draft
from postfix import CIRCLE_DOMAIN, MEMBER_DOMAIN, Postfix, example_lines, free_port

CIRCLE = f"poets@{CIRCLE_DOMAIN}"
ANN = f"ann@{MEMBER_DOMAIN}"


@dataclass
class Chain:
    postfix: Postfix
    serve: Serve


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    lmtp_port = free_port()
    postfix = Postfix(lmtp_port, members=("ann", "ben"))
    folder: Path = tmp_path_factory.mktemp("postfix-chain")
    config = folder / "mailcircle.toml"
    config.write_text(
        'database = "circle.db"\n'
        f'[inbound]\nsmtp = ""\nlmtp = "127.0.0.1:{lmtp_port}"\n'
        f'[outbound]\nrelay = "127.0.0.1:{postfix.port}"\n'
    )
    serve = Serve(config)
    serve.cli("circle", "create", CIRCLE, "--name", "Poets")
    # Nothing here signs mail (no DKIM in the test): believe From:, as conftest's circles do.
    serve.cli("circle", "set", CIRCLE, "sender_check", "accept")
    serve.cli("members", "add", CIRCLE, ANN, "--name", "Ann")
    serve.cli("members", "add", CIRCLE, f"ben@{MEMBER_DOMAIN}", "--name", "Ben")
    postfix.start()
    try:
        serve.start(lmtp_port)
        yield Chain(postfix, serve)
    finally:
        serve.stop()
        postfix.cleanup()


def test_the_instance_runs_the_example_exactly(chain: Chain) -> None:
    main_cf = (chain.postfix.config / "main.cf").read_text()
    assert main_cf.endswith(example_lines(chain.postfix.lmtp_port))
    assert f"lmtp:inet:127.0.0.1:{chain.postfix.lmtp_port}" in main_cf


def test_a_draft_goes_through_postfix_and_the_ack_reaches_the_members_maildir(
    chain: Chain,
) -> None:
    raw = draft(sender=f"Ann <{ANN}>", to=CIRCLE, message_id="<pf-1@members.example.net>")
    with smtplib.SMTP("127.0.0.1", chain.postfix.port, timeout=30) as client:
        assert client.sendmail(ANN, [CIRCLE], raw) == {}
    [delivered] = chain.postfix.wait_for_mail("ann")
    ack = email.message_from_bytes(delivered, policy=email.policy.default)
    assert ack["Subject"] == "Queued for the next round: The Red Wheelbarrow"
    assert ack["In-Reply-To"] == "<pf-1@members.example.net>"
    assert ack["From"] == f"Poets <{CIRCLE}>"
    assert ack["Delivered-To"] == ANN
    # The envelope sender is the circle's VERP address, so a bounce names Ann.
    assert ack["Return-Path"].startswith("<poets+bounce-") and CIRCLE_DOMAIN in ack["Return-Path"]
    # mailcircle greeted the relay with the circle's domain, not a bare host name.
    assert f"from {CIRCLE_DOMAIN} (" in ack["Received"]
    listing = chain.serve.cli("outbox", "list", "--status", "sent")
    assert ANN in listing


def test_an_unknown_circle_gets_550_and_a_new_circle_is_accepted_at_once(chain: Chain) -> None:
    prose = f"prose@{CIRCLE_DOMAIN}"
    # The test's client is on 127.0.0.1, inside mynetworks: the check still applies.
    with smtplib.SMTP("127.0.0.1", chain.postfix.port, timeout=30) as client:
        client.ehlo("client.example.net")
        assert client.mail(ANN)[0] == 250
        code, reply = client.rcpt(prose)
        assert code == 550, reply
        assert b"no such circle address here" in reply
        client.rset()

    chain.serve.cli("circle", "create", prose, "--name", "Prose")
    # Postfix remembers the refusal for a few seconds (address_verify_negative_expire_time):
    # within a generous bound, and after few tries, the new circle is accepted.
    tries, deadline = 0, time.monotonic() + 20
    while True:
        tries += 1
        with smtplib.SMTP("127.0.0.1", chain.postfix.port, timeout=30) as client:
            client.ehlo("client.example.net")
            assert client.mail(ANN)[0] == 250
            code, reply = client.rcpt(prose)
            if code == 250:
                assert client.rcpt(f"prose+help@{CIRCLE_DOMAIN}")[0] == 250
                break
            assert code == 550, reply  # never a 450 that would leave senders retrying
        assert time.monotonic() < deadline, f"prose@ still refused after {tries} tries"
        time.sleep(0.5)


def test_after_postfix_reload_the_kept_connection_is_not_believed(chain: Chain) -> None:
    """The issue's case: mail to a mailbox added by `postfix reload` went out over the
    connection kept from before, whose smtpd still had the old table and said 550. mailcircle
    tries a fresh connection before believing it: the member gets their mail, no bounce."""
    carol = f"carol@{MEMBER_DOMAIN}"
    chain.serve.cli("members", "add", CIRCLE, carol, "--name", "Carol")
    had = len(chain.postfix.maildir_files("ann"))
    ask_for_help(chain, ANN)
    chain.postfix.wait_for_mail("ann", had + 1)  # the sender's connection is open now...
    chain.postfix.add_mailbox("carol")  # ...and outlives this reload
    ask_for_help(chain, carol)
    [answer] = chain.postfix.wait_for_mail("carol")
    assert b"help" in answer.lower()
    # The kept connection's smtpd refused Carol with its old table; the fresh one took her.
    assert f"<{carol}>: Recipient address rejected: User unknown" in chain.postfix.log()
    assert bounces(chain, carol) == 0
    assert carol not in chain.serve.cli("outbox", "list", "--status", "failed")


def test_a_members_address_the_relay_refuses_is_a_bounce(chain: Chain) -> None:
    dave = f"dave@{MEMBER_DOMAIN}"  # a member whose mailbox Postfix does not know
    chain.serve.cli("members", "add", CIRCLE, dave, "--name", "Dave")
    ask_for_help(chain, dave)
    deadline = time.monotonic() + 30
    while bounces(chain, dave) == 0:
        assert time.monotonic() < deadline, chain.serve.cli("outbox", "list")
        time.sleep(0.2)
    failed = chain.serve.cli("outbox", "list", "--status", "failed")
    assert dave in failed and "550 5.1.1" in failed


def ask_for_help(chain: Chain, sender: str) -> None:
    to = f"poets+help@{CIRCLE_DOMAIN}"
    raw = draft(sender=sender, to=to, subject="help", message_id=None)
    with smtplib.SMTP("127.0.0.1", chain.postfix.port, timeout=30) as client:
        assert client.sendmail(sender, [to], raw) == {}


def bounces(chain: Chain, email_address: str) -> int:
    with sqlite3.connect(chain.serve.config.parent / "circle.db") as conn:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM bounces JOIN members ON members.id = bounces.member_id"
            " WHERE members.email = ?",
            [email_address],
        ).fetchone()
    return int(count)

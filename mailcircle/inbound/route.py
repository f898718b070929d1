"""Deciding what an inbound mail is: pure functions of the mail and its envelope."""

from __future__ import annotations

from dataclasses import dataclass

from mailcircle import addresses
from mailcircle.mail import Mail

DRAFT = "draft"
COMMAND = "command"
BOUNCE = "bounce"

_ROBOT_LOCAL_PARTS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply")


@dataclass(frozen=True)
class Route:
    kind: str  # draft, command, bounce
    action: str = ""
    token: str = ""


def route(rcpt_to: str, mail_from: str, separator: str = "+") -> Route:
    """What the recipient address says the mail is for."""
    parsed = addresses.parse(rcpt_to, separator)
    if parsed is None:
        raise ValueError(f"not an address: {rcpt_to!r}")
    if parsed.action == addresses.BOUNCE or not mail_from:
        return Route(BOUNCE, token=parsed.token)
    if parsed.action:
        return Route(COMMAND, action=parsed.action, token=parsed.token)
    return Route(DRAFT)


def automatic_reason(mail: Mail | None, mail_from: str) -> str:
    """Why nothing must answer this mail ('' when a human can be answered): RFC 3834 and kin.

    Answering bounces, auto-replies or list traffic causes loops and backscatter.
    """
    if not mail_from:
        return "it has an empty envelope sender (a bounce or notification)"
    if mail is None:
        return ""
    auto = mail.header("auto-submitted").lower()
    if auto and auto != "no":
        return f"it says Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if mail.header(name):
            return f"it carries {name}, so it is an automatic answer"
    precedence = mail.header("precedence").lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"it says Precedence: {precedence}"
    if mail.header("list-id") or mail.header("list-unsubscribe"):
        return "it came through a mailing list"
    local = (mail.from_addr or mail_from).partition("@")[0].lower()
    if local in _ROBOT_LOCAL_PARTS or mail_from.lower().startswith("mailer-daemon@"):
        return f"it is from {mail.from_addr or mail_from}, which is a robot"
    return ""

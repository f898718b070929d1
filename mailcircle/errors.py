"""One hierarchy for every error mailcircle raises on purpose.

Library errors (sqlite3, smtplib, tomllib) are translated into these at the boundary
where they happen, so the command line can print one ``Error: ...`` line and the
worker can record one sentence a moderator understands.
"""

from __future__ import annotations

from collections.abc import Callable


class MailcircleError(Exception):
    """Base of every error mailcircle raises on purpose. ``str(err)`` is a sentence for humans."""


class ConfigError(MailcircleError):
    """A setting is missing, misspelt or has a value that cannot work."""


class NotFound(MailcircleError):
    """A circle, member, spooled message or outgoing mail that was asked for does not exist."""


class AlreadyExists(MailcircleError):
    """Creating something that is already there (a circle address, a member)."""


class DeliveryError(MailcircleError):
    """Sending an outgoing mail failed. ``permanent`` says whether trying again can help;
    ``code`` is the relay's reply code, 0 when there was no answer (no connection)."""

    def __init__(self, message: str, *, permanent: bool, code: int = 0) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class RecipientRefused(DeliveryError):
    """The relay refused the recipient's address at RCPT; ``status`` is its enhanced status
    code (e.g. 5.1.1), or the reply code when it gave none."""

    def __init__(self, message: str, *, permanent: bool, code: int, status: str) -> None:
        super().__init__(message, permanent=permanent, code=code)
        self.status = status


class Changed(MailcircleError):
    """What a mail acts on changed between reading it and writing (another process wrote
    first): nothing was written, and the mail is read again shortly."""


# --- Outcomes of processing one inbound mail --------------------------------------------
# A pipeline step stops a mail by raising one of these; the worker records the status and
# the reason on the spooled message (Mailman's Hold/Reject/Discard, by other names).


class Outcome(MailcircleError):
    """Processing stopped on purpose. ``status`` is recorded on the spooled message."""

    status = "done"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        # What must still happen although the step's own changes are rolled back (e.g.
        # remembering that a stranger was told, asking a member to confirm): run by the
        # worker inside the transaction that records the outcome; each returns a clause
        # for the outcome sentence ('' for none).
        self.effects: list[Callable[[], str]] = []

    def then(self, effect: Callable[[], str]) -> Outcome:
        self.effects.append(effect)
        return self


class Hold(Outcome):
    """Keep the mail for a moderator to look at; nothing is answered yet."""

    status = "held"


class Refuse(Outcome):
    """Do not act on the mail and tell the sender why, with the named template."""

    status = "refused"

    def __init__(self, reason: str, *, template: str, context: object = None) -> None:
        super().__init__(reason)
        self.template = template
        self.context = context  # the template's context dataclass


class Ignore(Outcome):
    """Nothing to do and nobody to answer (auto-replies, duplicates); the mail is kept."""

    status = "ignored"


class Unhandled(Outcome):
    """A kind of mail this version does not act on yet; kept for when it does."""

    status = "unhandled"


class Duplicate(Outcome):
    """The same mail was already dealt with (an MTA retry, an IMAP re-fetch): nothing again."""

    status = "duplicate"

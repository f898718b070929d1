"""The address scheme: ``circle[+action[-token]]@domain``.

``poets@example.org`` takes drafts; ``poets+help@example.org`` is a command;
``poets+c-TOKEN@example.org`` and friends carry a token for one member and one purpose;
``poets+talk@example.org`` is the circle's discussion (a post goes to every member).
Any ``+suffix`` of a circle's address belongs to that circle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import getaddresses

# The actions whose address carries a token.
CRITIQUE = "c"  # poets+c-TOKEN@: the Reply-To of an assignment
REPLY = "r"  # poets+r-TOKEN@: the Reply-To of a delivered critique
BOUNCE = "bounce"  # poets+bounce@: the envelope sender of everything the circle sends
NOTE = "note"  # poets+note@: the Reply-To of acknowledgements, receipts and answers
CONFIRM = "confirm"  # poets+confirm-TOKEN@: joining, leaving, or a held mail's release
# poets+talk@: a post to every member. poets+talk-each@, -digest@, -off@, -self@, -noself@
# are each member's reading choices (the token is the choice, not a secret).
TALK = "talk"


@dataclass(frozen=True)
class Address:
    base: str  # the circle's own address, lower case: poets@example.org
    action: str  # '' for the bare address, else the word after '+': help, c, bounce ...
    token: str  # what follows 'action-', '' if nothing

    @property
    def domain(self) -> str:
        return self.base.rpartition("@")[2]


def normalize(address: str) -> str:
    """Lower-case an address and strip angle brackets and blanks around it."""
    return address.strip().strip("<>").strip().lower()


def parse(address: str, separator: str = "+") -> Address | None:
    """Split an address into circle, action and token; None when it is not an address.

    ``+`` always separates; ``-`` does too for a circle whose separator setting is ``-``.
    """
    address = normalize(address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in address:
        return None
    used = "+" if "+" in local else separator
    name, _, suffix = local.partition(used)
    if not name:
        return None
    action, _, token = suffix.partition("-")
    return Address(base=f"{name}@{domain}", action=action, token=token)


def candidates(address: str) -> list[tuple[str, str]]:
    """The circle addresses an address may belong to, with the separator each would use:
    the address itself, its part before a ``+``, then its parts before each ``-``."""
    address = normalize(address)
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return []
    found = [(address, "")]
    if "+" in local:
        found.append((f"{local.partition('+')[0]}@{domain}", "+"))
    pieces = local.split("-")
    for end in range(len(pieces) - 1, 0, -1):
        found.append((f"{'-'.join(pieces[:end])}@{domain}", "-"))
    return found


def with_action(circle_address: str, action: str, token: str = "", separator: str = "+") -> str:
    """The circle's address for an action: poets+help@example.org, poets+c-TOKEN@example.org."""
    local, _, domain = circle_address.partition("@")
    suffix = f"{action}-{token}" if token else action
    return f"{local}{separator}{suffix}@{domain}"


_ANGLE_ADDR = re.compile(r"<\s*([^<>\s@]+@[^<>\s@]+)\s*>")


def from_header(value: str) -> tuple[str, str]:
    """(display name as written, lower-case address) of a From: header, read as mail
    clients and DMARC read it: the address in angle brackets when there is one, never one
    that only looks like an address in the display name (``ben@example.net <eve@...>``
    and ``=?utf-8?q?ben=40example.net?= <eve@...>`` are both eve's)."""
    value = value.replace("\r", " ").replace("\n", " ")
    angle = _ANGLE_ADDR.search(value)
    if angle:
        return value[: angle.start()].strip().strip('"'), normalize(angle.group(1))
    return first_address(value)


def first_address(header_value: str) -> tuple[str, str]:
    """(display name, lower-case address) of the first address in a header, ('', '') if none."""
    for name, addr in getaddresses([header_value]):
        if "@" in addr:
            return name.strip(), normalize(addr)
    return "", ""

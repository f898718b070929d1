"""The address scheme: ``circle[+action[-token]]@domain``.

``poets@example.org`` takes drafts; ``poets+help@example.org`` is a command;
``poets+c-TOKEN@example.org`` and friends carry a token for one member and one purpose.
Any ``+suffix`` of a circle's address belongs to that circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import getaddresses

SEPARATOR = "+"

# The actions whose address carries a token.
CRITIQUE = "c"  # poets+c-TOKEN@: the Reply-To of an assignment
REPLY = "r"  # poets+r-TOKEN@: the Reply-To of a delivered critique
BOUNCE = "bounce"  # poets+bounce@: the envelope sender of everything the circle sends


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


def parse(address: str) -> Address | None:
    """Split an address into circle, action and token; None when it is not an address."""
    address = normalize(address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in address:
        return None
    name, _, suffix = local.partition(SEPARATOR)
    if not name:
        return None
    action, _, token = suffix.partition("-")
    return Address(base=f"{name}@{domain}", action=action, token=token)


def with_action(circle_address: str, action: str, token: str = "") -> str:
    """The circle's address for an action: poets+help@example.org, poets+c-TOKEN@example.org."""
    local, _, domain = circle_address.partition("@")
    suffix = f"{action}-{token}" if token else action
    return f"{local}{SEPARATOR}{suffix}@{domain}"


def first_address(header_value: str) -> tuple[str, str]:
    """(display name, lower-case address) of the first address in a header, ('', '') if none."""
    for name, addr in getaddresses([header_value]):
        if "@" in addr:
            return name.strip(), normalize(addr)
    return "", ""

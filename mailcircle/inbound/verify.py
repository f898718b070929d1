"""Who really sent a mail: an aligned DKIM signature, or a trusted Authentication-Results.

A From: header proves nothing on its own. A mail's author is *verified* when either

- a DKIM signature on it verifies (checked here, with dkimpy) and its signing domain is
  aligned with the From: address's domain (the same domain, or one is a subdomain of the
  other: DMARC's relaxed alignment), or
- an ``Authentication-Results`` header (RFC 8601) written by a receiving server whose
  authserv-id the operator lists in ``[inbound] trusted_authserv_ids`` says ``dmarc=pass``
  for the From: domain, or ``dkim=pass`` for an aligned domain. Headers from any other
  authserv-id are ignored: anyone can write one.

DNS lookups go through ``dns_txt`` (a constructor argument), so tests give their own keys
and production uses dnspython with a short timeout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

DnsTxt = Callable[..., bytes | None]  # (name: bytes, timeout=...) -> the TXT record or None
DNS_TIMEOUT_SECONDS = 3.0
MAX_SIGNATURES = 5  # more DKIM signatures than this are not all tried (a cost bound)


@dataclass(frozen=True)
class Verdict:
    verified: bool
    how: str  # "DKIM signature of example.net", "dmarc=pass from mx.example.org", or why not

    def __bool__(self) -> bool:
        return self.verified


def aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment, without a public-suffix list: the same domain, or one is a
    subdomain of the other (and the shorter one is not a bare top-level domain)."""
    a, b = signing_domain.lower().strip("."), from_domain.lower().strip(".")
    if not a or not b:
        return False
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    return "." in shorter and longer.endswith("." + shorter)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


# --- Authentication-Results (RFC 8601) ------------------------------------------------

_COMMENT = re.compile(r"\([^()]*\)")  # one level; applied until none is left (bounded below)
_RESULT = re.compile(r"^\s*([a-z0-9_.-]+)\s*=\s*([a-z]+)\b(.*)$", re.IGNORECASE | re.DOTALL)
_PROPERTY = re.compile(r"([a-z0-9_-]+)\.([a-z0-9_.-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.IGNORECASE)


@dataclass(frozen=True)
class AuthResult:
    method: str  # dkim, spf, dmarc ...
    result: str  # pass, fail, none ...
    properties: dict[str, str]  # "header.d" -> "example.net"


def parse_authentication_results(value: str) -> tuple[str, list[AuthResult]]:
    """(authserv-id, results) of one Authentication-Results header value."""
    text = value
    for _ in range(5):  # nested comments, a few levels deep at most
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    pieces = text.split(";")
    head = pieces[0].split()
    authserv_id = head[0].lower() if head else ""
    results = []
    for piece in pieces[1:]:
        found = _RESULT.match(piece)
        if not found:
            continue
        method, result, rest = found.groups()
        properties = {
            f"{kind.lower()}.{name.lower()}": value.strip('"').lower()
            for kind, name, value in _PROPERTY.findall(rest)
        }
        results.append(AuthResult(method.lower(), result.lower(), properties))
    return authserv_id, results


def trusted_results(headers: Iterable[str], trusted_ids: Iterable[str], from_domain: str) -> str:
    """How a trusted Authentication-Results header vouches for the From: domain ('' if none)."""
    trusted = {t.lower() for t in trusted_ids}
    if not trusted or not from_domain:
        return ""
    for value in headers:
        first = value.split(";", 1)[0].split()
        if not first or first[0].lower() not in trusted:
            continue  # anyone can write an Authentication-Results header: only ours count
        authserv_id, results = parse_authentication_results(value[:4096])
        for found in results:
            if found.result != "pass":
                continue
            if found.method == "dmarc":
                named = found.properties.get("header.from", from_domain)
                if named == from_domain:
                    return f"dmarc=pass from {authserv_id}"
            if found.method == "dkim":
                signer = found.properties.get("header.d") or domain_of(
                    found.properties.get("header.i", "")
                )
                if signer and aligned(signer, from_domain):
                    return f"dkim=pass for {signer} from {authserv_id}"
    return ""


# --- DKIM -------------------------------------------------------------------------------


def system_dns_txt(name: bytes, timeout: float = DNS_TIMEOUT_SECONDS) -> bytes | None:
    """The TXT record at ``name`` through the system's resolver (dnspython)."""
    from dkim.dnsplug import get_txt

    return get_txt(name, timeout=min(timeout, DNS_TIMEOUT_SECONDS))


def dkim_signers(raw: bytes, dns_txt: DnsTxt) -> list[str]:
    """The domains whose DKIM signatures on ``raw`` verify (topmost first)."""
    if b"dkim-signature" not in raw[: _header_end(raw)].lower():
        return []
    import dkim

    try:
        checker = dkim.DKIM(raw, minkey=1024, timeout=int(DNS_TIMEOUT_SECONDS))
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    except Exception as err:  # a message dkimpy cannot even read
        log.info("DKIM: the message cannot be read: %s", err)
        return []
    signers = []
    for index in range(min(count, MAX_SIGNATURES)):
        try:
            if checker.verify(idx=index, dnsfunc=dns_txt) and checker.domain:
                signers.append(checker.domain.decode("ascii", "replace").lower())
        except Exception as err:  # bad signature syntax, a DNS failure or timeout: not verified
            log.info("DKIM signature %d does not verify: %s", index, err)
    return signers


def _header_end(raw: bytes) -> int:
    for marker in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(marker)
        if at != -1:
            return at
    return len(raw)


class SenderCheck:
    """Decides whether a mail's From: address is proven. Built once from the settings."""

    def __init__(self, trusted_authserv_ids: Iterable[str] = (), dns_txt: DnsTxt | None = None):
        self.trusted = tuple(t.lower() for t in trusted_authserv_ids)
        self.dns_txt = dns_txt or system_dns_txt

    def check(self, raw: bytes, from_addr: str, auth_results: Iterable[str]) -> Verdict:
        from_domain = domain_of(from_addr)
        if not from_domain:
            return Verdict(False, "it has no From: address")
        vouched = trusted_results(auth_results, self.trusted, from_domain)
        if vouched:
            return Verdict(True, vouched)
        for signer in dkim_signers(raw, self.dns_txt):
            if aligned(signer, from_domain):
                return Verdict(True, f"DKIM signature of {signer}")
        return Verdict(False, f"no DKIM signature of {from_domain} and no trusted verdict")

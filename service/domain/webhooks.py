"""Webhook rules: which URLs and addresses a subscription may target, which events it may ask
for, what a delivery's answer leads to, and how long to wait before the next try. Pure: the use
case resolves hosts, the dispatcher sends, both ask these rules."""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from service.domain.access import Principal
from service.domain.claims import Row
from service.vocab import DeliveryOutcome, EventType, Role

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

EVENT_TYPES = frozenset(EventType)

# 100.64.0.0/10, carrier-grade NAT's shared address space (RFC 6598): Python counts it neither
# private nor global, so it is named here.
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# IPv4 addresses carried inside IPv6 ones, which a gateway on the path may turn back into the
# IPv4 address: NAT64's well-known prefix (RFC 6052); mapped (::ffff:a.b.c.d) and 6to4
# (2002::/16) forms are unwrapped by the ipaddress module.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- where a webhook may point ----------------------------------------------------------------


def url_problem(url: str, *, require_https: bool) -> str | None:
    """Why `url` cannot be a webhook target (its form only; the address is checked once the
    host is resolved), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if require_https and parts.scheme != "https":
        return "must be an https URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if parts.fragment:
        return "must not have a #fragment"
    if port == 0:
        return "must not name port 0"
    if _numeric_host(parts.hostname) and not _dotted_quad(parts.hostname):
        return "must write an IPv4 address as four decimal numbers (such as 192.0.2.1)"
    return None


# A host whose last label is a number (decimal, or hexadecimal after 0x) is an IPv4 address to
# a resolver and to the WHATWG URL standard ("ends in a number"), written in any of the forms
# inet_aton reads: 134744072, 0x08080808, 8.8.2056, 010.8.8.8 (octal), 8.8. The subscription
# check would resolve those to a public address, while the dispatcher's URL parser refuses
# them: a subscription that could never be delivered. Only the canonical form is accepted.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$", re.IGNORECASE)


# What IDNA reads as a label separator; NFKC folds full-width digits and letters to ASCII, as
# IDNA does before a resolver sees the name.
_DOTS = re.compile("[\u002e\u3002\uff0e\uff61]")


def _numeric_host(host: str) -> bool:
    if ":" in host:  # an IPv6 literal (the brackets are gone); ipaddress checks its form
        return False
    labels = _DOTS.split(unicodedata.normalize("NFKC", host))
    last = labels[-2] if len(labels) > 1 and labels[-1] == "" else labels[-1]
    return bool(_NUMERIC_LABEL.match(last))


def _dotted_quad(host: str) -> bool:
    """Four decimal numbers 0 to 255 without leading zeros, and nothing else."""
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


def host_and_port(url: str) -> tuple[str, int]:
    """The host to resolve and the port to reach, for a URL `url_problem` accepted."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refused_address(address: IPAddress | str) -> str | None:
    """Why a webhook must not be sent to `address`, or None for a public address: loopback,
    private (RFC 1918, IPv6 unique local), link-local (169.254.0.0/16 holds cloud metadata
    services), unspecified, multicast, reserved, carrier-grade NAT, anything else not globally
    routable, and an IPv4 address of one of these kinds inside an IPv6 one."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    inner = _embedded_ipv4(ip)
    if inner is not None:
        # What a gateway (or a dual-stack socket) turns it into is what it reaches.
        why = refused_address(inner)
        return None if why is None else f"{why} (inside an IPv6 address)"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a carrier-grade NAT address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- who sees which subscription ------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Whose events a subscription receives: an officer's force, a provider's sites, or (both
    None, for admins) everything. Officers and providers manage their scope's subscriptions."""

    role: Role
    force_code: str | None
    provider_id: UUID | None

    @classmethod
    def of(cls, who: Principal) -> Scope:
        return cls(who.role, who.force_filter, who.provider_filter)

    def sees(self, type_: str, force_code: str | None, provider_id: UUID | None) -> bool:
        """Whether an event of this type, force and provider is in the scope: the rule of
        the feed's statements (service/queries/events.py: FORCE, PROVIDER, ALL), for the
        event listener to wake only the readers an event concerns."""
        if self.role == Role.OFFICER:
            return force_code == self.force_code or type_ == EventType.SITE_AVAILABILITY_CHANGED
        if self.role == Role.PROVIDER:
            return provider_id == self.provider_id
        return True


def unique_types(types: list[str]) -> list[str]:
    """Event types in the order given, each once; an unknown one is a programming error (the
    request model admits only EventType values)."""
    assert all(t in EVENT_TYPES for t in types)
    return list(dict.fromkeys(types))


# --- the delivery ---------------------------------------------------------------------------


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_body(event: Row, role: Role) -> dict[str, Any]:
    """An event as `role` may see it, in the feed and as a webhook's body alike: an officer sees
    only which site's availability changed, never why (the cause can reveal another force's
    booking there)."""
    data = dict(event["data"] or {})
    if role == Role.OFFICER and event["type"] == EventType.SITE_AVAILABILITY_CHANGED:
        data = {"site_id": data.get("site_id", str(event["site_id"]))}
    return {
        # The random public id, never the bigserial: its gaps would count other scopes' events.
        "id": str(event["public_id"]),
        "type": str(event["type"]),
        "occurred_at": _utc_text(event["occurred_at"]),
        "booking_id": None if event["booking_id"] is None else str(event["booking_id"]),
        "site_id": None if event["site_id"] is None else str(event["site_id"]),
        "data": data,
    }


@dataclass(frozen=True)
class RetryPolicy:
    base: timedelta
    cap: timedelta
    give_up_after: timedelta


def backoff(attempt: int, policy: RetryPolicy, random: Callable[[], float]) -> timedelta:
    """How long to wait after the `attempt`-th failed try of an event: "full jitter", a uniform
    draw from zero to base * 2^(attempt - 1), that ceiling capped at `policy.cap`, so receivers
    that fail together are not retried together. `random()` is in [0, 1)."""
    exponent = min(attempt - 1, 62)
    ceiling = min(policy.cap.total_seconds(), policy.base.total_seconds() * math.ldexp(1, exponent))
    return timedelta(seconds=random() * ceiling)


@dataclass(frozen=True)
class Verdict:
    """What one attempt leads to: its outcome, whether the subscription moves past the event,
    when the next try is due (retries only), and why the subscription stops (410 only)."""

    outcome: DeliveryOutcome
    advance: bool
    next_attempt_at: datetime | None = None
    disabled_reason: str | None = None


GONE = 410


def judge(
    status_code: int | None,
    *,
    attempt: int,
    first_attempt_at: datetime,
    at: datetime,
    policy: RetryPolicy,
    random: Callable[[], float],
) -> Verdict:
    """The verdict on attempt number `attempt` of an event first tried at `first_attempt_at`:
    any 2xx delivers it; 410 Gone disables the subscription; anything else (a 3xx too: redirects
    are not followed, a time-out, no connection) is retried after a backoff, until the event has
    been tried for `policy.give_up_after`, when it is given up and the next event goes."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict(DeliveryOutcome.DELIVERED, advance=True)
    if status_code == GONE:
        return Verdict(
            DeliveryOutcome.DISABLED,
            advance=False,
            disabled_reason="the receiver answered 410 Gone",
        )
    if at - first_attempt_at >= policy.give_up_after:
        return Verdict(DeliveryOutcome.GAVE_UP, advance=True)
    return Verdict(
        DeliveryOutcome.RETRY,
        advance=False,
        next_attempt_at=at + backoff(attempt, policy, random),
    )

"""Who is calling and what each role may see (SPEC section 4): pure rules, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from service.errors import Forbidden, NotFound
from service.vocab import AddressWithheld, BookingStatus, Role

# Officers see a site's address and phone only while their booking is confirmed or arrived.
ADDRESS_VISIBLE = frozenset({BookingStatus.CONFIRMED, BookingStatus.ARRIVED})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one API key, its role and its scope."""

    key_id: UUID
    role: Role
    force_code: str | None = None
    provider_id: UUID | None = None

    @property
    def actor(self) -> str:
        """How this caller is named in histories: role and scope, never the key."""
        if self.role == Role.OFFICER:
            return f"officer:{self.force_code}"
        if self.role == Role.PROVIDER:
            return f"provider:{self.provider_id}"
        return "admin"

    # The caller's scope, stated once: every list, count and per-object check limits what the
    # caller reads with these two (an officer to its force, a provider to its sites, an admin
    # to nothing), so no use case derives them from the role again.

    @property
    def force_filter(self) -> str | None:
        """The force whatever this caller reads is limited to: an officer's own; None (no
        limit by force) for providers and admins."""
        return self.force_code if self.role == Role.OFFICER else None

    @property
    def provider_filter(self) -> UUID | None:
        """The provider whatever this caller reads is limited to: a provider's own; None (no
        limit by provider) for officers and admins."""
        return self.provider_id if self.role == Role.PROVIDER else None

    @property
    def scope(self) -> str | None:
        """The force or provider this caller acts for; None for admins."""
        if self.provider_filter is not None:
            return str(self.provider_filter)
        return self.force_filter

    def sees(self, force_code: str | None, provider_id: UUID | None) -> bool:
        """Whether an object of this force and provider is in the caller's scope."""
        return self.force_filter in (None, force_code) and self.provider_filter in (
            None,
            provider_id,
        )

    def narrow(self, force: str | None, provider: UUID | None) -> tuple[str | None, UUID | None]:
        """The force and provider a request asks to be limited to, within the caller's scope:
        its own when it names none; naming another's is 404, as everywhere."""
        if self.force_filter is not None:
            if force not in (None, self.force_filter):
                raise NotFound("force not found")
            force = self.force_filter
        if self.provider_filter is not None:
            if provider not in (None, self.provider_filter):
                raise NotFound("provider not found")
            provider = self.provider_filter
        return force, provider


def require_role(principal: Principal, *roles: Role) -> None:
    """403 unless the caller has one of `roles`."""
    if principal.role not in roles:
        allowed = " or ".join(roles)
        raise Forbidden(
            f"this action needs the {allowed} role; your key has the {principal.role} role"
        )


def check_provider_scope(principal: Principal, provider_id: UUID, what: str) -> None:
    """Another provider's object is answered 404: its existence is not revealed."""
    if principal.provider_filter not in (None, provider_id):
        raise NotFound(f"{what} not found")


def in_scope(who: Principal, force_code: str, provider_id: UUID) -> bool:
    """Officers see their force's bookings, providers those at their sites, admins all."""
    return who.sees(force_code, provider_id)


def address_withheld(
    who: Principal,
    status: str,
    start: datetime,
    at: datetime,
    *,
    lead: timedelta,
    phone_only: bool,
) -> AddressWithheld | None:
    """Why an officer may not be shown a booking's site address and phone, or None when they
    may (within the disclosure budget, which the use case counts): only once the person is
    about to travel, never for a site that gives its address by phone only. Providers and
    admins always may."""
    if who.role != Role.OFFICER:
        return None
    if status not in ADDRESS_VISIBLE:
        return AddressWithheld.NOT_CONFIRMED
    if phone_only:
        return AddressWithheld.PHONE_ONLY
    if status == BookingStatus.CONFIRMED and start - at > lead:
        return AddressWithheld.BEFORE_LEAD_TIME
    return None


def withheld_detail(reason: AddressWithheld, start: datetime, lead: timedelta) -> str:
    """What the officer is told instead of the address: when it will be shown, or whom to
    call."""
    call = "call the provider's duty phone"
    if reason == AddressWithheld.NOT_CONFIRMED:
        return (
            "the address and phone are shown once the booking is confirmed and the stay is"
            f" about to start; {call} meanwhile"
        )
    if reason == AddressWithheld.BEFORE_LEAD_TIME:
        shown_from = (start - lead).isoformat()
        return f"the address and phone are shown from {shown_from}, when the stay is near; {call}"
    if reason == AddressWithheld.PHONE_ONLY:
        return f"this house gives its address by phone only: {call} for it"
    if reason == AddressWithheld.LISTED:
        return "a list never shows addresses: read the booking itself to be shown its address"
    return (
        "this key or its force has been shown as many addresses as it may in 24 hours:"
        f" {call} for the address"
    )

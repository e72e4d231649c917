"""What use cases return: typed results the presenters (service/handlers/) read directly, by
attribute, instead of rows and dicts whose keys only a test run checks."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, JsonValue

from service.vocab import (
    AddressWithheld,
    AlertKind,
    AllocationKind,
    AuditAction,
    BookingMode,
    BookingStatus,
    DeliveryOutcome,
    EventType,
    Gender,
    ObjectType,
    Role,
    RoomType,
    SiteStatus,
    WebhookStatus,
)


class Result(BaseModel):
    """Frozen; validated once, from the query's row (its JSON parts included)."""

    model_config = ConfigDict(frozen=True)


class NeedsShown(Result):
    gender: Gender
    dependants: int
    wheelchair: bool
    language: str | None


class HistoryStep(Result):
    action: str
    status: BookingStatus
    at: datetime
    by: str
    reason_code: str | None
    reason: str | None


class FeedbackShown(Result):
    """The person's answers. `what_would_help` is left unset (not None) where the reader may
    not see the person's own words: the presenter leaves it out."""

    consent: bool
    felt_safe: int | None
    treated_with_respect: int | None
    needs_met: str | None
    language_used: str | None
    what_would_help: str | None = None
    created_at: datetime


class Withheld(Result):
    """Why a site's address and phone are not shown to this reader."""

    reason: AddressWithheld
    detail: str


class SiteShown(Result):
    """The booking's site as the reader may see it: no address or phone where withheld."""

    name: str
    area: str
    address: str | None = None
    phone: str | None = None
    duty_phone: str | None = None
    address_withheld: Withheld | None = None


class BookingShown(Result):
    """A booking as its reader may see it (SPEC section 5's booking, issue 14's withholding)."""

    id: UUID
    site_id: UUID
    force: str
    bed_id: UUID
    status: BookingStatus
    start: datetime
    end: datetime
    needs: NeedsShown
    person_ref: str | None
    custody_suite: str
    officer_collar: str | None
    notes: str | None
    hold_expires_at: datetime | None
    respond_by: datetime | None
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    history: tuple[HistoryStep, ...]
    feedback: FeedbackShown | None
    site: SiteShown
    created_at: datetime
    updated_at: datetime


class SiteFound(Result):
    """A site a search found, as an officer may see it (no address, a rounded distance)."""

    site_id: UUID
    name: str
    provider: str
    area: str
    distance_km: int | None
    free_beds: int
    booking_mode: BookingMode
    languages: tuple[str, ...]
    interpreter_on_call: bool
    capacity_confirmed_at: datetime
    stale: bool


class Found(Result):
    """A page of a search's sites, best first, and how many match in all."""

    items: tuple[SiteFound, ...]
    total: int


class ForceShown(Result):
    code: str
    name: str


class ProviderShown(Result):
    id: UUID
    name: str
    duty_phone: str | None


class WebhookShown(Result):
    """A subscription as its owners see it (never its secret)."""

    id: UUID
    url: str
    event_types: tuple[EventType, ...]
    status: WebhookStatus
    disabled_reason: str | None
    created_at: datetime


class Point(Result):
    lat: float
    lon: float


class SiteDetail(Result):
    """A site as its provider (and admins) see it: every field, the address included, and
    whether its capacity is stale when read."""

    id: UUID
    provider_id: UUID
    name: str
    address: str
    area: str
    location: Point
    genders_accepted: tuple[Gender, ...]
    languages: tuple[str, ...]
    interpreter_on_call: bool
    booking_mode: BookingMode
    max_stay_hours: int
    status: SiteStatus
    phone: str
    address_by_phone_only: bool
    version: int
    created_at: datetime
    updated_at: datetime
    capacity_confirmed_at: datetime
    stale: bool


class BedShown(Result):
    id: UUID
    site_id: UUID
    label: str
    room_type: RoomType
    wheelchair_accessible: bool
    max_dependants: int
    in_service: bool
    version: int
    created_at: datetime
    updated_at: datetime


class BlockShown(Result):
    """A bed taken out of use for a period."""

    id: UUID
    bed_id: UUID
    start: datetime
    end: datetime
    reason: str
    created_at: datetime


class ClaimShown(Result):
    """One claim on a bed's time in an occupancy window: a booking (`status` its state) or a
    block (`status` "blocked", with its reason)."""

    kind: AllocationKind
    id: UUID
    status: str
    start: datetime
    end: datetime
    reason: str | None = None


class BedOccupancy(Result):
    """A bed in use and every claim on it in the window, earliest first."""

    bed_id: UUID
    label: str
    room_type: RoomType
    wheelchair_accessible: bool
    max_dependants: int
    in_service: bool
    allocations: tuple[ClaimShown, ...]


class OccupancyShown(Result):
    """A site's beds over [start, end)."""

    site_id: UUID
    start: datetime
    end: datetime
    beds: tuple[BedOccupancy, ...]


class ApiKeyShown(Result):
    """A key as admins see it: its scope and prefix, never its secret or hash."""

    id: UUID
    name: str
    role: Role
    force: str | None
    provider_id: UUID | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class AlertShown(Result):
    """A security alert: a key, its force and what happened (never a person's data)."""

    id: UUID
    kind: AlertKind
    first_at: datetime
    last_at: datetime
    count: int
    key_id: UUID | None
    key_name: str | None
    force: str | None
    provider_id: UUID | None
    site_id: UUID | None
    booking_id: UUID | None
    detail: str


class AuditShown(Result):
    """An audit row: who did what to which object, and the fields' names (never values)."""

    # Text: the row ids outgrow the integers a JSON reader keeps exactly.
    id: str
    at: datetime
    key_id: UUID | None
    # A key's role, or who acted without one: `system` (the service's jobs) or `cli`.
    role: str
    scope: str | None
    request_id: str | None
    action: AuditAction
    object_type: ObjectType
    object_id: str
    fields: tuple[str, ...]


class EventShown(Result):
    """An event as the reader's role may see it (service.domain.webhooks.event_body): a feed
    item, and a webhook delivery's body. `data` is the event type's own JSON object."""

    id: str
    type: EventType
    occurred_at: datetime
    booking_id: UUID | None
    site_id: UUID | None
    data: dict[str, JsonValue]


class DeliveryShown(Result):
    """One delivery attempt of a subscription's event, as its owners see it."""

    # The log's row id: the list's order (newest first), sealed into its cursor.
    row_id: int
    id: str
    event_id: str
    attempt: int
    at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None
    outcome: DeliveryOutcome
    next_attempt_at: datetime | None

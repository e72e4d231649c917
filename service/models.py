"""Request and response models, grouped per resource; openapi.yaml says the same in YAML."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from service.text import parse_timestamp, refused_character
from service.vocab import (
    AddressWithheld,
    AlertKind,
    AllocationKind,
    AuditAction,
    BookingMode,
    BookingStatus,
    CancelReason,
    DeclineReason,
    DeliveryOutcome,
    EventType,
    Gender,
    NeedsMet,
    NoShowReason,
    ObjectType,
    Role,
    RoomType,
    SiteStatus,
    WebhookStatus,
)

# --- shared field types ------------------------------------------------------------------


def _text_rule(*, free_text: bool, blank: bool) -> AfterValidator:
    def check(value: str) -> str:
        refused = refused_character(value, free_text=free_text)
        if refused is not None:
            kind = "control, bidirectional or unpaired surrogate"
            allowed = " (newline and tab are allowed)" if free_text else ""
            raise ValueError(f"must not contain {kind} characters such as {refused}{allowed}")
        stripped = value.strip()
        if not stripped and not blank:
            raise ValueError("must contain more than whitespace")
        return stripped

    return AfterValidator(check)


_LINE = _text_rule(free_text=False, blank=False)
_FREE = _text_rule(free_text=True, blank=False)
_FREE_OR_BLANK = _text_rule(free_text=True, blank=True)


def _integral(value: object) -> object:
    """JSON Schema's integer includes 72.0: a number with no fraction is that integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
Integer = Annotated[int, BeforeValidator(_integral)]
# Lengths count what the client sent (as JSON Schema's maxLength does), before trimming.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), _LINE]
Short = Annotated[str, StringConstraints(min_length=1, max_length=100), _LINE]
Collar = Annotated[str, StringConstraints(min_length=1, max_length=50), _LINE]
Text500 = Annotated[str, StringConstraints(min_length=1, max_length=500), _FREE]
Notes = Annotated[str, StringConstraints(max_length=2000), _FREE_OR_BLANK]
Text2000 = Annotated[str, StringConstraints(min_length=1, max_length=2000), _FREE]
ForceCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,31}$")]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 ()-]{5,24}$")]

MAX_WINDOW = timedelta(days=92)


class Body(BaseModel):
    """A JSON request body: exact types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Patch(Body):
    """A partial update: absent fields are kept; explicit null is refused."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            message = f"fields may be omitted but not null: {', '.join(sorted(nulls))}"
            raise FieldsError(message, *sorted(nulls))
        if not self.model_fields_set:
            raise ValueError("the patch changes nothing: give at least one field")
        return self


class Query(BaseModel):
    """Query-string parameters: strings converted to types, unknown names refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Out(BaseModel):
    """A response body."""

    model_config = ConfigDict(frozen=True)


T = TypeVar("T", bound=Out)


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageQuery(Query):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


class FieldsError(ValueError):
    """A rule across fields, naming the fields the caller must change (issue 17): the error
    lists each of them rather than the whole query or body."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields


def _window_errors(start: datetime, end: datetime) -> None:
    if end <= start:
        raise FieldsError("end must be after start", "end")


# --- reference data ----------------------------------------------------------------------


class ForceIn(Body):
    code: ForceCode
    name: Name


class ForceOut(Out):
    code: str
    name: str


class ProviderIn(Body):
    name: Name
    # The provider's 24-hour duty phone: what officers are shown until a site's own address
    # and phone may be disclosed (issue 14).
    duty_phone: Phone | None = None


class ProviderOut(Out):
    id: UUID
    name: str
    duty_phone: str | None = None


# --- API keys ------------------------------------------------------------------------------


class ApiKeyIn(Body):
    name: Name
    role: Role
    force: ForceCode | None = None
    provider_id: UUID | None = None

    @model_validator(mode="after")
    def _scope_matches_role(self) -> Self:
        if self.role == "officer" and self.force is None:
            raise FieldsError("an officer key needs `force`", "force")
        if self.role == "provider" and self.provider_id is None:
            raise FieldsError("a provider key needs `provider_id`", "provider_id")
        if self.role != "officer" and self.force is not None:
            raise FieldsError("only officer keys have a `force`", "force")
        if self.role != "provider" and self.provider_id is not None:
            raise FieldsError("only provider keys have a `provider_id`", "provider_id")
        return self


class ApiKeyOut(Out):
    id: UUID
    name: str
    role: Role
    force: str | None
    provider_id: UUID | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str | None


# --- audit log -------------------------------------------------------------------------------


class AuditQuery(PageQuery):
    """Filters that all apply together (`booking_id` is object_type=booking, object_id=it)."""

    booking_id: UUID | None = None
    object_type: ObjectType | None = None
    object_id: Name | None = None
    key_id: UUID | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None


class AlertQuery(PageQuery):
    """Filters that apply together: the key named, its force, the kind of alert."""

    key_id: UUID | None = None
    force: ForceCode | None = None
    kind: AlertKind | None = None


class AlertOut(Out):
    """A security alert: a key, its force and what happened (never a person's data). Repeats
    within its hour (or of the same booking) count up on one alert."""

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


class AuditEntry(Out):
    # A string: the row ids outgrow the integers a JSON reader keeps exactly.
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
    fields: list[str]


# --- sites and beds ------------------------------------------------------------------------


class Location(Body):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


def _unique(values: list[str] | None, what: str) -> None:
    if values is not None and len(set(values)) != len(values):
        raise FieldsError(f"{what} must not repeat a value", what)


class SiteIn(Body):
    name: Name
    address: Text500
    area: Name
    location: Location
    genders_accepted: list[Gender] = Field(min_length=1, max_length=3)
    languages: list[LanguageCode] = Field(default_factory=list, max_length=50)
    interpreter_on_call: bool = False
    booking_mode: BookingMode
    max_stay_hours: Integer = Field(default=72, ge=1, le=720)
    status: SiteStatus = SiteStatus.ACTIVE
    phone: Phone
    # The API never shows this site's address or phone to an officer (issue 14).
    address_by_phone_only: bool = False

    @model_validator(mode="after")
    def _no_repeats(self) -> Self:
        _unique(list(self.genders_accepted), "genders_accepted")
        _unique(self.languages, "languages")
        return self


class SitePatch(Patch):
    name: Name | None = None
    address: Text500 | None = None
    area: Name | None = None
    location: Location | None = None
    genders_accepted: list[Gender] | None = Field(default=None, min_length=1, max_length=3)
    languages: list[LanguageCode] | None = Field(default=None, max_length=50)
    interpreter_on_call: bool | None = None
    booking_mode: BookingMode | None = None
    max_stay_hours: Integer | None = Field(default=None, ge=1, le=720)
    status: SiteStatus | None = None
    phone: Phone | None = None
    address_by_phone_only: bool | None = None

    @model_validator(mode="after")
    def _no_repeats(self) -> Self:
        genders = self.genders_accepted
        _unique(None if genders is None else list(genders), "genders_accepted")
        _unique(self.languages, "languages")
        return self


class LocationOut(Out):
    lat: float
    lon: float


class SiteOut(Out):
    id: UUID
    provider_id: UUID
    name: str
    address: str
    area: str
    location: LocationOut
    genders_accepted: list[Gender]
    languages: list[str]
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


class BedIn(Body):
    label: Short
    room_type: RoomType
    wheelchair_accessible: bool = False
    max_dependants: Integer = Field(default=0, ge=0, le=20)
    in_service: bool = True


class BedPatch(Patch):
    label: Short | None = None
    room_type: RoomType | None = None
    wheelchair_accessible: bool | None = None
    max_dependants: Integer | None = Field(default=None, ge=0, le=20)
    in_service: bool | None = None


class BedOut(Out):
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


# --- blocks and occupancy ------------------------------------------------------------------


class BlockIn(Body):
    bed_id: UUID
    start: Timestamp
    end: Timestamp
    reason: Text500

    @model_validator(mode="after")
    def _window(self) -> Self:
        _window_errors(self.start, self.end)
        if self.end - self.start > timedelta(days=366):
            raise FieldsError("a block may last at most 366 days", "end")
        return self


class BlockOut(Out):
    id: UUID
    bed_id: UUID
    start: datetime
    end: datetime
    reason: str
    created_at: datetime


class WindowQuery(Query):
    start: Timestamp
    end: Timestamp

    @model_validator(mode="after")
    def _window(self) -> Self:
        _window_errors(self.start, self.end)
        if self.end - self.start > MAX_WINDOW:
            raise FieldsError("the window may span at most 92 days", "end")
        return self


class BlockListQuery(PageQuery):
    start: Timestamp | None = None
    end: Timestamp | None = None
    bed_id: UUID | None = None


class OccupancyEntry(Out):
    kind: AllocationKind
    id: UUID
    status: str
    start: datetime
    end: datetime
    reason: str | None = None


class OccupancyBed(Out):
    bed_id: UUID
    label: str
    room_type: RoomType
    wheelchair_accessible: bool
    max_dependants: int
    in_service: bool
    allocations: list[OccupancyEntry]


class Occupancy(Out):
    site_id: UUID
    start: datetime
    end: datetime
    beds: list[OccupancyBed]


# --- availability and bookings -----------------------------------------------------------


class AvailabilityQuery(Query):
    start: Timestamp | None = None
    end: Timestamp
    gender: Gender | None = None
    dependants: int = Field(default=0, ge=0, le=20)
    wheelchair: bool = False
    language: LanguageCode | None = None
    near_lat: float | None = Field(default=None, ge=-90, le=90)
    near_lon: float | None = Field(default=None, ge=-180, le=180)
    max_km: float | None = Field(default=None, gt=0, le=2000)
    avoid_lat: float | None = Field(default=None, ge=-90, le=90)
    avoid_lon: float | None = Field(default=None, ge=-180, le=180)
    avoid_km: float | None = Field(default=None, gt=0, le=1000)
    limit: int = Field(default=20, ge=1, le=100)

    @model_validator(mode="after")
    def _points_are_whole(self) -> Self:
        if (self.near_lat is None) != (self.near_lon is None):
            raise FieldsError("give near_lat and near_lon together", "near_lat", "near_lon")
        if self.max_km is not None and self.near_lat is None:
            raise FieldsError(
                "max_km needs near_lat and near_lon", "max_km", "near_lat", "near_lon"
            )
        avoid = (self.avoid_lat, self.avoid_lon, self.avoid_km)
        if any(v is None for v in avoid) and any(v is not None for v in avoid):
            raise FieldsError(
                "give avoid_lat, avoid_lon and avoid_km together",
                "avoid_lat",
                "avoid_lon",
                "avoid_km",
            )
        return self


class AvailabilityItem(Out):
    site_id: UUID
    name: str
    provider: str
    area: str
    distance_km: int | None
    free_beds: int
    booking_mode: BookingMode
    languages: list[str]
    interpreter_on_call: bool
    capacity_confirmed_at: datetime
    stale: bool


class AvailabilityOut(Out):
    """SPEC's list shape (items, next_cursor), plus how many sites matched in all. A search is
    ranked, not paged: next_cursor is always null (raise `limit` to see more)."""

    items: list[AvailabilityItem]
    next_cursor: None = None
    total: int


class NeedsIn(Body):
    gender: Gender
    dependants: Integer = Field(default=0, ge=0, le=20)
    wheelchair: bool = False
    language: LanguageCode | None = None


class BookingIn(Body):
    site_id: UUID
    start: Timestamp
    end: Timestamp
    needs: NeedsIn
    person_ref: Short
    custody_suite: Name
    officer_collar: Collar
    notes: Notes | None = None

    @model_validator(mode="after")
    def _window(self) -> Self:
        _window_errors(self.start, self.end)
        return self


class ActionIn(Body):
    reason: Text500 | None = None


class ExtendIn(Body):
    end: Timestamp
    reason: Text500 | None = None


class _Coded(Body):
    """Decline, cancel and no-show carry a reason code (SPEC section 3); without one, a body
    is read as the action's default (service.domain.lifecycle), and `other` needs a `reason`.
    A field may be omitted, but not sent as null (the contract's types have no null), except
    a no-show's `reason`, which could be null before codes."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _omitted_not_null(self) -> Self:
        nulls = [
            name
            for name in sorted(self.model_fields_set - self.nullable)
            if getattr(self, name) is None
        ]
        if nulls:
            raise FieldsError(f"fields may be omitted but not null: {', '.join(nulls)}", *nulls)
        return self


class DeclineIn(_Coded):
    reason_code: DeclineReason | None = None
    reason: Text500 | None = None


class CancelIn(_Coded):
    reason_code: CancelReason | None = None
    reason: Text500 | None = None


class NoShowIn(_Coded):
    nullable = frozenset({"reason"})
    reason_code: NoShowReason | None = None
    reason: Text500 | None = None


Score = Annotated[Integer, Field(ge=1, le=5)]


class FeedbackIn(Body):
    """The person's own answers, given freely: only with their consent."""

    consent: Literal[True]
    felt_safe: Score | None = None
    treated_with_respect: Score | None = None
    needs_met: NeedsMet | None = None
    language_used: LanguageCode | None = None
    what_would_help: Text2000 | None = None


class NeedsOut(Out):
    gender: Gender
    dependants: int
    wheelchair: bool
    language: str | None


class HistoryEntry(Out):
    action: str
    status: BookingStatus
    at: datetime
    by: str
    reason_code: str | None
    reason: str | None


class FeedbackOut(Out):
    consent: bool
    felt_safe: int | None
    treated_with_respect: int | None
    needs_met: NeedsMet | None
    language_used: str | None
    # Absent (not null) for officers; null once erased, or when not given.
    what_would_help: str | None = None
    created_at: datetime

    @model_serializer(mode="wrap")
    def _omit_withheld(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if "what_would_help" not in self.model_fields_set:
            del data["what_would_help"]
        return data


class AddressWithheldOut(Out):
    reason: AddressWithheld
    detail: str


class BookingSite(Out):
    name: str
    area: str
    # Present only where SPEC section 4 allows: absent, not null, otherwise.
    address: str | None = None
    phone: str | None = None
    # The provider's duty phone (absent when the provider has none), shown to every reader.
    duty_phone: str | None = None
    # Why an officer is not shown the address and phone (absent when they are shown).
    address_withheld: AddressWithheldOut | None = None

    @model_serializer(mode="wrap")
    def _omit_hidden(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class BookingOut(Out):
    id: UUID
    site_id: UUID
    force: str
    bed_id: UUID
    status: BookingStatus
    start: datetime
    end: datetime
    needs: NeedsOut
    person_ref: str | None
    custody_suite: str
    officer_collar: str | None
    notes: str | None
    hold_expires_at: datetime | None
    respond_by: datetime | None
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    history: list[HistoryEntry]
    feedback: FeedbackOut | None
    site: BookingSite
    created_at: datetime
    updated_at: datetime


class BookingListQuery(PageQuery):
    status: BookingStatus | None = None
    site_id: UUID | None = None
    force: ForceCode | None = None
    updated_since: Timestamp | None = None


# --- system -------------------------------------------------------------------------------


class Health(Out):
    status: str


# --- events and webhooks ---------------------------------------------------------------------
# The shapes of issue 9 (the feed, webhook subscriptions and their deliveries), shared by the
# handlers and by service/client.py.


def _type_list(value: object) -> object:
    """`types=booking.held,booking.confirmed`: a comma list, each named once."""
    if not isinstance(value, str):
        return value
    names = value.split(",")
    if len(set(names)) != len(names):
        raise ValueError("types must not repeat a value")
    return names


class EventQuery(Query):
    after: str | None = None
    limit: int = Field(default=100, ge=1, le=500)
    # Seconds to wait for an event when there is none yet (a long poll); 0 answers at once.
    wait: float = Field(default=0, ge=0, le=30, allow_inf_nan=False)
    types: Annotated[list[EventType], BeforeValidator(_type_list), Field(min_length=1)] | None = (
        None
    )


class Event(Out):
    """A feed item, and the body of a webhook delivery. Never personal fields."""

    # A random UUID (issue 14 item 8), never the feed's sequence, whose gaps would count other
    # scopes' events; kept a string, as clients already compare it (de-duplication).
    id: str
    type: EventType
    occurred_at: datetime
    booking_id: UUID | None
    site_id: UUID | None
    data: dict[str, Any]


class EventPage(Out):
    items: list[Event]
    # Always present: after the last item of a full page, else where the read was complete.
    next_cursor: str


def _distinct_types(types: list[EventType]) -> list[EventType]:
    _unique([str(t) for t in types], "event_types")
    return types


class WebhookIn(Body):
    # The URL's form and where it resolves to are checked by the use case (400 naming `url`).
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000), _LINE]
    event_types: Annotated[
        list[EventType],
        Field(min_length=1, max_length=len(EventType)),
        AfterValidator(_distinct_types),
    ]


class Webhook(Out):
    id: UUID
    url: str
    event_types: list[EventType]
    status: WebhookStatus
    disabled_reason: str | None
    created_at: datetime


class WebhookCreated(Webhook):
    # Shown once, at creation; an Idempotency-Key replay shows null.
    secret: str | None


class Delivery(Out):
    id: str
    event_id: str
    attempt: int
    at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None
    outcome: DeliveryOutcome
    next_attempt_at: datetime | None


# --- reports (issue 10) -------------------------------------------------------------------------
# GET /v1/reports/summary. A count is a whole number (in a publishable report a multiple of 5),
# or null: suppressed (1 to 4 in a publishable report; its path is then in the group's
# `suppressed`), or a figure the grouping cannot attribute (searches by provider or area).

ReportCount = int | None


class ReportQuery(WindowQuery):
    # The window as the occupancy timeline's: at most 92 days (a quarter), which also bounds
    # the month buckets the bed-night statements build.
    force: ForceCode | None = None
    provider: UUID | None = None
    group_by: Literal["force", "provider", "area", "month"] = "force"
    publishable: bool = False


class ReportSpan(Out):
    median: float | None
    p90: float | None


class ReportFeedback(Out):
    responses: ReportCount
    consented: ReportCount
    felt_safe: dict[str, ReportCount]
    treated_with_respect: dict[str, ReportCount]
    needs_met: dict[str, ReportCount]


class ReportGroup(Out):
    key: str | None
    searches: ReportCount
    searches_empty: ReportCount
    searches_empty_by_cause: dict[str, ReportCount] | None
    holds: ReportCount
    confirmations: ReportCount
    requests: ReportCount
    accepted: ReportCount
    declined: ReportCount
    declined_by_reason: dict[str, ReportCount]
    expiries: ReportCount
    cancellations: ReportCount
    cancellations_by_reason: dict[str, ReportCount]
    no_shows: ReportCount
    arrivals: ReportCount
    departures: ReportCount
    hold_to_confirmation_minutes: ReportSpan
    hold_to_arrival_minutes: ReportSpan
    bed_nights_offered: float | None
    bed_nights_used: float | None
    occupancy: float | None
    feedback: ReportFeedback
    security_alerts: int | None
    disclosures_without_placement: int | None
    # The dotted paths of the counts suppressed as "<5" (null here, "<5" in the CSV).
    suppressed: list[str]


class StaleSite(Out):
    site_id: UUID
    name: str
    provider: str
    area: str
    hours_unconfirmed: float


class ReportSummary(Out):
    start: datetime
    end: datetime
    group_by: Literal["force", "provider", "area", "month"]
    publishable: bool
    searches_attributable: bool
    groups: list[ReportGroup]
    stale_sites: list[StaleSite]

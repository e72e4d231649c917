"""Every fixed vocabulary, defined once: models, rules, queries and SQL CHECKs use these values
(tests/integration/test_vocab_sql.py holds the migrations' CHECK lists to them)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OFFICER = "officer"
    PROVIDER = "provider"


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    NON_BINARY = "non_binary"


class RoomType(StrEnum):
    SINGLE = "single"
    SHARED = "shared"
    FAMILY = "family"


class BookingMode(StrEnum):
    INSTANT = "instant"
    REQUEST = "request"


class SiteStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


class AllocationKind(StrEnum):
    BOOKING = "booking"
    BLOCK = "block"


class BookingStatus(StrEnum):
    HELD = "held"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    ARRIVED = "arrived"
    DEPARTED = "departed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DECLINED = "declined"
    NO_SHOW = "no_show"


# A block's one state in the allocation ledger, beside the booking states.
BLOCKED = "blocked"
ALLOCATION_STATUSES = frozenset({BLOCKED, *BookingStatus})
# Claims that keep their bed (the exclusion constraint's list).
LIVE_STATUSES = frozenset(
    {
        BLOCKED,
        BookingStatus.HELD,
        BookingStatus.PENDING,
        BookingStatus.CONFIRMED,
        BookingStatus.ARRIVED,
    }
)
TERMINAL_STATUSES = frozenset(
    {
        BookingStatus.EXPIRED,
        BookingStatus.CANCELLED,
        BookingStatus.DECLINED,
        BookingStatus.NO_SHOW,
        BookingStatus.DEPARTED,
    }
)


# A booking's personal fields: erased after retention, audited by name when shown, never in
# events, logs or reports.
PERSONAL_FIELDS = ("person_ref", "officer_collar", "notes")


class EventType(StrEnum):
    BOOKING_HELD = "booking.held"
    BOOKING_PENDING = "booking.pending"
    BOOKING_CONFIRMED = "booking.confirmed"
    BOOKING_DECLINED = "booking.declined"
    BOOKING_CANCELLED = "booking.cancelled"
    BOOKING_EXPIRED = "booking.expired"
    BOOKING_ARRIVED = "booking.arrived"
    BOOKING_DEPARTED = "booking.departed"
    BOOKING_NO_SHOW = "booking.no_show"
    BOOKING_EXTENDED = "booking.extended"
    SITE_AVAILABILITY_CHANGED = "site.availability_changed"
    SITE_CAPACITY_STALE = "site.capacity_stale"
    # For admins only: a security alert was raised (issue 14).
    SECURITY_ALERT = "security.alert"


class ObjectType(StrEnum):
    """What an audit row is about."""

    FORCE = "force"
    PROVIDER = "provider"
    API_KEY = "api_key"
    SITE = "site"
    BED = "bed"
    BLOCK = "block"
    BOOKING = "booking"
    WEBHOOK = "webhook"


class AuditAction(StrEnum):
    """What was done. Booking transitions are recorded under their action's name."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REVOKE = "revoke"
    READ = "read"
    ERASE = "erase"
    HOLD = "hold"
    CONFIRM = "confirm"
    ACCEPT = "accept"
    DECLINE = "decline"
    CANCEL = "cancel"
    CHECK_IN = "check-in"
    CHECK_OUT = "check-out"
    NO_SHOW = "no-show"
    EXTEND = "extend"
    EXPIRE = "expire"
    # A request refused by a limit (recorded apart: the refused transaction rolled back).
    REFUSE = "refuse"


class AvailabilityCause(StrEnum):
    """Why a site's availability changed (the `cause` of a site.availability_changed event)."""

    SITE_CHANGED = "site_changed"
    BED_ADDED = "bed_added"
    BED_CHANGED = "bed_changed"
    BED_REMOVED = "bed_removed"
    BLOCK_ADDED = "block_added"
    BLOCK_REMOVED = "block_removed"
    BOOKING_HELD = "booking_held"
    BOOKING_EXTENDED = "booking_extended"
    BOOKING_RELEASED = "booking_released"


class WebhookStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"


class DeliveryOutcome(StrEnum):
    """What one webhook delivery attempt led to."""

    DELIVERED = "delivered"
    RETRY = "retry"
    GAVE_UP = "gave_up"
    DISABLED = "disabled"


# --- outcomes (issue 10) ---------------------------------------------------------------------


class DeclineReason(StrEnum):
    """Why a provider declined a pending request."""

    NO_SUITABLE_BED = "no_suitable_bed"
    RISK_ASSESSMENT = "risk_assessment"
    CANNOT_MEET_NEEDS = "cannot_meet_needs"
    SITE_FULL = "site_full"
    OTHER = "other"


class CancelReason(StrEnum):
    """Why a booking was cancelled before the person arrived."""

    PERSON_DECLINED_PLACEMENT = "person_declined_placement"
    PERSON_ENTERED_OTHER_SUPPORT = "person_entered_other_support"
    TRANSPORT_FAILED = "transport_failed"
    BOOKED_IN_ERROR = "booked_in_error"
    OTHER = "other"


class NoShowReason(StrEnum):
    """Why a confirmed person never arrived, as far as the provider knows."""

    # Nothing more is known: what a no-show without a code means.
    PERSON_DID_NOT_ARRIVE = "person_did_not_arrive"
    TRANSPORT_FAILED = "transport_failed"
    PERSON_LEFT_CUSTODY_ELSEWHERE = "person_left_custody_elsewhere"
    PERSON_DECLINED_PLACEMENT = "person_declined_placement"
    OTHER = "other"


# The actions that carry a reason code, each with its list: the one statement of which action
# takes which codes (service.domain.lifecycle reads it; the models' DeclineIn, CancelIn and
# NoShowIn, the contract and the CHECK constraints are held to it by tests). `other` needs a
# free-text reason.
REASON_CODES: dict[str, type[StrEnum]] = {
    AuditAction.DECLINE: DeclineReason,
    AuditAction.CANCEL: CancelReason,
    AuditAction.NO_SHOW: NoShowReason,
}
# The code a step without one is recorded with (the contract's `default`): `other` where a
# free-text reason was always required (decline, cancel), so clients written before codes keep
# working and every such step still carries a code.
DEFAULT_REASON_CODES: dict[str, StrEnum] = {
    AuditAction.DECLINE: DeclineReason.OTHER,
    AuditAction.CANCEL: CancelReason.OTHER,
    AuditAction.NO_SHOW: NoShowReason.PERSON_DID_NOT_ARRIVE,
}
ALL_REASON_CODES = frozenset(code for codes in REASON_CODES.values() for code in codes)
OTHER_REASON = "other"


class NeedsMet(StrEnum):
    """The person's own answer: were their needs met?"""

    YES = "yes"
    PARTLY = "partly"
    NO = "no"


# Statuses after which a provider may record the person's feedback: the stay ended, or the
# person was met at a no-show, cancellation or decline.
FEEDBACK_STATUSES = frozenset(
    {
        BookingStatus.DEPARTED,
        BookingStatus.NO_SHOW,
        BookingStatus.CANCELLED,
        BookingStatus.DECLINED,
    }
)
# Feedback's personal field: erased with PERSONAL_FIELDS, never in events, logs or reports,
# withheld from officers, audited by this name when shown.
FEEDBACK_PERSONAL_FIELDS = ("what_would_help",)


class EmptyCause(StrEnum):
    """Which hard need emptied a search that found no site: the first that leaves none when the
    needs are applied in this order."""

    NONE_ACTIVE = "none_active"
    GENDER = "gender"
    DEPENDANTS = "dependants"
    WHEELCHAIR = "wheelchair"
    MAX_STAY = "max_stay"
    EXCLUSION_ZONE = "exclusion_zone"
    DISTANCE = "distance"
    NO_FREE_BED = "no_free_bed"


# --- trust against an insider (issue 14) -----------------------------------------------------


class AlertKind(StrEnum):
    """What a security alert is about."""

    BOOKING_CAP = "booking_cap"
    HOLD_CAP = "hold_cap"
    TOO_FAR_AHEAD = "too_far_ahead"
    DISCLOSURE_BUDGET = "disclosure_budget"
    DISCLOSURE_WITHOUT_PLACEMENT = "disclosure_without_placement"
    REPEATED_REFUSALS = "repeated_refusals"


class AddressWithheld(StrEnum):
    """Why an officer is not shown a booking's site address and phone."""

    NOT_CONFIRMED = "not_confirmed"
    BEFORE_LEAD_TIME = "before_lead_time"
    PHONE_ONLY = "phone_only"
    BUDGET_SPENT = "budget_spent"
    # A list never discloses: reading many bookings must not spend a key's budget on its
    # colleagues' (found by review); the booking read on its own does.
    LISTED = "listed"

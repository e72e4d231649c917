"""What a change records, derived from the change (service/usecases/changes.py): the audited
fields, a booking step's event and whether its site's availability changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from service.usecases.changes import Change, changed, given
from service.vocab import AuditAction, AvailabilityCause, BookingStatus, EventType, ObjectType

NOW = datetime(2031, 5, 1, tzinfo=UTC)
BOOKING, SITE = uuid4(), uuid4()


def test_fields_are_those_set_or_those_whose_value_differs() -> None:
    assert given({"name": "A", "phone": None, "in_service": False, "languages": []}) == (
        "in_service",
        "languages",
        "name",
    )
    before = {"name": "A", "status": "active", "location": {"lat": 1.0, "lon": 2.0}}
    after = {"name": "A", "status": "paused", "location": {"lat": 1.0, "lon": 2.0}}
    assert changed(before, after) == ("status",)
    # A field the row did not hold was unset before.
    assert changed({"status": "confirmed"}, {"status": "arrived", "checked_in_at": NOW}) == (
        "checked_in_at",
        "status",
    )
    assert changed({"status": "x"}, {"status": "x"}) == ()


def test_an_object_created_changed_and_removed() -> None:
    created = Change.of(AuditAction.CREATE, ObjectType.BED, "b", {"label": "1", "notes": None})
    assert created.fields == ("label",) and created.cause is None
    updated = Change.of(
        AuditAction.UPDATE, ObjectType.BED, "b", {"label": "1"}, before={"label": "2"}
    )
    assert updated.fields == ("label",)
    announced = updated.announcing(SITE, AvailabilityCause.BED_CHANGED)
    assert (announced.fields, announced.site_id, announced.cause) == (
        ("label",),
        SITE,
        AvailabilityCause.BED_CHANGED,
    )
    removed = Change.of(AuditAction.DELETE, ObjectType.BED, "b")
    assert removed.fields == () and removed.status is None and removed.event is None


def _step(action: AuditAction, status: BookingStatus, after: dict[str, object]) -> Change:
    before = {"status": BookingStatus.CONFIRMED, "start": NOW, "end": NOW + timedelta(days=1)}
    return Change.step(action, BOOKING, SITE, status, after, before=before)


def test_a_booking_step_derives_its_event_and_its_availability_change() -> None:
    hold = Change.step(
        AuditAction.HOLD,
        BOOKING,
        SITE,
        BookingStatus.HELD,
        {"status": BookingStatus.HELD, "notes": None, "start": NOW},
    )
    assert (hold.fields, hold.event, hold.cause, hold.booking_id, hold.object_id) == (
        ("start", "status"),
        EventType.BOOKING_HELD,
        AvailabilityCause.BOOKING_HELD,
        BOOKING,
        BOOKING,
    )
    steps = [
        (AuditAction.ACCEPT, BookingStatus.CONFIRMED, {"status": BookingStatus.CONFIRMED}),
        (AuditAction.EXTEND, BookingStatus.CONFIRMED, {"end": NOW + timedelta(days=2)}),
        (
            AuditAction.CHECK_IN,
            BookingStatus.ARRIVED,
            {"status": BookingStatus.ARRIVED, "start": NOW - timedelta(hours=1)},
        ),
        (AuditAction.CHECK_IN, BookingStatus.ARRIVED, {"status": BookingStatus.ARRIVED}),
        (AuditAction.CANCEL, BookingStatus.CANCELLED, {"status": BookingStatus.CANCELLED}),
    ]
    assert [(s.fields, s.event, s.cause) for s in (_step(*step) for step in steps)] == [
        ((), EventType.BOOKING_CONFIRMED, None),
        (("end",), EventType.BOOKING_EXTENDED, AvailabilityCause.BOOKING_EXTENDED),
        (("start", "status"), EventType.BOOKING_ARRIVED, AvailabilityCause.BOOKING_EXTENDED),
        (("status",), EventType.BOOKING_ARRIVED, None),
        (("status",), EventType.BOOKING_CANCELLED, AvailabilityCause.BOOKING_RELEASED),
    ]


def test_an_alert_is_announced_and_not_audited() -> None:
    alert_id = uuid4()
    alert = Change.alert(alert_id)
    assert (alert.object_type, alert.status, alert.event, alert.alert_id) == (
        None,
        None,
        EventType.SECURITY_ALERT,
        alert_id,
    )

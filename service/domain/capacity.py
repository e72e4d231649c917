"""Which capacity changes a search can see, and when capacity is stale: pure rules, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

SEARCH_SITE_FIELDS = frozenset(
    {
        "status",  # only active sites are offered
        "genders_accepted",  # filtered on the person's gender
        "booking_mode",  # shown: whether a hold is a booking or a request
        "max_stay_hours",  # a window longer than this finds no bed there
        "location",  # its cell: distance, `max_km` and the exclusion zone
        "name",  # shown
        "area",  # shown
        "languages",  # ranked on (language fit) and shown
        "interpreter_on_call",  # shown
    }
)

SEARCH_BED_FIELDS = frozenset({"in_service", "max_dependants", "wheelchair_accessible"})


def site_change_alters_search(changed: Iterable[str]) -> bool:
    """Whether changing these site fields may change what an officer's search returns.

    SEARCH_SITE_FIELDS is what a search filters on, ranks by or shows of a site (SPEC
    section 5, the availability item), so a change to any of them is announced as a
    site.availability_changed. The address and phone never appear in a search (only in a
    booking, to its officer once confirmed): changing them alone announces nothing.
    """
    return not SEARCH_SITE_FIELDS.isdisjoint(changed)


def bed_change_alters_search(changed: Iterable[str]) -> bool:
    """Whether changing these bed fields may change a search's count of free beds.

    A search counts the beds in service that take the dependants asked for and, when asked,
    a wheelchair (SEARCH_BED_FIELDS). A bed's label or room type alone changes no count.
    """
    return not SEARCH_BED_FIELDS.isdisjoint(changed)


# A site's fields whose change is itself a statement about its capacity (SPEC issue 10 item 6:
# a change to its beds, blocks or status confirms it); a new name or phone number does not.
CAPACITY_SITE_FIELDS = frozenset({"status"})


def site_change_confirms_capacity(changed: Iterable[str]) -> bool:
    """Whether changing these site fields counts as the provider confirming its capacity."""
    return not CAPACITY_SITE_FIELDS.isdisjoint(changed)


def stale_before(at: datetime, stale_after: timedelta) -> datetime:
    """The staleness cut-off at `at`: a site whose capacity was last confirmed (changed or
    declared still accurate) at or before it is stale. A provider that has said nothing for
    STALE_AFTER_HOURS may be showing beds that are no longer free."""
    return at - stale_after


def is_stale(confirmed_at: datetime, at: datetime, stale_after: timedelta) -> bool:
    return confirmed_at <= stale_before(at, stale_after)

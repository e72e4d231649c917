"""What a site or bed change announces (service.domain.capacity's SEARCH_SITE_FIELDS and
SEARCH_BED_FIELDS) is read from the search itself: every site and bed column the search's
statement filters on, ranks by or shows is in them, so a filter added to the search (or to
its shared filter functions, which take these columns as arguments) cannot go unannounced."""

from __future__ import annotations

import re

from service.domain.capacity import SEARCH_BED_FIELDS, SEARCH_SITE_FIELDS
from service.queries.availability import SEARCH_AND_RECORD

# Columns the search reads that are no field a provider changes, or whose change is announced
# by its own rule: a site's identity and owner, when its capacity was confirmed (staleness), a
# bed's identity and site, its removal (announced as bed_removed when it happens).
NOT_FIELDS = {"id", "provider_id", "capacity_confirmed_at", "site_id", "removed_at"}
# The API's field for the columns that hold it: a site's coarse cell is its location.
AS_FIELD = {"cell_south": "location", "cell_west": "location", "cell_north": "location"}
AS_FIELD |= {"cell_east": "location"}


def _read(alias: str) -> set[str]:
    columns = set(re.findall(rf"\b{alias}\.([a-z_]+)", SEARCH_AND_RECORD)) - NOT_FIELDS
    return {AS_FIELD.get(column, column) for column in columns}


def test_every_site_column_the_search_reads_is_announced() -> None:
    assert _read("s") == SEARCH_SITE_FIELDS


def test_every_bed_column_the_search_reads_is_announced() -> None:
    assert _read("b") == SEARCH_BED_FIELDS

"""A provider's capacity: sites, beds, blocks and the per-bed occupancy timeline.

Readers are providers (their own sites) and admins (every site); only providers change
capacity. Another provider's site answers 404, so its existence is not revealed. Every change
is audited, and each one a search could see is announced as a site.availability_changed, in
the same transaction as the change.

Capacity is never silently stale: any change to a site's beds, blocks or status, and the
provider's "still accurate" (`confirm_capacity`), sets the site's `capacity_confirmed_at`; a
site shows `stale` once `stale_after` (STALE_AFTER_HOURS) has passed since then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from service import paging
from service.domain import capacity, claims
from service.domain.access import check_provider_scope, require_role
from service.errors import Conflict, NotFound, PreconditionFailed
from service.paging import Page, Position
from service.queries import allocations, beds, sites
from service.usecases.changes import Change, record
from service.usecases.claims import ClaimRefused, claim_bed
from service.usecases.results import (
    BedOccupancy,
    BedShown,
    BlockShown,
    OccupancyShown,
    SiteDetail,
)
from service.usecases.tx import ReadTx, Tx
from service.vocab import AuditAction, AvailabilityCause, ObjectType, Role

# Whether an If-Match precondition lets a change to the given current version go ahead.
VersionCheck = Callable[[int], bool]


@dataclass(frozen=True)
class NewBlock:
    bed_id: UUID
    start: datetime
    end: datetime
    reason: str


# --- rules shared by every operation ------------------------------------------------------


def _reader(tx: ReadTx) -> None:
    require_role(tx.caller, Role.PROVIDER, Role.ADMIN)


def _writer(tx: Tx) -> None:
    require_role(tx.caller, Role.PROVIDER)


async def _own_site(tx: ReadTx, site_id: UUID) -> None:
    """404 unless the site exists and is in the caller's scope (admins see every site)."""
    provider_id = await sites.provider_of(tx.conn, site_id)
    if provider_id is None:
        raise NotFound("site not found")
    check_provider_scope(tx.caller, provider_id, "site")


def _check_version(version_ok: VersionCheck, current: int) -> None:
    if not version_ok(current):
        raise PreconditionFailed(
            f"If-Match does not name the current version, {current}; "
            "read it again and reapply your change",
            extra={"current_version": current},
        )


async def _bed_to_change(
    tx: Tx, site_id: UUID, bed_id: UUID, version_ok: VersionCheck
) -> asyncpg.Record:
    """The bed a provider changes, locked (a booking claiming it waits), after the scope and
    If-Match checks."""
    _writer(tx)
    await _own_site(tx, site_id)
    current = await beds.lock(tx.conn, site_id, bed_id)
    if current is None:
        raise NotFound("bed not found")
    _check_version(version_ok, current["version"])
    return current


async def _capacity_changed(tx: Tx, site_id: UUID) -> None:
    """A change to the site's beds or blocks confirms its capacity: the provider is looking."""
    await sites.confirm_capacity(tx.conn, site_id, tx.at)


def _shown_site(row: asyncpg.Record, at: datetime, stale_after: timedelta) -> SiteDetail:
    """A site as the API shows it: its columns, and whether its capacity is stale at `at`."""
    stale = capacity.is_stale(row["capacity_confirmed_at"], at, stale_after)
    return SiteDetail.model_validate({**row, "stale": stale})


def _shown_bed(row: asyncpg.Record) -> BedShown:
    return BedShown.model_validate(dict(row))


def _shown_block(row: asyncpg.Record) -> BlockShown:
    return BlockShown.model_validate(dict(row))


def _site_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """A site's fields as the API names them, as its columns: the location is lat and lon."""
    columns = dict(values)
    location = columns.pop("location", None)
    if location is not None:
        columns["lat"], columns["lon"] = location["lat"], location["lon"]
    return columns


# --- sites ------------------------------------------------------------------------------


async def list_sites(tx: ReadTx, *, after: Position | None, limit: int) -> Page[SiteDetail]:
    _reader(tx)
    rows = await sites.list_page(tx.conn, tx.caller.provider_filter, after, limit + 1)
    page = paging.page(rows, limit, paging.by_created)
    return page.map(lambda row: _shown_site(row, tx.at, tx.policy.stale_after))


async def create_site(tx: Tx, values: Mapping[str, Any]) -> SiteDetail:
    """`values`: every field of a new site, as the API names them. A site without beds is
    in no search's results, so its creation announces nothing; its first bed does. Its
    capacity counts as confirmed when it is created."""
    _writer(tx)
    provider_id = tx.caller.provider_id
    assert provider_id is not None
    row = await sites.create(tx.conn, provider_id, at=tx.at, **_site_columns(values))
    await record(tx, Change.of(AuditAction.CREATE, ObjectType.SITE, row["id"], values))
    return _shown_site(row, tx.at, tx.policy.stale_after)


async def get_site(tx: ReadTx, site_id: UUID) -> SiteDetail:
    _reader(tx)
    row = await sites.get(tx.conn, site_id)
    if row is None:
        raise NotFound("site not found")
    check_provider_scope(tx.caller, row["provider_id"], "site")
    return _shown_site(row, tx.at, tx.policy.stale_after)


async def patch_site(
    tx: Tx,
    site_id: UUID,
    changes: Mapping[str, Any],
    version_ok: VersionCheck,
) -> SiteDetail:
    """`changes`: the fields given, as the API names them. The row is locked first, so
    concurrent changes queue and each compares against the version it will replace. A change
    of status also confirms the site's capacity."""
    _writer(tx)
    current = await sites.lock(tx.conn, site_id)
    if current is None:
        raise NotFound("site not found")
    check_provider_scope(tx.caller, current["provider_id"], "site")
    _check_version(version_ok, current["version"])
    change = Change.of(AuditAction.UPDATE, ObjectType.SITE, site_id, changes, before=dict(current))
    confirmed = tx.at if capacity.site_change_confirms_capacity(change.fields) else None
    row = await sites.update(
        tx.conn, site_id, at=tx.at, capacity_confirmed_at=confirmed, **_site_columns(changes)
    )
    if capacity.site_change_alters_search(change.fields):
        change = change.announcing(site_id, AvailabilityCause.SITE_CHANGED)
    await record(tx, change)
    return _shown_site(row, tx.at, tx.policy.stale_after)


async def confirm_capacity(tx: Tx, site_id: UUID) -> SiteDetail:
    """The provider's "still accurate": the site's capacity is confirmed now, so it is fresh
    (and a later staleness is announced again). Audited as an update of
    `capacity_confirmed_at`. Repeating it only moves the time on, so a retry is harmless. It
    changes nothing a search counts, so it announces no site.availability_changed."""
    _writer(tx)
    await _own_site(tx, site_id)
    row = await sites.confirm_capacity(tx.conn, site_id, tx.at)
    assert row is not None  # the scope check found it, and sites are never deleted
    await record(
        tx,
        Change.of(
            AuditAction.UPDATE,
            ObjectType.SITE,
            site_id,
            {"capacity_confirmed_at": row["capacity_confirmed_at"]},
        ),
    )
    return _shown_site(row, tx.at, tx.policy.stale_after)


# --- beds -------------------------------------------------------------------------------


def _label_taken(label: str) -> Conflict:
    return Conflict(f"this site already has a bed labelled {label!r}", slug="already-exists")


async def list_beds(
    tx: ReadTx, site_id: UUID, *, after: Position | None, limit: int
) -> Page[BedShown]:
    _reader(tx)
    await _own_site(tx, site_id)
    rows = await beds.list_page(tx.conn, site_id, after, limit + 1)
    return paging.page(rows, limit, paging.by_created).map(_shown_bed)


async def create_bed(tx: Tx, site_id: UUID, values: Mapping[str, Any]) -> BedShown:
    """`values`: every field of a new bed, as the API names them. Labels are unique among a
    site's beds in use (the database says so): a repeat is 409."""
    _writer(tx)
    await _own_site(tx, site_id)
    try:
        row = await beds.create(tx.conn, site_id, at=tx.at, **values)
    except asyncpg.UniqueViolationError:
        raise _label_taken(values["label"]) from None
    await _capacity_changed(tx, site_id)
    await record(
        tx,
        Change.of(
            AuditAction.CREATE,
            ObjectType.BED,
            row["id"],
            values,
            site_id=site_id,
            cause=AvailabilityCause.BED_ADDED,
        ),
    )
    return _shown_bed(row)


async def patch_bed(
    tx: Tx,
    site_id: UUID,
    bed_id: UUID,
    changes: Mapping[str, Any],
    version_ok: VersionCheck,
) -> BedShown:
    current = await _bed_to_change(tx, site_id, bed_id, version_ok)
    try:
        row = await beds.update(tx.conn, bed_id, at=tx.at, **changes)
    except asyncpg.UniqueViolationError:
        raise _label_taken(changes.get("label") or "") from None
    await _capacity_changed(tx, site_id)
    change = Change.of(AuditAction.UPDATE, ObjectType.BED, bed_id, changes, before=dict(current))
    if capacity.bed_change_alters_search(change.fields):
        change = change.announcing(site_id, AvailabilityCause.BED_CHANGED)
    await record(tx, change)
    return _shown_bed(row)


async def delete_bed(tx: Tx, site_id: UUID, bed_id: UUID, version_ok: VersionCheck) -> None:
    """Retire the bed (past bookings keep pointing at it), unless anything still claims it
    from now on: 409 naming that claim."""
    await _bed_to_change(tx, site_id, bed_id, version_ok)
    claim = await allocations.find_future_claim(tx.conn, bed_id, tx.at)
    if claim is not None:
        raise claims.overlap(
            claim, slug="bed-in-use", detail="the bed is still claimed; end that claim first"
        )
    await beds.retire(tx.conn, bed_id, tx.at)
    await _capacity_changed(tx, site_id)
    await record(
        tx,
        Change.of(
            AuditAction.DELETE,
            ObjectType.BED,
            bed_id,
            site_id=site_id,
            cause=AvailabilityCause.BED_REMOVED,
        ),
    )


# --- blocks -----------------------------------------------------------------------------


async def list_blocks(
    tx: ReadTx,
    site_id: UUID,
    *,
    bed_id: UUID | None,
    start: datetime | None,
    end: datetime | None,
    after: Position | None,
    limit: int,
) -> Page[BlockShown]:
    _reader(tx)
    await _own_site(tx, site_id)
    rows = await allocations.list_blocks(
        tx.conn, site_id, bed_id=bed_id, start=start, end=end, after=after, limit=limit + 1
    )
    return paging.page(rows, limit, paging.by_created).map(_shown_block)


async def create_block(tx: Tx, site_id: UUID, block: NewBlock) -> BlockShown:
    """Take a bed out of use for a period. It claims the bed's time as a booking does (an
    out-of-service bed may be blocked all the same): 409 naming the claim in the way."""
    _writer(tx)
    await _own_site(tx, site_id)
    if await beds.get(tx.conn, site_id, block.bed_id) is None:
        raise NotFound("bed not found at this site")

    async def insert() -> asyncpg.Record:
        return await allocations.insert_block(
            tx.conn, site_id, block.bed_id, block.start, block.end, block.reason, tx.at
        )

    try:
        row = await claim_bed(
            tx, block.bed_id, block.start, block.end, insert, in_service_only=False
        )
    except ClaimRefused as refused:
        if refused.removed:
            raise NotFound("bed not found at this site") from None
        raise claims.overlap(
            refused.claim, slug="overlap", detail="the bed is already claimed in that period"
        ) from None
    await _capacity_changed(tx, site_id)
    await record(
        tx,
        Change.of(
            AuditAction.CREATE,
            ObjectType.BLOCK,
            row["id"],
            asdict(block),
            site_id=site_id,
            cause=AvailabilityCause.BLOCK_ADDED,
        ),
    )
    return _shown_block(row)


async def delete_block(tx: Tx, site_id: UUID, block_id: UUID) -> None:
    _writer(tx)
    await _own_site(tx, site_id)
    if await allocations.delete_block(tx.conn, site_id, block_id) is None:
        raise NotFound("block not found")
    await _capacity_changed(tx, site_id)
    await record(
        tx,
        Change.of(
            AuditAction.DELETE,
            ObjectType.BLOCK,
            block_id,
            site_id=site_id,
            cause=AvailabilityCause.BLOCK_REMOVED,
        ),
    )


# --- occupancy --------------------------------------------------------------------------


async def occupancy(tx: ReadTx, site_id: UUID, start: datetime, end: datetime) -> OccupancyShown:
    """Each bed of the site in use, with every claim on it overlapping [start, end), as the
    API shows it (the SQL builds each bed's list of claims)."""
    _reader(tx)
    await _own_site(tx, site_id)
    rows = await allocations.occupancy(tx.conn, site_id, start, end, tx.at)
    return OccupancyShown(
        site_id=site_id,
        start=start,
        end=end,
        beds=tuple(BedOccupancy.model_validate(dict(r)) for r in rows),
    )

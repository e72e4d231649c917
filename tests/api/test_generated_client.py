"""A client nobody here wrote (issue 17): `openapi-python-client` generates one from openapi.yaml,
without a warning about anything it had to drop, and that client runs both README
walk-throughs and reads every report shape (JSON, each `group_by`, publishable on and off)
against the running service. Its parsers are strict about types: a count that is sometimes a
string (`"<5"`) broke every report call before."""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest

from tests.support.api import SPEC_PATH
from tests.support.clock import ManualClock
from tests.support.world import World, unique

pytestmark = pytest.mark.slow

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "pos_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, imported; the generator's output must carry no warning."""
    if not GENERATOR.exists():
        # `-ra` (pyproject's addopts) prints the reason in the run's summary.
        pytest.skip("openapi-python-client is not installed (pip install -e '.[dev]')")
    where = tmp_path_factory.mktemp("generated")
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(SPEC_PATH),
            "--meta",
            "none",
            "--output-path",
            str(where / PACKAGE),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(where))
    try:
        yield _Generated(importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


class _Generated:
    """The generated package's modules, by their dotted names under it."""

    def __init__(self, package: ModuleType) -> None:
        self.package = package

    def __getattr__(self, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.{name.replace('__', '.')}")


def _base(world: World) -> str:
    return str(world.api.client.make_url("")).rstrip("/")


async def test_a_generated_client_runs_the_walk_through_and_reads_every_report(
    world: World, clock: ManualClock, generated: Any
) -> None:
    g = generated
    # A month of this test's own, far ahead, so a publishable report holds only what it did.
    early = datetime(random.randrange(2200, 2900), random.randrange(1, 13), 1, tzinfo=UTC)
    clock.set(early + timedelta(days=2))
    lat, lon = round(random.uniform(50.5, 55.0), 4), round(random.uniform(-3.5, 0.5), 4)
    site = await world.site(location={"lat": lat, "lon": lon}, languages=["en", "ro"])
    await world.bed(site["id"])

    def client(key: str) -> Any:
        return g.client.AuthenticatedClient(base_url=_base(world), token=key)

    officer, provider, admin = client(world.officer), client(world.provider), client(world.admin)
    async with officer, provider, admin:
        # 1. Search (language first, then distance).
        now = clock.now()
        found = await g.api__bookings__search_availability.asyncio_detailed(
            client=officer,
            end=now + timedelta(hours=24),
            gender=g.models.Gender.FEMALE,
            language="ro",
            near_lat=lat,
            near_lon=lon,
            max_km=5,
            limit=100,
        )
        assert found.status_code == HTTPStatus.OK, found.content
        assert UUID(site["id"]) in [item.site_id for item in found.parsed.items]

        # 2. Hold for 48 hours, retry-safe.
        body = g.models.BookingIn(
            site_id=UUID(site["id"]),
            start=now,
            end=now + timedelta(hours=48),
            needs=g.models.NeedsIn(gender=g.models.Gender.FEMALE, language="ro"),
            person_ref=unique("MET-24-"),
            custody_suite="Wembley",
            officer_collar="PC 4471",
        )
        held = await g.api__bookings__create_booking.asyncio_detailed(
            client=officer, body=body, idempotency_key=unique("walk-through")
        )
        assert held.status_code == HTTPStatus.CREATED, held.content
        booking = str(held.parsed.id)
        assert held.parsed.status == g.models.BookingStatus.HELD

        # 3. Confirm: the stay starts now, so the address is shown.
        confirmed = await g.api__bookings__confirm_booking.asyncio_detailed(booking, client=officer)
        assert confirmed.status_code == HTTPStatus.OK, confirmed.content
        assert confirmed.parsed.status == g.models.BookingStatus.CONFIRMED
        assert confirmed.parsed.site.address == site["address"]

        # 4. The provider checks the person in, and later out.
        clock.advance(hours=1)
        arrived = await g.api__bookings__check_in_booking.asyncio_detailed(booking, client=provider)
        assert arrived.status_code == HTTPStatus.OK, arrived.content
        assert arrived.parsed.status == g.models.BookingStatus.ARRIVED
        clock.advance(hours=20)
        departed = await g.api__bookings__check_out_booking.asyncio_detailed(
            booking, client=provider, body=g.models.ActionIn(reason="entered the NRM")
        )
        assert departed.status_code == HTTPStatus.OK, departed.content
        assert departed.parsed.status == g.models.BookingStatus.DEPARTED

        # 5. Who did what, when and why.
        read = await g.api__bookings__get_booking.asyncio_detailed(booking, client=officer)
        assert read.status_code == HTTPStatus.OK, read.content
        assert [step.status for step in read.parsed.history] == [
            g.models.BookingStatus.HELD,
            g.models.BookingStatus.CONFIRMED,
            g.models.BookingStatus.ARRIVED,
            g.models.BookingStatus.DEPARTED,
        ]

        # Every report shape: each grouping, publishable off and on, as each role.
        month_end = datetime(early.year + early.month // 12, early.month % 12 + 1, 1, tzinfo=UTC)
        group_by = g.api__reports__get_report_summary.GetReportSummaryGroupBy
        calls = 0
        for who, narrow in (
            (admin, {"force": world.force}),
            (admin, {"provider": UUID(world.provider_id)}),
            (officer, {}),
            (provider, {}),
        ):
            for grouping in group_by:
                for publishable in (False, True):
                    reply = await g.api__reports__get_report_summary.asyncio_detailed(
                        client=who,
                        start=early,
                        end=month_end,
                        group_by=grouping,
                        publishable=publishable,
                        **narrow,
                    )
                    calls += 1
                    assert reply.status_code == HTTPStatus.OK, reply.content
                    report = reply.parsed
                    assert isinstance(report, g.models.ReportSummary), reply.content
                    assert report.publishable is publishable
                    (group,) = report.groups
                    # One hold, one confirmation, one arrival, one departure: exact, or
                    # suppressed (null, named in `suppressed`) when publishable.
                    for name in ("holds", "confirmations", "arrivals", "departures"):
                        shown = getattr(group, name)
                        if publishable:
                            assert shown is None and name in group.suppressed, (name, group)
                        else:
                            assert shown == 1, (name, grouping, shown)
                    assert group.expiries == 0
                    assert (group.suppressed != []) is publishable
                    assert group.declined_by_reason.other == 0
                    assert group.feedback.responses == 0
        assert calls == 32


async def test_a_generated_client_runs_the_provider_walk_through(
    world: World, clock: ManualClock, generated: Any
) -> None:
    """The README's second walk-through: an admin registers a force, a provider and its key;
    the provider registers a site, three beds and a block, and reads the timeline back."""
    g = generated
    m = g.models
    admin = g.client.AuthenticatedClient(base_url=_base(world), token=world.admin)
    async with admin:
        code = unique("btp")
        force = await g.api__reference_data__create_force.asyncio_detailed(
            client=admin, body=m.ForceIn(code=code, name=f"British Transport Police {code}")
        )
        assert force.status_code == HTTPStatus.CREATED, force.content
        provider = await g.api__reference_data__create_provider.asyncio_detailed(
            client=admin, body=m.ProviderIn(name=unique("Open Door Shelters"))
        )
        assert provider.status_code == HTTPStatus.CREATED, provider.content
        key = await g.api__api_keys__create_api_key.asyncio_detailed(
            client=admin,
            body=m.ApiKeyIn(
                name="Open Door duty desk", role=m.Role.PROVIDER, provider_id=provider.parsed.id
            ),
        )
        assert key.status_code == HTTPStatus.CREATED, key.content
    duty = g.client.AuthenticatedClient(base_url=_base(world), token=key.parsed.key)
    async with duty:
        site = await g.api__capacity__create_site.asyncio_detailed(
            client=duty,
            body=m.SiteIn(
                name="Open Door Leeds",
                address="1 Example Street, Leeds LS1 1AA",
                area="Leeds",
                location=m.LocationIn(lat=53.7997, lon=-1.5492),
                genders_accepted=[m.Gender.FEMALE],
                languages=["en", "ro"],
                interpreter_on_call=True,
                booking_mode=m.SiteInBookingMode.INSTANT,
                max_stay_hours=72,
                phone="+44 113 496 0000",
            ),
        )
        assert site.status_code == HTTPStatus.CREATED, site.content
        site_id = str(site.parsed.id)
        for bed in (
            m.BedIn(label="Room 1", room_type=m.RoomType.SINGLE),
            m.BedIn(label="Room 2", room_type=m.RoomType.SINGLE, wheelchair_accessible=True),
            m.BedIn(label="Family room", room_type=m.RoomType.FAMILY, max_dependants=3),
        ):
            made = await g.api__capacity__create_bed.asyncio_detailed(
                site_id, client=duty, body=bed
            )
            assert made.status_code == HTTPStatus.CREATED, made.content
        beds = await g.api__capacity__list_beds.asyncio_detailed(site_id, client=duty)
        assert beds.status_code == HTTPStatus.OK, beds.content
        assert len(beds.parsed.items) == 3
        day = (clock.now() + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
        block = await g.api__capacity__create_block.asyncio_detailed(
            site_id,
            client=duty,
            body=m.BlockIn(
                bed_id=beds.parsed.items[0].id,
                start=day,
                end=day + timedelta(days=1),
                reason="boiler repair",
            ),
        )
        assert block.status_code == HTTPStatus.CREATED, block.content
        timeline = await g.api__capacity__get_occupancy.asyncio_detailed(
            site_id, client=duty, start=day - timedelta(hours=9), end=day + timedelta(days=2)
        )
        assert timeline.status_code == HTTPStatus.OK, timeline.content
        reasons = [a.reason for bed in timeline.parsed.beds for a in bed.allocations]
        assert reasons == ["boiler repair"]

"""The demo data set: the 43 territorial forces of England and Wales, five providers, 51 sites
at real town coordinates, and three demo keys. Addresses and phone numbers are fictional
(01632 960xxx is Ofcom's range for drama); the keys are published in the README, which is why
production refuses SEED_DEMO."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from service.auth import display_prefix, hash_key
from service.clock import SystemClock
from service.db import Connection
from service.migrate import LOCK_CLASS
from service.queries import api_keys, beds, reference, sites
from service.usecases import tx
from service.vocab import AuditAction, BookingMode, Gender, ObjectType, RoomType, SiteStatus

log = structlog.get_logger(__name__)

SEED_LOCK = (LOCK_CLASS, 2)

# Published demo keys; production refuses SEED_DEMO, so they never exist there.
DEMO_ADMIN_KEY = "pos_demo_admin"
DEMO_OFFICER_KEY = "pos_demo_officer_met"
DEMO_PROVIDER_KEY = "pos_demo_provider_haven"

FORCES = [
    ("asp", "Avon and Somerset Constabulary"),
    ("bdp", "Bedfordshire Police"),
    ("cam", "Cambridgeshire Constabulary"),
    ("chs", "Cheshire Constabulary"),
    ("col", "City of London Police"),
    ("clv", "Cleveland Police"),
    ("cum", "Cumbria Constabulary"),
    ("dby", "Derbyshire Constabulary"),
    ("dcp", "Devon and Cornwall Police"),
    ("dor", "Dorset Police"),
    ("dur", "Durham Constabulary"),
    ("dpp", "Dyfed-Powys Police"),
    ("esx", "Essex Police"),
    ("glo", "Gloucestershire Constabulary"),
    ("gmp", "Greater Manchester Police"),
    ("gwe", "Gwent Police"),
    ("ham", "Hampshire and Isle of Wight Constabulary"),
    ("hrt", "Hertfordshire Constabulary"),
    ("hum", "Humberside Police"),
    ("ken", "Kent Police"),
    ("lan", "Lancashire Constabulary"),
    ("lei", "Leicestershire Police"),
    ("lin", "Lincolnshire Police"),
    ("mer", "Merseyside Police"),
    ("met", "Metropolitan Police Service"),
    ("nfk", "Norfolk Constabulary"),
    ("nwp", "North Wales Police"),
    ("nyp", "North Yorkshire Police"),
    ("nth", "Northamptonshire Police"),
    ("nbr", "Northumbria Police"),
    ("ntt", "Nottinghamshire Police"),
    ("swp", "South Wales Police"),
    ("syp", "South Yorkshire Police"),
    ("sta", "Staffordshire Police"),
    ("sfk", "Suffolk Constabulary"),
    ("sur", "Surrey Police"),
    ("ssx", "Sussex Police"),
    ("tvp", "Thames Valley Police"),
    ("war", "Warwickshire Police"),
    ("wmc", "West Mercia Police"),
    ("wmp", "West Midlands Police"),
    ("wyp", "West Yorkshire Police"),
    ("wil", "Wiltshire Police"),
]

HAVEN = "Haven Trust"
PROVIDERS = [
    HAVEN,
    "Northern Lights Refuge",
    "Midlands Safe Stay",
    "Cymru Safe Homes",
    "Safe Passage South West",
]
# Each provider's 24-hour duty phone (Ofcom's numbers for drama: none rings anyone).
DUTY_PHONES = {name: f"+44 20 7946 0{100 + n:03d}" for n, name in enumerate(PROVIDERS)}
# Every seventh house gives its address by phone only, as refuges for people fleeing violence
# do (none of the README walk-through's two).
PHONE_ONLY_EVERY = 7

# (area shown to officers, lat, lon, provider)
TOWNS = [
    ("London (Lambeth)", 51.4607, -0.1163, HAVEN),
    ("London (Camden)", 51.5390, -0.1426, HAVEN),
    ("London (Croydon)", 51.3762, -0.0982, HAVEN),
    ("London (Ealing)", 51.5130, -0.3089, HAVEN),
    ("London (Newham)", 51.5255, 0.0352, HAVEN),
    ("Luton", 51.8787, -0.4200, HAVEN),
    ("Chelmsford", 51.7356, 0.4685, HAVEN),
    ("Southend-on-Sea", 51.5459, 0.7077, HAVEN),
    ("Reading", 51.4543, -0.9781, HAVEN),
    ("Oxford", 51.7520, -1.2577, HAVEN),
    ("Milton Keynes", 52.0406, -0.7594, HAVEN),
    ("Brighton", 50.8225, -0.1372, HAVEN),
    ("Maidstone", 51.2704, 0.5227, HAVEN),
    ("Canterbury", 51.2802, 1.0789, HAVEN),
    ("Guildford", 51.2362, -0.5704, HAVEN),
    ("Manchester", 53.4808, -2.2426, "Northern Lights Refuge"),
    ("Bolton", 53.5769, -2.4282, "Northern Lights Refuge"),
    ("Liverpool", 53.4084, -2.9916, "Northern Lights Refuge"),
    ("Leeds", 53.8008, -1.5491, "Northern Lights Refuge"),
    ("Bradford", 53.7960, -1.7594, "Northern Lights Refuge"),
    ("Sheffield", 53.3811, -1.4701, "Northern Lights Refuge"),
    ("Hull", 53.7676, -0.3274, "Northern Lights Refuge"),
    ("York", 53.9600, -1.0873, "Northern Lights Refuge"),
    ("Newcastle upon Tyne", 54.9783, -1.6178, "Northern Lights Refuge"),
    ("Sunderland", 54.9069, -1.3838, "Northern Lights Refuge"),
    ("Middlesbrough", 54.5742, -1.2350, "Northern Lights Refuge"),
    ("Carlisle", 54.8925, -2.9329, "Northern Lights Refuge"),
    ("Preston", 53.7632, -2.7031, "Northern Lights Refuge"),
    ("Birmingham", 52.4862, -1.8904, "Midlands Safe Stay"),
    ("Coventry", 52.4068, -1.5197, "Midlands Safe Stay"),
    ("Wolverhampton", 52.5862, -2.1288, "Midlands Safe Stay"),
    ("Nottingham", 52.9548, -1.1581, "Midlands Safe Stay"),
    ("Derby", 52.9225, -1.4746, "Midlands Safe Stay"),
    ("Leicester", 52.6369, -1.1398, "Midlands Safe Stay"),
    ("Lincoln", 53.2307, -0.5406, "Midlands Safe Stay"),
    ("Northampton", 52.2405, -0.9027, "Midlands Safe Stay"),
    ("Norwich", 52.6309, 1.2974, "Midlands Safe Stay"),
    ("Peterborough", 52.5695, -0.2405, "Midlands Safe Stay"),
    ("Stoke-on-Trent", 53.0027, -2.1794, "Midlands Safe Stay"),
    ("Cardiff", 51.4816, -3.1791, "Cymru Safe Homes"),
    ("Swansea", 51.6214, -3.9436, "Cymru Safe Homes"),
    ("Newport", 51.5842, -2.9977, "Cymru Safe Homes"),
    ("Wrexham", 53.0465, -2.9938, "Cymru Safe Homes"),
    ("Bangor", 53.2274, -4.1293, "Cymru Safe Homes"),
    ("Aberystwyth", 52.4153, -4.0829, "Cymru Safe Homes"),
    ("Bristol", 51.4545, -2.5879, "Safe Passage South West"),
    ("Exeter", 50.7184, -3.5339, "Safe Passage South West"),
    ("Plymouth", 50.3755, -4.1427, "Safe Passage South West"),
    ("Southampton", 50.9097, -1.4044, "Safe Passage South West"),
    ("Bournemouth", 50.7192, -1.8808, "Safe Passage South West"),
    ("Gloucester", 51.8642, -2.2382, "Safe Passage South West"),
]

STREETS = [
    "Station Road",
    "Church Lane",
    "Victoria Street",
    "Mill Road",
    "Park Avenue",
    "Queens Road",
    "High Street",
    "Chapel Street",
    "Orchard Close",
    "Elm Grove",
]
# Staff languages beyond English, weighted to the nationalities most often referred to the NRM.
LANGUAGES = [
    "sq",
    "vi",
    "ro",
    "pl",
    "ar",
    "ti",
    "fa",
    "zh",
    "ur",
    "lt",
    "bg",
    "sk",
    "uk",
    "so",
    "am",
    "ku",
    "pa",
    "es",
    "pt",
    "fr",
]
GENDER_MIXES: list[list[Gender]] = [
    [Gender.FEMALE],
    [Gender.FEMALE],
    [Gender.FEMALE, Gender.NON_BINARY],
    [Gender.MALE],
    [Gender.MALE, Gender.NON_BINARY],
    [Gender.FEMALE, Gender.MALE, Gender.NON_BINARY],
]


@dataclass(frozen=True)
class DemoKey:
    role: str
    secret: str
    name: str


DEMO_KEYS = [
    DemoKey("admin", DEMO_ADMIN_KEY, "demo admin"),
    DemoKey("officer", DEMO_OFFICER_KEY, "demo officer (met)"),
    DemoKey("provider", DEMO_PROVIDER_KEY, f"demo provider ({HAVEN})"),
]


Values = dict[str, Any]


def _bed(label: str, room_type: RoomType, **given: Any) -> Values:
    """A bed's columns: what the API takes by default unless given."""
    return {
        "label": label,
        "room_type": room_type,
        "wheelchair_accessible": False,
        "max_dependants": 0,
        "in_service": True,
        **given,
    }


def demo_sites(rng: random.Random) -> list[tuple[str, Values, list[Values]]]:
    """Every demo site's columns with its beds', by provider name; the same on every run
    (seeded rng: the draws below happen in a fixed order, so keep it).

    The two nearest central London are fixed: women's sites, instant booking, so the README's
    walk-through behaves the same for everyone.
    """
    result = []
    for index, (area, lat, lon, provider) in enumerate(TOWNS):
        town = area.split(" (")[-1].rstrip(")")
        fixed = index < 2
        welsh = provider == "Cymru Safe Homes"
        languages = ["en", *(["cy"] if welsh else []), *rng.sample(LANGUAGES, rng.randint(0, 3))]
        site: Values = {
            "name": f"{provider.split()[0]} House {town}",
            "address": f"{rng.randint(2, 180)} {rng.choice(STREETS)}, {town}",
            "area": area,
            "lat": lat,
            "lon": lon,
            "genders_accepted": [Gender.FEMALE] if fixed else rng.choice(GENDER_MIXES),
            "languages": ["en", "ro", "sq"] if fixed else languages,
            "interpreter_on_call": True if fixed else rng.random() < 0.5,
            "booking_mode": BookingMode.INSTANT
            if fixed or rng.random() < 0.75
            else BookingMode.REQUEST,
            "max_stay_hours": 72 if fixed else rng.choice([48, 72, 72, 72, 96]),
            "status": SiteStatus.ACTIVE,
            "phone": f"+44 1632 960{index:03d}",
            "address_by_phone_only": index % PHONE_ONLY_EVERY == PHONE_ONLY_EVERY - 1,
        }
        bed_list = [_bed(f"Room {n + 1}", RoomType.SINGLE) for n in range(rng.randint(2, 5))]
        if rng.random() < 0.3:
            bed_list.append(_bed("Shared room A", RoomType.SHARED))
        if fixed or rng.random() < 0.45:
            bed_list.append(_bed("Family room", RoomType.FAMILY, max_dependants=rng.randint(2, 4)))
        if fixed or rng.random() < 0.4:
            bed_list.append(_bed("Accessible room", RoomType.SINGLE, wheelchair_accessible=True))
        result.append((provider, site, bed_list))
    return result


async def seed_demo(conn: Connection, at: datetime | None = None) -> bool:
    """Load the demo data set unless it is there already; returns whether it seeded.

    One transaction under an advisory lock: replicas starting together seed once, and a failed
    seed leaves nothing half-made. The sites and beds it makes are audited as made by "cli";
    they announce no availability change (nothing can have searched a database being seeded).
    """
    async with tx.writing(conn, at=at or SystemClock().now(), who=None, on_behalf="cli") as unit:
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *SEED_LOCK)
        if await api_keys.exists(conn, hash_key(DEMO_ADMIN_KEY)):
            return False
        made: dict[ObjectType, list[tuple[Any, list[str]]]] = {
            ObjectType.FORCE: [],
            ObjectType.PROVIDER: [],
            ObjectType.API_KEY: [],
            ObjectType.SITE: [],
            ObjectType.BED: [],
        }
        for code, name in FORCES:
            if await reference.ensure_force(conn, code, name, at=unit.at):
                made[ObjectType.FORCE].append((code, ["code", "name"]))
        provider_ids = {}
        for name in PROVIDERS:
            found = await reference.find_provider_by_name(conn, name)
            if found is None:
                found = await reference.create_provider(
                    conn, name, at=unit.at, duty_phone=DUTY_PHONES[name]
                )
                assert found is not None, "the seed lock keeps out a concurrent seed"
                made[ObjectType.PROVIDER].append((found["id"], ["duty_phone", "name"]))
            provider_ids[name] = found["id"]
        # A fixed seed, so every demo database is the same (not for anything secret).
        for provider, site, bed_list in demo_sites(random.Random(2026)):  # noqa: S311
            row = await sites.create(conn, provider_ids[provider], at=unit.at, **site)
            made[ObjectType.SITE].append((row["id"], _api_fields(site)))
            for bed in bed_list:
                bed_row = await beds.create(conn, row["id"], at=unit.at, **bed)
                made[ObjectType.BED].append((bed_row["id"], sorted(bed)))
        for key in DEMO_KEYS:
            key_id = await api_keys.create_if_absent(
                conn,
                name=key.name,
                role=key.role,
                force_code="met" if key.role == "officer" else None,
                provider_id=provider_ids[HAVEN] if key.role == "provider" else None,
                key_hash=hash_key(key.secret),
                prefix=display_prefix(key.secret),
                at=unit.at,
            )
            if key_id is not None:
                scope = {"officer": ["force"], "provider": ["provider_id"]}.get(key.role, [])
                made[ObjectType.API_KEY].append((key_id, ["name", "role", *scope]))
        for object_type, objects in made.items():
            await unit.audit_many(AuditAction.CREATE, object_type, objects)
    log.info("demo data seeded", forces=len(FORCES), providers=len(PROVIDERS), sites=len(TOWNS))
    return True


def _api_fields(site: Values) -> list[str]:
    """A site's columns as the API names its fields: lat and lon are its location."""
    return sorted({"location" if name in {"lat", "lon"} else name for name in site})


async def live_demo_keys(conn: Connection) -> list[DemoKey]:
    """The demo keys that exist and are not revoked (printed at start)."""
    return [k for k in DEMO_KEYS if await api_keys.is_live(conn, hash_key(k.secret))]

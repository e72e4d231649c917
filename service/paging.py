"""Opaque cursor paging: a cursor is the sort key of the last item, so pages stay stable when
rows are inserted between calls."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.errors import ValidationProblem
from service.text import parse_timestamp, refused_character

P = TypeVar("P")
T = TypeVar("T")
U = TypeVar("U")

# Most lists sort by (created_at, id); reference data by its natural key.
Position = tuple[datetime, UUID]


def encode(*values: object) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else str(v) for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# Issued cursors are unpadded base64url and well under 200 characters; refusing anything else
# before decoding bounds the work (and the nesting) a crafted one can cause. openapi.yaml says
# the same as the Cursor parameter's pattern.
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,512}")


class _NotACursor(Exception):
    pass


def _decode(cursor: str, parse: Callable[[list[Any]], P]) -> P:
    """Any cursor this service did not issue is a 400 naming `cursor`, however it is made."""
    try:
        if not _CURSOR.fullmatch(cursor):
            raise _NotACursor
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list):
            raise _NotACursor
        return parse(values)
    except (_NotACursor, binascii.Error, ValueError, TypeError, RecursionError):
        raise ValidationProblem(
            "cursor is not one this service issued",
            errors=[{"field": "cursor", "message": "not a cursor this service issued"}],
        ) from None


class Sealer:
    """Cursors that show nothing (issue 14 item 8): numbers sealed with AES-GCM under the
    database's `cursor_key` (sql/0016), as unpadded base64url.

    For positions that would tell a reader about other scopes: the feed's (transaction id,
    event id) holds the server's transaction horizon and a global sequence. A fresh nonce per
    cursor, so the same position sealed twice gives two cursors (a reader cannot tell whether
    anything moved), and a fixed length whatever the numbers. The purpose is sealed with it
    (as associated data), so a cursor of one list is refused by another. Every replica reads
    the same key from the database.
    """

    NONCE_BYTES = 12
    TAG_BYTES = 16

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, purpose: str, *numbers: int) -> str:
        nonce = os.urandom(self.NONCE_BYTES)
        sealed = self._aead.encrypt(
            nonce, struct.pack(f">{len(numbers)}Q", *numbers), purpose.encode()
        )
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, purpose: str, cursor: str, count: int) -> tuple[int, ...]:
        """The numbers sealed in `cursor` for `purpose`; ValueError for anything else."""
        if not _CURSOR.fullmatch(cursor):
            raise ValueError("not a cursor")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) < self.NONCE_BYTES + self.TAG_BYTES:
            raise ValueError("not a cursor")
        nonce, sealed = raw[: self.NONCE_BYTES], raw[self.NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, purpose.encode())
        except InvalidTag:
            raise ValueError("not a cursor") from None
        if len(plain) != 8 * count:
            raise ValueError("not a cursor")
        return struct.unpack(f">{count}Q", plain)

    def opened(self, purpose: str, cursor: str, count: int, field: str) -> tuple[int, ...]:
        """`open`, with anything this service did not issue a 400 naming `field`."""
        try:
            return self.open(purpose, cursor, count)
        except ValueError:
            raise ValidationProblem(
                f"{field} is not a cursor this service issued",
                errors=[{"field": field, "message": "not a cursor this service issued"}],
            ) from None


class SealerSource:
    """The Sealer, made on first use from the key read by `read_key`: a database not migrated
    yet has none (the app still starts, and /readyz says it is behind)."""

    def __init__(self, read_key: Callable[[], Awaitable[bytes]]) -> None:
        self._read_key = read_key
        self._sealer: Sealer | None = None

    async def get(self) -> Sealer:
        if self._sealer is None:
            self._sealer = Sealer(await self._read_key())
        return self._sealer


def _position(values: list[Any]) -> Position:
    if len(values) != 2 or not all(isinstance(v, str) for v in values):
        raise _NotACursor
    at, ident = values
    # The same rules as a timestamp a client sends: an offset, years 1 to 9999 in UTC.
    return parse_timestamp(at), UUID(ident)


def _text(values: list[Any]) -> str:
    if len(values) != 1 or not isinstance(values[0], str):
        raise _NotACursor
    value: str = values[0]
    if refused_character(value) is not None:
        raise _NotACursor
    return value


def decode_position(cursor: str | None) -> Position | None:
    return None if cursor is None else _decode(cursor, _position)


def decode_text(cursor: str | None) -> str | None:
    return None if cursor is None else _decode(cursor, _text)


BIGINT_MAX = 2**63 - 1


def decode_row_id(cursor: str | None) -> int | None:
    """A cursor holding a bigint row id (the audit log, webhook deliveries)."""
    position = decode_text(cursor)
    if position is None:
        return None
    if not (position.isascii() and position.isdigit()) or int(position) > BIGINT_MAX:
        raise ValidationProblem(
            "cursor is not one this service issued",
            errors=[{"field": "cursor", "message": "not a cursor this service issued"}],
        )
    return int(position)


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a list, as every use case that lists returns it: its items, and the cursor of
    the page after (None on the last)."""

    items: list[T]
    next_cursor: str | None

    def map(self, shown: Callable[[T], U]) -> Page[U]:
        return Page([shown(item) for item in self.items], self.next_cursor)


def page(rows: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """The one place a page is finished. Rows were fetched with LIMIT limit + 1: the extra
    row only says another page exists, and the cursor is the last item's."""
    items = list(rows[:limit])
    if len(rows) > limit and items:
        return Page(items, cursor_of(items[-1]))
    return Page(items, None)


class Row(Protocol):
    def __getitem__(self, key: str) -> Any: ...


def by_created(row: Row) -> str:
    """The cursor of a row sorted by (created_at, id)."""
    return encode(row["created_at"], row["id"])

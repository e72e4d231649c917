"""Row ids that sort in the order they were made (UUID version 7, RFC 9562)."""

from __future__ import annotations

import secrets
import threading
import time
from uuid import UUID

_lock = threading.Lock()
_last = 0


def new_id() -> UUID:
    """A UUIDv7: 48 bits of wall-clock milliseconds, a 12-bit sequence, 62 random bits.

    Lists page by (created_at, id), and created_at is the clock's one reading for the whole
    transaction (a test's clock may not move at all), so rows made at the same instant fall
    back on the id: it must keep creation order. The sequence makes ids from this process
    strictly increasing even within one millisecond (on overflow it borrows the next one).
    The time comes from the wall clock, not the injectable one: it orders, it records nothing.
    """
    global _last
    with _lock:
        _last = max(_last + 1, time.time_ns() // 1_000_000 << 12)
        stamp = _last
    value = (stamp >> 12) << 80 | 0x7 << 76 | (stamp & 0xFFF) << 64
    value |= 0b10 << 62 | secrets.randbits(62)
    return UUID(int=value)

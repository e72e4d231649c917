"""New ids: UUIDv7 (RFC 9562), time-ordered, so rows created within one tick of the clock that
stamps `created_at` (a test's manual clock stands still) still list in the order they were made,
and new rows land at the right-hand end of each primary-key index."""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID

_lock = threading.Lock()
_last = 0


def new_id() -> UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits; strictly increasing within
    this process (a value not above the last one is bumped past it)."""
    global _last
    millis = time.time_ns() // 1_000_000
    # The 122 bits that are not version or variant: the time, then 74 random bits.
    value = (millis << 74) | (int.from_bytes(os.urandom(10), "big") >> 6)
    with _lock:
        if value <= _last:
            value = _last + 1
        _last = value
    # Spread into the layout: time and the first 12 random bits, version 7, the RFC 9562
    # variant, the other 62 random bits. The fixed bits are the same in every id, so the
    # order is kept.
    high, low = value >> 62, value & ((1 << 62) - 1)
    return UUID(int=(high >> 12) << 80 | 0x7 << 76 | (high & 0xFFF) << 64 | 0x2 << 62 | low)

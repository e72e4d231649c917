"""API keys: generation, hashing and issuing (the secret is shown once, stored as a hash)."""

from __future__ import annotations

import hashlib
import secrets
from uuid import UUID

import asyncpg

from service.db import Connection
from service.queries import api_keys
from service.vocab import Role

KEY_PREFIX = "pos_"
# Enough of the key to tell keys apart in a listing; far too little to guess the rest.
DISPLAY_PREFIX_LENGTH = 12


def generate_key() -> str:
    """A new secret: 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    """Keys are random 256-bit secrets, so one SHA-256 is enough (no password stretching)."""
    return hashlib.sha256(key.encode()).digest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]


async def issue_key(
    conn: Connection,
    *,
    name: str,
    role: Role,
    force_code: str | None,
    provider_id: UUID | None,
) -> tuple[asyncpg.Record, str]:
    """Create a key; returns its row and the secret, which is never stored or shown again."""
    secret = generate_key()
    row = await api_keys.create(
        conn,
        name=name,
        role=role,
        force_code=force_code,
        provider_id=provider_id,
        key_hash=hash_key(secret),
        prefix=display_prefix(secret),
    )
    return row, secret

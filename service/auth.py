"""API keys (generation, hashing), the caller's principal, and role and scope checks."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import asyncpg

from service.db import Connection
from service.errors import Forbidden, NotFound
from service.queries import api_keys

Role = Literal["admin", "officer", "provider"]

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


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one API key, its role and its scope."""

    key_id: UUID
    role: Role
    force_code: str | None = None
    provider_id: UUID | None = None

    @property
    def actor(self) -> str:
        """How this caller is named in histories and audit: role and scope, never the key."""
        if self.role == "officer":
            return f"officer:{self.force_code}"
        if self.role == "provider":
            return f"provider:{self.provider_id}"
        return "admin"


def require_role(principal: Principal, *roles: Role) -> None:
    """403 unless the caller has one of `roles`."""
    if principal.role not in roles:
        allowed = " or ".join(roles)
        raise Forbidden(
            f"this action needs the {allowed} role; your key has the {principal.role} role"
        )


def check_provider_scope(principal: Principal, provider_id: UUID, what: str) -> None:
    """Another provider's object is answered 404: its existence is not revealed."""
    if principal.role == "provider" and principal.provider_id != provider_id:
        raise NotFound(f"{what} not found")

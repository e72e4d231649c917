"""API key secrets: generation and hashing (the secret is shown once, stored as a hash; issuing
a key is service.usecases.api_keys.issue_key)."""

from __future__ import annotations

import hashlib
import secrets

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

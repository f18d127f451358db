"""Passwords (argon2) and bearer tokens (random, stored as SHA-256 digests).

A password is hashed with argon2id, slow on purpose. A token is 32 random bytes: guessing it is
hopeless, so a fast digest is enough at rest and lets every request find its token by one indexed
lookup; the plain token is shown once, when it is issued.
"""
from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "lct_"
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("an unused password that keeps timing even")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; a missing hash costs the same time as a wrong password."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def password_problem(password: object) -> str | None:
    if not isinstance(password, str):
        return "must be text"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters long"
    if len(password) > 1024:
        return "may be at most 1024 characters long"
    return None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_hint(token: str) -> str:
    """What lists show of a token: its prefix and last characters."""
    return f"{TOKEN_PREFIX}…{token[-4:]}"

"""Who is calling (docs/api.md).

* Browsers carry a signed, HttpOnly, SameSite=Lax cookie with a random user id, set on the
  first visit to ``/`` or ``/api/me``.
* API clients send ``Authorization: Bearer <token>``: a static token from
  ``SLUICE_API_TOKENS`` (compared in constant time) or, with ``SLUICE_JWT_SECRET``, an HS256
  JWT whose ``sub`` is the user id (expiry checked).

A bearer header that does not check out is a 401: it never falls back to the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt

from server.config import AuthSettings

__all__ = [
    "Identity",
    "InvalidCredentials",
    "TokenAuthenticator",
    "load_or_create_secret",
    "new_user_id",
    "same_origin",
]

USER_ID_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.@:")


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    method: Literal["cookie", "token", "jwt"]
    # A JWT's verified claims (``budget_group`` chooses the user's budget); empty otherwise.
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


class InvalidCredentials(Exception):
    """A bearer token was sent and is not valid; the message is safe to show."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def new_user_id() -> str:
    return "u_" + secrets.token_urlsafe(12)


def valid_user_id(user_id: str) -> bool:
    return 0 < len(user_id) <= 128 and all(ch in USER_ID_ALPHABET for ch in user_id)


class TokenAuthenticator:
    def __init__(self, auth: AuthSettings) -> None:
        # Digests of equal length: comparing them takes the same time whatever the lengths.
        self._tokens = [(_digest(token), user_id) for token, user_id in auth.api_tokens.items()]
        self._admins = [(_digest(token), name) for token, name in auth.admin_tokens.items()]
        self._jwt_secret = auth.jwt_secret

    def operator(self, token: str) -> str | None:
        """The operator's name when ``token`` is one of ``SLUICE_ADMIN_TOKENS``, else None.
        Operators' tokens open the usage of every user, and nothing else."""
        raw = _digest(token)
        found: str | None = None
        for candidate, name in self._admins:
            if hmac.compare_digest(raw, candidate):
                found = name
        return found

    def authenticate(self, token: str) -> Identity:
        raw = _digest(token)
        found: str | None = None
        # Compare with every token, always: the time taken says nothing about which matched.
        for candidate, user_id in self._tokens:
            if hmac.compare_digest(raw, candidate):
                found = user_id
        if found is not None:
            return Identity(found, "token")
        if self._jwt_secret and token.count(".") == 2:
            claims = self._decode_jwt(token)
            return Identity(claims["sub"], "jwt", claims)
        raise InvalidCredentials("The bearer token is not valid.")

    def _decode_jwt(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self._jwt_secret,
                algorithms=["HS256"],
                options={"require": ["sub"], "verify_exp": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCredentials("The bearer token has expired.") from None
        except jwt.PyJWTError:
            raise InvalidCredentials("The bearer token is not valid.") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not valid_user_id(subject):
            raise InvalidCredentials("The bearer token names no valid user.")
        return claims


def load_or_create_secret(configured: str, data_dir: Path) -> str:
    """``SLUICE_SECRET_KEY``, or one generated once and kept in the data directory so that
    identities (and their history) survive restarts."""
    if configured:
        return configured
    path = data_dir / "secret_key"
    if path.is_file():
        return path.read_text(encoding="ascii").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret, encoding="ascii")
    return secret


def same_origin(origin_or_referer: str, host: str) -> bool:
    """Whether an ``Origin`` (or ``Referer``) names this host."""
    try:
        parts = urlsplit(origin_or_referer)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()

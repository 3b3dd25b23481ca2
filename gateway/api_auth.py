"""Bearer tokens for the admin API: random, shown once, stored only as SHA-256 in the config."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse

from gateway.config import ApiToken

ROLES = {"auditor": 1, "analyst": 2, "admin": 3}


def new_token() -> tuple[str, str]:
    """A fresh token and the hash to put in the config."""
    token = "phg_" + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(header: str, tokens: tuple[ApiToken, ...]) -> ApiToken | None:
    """The configured token an ``Authorization: Bearer ...`` header carries, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    digest = token_hash(token.strip())
    found = None
    for candidate in tokens:  # compare with every one: no early exit to time
        if hmac.compare_digest(candidate.sha256, digest):
            found = candidate
    return found


def allowed(token: ApiToken, role: str) -> bool:
    return ROLES[token.role] >= ROLES[role]


# Query parameters that carry credentials, by name; and any value that is one of our tokens.
_TOKEN_PARAMETERS = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "auth", "authorization", "bearer"}
)


def carries_token(query: str) -> bool:
    if not query:
        return False
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return any(k.lower() in _TOKEN_PARAMETERS or v.startswith("phg_") for k, v in pairs)


def without_tokens(query: str) -> str:
    """The query string as recorded: credential values replaced."""
    if not carries_token(query):
        return query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    kept = [
        (k, "[removed]" if k.lower() in _TOKEN_PARAMETERS or v.startswith("phg_") else v)
        for k, v in pairs
    ]
    return urllib.parse.urlencode(kept)

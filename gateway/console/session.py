"""Console sign-in: a bearer token exchanged for a short-lived session.

Sessions live in the memory of the process that serves the admin port (the supervisor under
``run --workers``): a restart signs everyone out, which is what a security console should do.
Only the SHA-256 of a session id is kept, so a memory dump does not hand out live sessions.
Every use checks that the token behind the session is still configured with the same role:
revoking a token in the config (and reloading) ends its sessions at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from gateway.config import ApiToken

COOKIE = "phg_console_session"
LOGIN_COOKIE = "phg_console_login"
# Failed sign-ins per client address inside the window before the form refuses for a while.
MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 300.0


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    token_name: str
    token_sha256: str
    role: str
    csrf: str
    expires: float


class Sessions:
    def __init__(self, minutes: int, max_sessions: int) -> None:
        self._lifetime = minutes * 60.0
        self._max = max_sessions
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}

    @property
    def lifetime_seconds(self) -> int:
        return int(self._lifetime)

    def open(self, token: ApiToken, now: float | None = None) -> tuple[str, Session]:
        """A new session for ``token``: its id (for the cookie) and the session."""
        when = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        session = Session(
            token.name, token.sha256, token.role, secrets.token_urlsafe(24), when + self._lifetime
        )
        with self._lock:
            self._expire(when)
            if len(self._sessions) >= self._max:
                # Full: the session closest to its end makes room (a flood of sign-ins cannot
                # grow memory, and cannot sign out more than the oldest).
                oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
                del self._sessions[oldest]
            self._sessions[_digest(session_id)] = session
        return session_id, session

    def find(
        self, session_id: str, tokens: tuple[ApiToken, ...], now: float | None = None
    ) -> Session | None:
        """The live session of a cookie value whose token is still configured, or None."""
        if not session_id:
            return None
        when = time.time() if now is None else now
        key = _digest(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            current = any(
                hmac.compare_digest(t.sha256, session.token_sha256) and t.role == session.role
                for t in tokens
            )
            if session.expires <= when or not current:
                del self._sessions[key]
                return None
            return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(_digest(session_id), None)

    def refused(self, client: str, now: float | None = None) -> bool:
        """Too many failed sign-ins from this address lately."""
        when = time.time() if now is None else now
        with self._lock:
            recent = [
                t for t in self._failures.get(client, []) if t > when - FAILURE_WINDOW_SECONDS
            ]
            if recent:
                self._failures[client] = recent
            else:
                self._failures.pop(client, None)
            return len(recent) >= MAX_FAILURES

    def failed(self, client: str, now: float | None = None) -> None:
        when = time.time() if now is None else now
        with self._lock:
            if len(self._failures) >= self._max and client not in self._failures:
                self._failures.clear()  # bounded: an address flood forgets, never grows
            self._failures.setdefault(client, []).append(when)

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


def same_secret(given: str, expected: str) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(given, expected)

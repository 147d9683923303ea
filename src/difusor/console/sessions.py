"""Who is logged in, and who is guessing.

Sessions live in the console's memory: a random token in an ``HttpOnly``, ``SameSite=Strict``
cookie (``Secure`` and ``__Host-`` behind TLS) names a user and a CSRF token; logging out or a
restart of the console ends them. Every action must carry the session's CSRF token in a header
or a form field (synchronizer token), compared in constant time.

Failed logins are counted per address and per user name in a sliding window: past the limit the
next attempt is refused without checking the password (429) until the oldest failure expires.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class Session:
    user: str
    csrf: str
    expires: float  # monotonic


class Sessions:
    def __init__(self, hours: float) -> None:
        self.lifetime = hours * 3600
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, user: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), time.monotonic() + self.lifetime)
        with self._lock:
            self._expire()
            self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._by_token.get(token)
            if session and session.expires < time.monotonic():
                del self._by_token[token]
                return None
            return session

    def close(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._by_token.items() if s.expires < now]:
            del self._by_token[token]


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())  # type: ignore[union-attr]


class LoginThrottle:
    def __init__(self, attempts: int, window_minutes: float) -> None:
        self.attempts = attempts
        self.window = window_minutes * 60
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _keys(self, address: str, user: str) -> tuple[str, str]:
        return f"ip:{address}", f"user:{user.lower()}"

    def wait(self, address: str, user: str) -> float:
        """Seconds until this address may try this user again (0: it may now)."""
        now = time.monotonic()
        longest = 0.0
        with self._lock:
            for key in self._keys(address, user):
                seen = self._failures.get(key)
                while seen and seen[0] <= now - self.window:
                    seen.popleft()
                if seen and len(seen) >= self.attempts:
                    longest = max(longest, seen[0] + self.window - now)
        return longest

    def failed(self, address: str, user: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in self._keys(address, user):
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 10_000:  # a flood of names: forget the quiet ones
                for key in [k for k, v in self._failures.items() if not v or v[-1] < now - self.window]:
                    del self._failures[key]

    def succeeded(self, address: str, user: str) -> None:
        with self._lock:
            self._failures.pop(self._keys(address, user)[1], None)

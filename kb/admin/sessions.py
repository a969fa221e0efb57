"""Browser sessions, CSRF tokens and sign-in throttling, held in the server's memory.

A session is a random id in an HttpOnly, SameSite=Strict cookie that maps to the user and
the session's CSRF token; every form carries that token and a POST without it is refused.
The sign-in form itself, before there is a session, uses a double-submit token (a random
cookie repeated in the form). Sessions end on sign-out, after idling, when the server
restarts, or when the user is removed. Throttling counts failed sign-ins per name, whether
or not the name exists, so the answer never tells which names are accounts.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

SESSION_COOKIE = "kb_session"
LOGIN_COOKIE = "kb_login"
MAX_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60
SESSION_IDLE_SECONDS = 8 * 60 * 60
_TRACKED_NAMES = 10_000  # failed names remembered at most (memory stays bounded)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Session:
    user: str
    csrf: str
    last_seen: float


class Sessions:
    """Live sessions by id; safe across threads."""

    def __init__(self, clock: Clock = time.monotonic, idle: float = SESSION_IDLE_SECONDS):
        self._clock = clock
        self._idle = idle
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, user: str) -> str:
        """A new session for ``user``; returns its id (the cookie value)."""
        session_id = new_token()
        with self._lock:
            self._forget_idle()
            self._by_id[session_id] = Session(user, new_token(), self._clock())
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle time restarts), or None."""
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if self._clock() - session.last_seen > self._idle:
                del self._by_id[session_id]
                return None
            session.last_seen = self._clock()
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)

    def _forget_idle(self) -> None:
        now = self._clock()
        for session_id in [i for i, s in self._by_id.items() if now - s.last_seen > self._idle]:
            del self._by_id[session_id]


class Throttle:
    """After ``limit`` failed sign-ins in a row a name is locked for ``seconds``."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        limit: int = MAX_FAILURES,
        seconds: float = LOCKOUT_SECONDS,
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._seconds = seconds
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # name → (n, last)
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str) -> str:
        return unicodedata.normalize("NFKC", name).strip().casefold()

    def locked(self, name: str) -> bool:
        """True while ``name`` is locked out; an expired lock is forgotten."""
        with self._lock:
            count, last = self._failures.get(self._key(name), (0, 0.0))
            if count < self._limit:
                return False
            if self._clock() - last >= self._seconds:
                del self._failures[self._key(name)]
                return False
            return True

    def failed(self, name: str) -> None:
        with self._lock:
            key = self._key(name)
            count, last = self._failures.pop(key, (0, 0.0))
            if self._clock() - last >= self._seconds:
                count = 0  # old failures (or an expired lock) do not count towards a new one
            self._failures[key] = (count + 1, self._clock())
            while len(self._failures) > _TRACKED_NAMES:
                self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(self._key(name), None)

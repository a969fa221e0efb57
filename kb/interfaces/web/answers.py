"""Every response's finish, as pure ASGI middleware: security headers, one log line, and
the memo of whole answers.

Pages and API answers depend only on the loaded build and the URL, so a repeated GET of a
remembered path (a reload, a shared link, a colleague's same search) is answered from the
build's memo without searching or rendering; a new build starts with an empty memo.
Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, whose ``call_next`` runs the app in
a task of its own and streams its body through a queue: a millisecond of a fresh query's
budget.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kb.core.memo import Memo

# Headers of an answer worth keeping with it (not its timing, which was this request's).
KEPT_HEADERS = (b"content-type", b"content-disposition")


class Answers:
    """Add ``headers_for(path)`` to every HTTP response of ``app``; answer GETs of paths
    starting with ``remembered`` from ``memo_of()`` when an identical one was kept; log
    each request to stderr when ``log_requests``."""

    def __init__(
        self,
        app: ASGIApp,
        headers_for: Callable[[str], Sequence[tuple[bytes, bytes]]],
        remembered: tuple[str, ...],
        memo_of: Callable[[], Memo],
        log_requests: bool = False,
    ) -> None:
        self.app = app
        self.headers_for = headers_for
        self.remembered = remembered
        self.memo_of = memo_of
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        extra = self.headers_for(path)
        status = [500]

        async def finish(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            if scope["method"] == "GET" and path.startswith(self.remembered):
                await self._remembered(scope, receive, finish)
            else:
                await self.app(scope, receive, finish)
        finally:
            if self.log_requests:
                ms = (time.perf_counter() - started) * 1000
                method = scope["method"]
                print(f"{method} {path} {status[0]} {ms:.0f}ms", file=sys.stderr, flush=True)

    async def _remembered(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's answer, or the one kept from an identical earlier GET."""
        memo = self.memo_of()
        key = ("response", scope["path"], scope["query_string"])
        kept = memo.recall(key)
        if kept is not None:
            body, headers = kept
            length = (b"content-length", str(len(body)).encode())
            await send(
                {"type": "http.response.start", "status": 200, "headers": [*headers, length]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        generation = memo.generation
        start: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif start.get("status") == 200:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    headers = [(k, v) for k, v in start["headers"] if k in KEPT_HEADERS]
                    memo.remember(key, (b"".join(chunks), headers), generation)
            await send(message)

        await self.app(scope, receive, keep)

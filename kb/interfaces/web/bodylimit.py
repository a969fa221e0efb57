"""A limit on request bodies, as pure ASGI middleware in front of every route.

The limit counts the bytes that actually arrive, whether the body is sent with a
``Content-Length`` (which may lie) or in chunks (which has none). A declared length over
the limit is refused before any byte is read; otherwise the body is read up to the limit
and refused as soon as one byte more arrives, without reading the rest. A body within the
limit is handed to the app unchanged, so routes read it as usual.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Answer ``refuse`` (an ASGI app, such as a 413 response) to any HTTP request whose
    body is longer than ``limit`` bytes; pass every other request to ``app``."""

    def __init__(self, app: ASGIApp, limit: int, refuse: ASGIApp) -> None:
        self.app = app
        self.limit = limit
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            return await self.app(scope, receive, send)  # HTTP/1.1: no body at all
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self.refuse(scope, receive, send)
        received = await self._read(receive)
        if received is None:
            return await self.refuse(scope, receive, send)
        return await self.app(scope, _replay(received, receive), send)

    async def _read(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None once more than ``limit`` bytes have arrived."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away; the app will see it
            size += len(message.get("body", b""))
            if size > self.limit:
                return None
            if not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back the messages already read."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay

"""HEAD answered wherever GET is, in one place: pure ASGI middleware that runs a HEAD
request as the GET it asks about and sends its status and headers without the body.

Uptime monitors and link checkers ask with HEAD; FastAPI routes answer only the methods
they declare, so without this every page and API route would say 405 to them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Answer ``HEAD`` requests to ``app`` as ``GET`` with the same status and headers
    (``Content-Length`` included) and an empty body; other requests pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the body is dropped; only its end is sent
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)

"""Refusing request bodies over a size limit before reading them (413).

A pure ASGI middleware, so it sees the body as the server receives it: a request whose
``Content-Length`` is over the limit is answered 413 without reading a byte of the body;
a chunked request (no length) is read only until it passes the limit, then the app's
answer to the aborted read (FastAPI's 400) is replaced by the 413. FastAPI would
otherwise read the whole body into memory before validation could reject it.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit", "BodyTooLarge"]


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a chunked body passes the limit."""


class BodySizeLimit:
    """Answer 413 to HTTP requests whose body is over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(send, f"{length} bytes")
            return
        seen = 0
        too_large = replaced = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns an error while reading the body into its own 400: answer our
            # 413 in its place, and drop the body of the response it replaced.
            nonlocal replaced
            if too_large and message["type"] == "http.response.start":
                replaced = True
                await self._refuse(send, f"more than {self.max_bytes} bytes")
            elif not replaced:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not replaced:
                await self._refuse(send, f"more than {self.max_bytes} bytes")

    async def _refuse(self, send: Send, size: str) -> None:
        detail = (
            f"request body too large ({size}; the limit is {self.max_bytes} bytes, "
            "DRIFTREC_MAX_REQUEST_BYTES): send fewer candidates per request"
        )
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

"""BodySizeLimit as a bare ASGI middleware: an oversized body is refused unread."""

from __future__ import annotations

import asyncio
import json

from driftrec.ops.serving.limits import BodySizeLimit
from starlette.types import Message, Receive, Scope, Send


def _run(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[list[Message], int]:
    """Send one request through the middleware; returns what it sent and the chunks read."""
    sent: list[Message] = []
    read = 0

    async def receive() -> Message:
        nonlocal read
        read += 1
        body = chunks[read - 1] if read <= len(chunks) else b""
        return {"type": "http.request", "body": body, "more_body": read < len(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(BodySizeLimit(app, max_bytes=100)(scope, receive, send))
    return sent, read


def test_a_declared_length_over_the_limit_is_refused_without_reading() -> None:
    sent, read = _run([(b"content-length", b"100000000")], [b"x" * 1000])
    assert read == 0
    assert sent[0]["status"] == 413
    assert "100000000 bytes" in json.loads(sent[1]["body"])["detail"]


def test_a_chunked_body_is_read_only_until_it_passes_the_limit() -> None:
    sent, read = _run([], [b"x" * 60] * 10)
    assert read == 2 and sent[0]["status"] == 413


def test_bodies_within_the_limit_pass() -> None:
    sent, read = _run([(b"content-length", b"100")], [b"x" * 50, b"x" * 50])
    assert read == 2 and sent[0]["status"] == 200 and sent[1]["body"] == b"ok"

"""The ceiling of a faust agent here: take and ack messages, nothing else.

``python -m driftrec.ops.bench.faust_ceiling BOOTSTRAP TOPIC N OUT`` starts a faust app
whose one agent reads TOPIC from the beginning (its own consumer group) in
``noack_take`` batches and acks each message, and writes the rate over the first N
messages to OUT as JSON; the benchmark then stops the process. ``driftrec bench
pipeline`` divides its own event rate by this (``ratio_vs_faust``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import faust

__all__ = ["main"]


def main(bootstrap: str, topic: str, n: int, out: Path) -> None:
    app = faust.App(
        f"faust-ceiling-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=131_072,
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="faust-ceiling-"),
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "first": 0.0}

    @app.agent(source)
    async def take_and_ack(stream: Any) -> None:
        async for batch in stream.noack_take(2000, within=0.25):
            if not seen["n"]:
                seen["first"] = time.perf_counter()
            for event in batch:
                await stream.ack(event)
            seen["n"] += len(batch)
            if seen["n"] >= n:
                rate = seen["n"] / (time.perf_counter() - seen["first"])
                out.write_text(json.dumps({"messages": seen["n"], "messages_per_s": rate}))

    app.main()


if __name__ == "__main__":
    bootstrap, topic, count, target = sys.argv[1:5]
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    main(bootstrap, topic, int(count), Path(target))

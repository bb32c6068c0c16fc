"""Every worker's copy of the item catalog, read from the compacted items topic.

The items topic is keyed by item id while events are keyed by user, so no single
partition of items belongs with a partition of events: each worker reads the whole
catalog (no consumer group, from the beginning) in the background. An impression
whose item has not arrived yet gets an empty category, never an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer
from driftrec.core import DeadLetter, DriftrecConfig, InvalidEvent, Item, dead_letter, decode_item

__all__ = ["Catalog"]

log = logging.getLogger(__name__)


class Catalog:
    """item_id -> latest Item (last write wins by the item's own timestamp)."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.ready = asyncio.Event()

    def get(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    def add(self, item: Item) -> None:
        known = self.items.get(item.item_id)
        if known is None or item.ts >= known.ts:
            self.items[item.item_id] = item

    async def follow(
        self,
        settings: DriftrecConfig,
        on_dead_letter: Callable[[DeadLetter], Awaitable[None]],
        on_items: Callable[[list[Item]], Awaitable[None]] | None = None,
    ) -> None:
        """Read the items topic forever; bad records go to ``on_dead_letter``, each batch
        of good ones to ``on_items`` (the feature store's catalog, for serving)."""
        consumer = AIOKafkaConsumer(
            settings.topic_items,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **settings.kafka_client_options(),
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                fresh: list[Item] = []
                for tp, messages in batches.items():
                    for message in messages:
                        try:
                            item = decode_item(message.value or b"")
                            self.add(item)
                            fresh.append(item)
                        except InvalidEvent as error:
                            await on_dead_letter(
                                dead_letter(
                                    str(error),
                                    "catalog",
                                    tp.topic,
                                    tp.partition,
                                    message.offset,
                                    message.value,
                                )
                            )
                if fresh and on_items is not None:
                    await on_items(fresh)
                if not batches:
                    self.ready.set()
        finally:
            await consumer.stop()

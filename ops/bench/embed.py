"""`driftrec bench embed`: text-encoder throughput on synthetic item titles.

Encodes a fixed set of synthetic catalog items (``title. text``, as the embedding worker
does) with the configured model, on CUDA when there is one, after one warm-up batch and
without any cache, so every item is really encoded. Optional ``args`` attributes:
``model``, ``items`` (default 512), ``batch_size`` (default 128), ``device``, ``threads``
(torch intra-op threads on the CPU; on a contended 2-core box 1 thread is ~2x faster).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from driftrec.core import Item
from driftrec.online_update.embeddings import item_text, load_text_encoder
from driftrec.ops.settings import Settings
from driftrec.producers import SyntheticConfig, SyntheticLog

__all__ = ["bench_embed", "synthetic_texts"]


def synthetic_texts(n: int, seed: int = 7) -> list[str]:
    """The embedding texts of the first ``n`` items of a synthetic catalog.

    >>> texts = synthetic_texts(3)
    >>> len(texts), texts == synthetic_texts(3)
    (3, True)
    """
    config = SyntheticConfig(
        seed=seed,
        n_events=1,
        n_users=1,
        n_initial_items=max(n, 10),
        new_items_every=0,
        drifts=(),
    )
    items = [r for r in SyntheticLog(config).records() if isinstance(r, Item)]
    return [item_text(i) for i in items[:n]]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def bench_embed(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import torch

    model = getattr(args, "model", None) or settings.text_model
    n_items = int(getattr(args, "items", None) or 512)
    batch_size = int(getattr(args, "batch_size", None) or 128)
    texts = synthetic_texts(n_items)
    if getattr(args, "threads", None):
        torch.set_num_threads(int(args.threads))
    encoder = load_text_encoder(model, getattr(args, "device", None))
    device = str(getattr(encoder, "device", "cpu"))
    encoder.encode(texts[:batch_size], batch_size)  # warm-up: kernels, allocator, caches
    _sync(device)
    started = time.perf_counter()
    vectors = encoder.encode(texts, batch_size)
    _sync(device)
    seconds = time.perf_counter() - started
    dtype = "float32"
    if device.startswith("cuda"):
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return {
        "items_per_s": round(len(vectors) / seconds, 1),
        "device": device,
        "model": encoder.version,
        "batch_size": batch_size,
        "items": len(vectors),
        "seconds": round(seconds, 3),
        "dtype": dtype,
        "torch_threads": torch.get_num_threads(),
    }

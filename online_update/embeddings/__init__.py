"""Item text to vectors: the language-model encoders (MiniLM by default, any local Hugging
Face model, a hashing encoder), the versioned vector store in Redis, and the embedding
worker that follows the items topic.
"""

from __future__ import annotations

from driftrec.online_update.embeddings.embed_batch import item_text
from driftrec.online_update.embeddings.embed_refresh import refresh
from driftrec.online_update.embeddings.embedder import run_embedder
from driftrec.online_update.embeddings.text_encoder import (
    HashingTextEncoder,
    TextEncoder,
    load_text_encoder,
)
from driftrec.online_update.embeddings.vector_cache import CachedEncoder
from driftrec.online_update.embeddings.vector_store import RedisVectorStore

__all__ = [
    "CachedEncoder",
    "HashingTextEncoder",
    "RedisVectorStore",
    "TextEncoder",
    "item_text",
    "load_text_encoder",
    "refresh",
    "run_embedder",
]

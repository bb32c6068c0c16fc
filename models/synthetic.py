"""Synthetic labelled ``Batch`` streams with a known user x item-text preference, for
tests, benchmarks and demos of drift.

Every item has a topic; its text vector is the topic's random direction plus
noise. Every user likes one topic; the interest vector is the (noisy) text
direction of the topic they liked when their history was recorded. Clicks are
likely when the item's topic is the one the user likes now; conversions and
dwell follow clicks and are higher on liked topics. ``drift()`` moves every
user's liking to another topic while their recorded interest stays: a model
that stops learning keeps recommending the old topic.

>>> stream = SyntheticStream(StreamSpec(text_dim=8, n_dense=3, seed=1))
>>> b = stream.batch(5)
>>> b.text.shape, b.dense.shape, bool(((b.conversion <= b.click) & (b.dwell >= 0)).all())
(torch.Size([5, 8]), torch.Size([5, 3]), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from driftrec.models.batch import Batch

__all__ = ["StreamSpec", "SyntheticStream"]


@dataclass(frozen=True)
class StreamSpec:
    """Sizes and strengths of the synthetic preference."""

    n_users: int = 200
    n_items: int = 1000
    n_topics: int = 4
    text_dim: int = 16
    n_dense: int = 12
    text_noise: float = 0.3
    #: Click logit: ``like_logit`` when the topic is liked, ``base_logit`` otherwise.
    like_logit: float = 1.5
    base_logit: float = -2.5
    seed: int = 0


class SyntheticStream:
    """An endless supply of labelled batches (see the module docstring)."""

    def __init__(self, spec: StreamSpec = StreamSpec()) -> None:
        self.spec = spec
        self.gen = torch.Generator().manual_seed(spec.seed)
        s = spec
        topics = torch.nn.functional.normalize(
            torch.randn(s.n_topics, s.text_dim, generator=self.gen), dim=1
        )
        self.item_topic = torch.randint(0, s.n_topics, (s.n_items,), generator=self.gen)
        self.item_text = (
            topics[self.item_topic]
            + s.text_noise
            * torch.randn(s.n_items, s.text_dim, generator=self.gen)
            / s.text_dim**0.5
        )
        self.user_topic = torch.randint(0, s.n_topics, (s.n_users,), generator=self.gen)
        self.user_interest = (
            topics[self.user_topic]
            + s.text_noise
            * torch.randn(s.n_users, s.text_dim, generator=self.gen)
            / s.text_dim**0.5
        )
        self.liked = self.user_topic.clone()
        # Hashed ids are large non-negative integers; spread them like a hash would.
        self.user_ids = torch.randint(0, 2**62, (s.n_users,), generator=self.gen)
        self.item_ids = torch.randint(0, 2**62, (s.n_items,), generator=self.gen)

    def drift(self, shift: int = 1) -> None:
        """Every user now likes topic ``(liked + shift) % n_topics``."""
        self.liked = (self.liked + shift) % self.spec.n_topics

    def batch(self, size: int, *, items: torch.Tensor | None = None) -> Batch:
        """``size`` impressions of random users and items (or the given item rows)."""
        s, g = self.spec, self.gen
        users = torch.randint(0, s.n_users, (size,), generator=g)
        if items is None:
            items = torch.randint(0, s.n_items, (size,), generator=g)
        like = (self.item_topic[items] == self.liked[users]).float()
        logit = s.base_logit + (s.like_logit - s.base_logit) * like
        click = (torch.rand(size, generator=g) < torch.sigmoid(logit)).float()
        p_conv = 0.1 + 0.3 * like
        conversion = click * (torch.rand(size, generator=g) < p_conv).float()
        dwell = click * (3.0 + like + 0.5 * torch.randn(size, generator=g)).clamp_min(0.0)
        return Batch(
            user=self.user_ids[users],
            item=self.item_ids[items],
            category=self.item_topic[items],
            text=self.item_text[items],
            has_text=torch.ones(size),
            interest=self.user_interest[users],
            dense=torch.randn(size, s.n_dense, generator=g),
            click=click,
            conversion=conversion,
            dwell=dwell,
        )

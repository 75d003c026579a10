"""Test doubles shared by tests and benchmarks: a scripted chat model for fault injection.

Real-model tests stand beside the tests that use it; it exists to make the engine meet what a real
model rarely does on demand (invalid JSON, junk, timeouts, a failure on one row of a batch).

Example:
    >>> import polars as pl, enrich
    >>> llm = ScriptedChat(script=lambda prompt, attempt: GOOD)
    >>> out = enrich.profile_items(pl.DataFrame({"item_id": [1], "title": ["Heat"]}), llm=llm,
    ...                            embedder=HashEmbedder())
    >>> out["summary"].to_list(), len(llm.calls)
    (['A film about things that happen.'], 1)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel, PrivateAttr

from enrich.embedding import normalize
from enrich.hashing import sha256_hex
from enrich.llm.embedded import parse_json_output

GOOD = {  # valid for ItemProfile and FreeTextItemProfile alike (extra fields are ignored)
    "summary": "A film about things that happen.",
    "audience": "adults",
    "mood": "calm",
    "themes": ["family"],
    "family_friendly": 3,
    "intensity": 2,
    "keywords": ["drama", "people"],
}


class HashEmbedder:
    """A deterministic stand-in embedder (a text's hash seeds its vector): no model to load."""

    name = "hash-embedder"
    dim = 8

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(int(sha256_hex(t)[:8], 16)).random(8) for t in texts]
        return normalize(np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim))


class ScriptedChat(BaseChatModel):
    """Answers with ``script(prompt_text, attempt)``: a dict (sent as JSON), a str, or raises."""

    script: Callable[[str, int], Any] = lambda text, attempt: GOOD
    name_: str = "scripted"
    _calls: list[str] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.name_}

    @property
    def model_name(self) -> str:
        """The model name in the ledger (``scripted:<name_>``)."""
        return self.name_

    @property
    def calls(self) -> list[str]:
        return self._calls

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        text = "\n".join(m.text for m in messages)
        with self._lock:
            attempt = sum(1 for c in self._calls if c == text)
            self._calls.append(text)
        answer = self.script(text, attempt)
        content = answer if isinstance(answer, str) else json.dumps(answer)
        message = AIMessage(
            content,
            usage_metadata={
                "input_tokens": len(text) // 4,
                "output_tokens": len(content) // 4,
                "total_tokens": (len(text) + len(content)) // 4,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def with_structured_output(
        self, schema: type[BaseModel] | dict, *, include_raw: bool = False, **kwargs: Any
    ):  # type: ignore[override]
        return parse_json_output(self, schema, include_raw)

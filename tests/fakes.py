"""A scripted chat model for fault injection in unit tests (real-model tests stand beside)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel, PrivateAttr

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

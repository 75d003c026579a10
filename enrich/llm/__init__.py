"""Choosing a chat model from what the user passed, and naming it for provenance and caching.

``llm=`` may be:
- ``None``: the embedded offline default (:class:`ChatEmbedded`);
- a LangChain spec string as ``init_chat_model`` reads it: ``"openai:gpt-4o-mini"``,
  ``"ollama:llama3.2"`` (the provider's ``langchain-*`` package must be installed);
- the base URL of an OpenAI-compatible server (vLLM, llama.cpp, LM Studio), with the served model
  after ``#``: ``"http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct"``;
- any ``BaseChatModel`` instance.

Example:
    >>> llm = resolve_llm("http://127.0.0.1:8080/v1#smollm2")
    >>> model_id(llm)
    'openai-compatible:smollm2'
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from enrich.config import Environment
from enrich.errors import EnrichError
from enrich.llm.embedded import ChatEmbedded

__all__ = [
    "ChatEmbedded",
    "PlanOnlyChat",
    "decoding_params",
    "default_concurrency",
    "model_id",
    "resolve_llm",
    "structured",
]

_SECRET_WORDS = ("key", "secret", "authorization", "header", "url", "password", "client")


def resolve_llm(
    llm: BaseChatModel | str | None, *, timeout: float = 120.0, planning: bool = False
) -> BaseChatModel:
    # Servers given by URL leave retries to the engine (each request counted in the ledger,
    # Retry-After honoured); spec strings and instances keep their provider's client settings.
    """A LangChain chat model for ``llm`` (see the module docstring for the accepted forms)."""
    if llm is None:
        return ChatEmbedded()
    if isinstance(llm, BaseChatModel):
        return llm
    if not isinstance(llm, str):
        raise EnrichError(
            f"llm= takes None, a spec string, a base URL or a BaseChatModel, not {type(llm)}"
        )
    if llm.startswith(("http://", "https://")):
        return openai_compatible(llm, timeout=timeout)
    from langchain.chat_models import init_chat_model

    try:
        return init_chat_model(llm)  # the provider's own timeout and retry settings apply
    except ImportError as exc:
        if planning and ":" in llm:  # a plan makes no call: the model's name is enough
            provider, _, name = llm.partition(":")
            return PlanOnlyChat(provider=provider, model_name=name)
        raise EnrichError(
            f"cannot load chat model {llm!r}: {exc}. Install the provider's LangChain package "
            "(e.g. pip install langchain-ollama)"
        ) from None
    except Exception as exc:  # a missing key, an unknown provider or model
        if planning:  # a plan makes no call: the client only wants a key to exist
            return init_chat_model(llm, api_key="not-used-by-a-plan")
        raise EnrichError(f"cannot load chat model {llm!r}: {exc}") from None


class PlanOnlyChat(BaseChatModel):
    """A model known by name only, for plans of a provider whose LangChain package is not
    installed here: it prices and counts (estimated tokens) but never generates, and no cached
    answer of the real client can be matched to it (its decoding parameters are unknown).

    >>> model_id(PlanOnlyChat(provider="anthropic", model_name="claude-3-5-haiku-latest"))
    'anthropic:claude-3-5-haiku-latest'
    """

    provider: str
    model_name: str

    @property
    def _llm_type(self) -> str:
        return self.provider

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise EnrichError(
            f"{self.provider}:{self.model_name} can only be planned here: install its LangChain "
            f"package (e.g. pip install langchain-{self.provider.replace('_', '-')}) to run it"
        )

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        from langchain_core.runnables import RunnableLambda

        return RunnableLambda(self._generate)


def openai_compatible(url: str, *, timeout: float = 120.0, max_retries: int = 0) -> BaseChatModel:
    """A ``ChatOpenAI`` talking to ``base_url#model``; the key comes from the environment.

    ``ENRICH_LLM_API_KEY`` (or ``OPENAI_API_KEY``) is used when set; local servers need none.
    The engine retries 429/5xx/timeouts (``max_retries=0`` here, so every request is counted).
    """
    from langchain_openai import ChatOpenAI

    base_url, _, model = url.partition("#")
    secret = Environment().llm_api_key
    key = (secret.get_secret_value() if secret else None) or os.environ.get("OPENAI_API_KEY")
    key = key or "unused"
    return ChatOpenAI(
        base_url=base_url,
        model=model or "default",
        api_key=key,  # type: ignore[arg-type]
        temperature=0.0,
        timeout=timeout,
        max_retries=max_retries,
        # llama.cpp's server ignores max_completion_tokens, which langchain-openai sends.
        extra_body={"max_tokens": 400},
    )


def model_id(llm: BaseChatModel) -> str:
    """The name recorded as ``model`` in feature tables (no URL, no key)."""
    if isinstance(llm, ChatEmbedded):
        return llm.model_id
    name = getattr(llm, "model_name", None) or getattr(llm, "model", None) or "unknown"
    if llm._llm_type == "openai-chat" and getattr(llm, "openai_api_base", None):
        return f"openai-compatible:{name}"
    provider = getattr(llm, "_llm_type", type(llm).__name__).removesuffix("-chat")
    return f"{provider}:{name}"


def default_concurrency(llm: BaseChatModel) -> int:
    """Requests kept in flight when the settings do not say: for the embedded model its
    ``n_parallel`` and a quarter more, waiting in the decoder's queue so that a finished
    sequence's slot is filled at the next step (not after a thread hands back the answer and
    prepares the next prompt); 4 for other models.

    >>> default_concurrency(ChatEmbedded(n_parallel=16))
    20
    """
    return llm.n_parallel + llm.n_parallel // 4 if isinstance(llm, ChatEmbedded) else 4


def decoding_params(llm: BaseChatModel) -> dict[str, Any]:
    """The model's identifying parameters without secrets or endpoints: part of cache keys."""
    params = dict(llm._identifying_params)
    return {
        k: v
        for k, v in sorted(params.items())
        if not any(word in k.lower() for word in _SECRET_WORDS) and _plain(v)
    }


def structured(
    llm: BaseChatModel, schema: type[BaseModel], method: str | None = None
) -> Runnable[Any, dict[str, Any]]:
    """``{"raw", "parsed", "parsing_error"}`` from the model's own structured-output mechanism.

    The embedded model constrains decoding with a grammar; OpenAI-compatible servers use forced
    tool calls by default (llama.cpp's server rejects ``json_schema``); other models use
    LangChain's default for them. ``method`` overrides the choice.
    """
    if isinstance(llm, ChatEmbedded):
        return llm.with_structured_output(schema, include_raw=True)
    if method is None and model_id(llm).startswith("openai-compatible:"):
        method = "function_calling"
    kwargs = {"method": method} if method else {}
    return llm.with_structured_output(schema, include_raw=True, **kwargs)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | tuple)

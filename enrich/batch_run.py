"""Execute an OpenAI batch file here: with the embedded model, or against any chat model
LangChain reaches (an OpenAI-compatible server, Ollama, a hosted API), writing the provider's
output and error files — the same files ``vllm run-batch`` and OpenAI's Batches API give back.

The ``--llm`` decides the model and its decoding (as ``vllm run-batch`` serves its one model);
each line's messages and ``response_format`` json_schema are honoured, the schema enforced by
the model's own structured-output mechanism (a grammar on the embedded model).

Example:
    $ enrich batch run requests.jsonl --output answers.jsonl --errors errors.jsonl
    >>> from enrich.testing import ScriptedChat
    >>> out, err = execute([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
    ...     "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}],
    ...     ScriptedChat(script=lambda text, attempt: "hello"))
    >>> out[0]["response"]["body"]["choices"][0]["message"]["content"], err
    ('hello', [])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from enrich.errors import EnrichError, redact
from enrich.llm import default_concurrency, structured
from enrich.llm.batch_format import ENDPOINT, completion_line, error_line, to_messages


def execute(
    lines: list[dict[str, Any]], llm: BaseChatModel, max_concurrency: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(output lines, error lines)`` for the request ``lines`` of a batch file, in order."""
    concurrency = max_concurrency or default_concurrency(llm)
    errors: dict[int, dict[str, Any]] = {}
    groups: dict[str, list[int]] = {}  # one structured runnable per distinct schema
    inputs: dict[int, Any] = {}
    seen: set[str] = set()
    for i, line in enumerate(lines):
        custom_id = str(line.get("custom_id", f"line-{i + 1}"))
        problem = _problem(line, seen)
        seen.add(custom_id)
        try:
            inputs[i] = to_messages(line["body"]) if problem is None else None
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            errors[i] = error_line(custom_id, 400, "invalid_request", problem)
            continue
        fmt = (line["body"].get("response_format") or {}).get("json_schema") or {}
        # keys keep their order: a grammar writes the fields in the schema's order
        groups.setdefault(json.dumps(fmt.get("schema")), []).append(i)
    outputs: dict[int, dict[str, Any]] = {}
    for schema_json, idx in groups.items():
        schema = json.loads(schema_json)
        runnable = llm if schema is None else structured(llm, schema)
        results = runnable.batch(
            [inputs[i] for i in idx],
            config={"max_concurrency": concurrency},
            return_exceptions=True,
        )
        for i, result in zip(idx, results, strict=True):
            line = lines[i]
            if isinstance(result, BaseException):
                message = redact(f"{type(result).__name__}: {result}")[:2000]
                errors[i] = error_line(line["custom_id"], 500, "server_error", message)
                continue
            raw = result["raw"] if isinstance(result, dict) else result
            meta = getattr(raw, "usage_metadata", None) or {}
            finish = (getattr(raw, "response_metadata", None) or {}).get("finish_reason")
            outputs[i] = completion_line(
                line["custom_id"],
                str(line["body"].get("model", "")),
                _answer_text(raw),
                finish,
                meta.get("input_tokens", 0),
                meta.get("output_tokens", 0),
            )
    return (
        [outputs[i] for i in sorted(outputs)],
        [errors[i] for i in sorted(errors)],
    )


def run_file(
    source: Path, llm: BaseChatModel, output: Path, errors: Path | None = None
) -> tuple[int, int]:
    """Execute the batch file ``source``; write the output (and error) lines; return
    ``(answered, failed)``. A line that is not JSON stops it, naming the line."""
    lines = []
    for n, text in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise EnrichError(
                f"line {n} of {source} is not JSON ({exc}); fix or remove it"
            ) from None
    out, err = execute(lines, llm)
    output.write_text("".join(json.dumps(x) + "\n" for x in out), encoding="utf-8")
    errors = errors or output.with_name(output.stem + ".errors.jsonl")
    errors.write_text("".join(json.dumps(x) + "\n" for x in err), encoding="utf-8")
    return len(out), len(err)


def _problem(line: dict[str, Any], seen: set[str]) -> str | None:
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "custom_id is missing: every line needs a unique custom_id"
    if custom_id in seen:
        return f"custom_id {custom_id!r} is used by an earlier line: custom_ids must be unique"
    if line.get("method") != "POST" or line.get("url") != ENDPOINT:
        return f"only POST {ENDPOINT} is supported, not {line.get('method')} {line.get('url')}"
    if not isinstance(line.get("body"), dict):
        return "body is missing"
    return None


def _answer_text(message: Any) -> str:
    """The answer as the provider would send it: a forced tool call's arguments, or the text —
    re-serialized when it is JSON that only a lenient parser reads (a small model's grammar lets
    raw newlines into strings), so that strict clients parse it too."""
    calls = getattr(message, "tool_calls", None)
    if calls:
        return json.dumps(calls[0].get("args"))
    text = str(getattr(message, "text", "") or message.content or "")
    try:
        return json.dumps(json.loads(text, strict=False), ensure_ascii=False)
    except ValueError:
        return text

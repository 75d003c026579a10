r"""Junk answers: values that fit the schema's shape but say nothing about the entity.

A grammar (or a provider's structured output) guarantees JSON of the right shape, nothing more.
A small model still fills a free field with JSON punctuation (``"}\n{\n    "``), echoes the
prompt's data block (``"}\n<item>\ntitle: Babe (2017)"``), repeats the field's own description,
or copies the input where the field asks for an inference. :class:`JunkRules` finds these in any
schema's free-text values; the engine treats a finding like a validation error: it re-asks with
the reason (``fix_attempts`` times), then records the row in ``enrich_errors``.

A field asks for an inference when its schema says so (``json_schema_extra={"inferred": True}``,
as :class:`enrich.schemas.ItemProfile`'s summary does) or when ``inferred_fields`` names it
(``summary``, by default).
Controlled values (enums, numbers) are never junk: the grammar already bounds them.

Example:
    >>> from enrich.schemas import FreeTextItemProfile
    >>> source = "<item>\ntitle: Babe (1995)\ngenres: Children's|Comedy|Drama\n</item>"
    >>> answer = {"summary": "A pig learns to herd sheep on a farm.", "keywords": ["farm", "pig"],
    ...           "audience": "}\n<item>\ntitle: Babe (2017)", "mood": "Its tone or mood"}
    >>> for problem in JunkRules().problems(answer, FreeTextItemProfile, source):
    ...     print(problem)
    audience holds markup or JSON punctuation ('}', '\n', '<'), which the field cannot mean
    audience echoes the prompt's data block ('title:')
    mood repeats the field's description instead of answering it
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field

_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script
_BLOCK_KEY = re.compile(r"^\s*([A-Za-z_][\w .'-]{0,39}):", re.M)


class JunkRules(BaseModel):
    """What makes a free-text value junk; part of :class:`enrich.EnrichSettings` (``junk=``).

    Example:
        >>> JunkRules(inferred_fields=("summary", "audience")).inferred_fields
        ('summary', 'audience')
    """

    model_config = {"frozen": True}

    enabled: bool = True
    """Off: only the schema validates answers."""
    markup: str = r"[{}\[\]<>`\n\r\t]|\"\s*:\s*[\"{\[]|&[a-zA-Z]+;|&#\d+;"
    """A regular expression of markup or JSON punctuation no free field can mean."""
    description_overlap: float = Field(0.8, gt=0, le=1)
    """Share of a value's words found in the field's description that makes it an echo (values
    of three words or more)."""
    min_echo_chars: int = Field(8, ge=1)
    """An inferred value at least this long that is only the input's own values, verbatim (e.g.
    a summary that is the title and the genres again, or a sentence cut from a description),
    is a copy."""
    inferred_fields: tuple[str, ...] = ("summary",)
    """Fields that ask for an inference, besides those the schema marks ``inferred``."""

    def problems(self, output: dict[str, Any], schema: type[BaseModel], source: str) -> list[str]:
        """Why ``output`` (a schema-valid answer to the prompt whose data block is ``source``)
        is junk: one sentence per finding, empty when it is not."""
        if not self.enabled:
            return []
        markup = re.compile(self.markup)
        block_keys = sorted(set(_BLOCK_KEY.findall(_block(source))))
        inferred = set(self.inferred_fields) | _marked_inferred(schema)
        values = _block_values(source)
        found: list[str] = []
        for name, value in _free_strings(output, schema):
            value = value.strip()
            hits = list(dict.fromkeys(markup.findall(value)))
            if hits:
                shown = ", ".join(repr(h) for h in hits[:3])
                found.append(
                    f"{name} holds markup or JSON punctuation ({shown}), which the field "
                    "cannot mean"
                )
            echoed = [k for k in block_keys if re.search(rf"(?i)\b{re.escape(k)}\s*:", value)]
            if echoed:
                found.append(f"{name} echoes the prompt's data block ({echoed[0] + ':'!r})")
            if self._repeats_description(value, schema.model_fields[name].description):
                found.append(f"{name} repeats the field's description instead of answering it")
            if name in inferred and self._copies(value, values):
                found.append(f"{name} copies the input verbatim where it asks for an inference")
        return list(dict.fromkeys(found))

    def _copies(self, value: str, values: list[str]) -> bool:
        """Whether ``value`` is nothing but input values (each whole, or a run of words cut from
        one), in words, at least ``min_echo_chars`` long."""
        left = " ".join(_WORD.findall(value.casefold()))
        if len(left) < self.min_echo_chars:
            return False
        if any(left in v for v in values):
            return True
        for v in sorted(values, key=len, reverse=True):  # the value's pieces, longest first
            left = " ".join(left.replace(v, " ").split()) if v else left
        return not left

    def _repeats_description(self, value: str, description: str | None) -> bool:
        words = _WORD.findall(value.casefold())
        if not description or len(words) < 3:
            return False
        known = set(_WORD.findall(description.casefold()))
        return sum(w in known for w in words) / len(words) >= self.description_overlap


def _free_strings(output: dict[str, Any], schema: type[BaseModel]) -> Iterator[tuple[str, str]]:
    """``(field, value)`` for every free-text string of ``output`` (list elements included);
    enum-valued fields are skipped."""
    properties = _properties(schema)
    for name, value in output.items():
        prop = properties.get(name, {})
        items = prop.get("items", {})
        if name not in schema.model_fields or {"enum", "const"} & (set(prop) | set(items)):
            continue  # a controlled value: the grammar and validation bound it
        values = value if isinstance(value, list) else [value]
        yield from ((name, v) for v in values if isinstance(v, str))


def _marked_inferred(schema: type[BaseModel]) -> set[str]:
    return {name for name, prop in _properties(schema).items() if prop.get("inferred") is True}


@lru_cache(maxsize=64)
def _properties(schema: type[BaseModel]) -> dict[str, Any]:
    return dict(schema.model_json_schema().get("properties", {}))


def _block_values(source: str) -> list[str]:
    """The data block's values (``key: value`` lines, or the whole block), in words."""
    block = _block(source)
    lines = [
        line.split(":", 1)[1] if _BLOCK_KEY.match(line) else line for line in block.split("\n")
    ]
    return [" ".join(_WORD.findall(v.casefold())) for v in lines if v.strip()]


def _block(source: str) -> str:
    """The delimited data block of a prompt (``<tag> ... </tag>``), else the whole text."""
    match = re.search(r"<(\w+)>\n(.*)\n</\1>", source, re.S)
    return match.group(2) if match else source

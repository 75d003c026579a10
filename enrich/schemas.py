"""Output schemas: what the LLM must return for each entity.

Schemas are pydantic models with *bounded* fields (short strings, lists of 2-4 items): small
models loop on unbounded JSON, and the bounds become part of the decoding grammar. Users may pass
their own model; if it defines ``to_text()`` that method writes the profile text, otherwise the
fields are joined as ``name: value`` lines.

Example:
    >>> p = ItemProfile(summary="A toy cowboy fears being replaced.",
    ...                 keywords=["toys", "friendship"], audience="families", mood="warm")
    >>> profile_text(p)
    'A toy cowboy fears being replaced. Themes: toys, friendship. Audience: families. Mood: warm.'
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

Keyword = Annotated[str, StringConstraints(min_length=2, max_length=24, strip_whitespace=True)]


class ItemProfile(BaseModel):
    """Default item profile: what the item is, its themes, who it is for and how it feels."""

    summary: str = Field(
        min_length=10, max_length=220, description="One sentence saying what the item is about."
    )
    keywords: list[Keyword] = Field(
        min_length=2, max_length=4, description="Two to four themes or subjects of the item."
    )
    audience: str = Field(min_length=2, max_length=60, description="Who would enjoy it.")
    mood: str = Field(min_length=2, max_length=30, description="Its tone or mood in a few words.")

    def to_text(self) -> str:
        return (
            f"{self.summary.rstrip('.')}. Themes: {', '.join(self.keywords)}. "
            f"Audience: {self.audience.rstrip('.')}. Mood: {self.mood.rstrip('.')}."
        )


class UserProfile(BaseModel):
    """Default user profile: a taste summary, liked and disliked themes, preference keywords."""

    summary: str = Field(
        min_length=10, max_length=220, description="One sentence on what this user enjoys."
    )
    liked: list[Keyword] = Field(
        min_length=1, max_length=4, description="Genres or themes the user likes."
    )
    disliked: list[Keyword] = Field(
        min_length=0, max_length=3, description="Genres or themes the user avoids."
    )
    keywords: list[Keyword] = Field(
        min_length=1, max_length=4, description="Free-form preference keywords."
    )

    def to_text(self) -> str:
        text = f"{self.summary.rstrip('.')}. Likes: {', '.join(self.liked)}."
        if self.disliked:
            text += f" Dislikes: {', '.join(self.disliked)}."
        return text + f" Keywords: {', '.join(self.keywords)}."


def profile_text(profile: BaseModel) -> str:
    """The profile text of a validated output: ``to_text()``, or ``field: value`` lines."""
    to_text = getattr(profile, "to_text", None)
    if callable(to_text):
        return str(to_text())
    return "\n".join(f"{k}: {_flat(v)}" for k, v in profile.model_dump().items())


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return str(value)

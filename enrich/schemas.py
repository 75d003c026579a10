"""Output schemas: what the LLM must return for each entity.

Schemas are pydantic models with *bounded* fields, and the bounds become the decoding grammar
(or the provider's structured output): short strings and lists, because small models loop on
unbounded JSON, and *controlled* fields — a ``Literal`` label picked from a vocabulary, a bounded
list of such labels, a small integer scale — because a ranker can group only values that repeat,
and a small model chooses from a list far better than it writes a label.

The default :class:`ItemProfile` is controlled: a free one-sentence summary (for the embedding),
then audience, mood and 1-3 themes from fixed vocabularies and two 1-5 scales. The free-text
schema of earlier versions stays as :class:`FreeTextItemProfile`. Users may pass their own model
(see :mod:`enrich.vocab` to build one from a vocabulary); if it defines ``to_text()`` that method
writes the profile text, otherwise the fields are joined as ``name: value`` lines.

Example:
    >>> p = ItemProfile(summary="A toy cowboy fears a new toy.",
    ...                 audience="families", mood="funny", themes=["friendship", "family"],
    ...                 family_friendly=5, intensity=2)
    >>> profile_text(p)
    'A toy cowboy fears a new toy. Themes: friendship, family. Audience: families. Mood: funny.'
    >>> ItemProfile.model_validate({**p.model_dump(), "mood": "}\\n{"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ItemProfile
    ...
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

Keyword = Annotated[str, StringConstraints(min_length=2, max_length=24, strip_whitespace=True)]

_NOT_IN_LABEL = r'0-9"\\<>{}\[\]()\n.,;:!?/|*#=+_~^$%@`'
LABEL_PATTERN = rf"^[^ \t{_NOT_IN_LABEL}][^{_NOT_IN_LABEL}]{{1,23}}$"
"""A label in words: any script, spaces, ``&``, ``'`` and ``-``; no digit, bracket or other
punctuation. In the grammar this keeps a small model from copying the prompt into a label (a
rating such as "2.0", "Title (1995)", JSON brackets), which the junk rules would reject."""
Label = Annotated[
    str,
    StringConstraints(min_length=2, max_length=24, strip_whitespace=True, pattern=LABEL_PATTERN),
]

SENTENCE_PATTERN = r'^[^ \t\n0-9,;:.!?"\\<>{}\[\]()`-][^"\\<>{}\[\]()\n;`]{9,219}$'
"""A sentence of 10-220 characters that starts with a letter or another script's character (not
a digit, space or punctuation) and holds no JSON or markup character, parenthesis, semicolon or
newline. Grammar-constrained without it, SmolLM2-135M opened most user summaries with the token
``",`` (a quote and a comma: a JSON string that starts with a comma) and went on copying the
prompt's list of ``Title (1995) (4.0);`` entries or its ``162 interactions, average rating 3.0``
line; unconstrained it starts "This user ...". A taste needs none of those characters, a copied
list needs all of them (``bench/user_answers.py``)."""


AUDIENCES = (
    "children",
    "families",
    "teenagers",
    "young adults",
    "adults",
    "mature audiences",
    "general audiences",
    "enthusiasts",
)
"""Who an item is for (the default item schema's ``audience`` vocabulary)."""

MOODS = (
    "funny",
    "light-hearted",
    "heartwarming",
    "romantic",
    "exciting",
    "tense",
    "dark",
    "scary",
    "sad",
    "thought-provoking",
    "inspiring",
    "calm",
)
"""How an item feels (the default ``mood`` vocabulary)."""

THEMES = (
    "love",
    "family",
    "friendship",
    "coming of age",
    "war",
    "crime",
    "justice",
    "revenge",
    "survival",
    "adventure",
    "mystery",
    "fantasy",
    "science",
    "technology",
    "nature",
    "history",
    "politics",
    "religion",
    "music",
    "sports",
    "money",
    "work",
    "school",
    "death",
    "identity",
    "power",
    "society",
    "travel",
    "humor",
    "art",
)
"""What an item is about (the default ``themes`` vocabulary: 30 labels)."""

Audience = Literal[AUDIENCES]  # type: ignore[valid-type]
Mood = Literal[MOODS]  # type: ignore[valid-type]
Theme = Literal[THEMES]  # type: ignore[valid-type]
Scale = Annotated[int, Field(ge=1, le=5)]
"""A 1-5 numeric facet (the embedded grammar turns small integer ranges into a choice)."""


def distinct(values: Any) -> Any:
    """A list without repeats, first occurrence kept (so ``["war", "war"]`` counts as one)."""
    return list(dict.fromkeys(values)) if isinstance(values, list) else values


class ItemProfile(BaseModel):
    """Default item profile: a summary, then controlled attributes a ranker can group."""

    summary: str = Field(
        min_length=10,
        max_length=220,
        description="One sentence saying what the item is about.",
        json_schema_extra={"inferred": True},
    )
    audience: Audience = Field(description="Who it is for.")
    mood: Mood = Field(description="How it feels.")
    themes: Annotated[list[Theme], BeforeValidator(distinct)] = Field(
        min_length=1, max_length=3, description="One to three things it is about."
    )
    family_friendly: Scale = Field(description="1: adults only ... 5: fine for all ages.")
    intensity: Scale = Field(description="1: calm and gentle ... 5: intense or violent.")

    def to_text(self) -> str:
        return (
            f"{self.summary.rstrip('.')}. Themes: {', '.join(self.themes)}. "
            f"Audience: {self.audience}. Mood: {self.mood}."
        )


class FreeTextItemProfile(BaseModel):
    """Default item profile: what the item is, its themes, who it is for and how it feels."""

    # The free-text profile of earlier versions (keywords, audience and mood as free labels),
    # kept so stored profiles and cached answers stay valid: its JSON schema, docstring included,
    # and so its prompt version are unchanged. The evaluation compares it with ItemProfile.
    model_config = ConfigDict(title="ItemProfile")

    summary: str = Field(
        min_length=10,
        max_length=220,
        description="One sentence saying what the item is about.",
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
    """Default user profile: a taste summary, liked and disliked themes, preference keywords.

    The summary is a sentence that starts with a word and the lists hold labels in words
    (:data:`SENTENCE_PATTERN`, :data:`LABEL_PATTERN`: part of the grammar and of validation).

    >>> UserProfile(summary="Enjoys dark crime dramas.", liked=["Film-Noir"], disliked=[],
    ...             keywords=["heist"]).liked
    ['Film-Noir']
    >>> UserProfile(summary=", Most recent: Heat (1995) (4.0)", liked=["2.0"], disliked=[],
    ...             keywords=["x y"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    pydantic_core._pydantic_core.ValidationError: 2 validation errors for UserProfile
    ...
    """

    summary: str = Field(
        min_length=10,
        max_length=220,
        pattern=SENTENCE_PATTERN,
        description="One sentence on what this user enjoys.",
    )
    liked: list[Label] = Field(
        min_length=1, max_length=4, description="Genres or themes the user likes."
    )
    disliked: list[Label] = Field(
        min_length=0, max_length=3, description="Genres or themes the user avoids."
    )
    keywords: list[Label] = Field(
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

"""One contract, every backend: each chat backend (embedded, OpenAI-compatible server, scripted)
gives structured output, reports token usage, and fails with errors the engine classifies as
transient (retried) or terminal (recorded); each embedder gives unit float32 rows of its
dimension, the same for the same text."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from enrich.embedding import LangChainEmbedder, resolve_embedder
from enrich.engine import transient_errors
from enrich.errors import TransientError
from enrich.llm import ChatEmbedded, resolve_llm, structured
from enrich.prompts import PromptTemplate
from enrich.schemas import ItemProfile
from enrich.testing import HashEmbedder, ScriptedChat

HEAT = PromptTemplate.for_items().render(
    {"title": "Heat (1995)", "genres": "Action|Crime|Thriller"}, ItemProfile
)
BACKENDS = [
    "scripted",
    pytest.param("embedded", marks=pytest.mark.slow),
    pytest.param("openai-compatible", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    from tests.servers import llama_server

    with llama_server(alias="smollm2") as url:
        yield url


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def chat_model(name: str, request: pytest.FixtureRequest):
    if name == "scripted":
        return ScriptedChat()
    if name == "embedded":
        return request.getfixturevalue("chat")
    return resolve_llm(f"{request.getfixturevalue('served')}#smollm2")


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_structured_output_with_token_usage(backend: str, request) -> None:
    out = structured(chat_model(backend, request), ItemProfile).invoke(HEAT)
    parsed = out["parsed"]
    assert out["parsing_error"] is None, out["parsing_error"]
    profile = ItemProfile.model_validate(
        parsed if isinstance(parsed, dict) else parsed.model_dump()
    )
    assert len(profile.summary) >= 10
    usage = out["raw"].usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


def raised(call) -> BaseException:
    with pytest.raises(Exception) as caught:  # any kind: which kind it is, is what is checked
        call()
    return caught.value


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_errors_are_transient_or_terminal(backend: str, request) -> None:
    transient = transient_errors()
    if backend == "scripted":

        def fail(kind: type[Exception]):
            def script(text: str, attempt: int):
                raise kind("injected")

            return ScriptedChat(script=script)

        retry = raised(lambda: structured(fail(TransientError), ItemProfile).invoke(HEAT))
        final = raised(lambda: structured(fail(ValueError), ItemProfile).invoke(HEAT))
    elif backend == "embedded":  # a local model has no transient failure; a too long prompt
        retry = None
        chat = ChatEmbedded(n_ctx=256)  # is refused, terminally
        long = PromptTemplate.for_items(max_input_tokens=2000).render(
            {"title": "word " * 1500}, ItemProfile
        )
        final = raised(lambda: structured(chat, ItemProfile).invoke(long))
    else:
        from tests.servers import FaultProxy

        url = request.getfixturevalue("served")
        with FaultProxy(url, rate=1.0, faults=("429",)) as proxy:
            retry = raised(
                lambda: structured(resolve_llm(f"{proxy.url}#smollm2"), ItemProfile).invoke(HEAT)
            )
        with FaultProxy(url, rate=1.0, faults=("400",)) as proxy:
            final = raised(
                lambda: structured(resolve_llm(f"{proxy.url}#smollm2"), ItemProfile).invoke(HEAT)
            )
    if retry is not None:
        assert isinstance(retry, transient), type(retry)
    assert not isinstance(final, transient), type(final)


EMBEDDERS = [
    pytest.param("default", marks=pytest.mark.slow),
    "langchain",
    "hash",
]


@pytest.mark.parametrize("kind", EMBEDDERS)
def test_embedders_give_unit_float32_rows_of_their_dimension(kind: str, request) -> None:
    embedder = {
        "default": lambda: request.getfixturevalue("embedder"),
        "langchain": lambda: LangChainEmbedder(DeterministicFakeEmbedding(size=16)),
        "hash": HashEmbedder,
    }[kind]()
    embedder = resolve_embedder(embedder)
    texts = ["A heist film.", "A toy story.", "A heist film."]
    vectors = embedder.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2]) and not np.array_equal(vectors[0], vectors[1])
    assert embedder.embed([]).shape == (0, embedder.dim)
    assert isinstance(embedder.name, str) and embedder.name

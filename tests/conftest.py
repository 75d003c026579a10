"""Shared fixtures: the real embedded models load once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import polars as pl
import pytest

from enrich.movielens import find_data_dir, load_ml100k_items


@pytest.fixture(scope="session")
def ml100k() -> Path:
    path = find_data_dir("ml-100k")
    if path is None:
        pytest.fail("MovieLens 100K not found: set ENRICH_DATA to the folder holding ml-100k/")
    return path


@pytest.fixture(scope="session")
def ml_items(ml100k: Path) -> pl.DataFrame:
    return load_ml100k_items(ml100k).select("item_id", "title", "genres")


@pytest.fixture(scope="session")
def chat():
    from enrich.llm import ChatEmbedded

    return ChatEmbedded()


@pytest.fixture(scope="session")
def embedder():
    from enrich.embedding import resolve_embedder

    return resolve_embedder(None)

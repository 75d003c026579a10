"""Shared fixtures: the real embedded models load once per test session."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Prefect: a scratch home, no analytics, and time for the ephemeral API to start (~25 s cold).
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="enrich-prefect-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

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

"""Shared fixtures: every test gets its own cs home; models are built or loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(autouse=True)
def cs_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every cache and index of cs at a fresh temp dir, and never touch the network."""
    home = tmp_path_factory.mktemp("cs-home")
    monkeypatch.setenv("CS_HOME", str(home))
    for var in ("CS_INDEX_DIR", "CS_CACHE_DIR", "CS_MODEL", "CS_DEVICE", "CS_INDEX_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    return home


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The sample repositories under fixtures/."""
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 model and BPE tokenizer, saved as a local model directory (seconds)."""
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

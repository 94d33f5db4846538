"""Shared fixtures: every test gets its own cs home; models are built or loaded once per session;
the sample repositories most tests work on (``repo``, ``indexed_repo``, ``py_go_repo``,
``indexed_py_go_repo``). Helpers to import are in tests/support/ (``cli.cs``, ``wait.wait_for``)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(autouse=True)
def cs_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every cache and index of cs at a fresh temp dir, and never touch the network."""
    home = tmp_path_factory.mktemp("cs-home")
    monkeypatch.setenv("CS_HOME", str(home))
    for var in ("CS_INDEX_DIR", "CS_CACHE_DIR", "CS_MODEL", "CS_DEVICE", "CS_INDEX_URI",
                "CS_CACHE_URI", "RAY_ADDRESS", "CS_PRECISION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    # No test starts a background query server unless it asks to (tests/test_autoserver.py).
    monkeypatch.setenv("CS_SERVER_AUTOSTART", "0")
    monkeypatch.delenv("CS_NO_SERVER", raising=False)
    return home


@pytest.fixture(scope="session", autouse=True)
def shared_int8_builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of int8 (ONNX) model builds for the session: `auto` may pick int8, and each
    test's fresh home would otherwise export the same model again (seconds each)."""
    path = tmp_path_factory.mktemp("quantized")
    os.environ["CS_QUANTIZED_DIR"] = str(path)
    yield path
    os.environ.pop("CS_QUANTIZED_DIR", None)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The sample repositories under fixtures/."""
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 model and BPE tokenizer, saved as a local model directory (seconds)."""
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def qwen3_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face hub cache holding a tiny random Qwen3 as Qwen/Qwen3-Embedding-0.6B: with
    HF_HUB_CACHE pointing here, the qwen3-0.6b preset loads it offline (support/tiny_qwen3)."""
    from tests.support.tiny_qwen3 import build_tiny_qwen3, hub_snapshot

    cache = tmp_path_factory.mktemp("hub-qwen3")
    build_tiny_qwen3(hub_snapshot(cache, "Qwen/Qwen3-Embedding-0.6B"))
    return cache


# --- sample repositories: copies of fixtures/ in the test's tmp_path ---------------------------
# Both trees live at tmp_path/repo (tests name paths around it): a test takes one or the other.


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """fixtures/python (a README and the datatools package, 10 files) copied to ``tmp_path/repo``;
    not indexed."""
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "python", root)
    return root


@pytest.fixture
def indexed_repo(repo: Path, tiny_model_dir: Path) -> Path:
    """``repo`` indexed with the tiny model by ``cs index --json`` (in this process)."""
    from tests.support.cli import cs

    result = cs("index", str(repo), "--model", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    return repo


@pytest.fixture
def py_go_repo(tmp_path: Path) -> Path:
    """fixtures/python and fixtures/go as ``py/`` and ``go/`` of one root, ``tmp_path/repo``; not
    indexed."""
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "python", root / "py")
    shutil.copytree(FIXTURES / "go", root / "go")
    return root


@pytest.fixture
def indexed_py_go_repo(py_go_repo: Path, tiny_model_dir: Path) -> Path:
    """``py_go_repo`` indexed with the tiny model by ``cs index --json`` (in this process)."""
    from tests.support.cli import cs

    result = cs("index", str(py_go_repo), "--model", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    return py_go_repo


_CPU_DTYPE_MEMO: dict[str, object] = {}


@pytest.fixture
def cpu_dtype_memo(cs_home: Path) -> Iterator[None]:
    """Share the embedder's one-off fp32-vs-bf16 measurement (``cpu-dtype.json`` in CS_HOME)
    between tests, so each fresh home does not measure again (seconds per model). Opt-in
    (``pytest.mark.usefixtures``) so tests of the measurement itself still start clean."""
    memo = cs_home / "cpu-dtype.json"
    if _CPU_DTYPE_MEMO:
        memo.write_text(json.dumps(_CPU_DTYPE_MEMO), encoding="utf-8")
    yield
    try:
        _CPU_DTYPE_MEMO.update(json.loads(memo.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

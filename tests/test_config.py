"""Settings and where things live (codesearch.config): the environment variables that move the
cache and the indexes, which of them wins, how an index directory is named, and the defaults the
environment sets. Every test starts from the conftest's home (CS_HOME set, the other CS_*
variables unset)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import platformdirs
import pytest

from codesearch import config
from codesearch.config import resolve_index_uri

# --- where the indexes live ----------------------------------------------------------------------


def test_index_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    default = resolve_index_uri(root)
    assert Path(default).name.startswith("repo-")
    assert resolve_index_uri(root, index_dir=tmp_path / "ix") == str(
        tmp_path / "ix" / Path(default).name)
    assert resolve_index_uri(root, index_uri="s3://bucket/team") == "s3://bucket/team"
    monkeypatch.setenv("CS_INDEX_URI", str(tmp_path / "shared"))
    assert resolve_index_uri(root) == str(tmp_path / "shared")


def test_cache_dir_cs_home_then_cs_cache_dir_then_the_user_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CS_CACHE_DIR", str(tmp_path / "cache"))
    assert config.cache_dir() == tmp_path / "home"
    monkeypatch.delenv("CS_HOME")
    assert config.cache_dir() == tmp_path / "cache"
    monkeypatch.setenv("CS_CACHE_DIR", "~/cs-cache")
    assert config.cache_dir() == Path.home() / "cs-cache"
    monkeypatch.delenv("CS_CACHE_DIR")
    assert config.cache_dir() == Path(platformdirs.user_cache_dir("codesearch"))


def test_everything_lives_under_the_cache_unless_moved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CS_QUANTIZED_DIR", raising=False)  # the suite shares one (conftest)
    assert config.index_root_dir() == tmp_path / "home" / "indexes"
    assert config.embedding_cache_dir() == tmp_path / "home" / "embeddings"
    assert config.quantized_dir() == tmp_path / "home" / "quantized"
    monkeypatch.setenv("CS_INDEX_DIR", str(tmp_path / "ix"))  # wins over CS_HOME
    monkeypatch.setenv("CS_QUANTIZED_DIR", str(tmp_path / "q"))
    assert config.index_root_dir() == tmp_path / "ix"
    assert config.quantized_dir() == tmp_path / "q"
    assert config.embedding_cache_dir() == tmp_path / "home" / "embeddings"  # not moved by them


def test_index_dir_for_is_the_name_a_hash_of_the_path_and_the_format(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_INDEX_DIR", str(tmp_path / "ix"))
    root = tmp_path / "my repo!"
    root.mkdir()
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    expected = tmp_path / "ix" / f"my_repo_-{digest}-v{config.INDEX_FORMAT_VERSION}"
    assert config.index_dir_for(root) == expected
    monkeypatch.chdir(tmp_path)
    assert config.index_dir_for(Path("my repo!")) == expected  # relative: the same tree
    other = tmp_path / "elsewhere" / "my repo!"  # the same name elsewhere: another index
    other.mkdir(parents=True)
    assert config.index_dir_for(other) != expected
    assert config.index_dir_for(other).name.startswith("my_repo_-")
    assert config.index_dir_for(Path("/")).name.startswith("root-")  # a root with no name
    assert resolve_index_uri(root) == str(expected)


def test_an_index_uri_wins_over_any_index_dir(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.setenv("CS_INDEX_DIR", str(tmp_path / "env-ix"))
    by_dir = resolve_index_uri(root, index_dir=tmp_path / "arg-ix")
    assert by_dir == str(tmp_path / "arg-ix" / config.index_dir_for(root).name)  # arg over env
    monkeypatch.setenv("CS_INDEX_URI", "s3://bucket/env")
    assert resolve_index_uri(root, index_dir=tmp_path / "arg-ix") == "s3://bucket/env"
    assert resolve_index_uri(root, index_uri="s3://bucket/arg") == "s3://bucket/arg"
    # Local URIs are paths: file:// and ~ are resolved, remote ones are kept as given.
    assert resolve_index_uri(root, index_uri=f"file://{tmp_path}/ix") == str(tmp_path / "ix")
    assert resolve_index_uri(root, index_uri="~/team-ix") == str(Path.home() / "team-ix")
    assert resolve_index_uri(root, index_uri="gs://bucket/~x") == "gs://bucket/~x"


@pytest.mark.parametrize("uri, remote", [("s3://bucket/prefix", True), ("gs://b/p", True),
                                         ("az://c/p", True), ("file:///tmp/ix", False),
                                         ("/tmp/ix", False), ("relative/ix", False)])
def test_is_remote(uri: str, remote: bool) -> None:
    assert config.is_remote(uri) is remote


# --- defaults from the environment ---------------------------------------------------------------


def test_model_spec_makes_local_directories_absolute_and_keeps_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert config.model_spec("models/mine") == str(tmp_path.resolve() / "models" / "mine")
    assert config.model_spec("minilm") == "minilm"  # a preset
    assert config.model_spec("jinaai/jina-code-embeddings-0.5b") == (
        "jinaai/jina-code-embeddings-0.5b")  # a hub id, not a directory here
    assert config.model_spec("models/missing") == "models/missing"


def test_defaults_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.default_model() == config.DEFAULT_MODEL == "jina-code-0.5b"
    assert config.default_device() is None and config.default_precision() is None
    monkeypatch.setenv("CS_MODEL", "minilm")
    monkeypatch.setenv("CS_DEVICE", "cpu")
    monkeypatch.setenv("CS_PRECISION", "int8")
    assert config.default_model() == "minilm"
    assert config.default_device() == "cpu" and config.default_precision() == "int8"
    monkeypatch.setenv("CS_DEVICE", "")  # set but empty: the automatic choice
    monkeypatch.setenv("CS_PRECISION", "")
    assert config.default_device() is None and config.default_precision() is None

"""The Ray engine on a local Ray instance (2 CPUs, tiny model): the same chunk ids and vectors as the
local engine, the same embedding cache, and the CLI's --engine flag."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytest.importorskip("ray.data", reason="the ray extra (ray[data]) is not installed")

from codesearch.cli import app  # noqa: E402
from codesearch.indexer import IndexOptions, index_root  # noqa: E402
from codesearch.ray_engine import RayOptions, index_root_ray, ray_embed  # noqa: E402
from codesearch.store import Store  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cpu_dtype_memo")]
runner = CliRunner()


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One local Ray instance for the module (starting Ray costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def repo(tmp_path: Path, fixtures_dir: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(fixtures_dir / "python", root / "py")
    shutil.copytree(fixtures_dir / "go", root / "go")
    return root


def rows(uri: str) -> dict[str, np.ndarray]:
    out = {}
    for c in Store.open(uri).chunks(with_vectors=True):
        assert c.vector is not None
        out[c.id] = c.vector
    return out


def test_ray_engine_matches_local_and_reuses_cache(ray_local: None, repo: Path, tmp_path: Path,
                                                   tiny_model_dir: Path) -> None:
    local = index_root(repo, index_dir=tmp_path / "local",
                       options=IndexOptions(model=str(tiny_model_dir)))
    # A separate cache, so the Ray run really embeds everything itself.
    opts = IndexOptions(model=str(tiny_model_dir), cache_uri=str(tmp_path / "ray-cache"))
    ray_opts = RayOptions(workers=2, batch_texts=16)
    first = index_root_ray(repo, index_dir=tmp_path / "ray", options=opts, ray_options=ray_opts)
    assert first.chunks_embedded == local.chunks_embedded > 0
    assert first.chunks_total == local.chunks_total
    assert first.files_changed == local.files_changed

    a, b = rows(local.index), rows(first.index)
    assert a.keys() == b.keys()  # the same chunk ids
    ids = sorted(a)
    va, vb = np.stack([a[i] for i in ids]), np.stack([b[i] for i in ids])
    cosine = np.sum(va * vb, axis=1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1))
    assert cosine.min() > 0.9999

    again = index_root_ray(repo, index_dir=tmp_path / "ray", options=opts, ray_options=ray_opts)
    assert again.chunks_embedded == 0 and again.files_changed == 0  # unchanged tree: nothing

    # Rebuilt from scratch, every vector comes from the cache: Ray embeds nothing.
    rebuilt = index_root_ray(repo, index_dir=tmp_path / "ray",
                             options=replace(opts, rebuild=True),
                             ray_options=ray_opts)
    assert rebuilt.rebuilt and rebuilt.chunks_embedded == 0
    assert rebuilt.chunks_total == local.chunks_total

    # An edit: only the new function's text goes to Ray.
    target = repo / "go" / next(p.name for p in sorted((repo / "go").iterdir())
                                if p.suffix == ".go")
    target.write_text(target.read_text() + "\nfunc RayOnlyHelper(x int) int {\n\treturn x * 7\n}\n")
    edited = index_root_ray(repo, index_dir=tmp_path / "ray", options=opts, ray_options=ray_opts)
    assert edited.files_changed == 1 and edited.chunks_embedded == 1


def test_ray_embed_covers_every_text_once(ray_local: None, tiny_model_dir: Path) -> None:
    from codesearch.embed import load_embedder
    from codesearch.indexer import DOCUMENT_TASK

    texts = [f"def f{i}(x):\n    return x + {i}\n" * (1 + i % 5) for i in range(23)]
    seen = np.zeros(len(texts), dtype=int)
    got: dict[int, np.ndarray] = {}
    for idx, vec in ray_embed(texts, model=str(tiny_model_dir), dim=None, device="cpu",
                              opts=RayOptions(workers=1, batch_texts=5)):
        seen[idx] += 1
        got.update(zip(idx.tolist(), vec, strict=True))
    assert (seen == 1).all()
    want = load_embedder(str(tiny_model_dir), device="cpu").embed_documents(texts,
                                                                           task=DOCUMENT_TASK)
    out = np.stack([got[i] for i in range(len(texts))])
    assert np.allclose(out, want, atol=1e-5)


def test_cli_engine_ray(ray_local: None, repo: Path, tmp_path: Path,
                        tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["index", str(repo / "go"), "--engine", "ray", "--json",
                                 "--index-dir", str(tmp_path / "idx"),
                                 "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["chunks_total"] > 0 and stats["chunks_embedded"] > 0
    result = runner.invoke(app, ["index", str(repo / "go"), "--engine", "spark",
                                 "--index-dir", str(tmp_path / "idx")])
    assert result.exit_code == 2 and "local, ray" in result.stderr

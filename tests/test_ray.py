"""The Ray engine on a local Ray instance (2 CPUs, MiniLM, whose chunk vectors fold in two short
views of each chunk): the same chunk ids and vectors as the local engine, the same embedding
cache, and the CLI's --engine flag."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytest.importorskip("ray.data", reason="the ray extra (ray[data]) is not installed")

from codesearch.index.indexer import IndexOptions  # noqa: E402
from codesearch.index.ray import RayOptions, index_root_ray  # noqa: E402
from codesearch.index.run import index_root  # noqa: E402
from codesearch.location import IndexSettings  # noqa: E402
from codesearch.store.store import Store  # noqa: E402
from tests.support.cli import cs  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cpu_dtype_memo")]


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One local Ray instance for the module (starting Ray costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def rows(uri: str) -> dict[str, np.ndarray]:
    out = {}
    for c in Store.open(uri).chunks(with_vectors=True):
        assert c.vector is not None
        out[c.id] = c.vector
    return out


def test_ray_engine_matches_local_and_reuses_cache(ray_local: None, py_go_repo: Path,
                                                   tmp_path: Path) -> None:
    local = index_root(py_go_repo, settings=IndexSettings(index_dir=tmp_path / "local"),
                       options=IndexOptions(model="minilm"))
    # Through the CLI, with a cache of its own so that Ray really embeds everything. One Ray run
    # only: on 2 cores each one costs tens of seconds of actor start-up.
    cache = str(tmp_path / "ray-cache")
    result = cs("index", str(py_go_repo), "--engine", "ray", "--ray-workers", "2",
                "--json", "--index-dir", str(tmp_path / "ray"),
                "--cache-uri", cache, "--model", "minilm")
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)
    assert first["chunks_embedded"] == local.chunks_embedded > 0
    assert first["chunks_total"] == local.chunks_total
    assert first["files_changed"] == local.files_changed

    a, b = rows(local.index), rows(first["index"])
    assert a.keys() == b.keys()  # the same chunk ids
    ids = sorted(a)
    va, vb = np.stack([a[i] for i in ids]), np.stack([b[i] for i in ids])
    cosine = np.sum(va * vb, axis=1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1))
    assert cosine.min() > 0.9999

    opts = IndexOptions(model="minilm", cache_uri=cache)
    ray_opts = RayOptions(workers=2)
    ray_index = IndexSettings(index_dir=tmp_path / "ray").for_root(py_go_repo)
    again = index_root_ray(ray_index, options=opts, ray_options=ray_opts)
    assert again.chunks_embedded == 0 and again.files_changed == 0  # unchanged tree: nothing

    # Rebuilt from scratch, every vector comes from the cache: Ray embeds nothing.
    rebuilt = index_root_ray(ray_index, options=replace(opts, rebuild=True),
                             ray_options=ray_opts)
    assert rebuilt.rebuilt and rebuilt.chunks_embedded == 0
    assert rebuilt.chunks_total == local.chunks_total
    assert rows(rebuilt.index).keys() == a.keys()


def test_cli_engine_choices(py_go_repo: Path, tmp_path: Path) -> None:
    result = cs("index", str(py_go_repo / "go"), "--engine", "spark",
                "--index-dir", str(tmp_path / "idx"))
    assert result.exit_code == 2 and "local, ray" in result.stderr

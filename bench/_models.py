"""Models the benchmarks build for themselves: the real architectures of the presets with random
weights (jina-code-embeddings-0.5b: Qwen2.5-Coder-0.5B; Qwen3-Embedding-0.6B: Qwen3), and a
byte-level BPE trained on local text. FLOPs, and so timings, do not depend on the weights; the hub
weights cannot be downloaded here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

QWEN25_05B: dict[str, Any] = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)

# Qwen/Qwen3-Embedding-0.6B's config.json: 28 layers, hidden 1024, 16 query heads of 128 (so the
# attention is 2048 wide, not 1024), 8 KV heads, MLP 3072, vocab 151,669.
QWEN3_06B: dict[str, Any] = dict(
    hidden_size=1024,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=3072,
    vocab_size=151669,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def train_bpe(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE (the Qwen2 tokenizer family) trained on ``texts``, as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", model_max_length=32768)


def build_05b(path: Path, corpus: list[str], vocab: int = 32000) -> Path:
    """The 0.5B architecture with random weights and a BPE trained on ``corpus``, saved like a
    hub model (loads with ``--model PATH``)."""
    import torch
    from transformers import Qwen2Config, Qwen2Model

    fast = train_bpe(corpus, vocab)
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = Qwen2Config(**QWEN25_05B, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, bos_token_id=None)
    Qwen2Model(config).eval().save_pretrained(path)
    return path


def build_arch(kind: str, path: Path, corpus: list[str], vocab: int = 32000) -> Path:
    """A preset's architecture (``"jina-code-0.5b"``: Qwen2, ``"qwen3-0.6b"``: Qwen3) with random
    weights and a BPE trained on ``corpus``, saved like a hub model (``--model PATH``)."""
    if kind == "jina-code-0.5b":
        return build_05b(path, corpus, vocab)
    import torch
    from transformers import Qwen3Config, Qwen3Model

    if kind != "qwen3-0.6b":
        raise ValueError(f"unknown architecture {kind}")
    fast = train_bpe(corpus, vocab)
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = Qwen3Config(**QWEN3_06B, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, bos_token_id=None)
    Qwen3Model(config).eval().save_pretrained(path)
    return path

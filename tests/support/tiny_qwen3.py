"""More tiny random models the suite builds in seconds: a Qwen3 model shaped like
Qwen3-Embedding (its tokenizer appends <|endoftext|>, pads with it, ends with <|im_end|> as EOS),
laid out as a Hugging Face hub cache entry so the ``qwen3-0.6b`` preset loads it offline; and two
sentence-transformers directories (a BERT-style mean-pooling model, a last-token model with
prompts) with their modules.json, pooling config and Normalize module."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.tiny_model import _CORPUS

END = "<|endoftext|>"
IM_END = "<|im_end|>"
QWEN3_HIDDEN = 256
SEED = 4321


def _bpe(appends_end: bool):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=[END, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    if appends_end:
        # As the hub's Qwen3-Embedding tokenizer.json: every sequence ends with <|endoftext|>.
        end_id = tok.token_to_id(END)
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A:0 {END}:0", pair=f"$A:0 {END}:0 $B:1 {END}:1",
            special_tokens=[(END, end_id)])
    return tok


def _spread(model) -> None:  # type: ignore[no-untyped-def]
    """Wider random weights than the default init, so that texts get distinct vectors."""
    import torch

    with torch.no_grad():
        gen = torch.Generator().manual_seed(SEED)
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)


def build_tiny_qwen3(path: Path, *, appends_end: bool = True) -> Path:
    """A 2-layer Qwen3 (hidden 256, 4 heads of 32: attention narrower than the hidden size, as in
    the real 0.6B; 2 KV heads) with its BPE, saved under ``path``."""
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    path.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=_bpe(appends_end), eos_token=IM_END,
                                   pad_token=END, model_max_length=32768)
    fast.save_pretrained(path)
    config = Qwen3Config(vocab_size=len(fast), hidden_size=QWEN3_HIDDEN, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=32, max_position_embeddings=1024,
                         eos_token_id=fast.convert_tokens_to_ids(IM_END),
                         pad_token_id=fast.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=False)
    torch.manual_seed(SEED)
    model = Qwen3Model(config).eval()
    _spread(model)
    model.save_pretrained(path)
    return path


def hub_snapshot(cache: Path, hub_id: str) -> Path:
    """The directory a Hugging Face hub cache under ``cache`` holds for ``hub_id`` at "main"
    (created, with the ref): build a model into it and it is "cached"."""
    commit = "0" * 39 + "1"
    entry = cache / f"models--{hub_id.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(commit)
    snapshot = entry / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _st_files(path: Path, pooling: dict[str, object], prompts: dict[str, str] | None,
              max_seq_length: int, normalize: bool = True) -> None:
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (path / "2_Normalize").mkdir(exist_ok=True)
    _write_json(path / "modules.json", modules)
    _write_json(path / "1_Pooling" / "config.json", pooling)
    _write_json(path / "sentence_bert_config.json",
                {"max_seq_length": max_seq_length, "do_lower_case": False})
    cfg: dict[str, object] = {"similarity_fn_name": "cosine"}
    if prompts is not None:
        cfg.update(prompts=prompts, default_prompt_name=None)
    _write_json(path / "config_sentence_transformers.json", cfg)


def build_st_bert(path: Path) -> Path:
    """A tiny BERT with a WordPiece tokenizer, as a sentence-transformers mean-pooling model
    (legacy pooling keys, Normalize, max_seq_length 48, no prompts)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_CORPUS * 4, trainer=trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=512)
    fast.save_pretrained(path)
    config = BertConfig(vocab_size=len(fast), hidden_size=48, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=96, max_position_embeddings=128,
                        pad_token_id=fast.pad_token_id)
    torch.manual_seed(SEED)
    model = BertModel(config, add_pooling_layer=False).eval()
    _spread(model)
    model.save_pretrained(path)
    _st_files(path, {"word_embedding_dimension": 48, "pooling_mode_cls_token": False,
                     "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                     "pooling_mode_mean_sqrt_len_tokens": False}, None, max_seq_length=48)
    return path


ST_PROMPTS = {"query": "Instruct: find the code\nQuery: ", "document": "Code: ",
              "code2code_query": "Instruct: find equivalent code\nQuery: "}


def build_st_lasttoken(path: Path) -> Path:
    """The tiny Qwen3 as a sentence-transformers last-token model with prompts (ST_PROMPTS, new
    pooling keys) and Normalize."""
    build_tiny_qwen3(path)
    _st_files(path, {"embedding_dimension": QWEN3_HIDDEN, "pooling_mode": "lasttoken",
                     "include_prompt": True}, ST_PROMPTS, max_seq_length=64)
    return path

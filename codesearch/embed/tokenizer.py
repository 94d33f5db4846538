"""Text -> token ids for any engine, from the model's ``tokenizer.json`` through the `tokenizers`
package alone (no transformers, no torch). The same ids as transformers' fast tokenizer, which
wraps the very same object (tests/test_engines.py checks it); a directory without a
``tokenizer.json`` falls back to transformers' AutoTokenizer when that is installed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from codesearch.embed.choice import TORCH_HINT, torch_available
from codesearch.errors import ModelError


class TextTokenizer(Protocol):
    pad_id: int | None
    eos_id: int | None

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]: ...

    def token_id(self, token: str) -> int | None: ...


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<|endoftext|>", "lstrip": false, ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


class FastTokenizer:
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json``, with the pad and end-of-text ids that
    transformers would read from ``tokenizer_config.json``, ``special_tokens_map.json`` and
    ``config.json``. Adds the special tokens tokenizer.json's post-processor adds, and truncates
    on the side ``tokenizer_config.json`` names (right by default), as transformers does."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        self._max_length: int | None = None
        settings = _read(path / "tokenizer_config.json")
        special = {**_read(path / "special_tokens_map.json"), **settings}
        config = _read(path / "config.json")
        self._side = str(settings.get("truncation_side") or "right")
        self.pad_id = self._id(special.get("pad_token"), config.get("pad_token_id"))
        self.eos_id = self._id(special.get("eos_token"), config.get("eos_token_id"))

    def _id(self, token: Any, fallback: Any) -> int | None:
        text = _token_text(token)
        found = self._tok.token_to_id(text) if text is not None else None
        if found is not None:
            return int(found)
        return int(fallback) if isinstance(fallback, int) else None

    def token_id(self, token: str) -> int | None:
        """The id of one token of the vocabulary (a special token such as an end token), or
        None when there is no such token."""
        found = self._tok.token_to_id(token)
        return int(found) if found is not None else None

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids of each text with the model's special tokens, at most ``max_length``."""
        if max_length != self._max_length:
            self._tok.enable_truncation(max_length, strategy="longest_first",
                                        direction=self._side)
            self._max_length = max_length
        return [list(e.ids) for e in self._tok.encode_batch(list(texts),
                                                            add_special_tokens=True)]


class AutoTokenizerAdapter:
    """transformers' AutoTokenizer, for a model directory without a ``tokenizer.json``."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoTokenizer

        # trust_remote_code stays False: a model repository must not run code on this machine.
        self._tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        self.pad_id = self._tok.pad_token_id
        self.eos_id = self._tok.eos_token_id

    def token_id(self, token: str) -> int | None:
        found = self._tok.convert_tokens_to_ids(token)
        return found if isinstance(found, int) and found != self._tok.unk_token_id else None

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        out: list[list[int]] = self._tok(
            list(texts), add_special_tokens=True, truncation=True, max_length=max_length,
            return_attention_mask=False, return_token_type_ids=False,
        )["input_ids"]  # fmt: skip
        return out


def load_tokenizer(path: Path) -> TextTokenizer:
    """The tokenizer of the model directory ``path``. Raises ModelError (one line) when it has
    none this install can read."""
    try:
        if (path / "tokenizer.json").is_file():
            return FastTokenizer(path)
        if torch_available():
            return AutoTokenizerAdapter(path)
    except Exception as err:  # noqa: BLE001 - any loader failure becomes one readable line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ModelError(f"cannot load the tokenizer in {path}: {first}",
                         hint="check that the directory holds the model's tokenizer") from err
    raise ModelError(f"{path} has no tokenizer.json",
                     hint=f"a model without one needs transformers: {TORCH_HINT}")

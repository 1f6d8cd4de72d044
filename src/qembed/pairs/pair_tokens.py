"""How a classifier reads a sentence pair: one token sequence holding both sentences.

Tokenizers with a pair template that separates the sentences (BERT: ``[CLS] A [SEP] B [SEP]``)
are used as they are. Qwen's tokenizer has none: ``tokenizer(a, b)`` gives ``A B <|endoftext|>``,
so the boundary between the sentences is lost. For such tokenizers qembed puts the end token
between them too: ``A <|endoftext|> B <|endoftext|>``. Truncation is longest-first (the longer
sentence loses tokens first) and the special tokens always stay, so the last token — the one
Qwen3's sequence classifier pools — is ``<|endoftext|>``, as in embedding mode.

Qwen3's ``*ForSequenceClassification`` finds the last token as the last one that is not
``pad_token_id``. Qwen's pad token *is* ``<|endoftext|>``, so padding with it would make the model
pool the last text token instead. :class:`PairTokenizer` therefore pads with another special
token (``pad_id``) that the caller also sets as ``config.pad_token_id``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from qembed.errors import InputError

#: The shortest ``max_length`` accepted: room for two special tokens and a few text tokens each.
MIN_MAX_LENGTH = 8


def _find(seq: list[int], sub: list[int], start: int = 0) -> int:
    for k in range(start, len(seq) - len(sub) + 1):
        if seq[k:k + len(sub)] == sub:
            return k
    return -1


class PairTokenizer:
    """Turn ``(sentence1, sentence2)`` into token ids the way the classifier reads them.

    In: a Hugging Face tokenizer. :meth:`encode_pairs` returns lists of token ids no longer than
    ``max_length``; :meth:`encode_texts` does the same for single texts; :meth:`collate` pads a
    batch to tensors (right padding with :attr:`pad_id`).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        a = tokenizer("a", add_special_tokens=False)["input_ids"]
        b = tokenizer("b", add_special_tokens=False)["input_ids"]
        single = tokenizer("a", add_special_tokens=True)["input_ids"]
        pair = tokenizer("a", "b", add_special_tokens=True)["input_ids"]
        ia = _find(single, a)
        self.prefix = single[:ia]
        self.suffix = single[ia + len(a):]
        pa = _find(pair, a)
        pb = _find(pair, b, pa + len(a))
        middle = pair[pa + len(a):pb] if pa >= 0 and pb >= 0 else []
        tail = pair[pb + len(b):] if pb >= 0 else self.suffix
        if middle:
            self.separator = middle
            self.end = tail
            self.template = "tokenizer"
        else:
            # No separator in the pair template (Qwen): put the end token between the sentences.
            self.separator = list(self.suffix)
            self.end = list(self.suffix)
            self.template = "end-token separator"
        self.pair_prefix = pair[:pa] if pa >= 0 else self.prefix
        pad = tokenizer.pad_token_id
        if pad is None or pad in self.end or pad in self.separator:
            pad = self._spare_special_id()
        self.pad_id = int(pad)

    def _spare_special_id(self) -> int:
        used = set(self.end) | set(self.separator) | set(self.prefix)
        for token_id in self.tokenizer.all_special_ids:
            if token_id not in used:
                return int(token_id)
        raise InputError("the tokenizer has no special token that can serve as padding")

    @property
    def overhead(self) -> int:
        """Special tokens a pair carries (prefix, separator, end)."""
        return len(self.pair_prefix) + len(self.separator) + len(self.end)

    def describe(self) -> str:
        """The pair layout in tokens, e.g. ``A <|endoftext|> B <|endoftext|>``."""
        conv = self.tokenizer.convert_ids_to_tokens
        parts = [*conv(self.pair_prefix), "A", *conv(self.separator), "B", *conv(self.end)]
        return " ".join(parts)

    def _bare(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]

    def pair_lengths(self, first: Sequence[str], second: Sequence[str]) -> list[int]:
        """Untruncated length of each pair as the classifier reads it."""
        return [len(x) + len(y) + self.overhead for x, y in zip(self._bare(first), self._bare(second))]

    def text_lengths(self, texts: Sequence[str]) -> list[int]:
        """Untruncated length of each single text with its special tokens (as an embedding model reads it)."""
        return [len(x) + len(self.prefix) + len(self.suffix) for x in self._bare(texts)]

    def encode_pairs(self, first: Sequence[str], second: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids of each pair, truncated longest-first to ``max_length`` (special tokens kept)."""
        if max_length < MIN_MAX_LENGTH:
            raise InputError(f"max_length must be at least {MIN_MAX_LENGTH}, got {max_length}",
                             param="max_length")
        if len(first) != len(second):
            raise InputError(f"got {len(first)} first sentences but {len(second)} second sentences")
        budget = max_length - self.overhead
        out = []
        for x, y in zip(self._bare(first), self._bare(second)):
            while len(x) + len(y) > budget:
                if len(x) >= len(y):
                    x = x[:-1]
                else:
                    y = y[:-1]
            out.append(self.pair_prefix + x + self.separator + y + self.end)
        return out

    def collate(self, batch: Sequence[Sequence[int]]) -> dict[str, Any]:
        """Right-pad token id lists into ``input_ids`` / ``attention_mask`` tensors."""
        import torch

        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def load_tokenizer(model: str | None) -> Any:
    """The tokenizer of ``model`` (folder or Hub id; default ``$QEMBED_MODEL`` or Qwen3-Embedding-0.6B).

    Only the tokenizer files are read, never the weights.
    """
    from transformers import AutoTokenizer

    from qembed.models.resolve import default_model, resolve_model_path

    path = resolve_model_path(model or default_model())
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"could not load a tokenizer from {path}: {exc}") from None

"""Split long documents into overlapping windows of tokens, measured with the encoder's tokenizer.

A window holds at most ``chunk_tokens`` tokens *including* the special tokens the model adds
(``<|endoftext|>`` for Qwen3, ``[CLS]``/``[SEP]`` for BERT-style models), so every chunk fits the
budget exactly when embedded. Consecutive windows share ``overlap`` tokens. Chunks are cut from
the original text at token character offsets, so no text is altered or lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from qembed.errors import InputError

logger = logging.getLogger(__name__)

#: Characters per token assumed when the encoder has no local tokenizer (remote endpoints).
FALLBACK_CHARS_PER_TOKEN = 2


@dataclass
class Chunk:
    """A piece of a document: its text, position ``index`` and character span in the original."""

    text: str
    index: int
    start: int
    end: int


def check_chunking(chunk_tokens: int | None, overlap: int) -> None:
    """Validate chunk size and overlap; :class:`InputError` when they cannot work."""
    if chunk_tokens is None:
        return
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 16:
        raise InputError(f"chunk size must be an integer of at least 16 tokens, got {chunk_tokens!r}",
                         param="chunk_tokens")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise InputError(f"chunk overlap must be a non-negative integer, got {overlap!r}",
                         param="chunk_overlap")
    if overlap >= chunk_tokens // 2:
        raise InputError(f"chunk overlap ({overlap}) must be less than half the chunk size ({chunk_tokens})",
                         param="chunk_overlap")


class Chunker:
    """Token-window chunker bound to one encoder's tokenizer.

    ``chunk_tokens=None`` disables chunking (each document is one piece, truncated by the encoder).
    """

    def __init__(self, encoder: Any, chunk_tokens: int | None = 512, overlap: int = 64) -> None:
        check_chunking(chunk_tokens, overlap)
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        limit = getattr(encoder, "max_input_tokens", None)
        if chunk_tokens is not None and limit and chunk_tokens > limit:
            logger.info("chunk size %d exceeds %s's input limit; using %d tokens", chunk_tokens,
                        getattr(encoder, "name", "the model"), limit)
            self.chunk_tokens = chunk_tokens = int(limit)
            self.overlap = overlap = min(overlap, chunk_tokens // 4)
        hf = getattr(encoder, "tokenizer", None)
        self._source = getattr(hf, "backend_tokenizer", None)
        self._backend: Any = None
        self._special = 0
        if self._source is None and chunk_tokens is not None:
            logger.warning("the encoder has no local fast tokenizer: chunking by about %d characters per token",
                           FALLBACK_CHARS_PER_TOKEN)

    def _tokenizer(self) -> Any:
        """A private copy of the encoder's Rust tokenizer, made on first need.

        A copy, because the server's batcher changes the shared tokenizer's truncation settings
        from another thread (fast tokenizers then fail with "Already borrowed").
        """
        if self._backend is None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(self._source.to_str())
            backend.no_truncation()
            backend.no_padding()
            with_special = len(backend.encode("a", add_special_tokens=True).ids)
            self._special = max(0, with_special - len(backend.encode("a", add_special_tokens=False).ids))
            self._backend = backend
        return self._backend

    def split(self, text: str) -> list[Chunk]:
        """The chunks of ``text`` (a single chunk when it fits or chunking is off)."""
        if self.chunk_tokens is None:
            return [Chunk(text, 0, 0, len(text))]
        # Byte-level BPE and WordPiece never make more tokens than UTF-8 bytes: short texts are
        # settled without tokenizing (2 = the most special tokens a model adds).
        if len(text.encode("utf-8")) <= self.chunk_tokens - 2:
            return [Chunk(text, 0, 0, len(text))]
        if self._source is None:
            size = self.chunk_tokens - 2
            step = size - self.overlap
            csize, cstep = size * FALLBACK_CHARS_PER_TOKEN, step * FALLBACK_CHARS_PER_TOKEN
            if len(text) <= csize:
                return [Chunk(text, 0, 0, len(text))]
            spans = [(s, min(s + csize, len(text))) for s in range(0, len(text) - self.overlap * 2, cstep)]
        else:
            offsets = self._tokenizer().encode(text, add_special_tokens=False).offsets
            size = self.chunk_tokens - self._special
            step = size - self.overlap
            if len(offsets) <= size:
                return [Chunk(text, 0, 0, len(text))]
            spans = []
            start = 0
            while True:
                end = min(start + size, len(offsets))
                spans.append((offsets[start][0] if start else 0,
                              offsets[end - 1][1] if end < len(offsets) else len(text)))
                if end >= len(offsets):
                    break
                start += step
        chunks = []
        for i, (a, b) in enumerate(spans):
            piece = text[a:b]
            if piece.strip():
                chunks.append(Chunk(piece, len(chunks), a, b))
        return chunks or [Chunk(text, 0, 0, len(text))]

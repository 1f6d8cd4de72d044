"""Text to token ids, the way an embedding model expects them — without the model.

:class:`InputPreparer` holds what tokenisation needs (the tokenizer, the instruction style, the
input limit, the end token the pooling reads) and nothing of the weights. The in-process
:class:`~qembed.models.local.LocalEncoder` uses one, and so does the server's front process,
which tokenises requests while the model runs in an engine process of its own
(:mod:`qembed.server.engine`). :meth:`InputPreparer.spec` is a plain dict, so the engine can send
its settings to the front, which rebuilds the same preparer around its own copy of the tokenizer.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from qembed.errors import InputError, InputTooLongError
from qembed.models.encoder import validate_texts
from qembed.models.prompts import qwen_prefix

logger = logging.getLogger(__name__)

#: Texts longer than ``max_input_tokens x`` this many characters are cut before tokenising (the
#: tokens the model keeps come from the start of the text), so one huge input costs what a
#: maximal one costs instead of tokenising megabytes that truncation throws away.
CHARS_PER_TOKEN_BOUND = 8
#: Tokens beyond the limit a cut text must still hold for its kept tokens to be those of the
#: whole text (a cut only changes the tokens of the last word it splits).
_CUT_MARGIN = 16


def suffix_special_ids(tokenizer: Any) -> list[int]:
    """Special tokens ``tokenizer`` appends after the text (``<|endoftext|>``, ``[SEP]``)."""
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    for k in range(len(probe) - len(bare), -1, -1):
        if probe[k : k + len(bare)] == bare:
            return list(probe[k + len(bare):])
    return []


class InputPreparer:
    """Format, tokenise and check inputs for one model.

    Args:
        tokenizer: the model's (fast) Hugging Face tokenizer.
        name: the model name used in messages.
        max_input_tokens: longest input in tokens, special tokens included.
        truncate: cut longer inputs (keeping the end token) or raise
            :class:`~qembed.errors.InputTooLongError`.
        instruct_style: Qwen3-style ``Instruct: …\\nQuery:`` instructions.
        prompt_style: the model takes instructions at all (instruction or prompt models).
        prompts: sentence-transformers prompts by name.
        end_ids: special tokens the tokenizer appends (kept last under truncation).
        last_token: the model pools the last token (the end token must be there).

    Not thread-safe (Hugging Face fast tokenizers refuse concurrent use of one instance); callers
    that share one serialise access.
    """

    def __init__(self, tokenizer: Any, *, name: str, max_input_tokens: int, truncate: bool = True,
                 instruct_style: bool = False, prompt_style: bool = False,
                 prompts: dict[str, str] | None = None, end_ids: Sequence[int] | None = None,
                 last_token: bool = False) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.max_input_tokens = int(max_input_tokens)
        self.truncate = bool(truncate)
        self.instruct_style = bool(instruct_style)
        self.prompt_style = bool(prompt_style)
        self.prompts = dict(prompts or {})
        self.end_ids = list(suffix_special_ids(tokenizer) if end_ids is None else end_ids)
        self.last_token = bool(last_token)
        self.vocab_size = len(tokenizer)
        self._warned_no_instructions = False

    # ------------------------------------------------------------------ (de)serialisation
    def spec(self) -> dict[str, Any]:
        """Everything but the tokenizer, as plain data (see :meth:`from_spec`)."""
        return {"name": self.name, "max_input_tokens": self.max_input_tokens, "truncate": self.truncate,
                "instruct_style": self.instruct_style, "prompt_style": self.prompt_style,
                "prompts": self.prompts, "end_ids": self.end_ids, "last_token": self.last_token}

    @classmethod
    def from_spec(cls, tokenizer: Any, spec: dict[str, Any]) -> "InputPreparer":
        """The preparer :meth:`spec` describes, around ``tokenizer``."""
        return cls(tokenizer, **spec)

    # ------------------------------------------------------------------ text
    def format(self, texts: str | Sequence[str], instruction: str | None = None) -> list[str]:
        """Apply ``instruction`` the way the model expects; validates ``texts``.

        Qwen3-style models: ``Instruct: {instruction}\\nQuery:{text}``. Models with
        sentence-transformers prompts: the prompt named ``instruction`` if there is one, else the
        instruction as a prefix. Other models ignore instructions (logged once).
        """
        texts = validate_texts(texts)
        if instruction is None or instruction == "":
            return texts
        if not isinstance(instruction, str):
            raise InputError(f"instruction must be a string, got {type(instruction).__name__}",
                             param="instruction")
        validate_texts([instruction], param="instruction")
        if instruction in self.prompts and self.prompts[instruction] is not None:
            prefix = self.prompts[instruction]
        elif self.instruct_style:
            prefix = qwen_prefix(instruction)
        elif self.prompt_style:
            prefix = instruction
        else:
            if not self._warned_no_instructions:
                logger.info("%s takes no instructions; the instruction is ignored", self.name)
                self._warned_no_instructions = True
            return texts
        return [prefix + t for t in texts]

    def _ids(self, texts: list[str], **kwargs: Any) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=True, **kwargs)["input_ids"]

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Tokens per text with special tokens, before truncation."""
        return [len(ids) for ids in self._ids(validate_texts(texts), truncation=False)]

    def token_ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """One text's token ids, untruncated (what ``POST /tokenize`` returns)."""
        validate_texts([text], param="prompt")
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens, truncation=False)["input_ids"])

    def tokenize(self, texts: str | Sequence[str], instruction: str | None = None) -> list[list[int]]:
        """Format and tokenise texts, truncating (keeping the end token) or rejecting long ones.

        Texts far longer than the limit are cut by characters first (see
        :data:`CHARS_PER_TOKEN_BOUND`); the tokens kept are the same as for the whole text.
        """
        ids, too_long = self._tokenize_formatted(self.format(texts, instruction))
        if too_long:
            first = min(too_long)
            length, at_least = too_long[first]
            raise InputTooLongError(first, length, self.max_input_tokens, at_least)
        return ids

    def tokenize_many(self, requests: Sequence[tuple[Any, str | None]]) -> list[list[list[int]] | Exception]:
        """:meth:`tokenize` for several requests in one tokenizer call (one batch for the Rust
        tokenizer instead of one call per request). Each request gets its ids or its own error.
        """
        results: list[list[list[int]] | Exception] = [InputError("not tokenised")] * len(requests)
        flat: list[str] = []
        spans: list[tuple[int, int, int]] = []
        for k, (texts, instruction) in enumerate(requests):
            try:
                formatted = self.format(texts, instruction)
            except InputError as exc:
                results[k] = exc
                continue
            spans.append((k, len(flat), len(formatted)))
            flat.extend(formatted)
        if not flat:
            return results
        ids, too_long = self._tokenize_formatted(flat)
        for k, start, n in spans:
            bad = [i for i in too_long if start <= i < start + n]
            if bad:
                first = min(bad)
                length, at_least = too_long[first]
                results[k] = InputTooLongError(first - start, length, self.max_input_tokens, at_least)
            else:
                results[k] = ids[start:start + n]
        return results

    def _tokenize_formatted(self, formatted: list[str]) -> tuple[list[list[int]], dict[int, tuple]]:
        """Token ids of formatted texts; with truncation off, ``{index: (length, at_least)}`` of
        the texts over the limit (their ids are left whole)."""
        limit = self.max_input_tokens
        bound = limit * CHARS_PER_TOKEN_BOUND
        cut = {i for i, t in enumerate(formatted) if len(t) > bound}
        work = list(formatted)
        for i in cut:
            work[i] = formatted[i][:bound]
        ids = self._ids(work, truncation=False)
        for i in list(cut):  # a cut text must still run past the limit, or it is tokenised whole
            if len(ids[i]) < limit + _CUT_MARGIN:
                work[i] = formatted[i]
                ids[i] = self._ids([work[i]], truncation=False)[0]
                cut.discard(i)
        long = [i for i, x in enumerate(ids) if len(x) > limit]
        if not long:
            return ids, {}
        if not self.truncate:
            return ids, {i: (len(ids[i]), i in cut) for i in long}
        kept = self._ids([work[i] for i in long], truncation=True, max_length=limit)
        for i, k in zip(long, kept):
            ids[i] = k
        return ids, {}

    # ------------------------------------------------------------------ token ids
    def prepare_token_ids(self, inputs: Sequence[Sequence[int]]) -> list[list[int]]:
        """Check pre-tokenised inputs; the end token is appended when missing, then the limit applies."""
        vocab = self.vocab_size
        end = self.end_ids
        out: list[list[int]] = []
        for i, seq in enumerate(inputs):
            if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
                raise InputError(f"input[{i}] must be a list of token ids", param="input")
            seq = list(seq)
            if not seq:
                raise InputError(f"input[{i}] is an empty list of token ids", param="input")
            for t in seq:
                if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < vocab:
                    raise InputError(
                        f"input[{i}] has an invalid token id {t!r} (ids are integers in [0, {vocab}))",
                        param="input",
                    )
            seq = [int(t) for t in seq]
            if end and self.last_token and seq[-len(end):] != end:
                seq = seq + end
            if len(seq) > self.max_input_tokens:
                if not self.truncate:
                    raise InputTooLongError(i, len(seq), self.max_input_tokens)
                keep = self.max_input_tokens - len(end)
                seq = seq[:keep] + end if end else seq[: self.max_input_tokens]
            out.append(seq)
        if not out:
            raise InputError("input is empty: pass at least one sequence of token ids", param="input")
        return out

"""Query-document pairs to token ids, the way a reranker expects them — without the model.

Two input styles:

- ``"qwen3"`` (Qwen3-Reranker and other decoder rerankers): each pair becomes
  ``prefix + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}" + suffix``
  (the model card's prompt). The body is tokenised without special tokens; when it is too long
  its end is cut — the document first, since it comes last — never the prefix or the suffix.
  ``instruction=None`` means the default instruction, ``""`` no ``<Instruct>`` line at all.
- ``"pair"`` (sentence-transformers ``CrossEncoder`` folders such as BERT/MiniLM rerankers): the
  tokenizer's own pair encoding (``[CLS] query [SEP] document [SEP]``), cut longest first.

:class:`RerankInputs` holds the tokenizer and these settings only, so the server's front process
tokenises requests while the model runs in an engine process (:meth:`spec` / :meth:`from_spec`,
as :class:`~qembed.models.inputs.InputPreparer` does for embeddings).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from qembed.errors import InputError
from qembed.models.encoder import validate_texts

logger = logging.getLogger(__name__)

#: Qwen3-Reranker's prompt (model card).
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
#: Qwen3-Reranker's default instruction.
DEFAULT_RERANK_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
#: Longest reranker input by default (prefix and suffix included).
DEFAULT_MAX_TOKENS = 8192
#: A body longer than the budget x this many characters is cut by characters before tokenising.
CHARS_PER_TOKEN_BOUND = 8
_CUT_MARGIN = 16


def format_body(query: str, document: str, instruction: str | None) -> str:
    """The Qwen3-Reranker body for one pair (``instruction`` ``""``: no instruction line)."""
    head = f"<Instruct>: {instruction}\n" if instruction else ""
    return f"{head}<Query>: {query}\n<Document>: {document}"


def validate_query(query: Any) -> str:
    """``query`` as a non-empty string, or :class:`InputError`."""
    if not isinstance(query, str):
        raise InputError(f"query must be a string, got {type(query).__name__}", param="query")
    if not query.strip():
        raise InputError("query is empty", param="query")
    return validate_texts([query], param="query")[0]


def validate_documents(documents: Any) -> list[str]:
    """``documents`` as a non-empty list of non-empty strings, or :class:`InputError`."""
    if isinstance(documents, str):
        raise InputError("documents must be a list of strings, got one string", param="documents")
    docs = validate_texts(documents, param="documents")
    for i, d in enumerate(docs):
        if not d.strip():
            raise InputError(f"documents[{i}] is blank", param="documents")
    return docs


def validate_pairs(pairs: Any) -> list[tuple[str, str]]:
    """``pairs`` as a non-empty list of ``(query, document)`` string pairs, or :class:`InputError`."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise InputError("pairs must be a list of (query, document) pairs", param="pairs")
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise InputError(f"pairs[{i}] must be a (query, document) pair", param="pairs")
        q, d = pair
        for j, t in enumerate((q, d)):
            if not isinstance(t, str) or not t.strip():
                raise InputError(f"pairs[{i}][{j}] must be a non-empty string", param="pairs")
        validate_texts([q, d], param=f"pairs[{i}]")
        out.append((q, d))
    if not out:
        raise InputError("pairs is empty: pass at least one (query, document) pair", param="pairs")
    return out


class RerankInputs:
    """Format and tokenise query-document pairs for one reranker.

    Args:
        tokenizer: the model's (fast) Hugging Face tokenizer.
        name: the model name used in messages.
        style: ``"qwen3"`` (prompt template) or ``"pair"`` (the tokenizer's pair encoding).
        max_input_tokens: longest input in tokens (template or special tokens included).
        default_instruction: what ``instruction=None`` means (``"qwen3"`` style).

    Not thread-safe (a fast tokenizer refuses concurrent use); the server's tokenizer thread owns it.
    """

    def __init__(self, tokenizer: Any, *, name: str, style: str = "qwen3",
                 max_input_tokens: int = DEFAULT_MAX_TOKENS,
                 default_instruction: str | None = DEFAULT_RERANK_INSTRUCTION) -> None:
        if style not in ("qwen3", "pair"):
            raise ValueError(f"unknown input style {style!r}")
        self.tokenizer = tokenizer
        self.name = name
        self.style = style
        self.max_input_tokens = int(max_input_tokens)
        self.default_instruction = default_instruction
        self._warned = False
        if style == "qwen3":
            self.prefix_ids = self._bare(QWEN3_PREFIX)
            self.suffix_ids = self._bare(QWEN3_SUFFIX)
            self.budget = self.max_input_tokens - len(self.prefix_ids) - len(self.suffix_ids)
            if self.budget < 16:
                raise InputError(f"max_input_tokens {self.max_input_tokens} leaves no room for the query "
                                 f"and document after the {len(self.prefix_ids) + len(self.suffix_ids)} "
                                 "tokens of the prompt")
        else:
            self.prefix_ids, self.suffix_ids = [], []
            self.budget = self.max_input_tokens

    # ------------------------------------------------------------------ (de)serialisation
    def spec(self) -> dict[str, Any]:
        """Everything but the tokenizer, as plain data (see :meth:`from_spec`)."""
        return {"name": self.name, "style": self.style, "max_input_tokens": self.max_input_tokens,
                "default_instruction": self.default_instruction}

    @classmethod
    def from_spec(cls, tokenizer: Any, spec: dict[str, Any]) -> RerankInputs:
        return cls(tokenizer, **spec)

    @property
    def supports_instructions(self) -> bool:
        return self.style == "qwen3"

    # ------------------------------------------------------------------ tokenising
    def _bare(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def resolve_instruction(self, instruction: str | None) -> str | None:
        """The instruction that applies (``None`` → the default, ``""`` → none)."""
        if instruction is None:
            return self.default_instruction
        if not isinstance(instruction, str):
            raise InputError(f"instruction must be a string, got {type(instruction).__name__}",
                             param="instruction")
        if instruction:
            validate_texts([instruction], param="instruction")
        return instruction or None

    def tokenize(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[list[int]]:
        """Token ids of ``(query, document)`` for each document (validated)."""
        query = validate_query(query)
        docs = validate_documents(documents)
        return self._tokenize([(query, d) for d in docs], instruction)

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]], instruction: str | None = None) -> list[list[int]]:
        """Token ids of each ``(query, document)`` pair (validated)."""
        return self._tokenize(validate_pairs(pairs), instruction)

    def _tokenize(self, pairs: list[tuple[str, str]], instruction: str | None) -> list[list[int]]:
        instruction = self.resolve_instruction(instruction)
        if self.style == "pair":
            if instruction and instruction != self.default_instruction and not self._warned:
                logger.info("%s takes no instructions; the instruction is ignored", self.name)
                self._warned = True
            return self._pair_ids(pairs)
        bodies = [format_body(q, d, instruction) for q, d in pairs]
        return [self.prefix_ids + body + self.suffix_ids for body in self._body_ids(bodies)]

    def _body_ids(self, bodies: list[str]) -> list[list[int]]:
        """Body token ids cut to the budget; huge bodies are cut by characters first (the kept
        tokens are those of the whole body)."""
        budget = self.budget
        bound = budget * CHARS_PER_TOKEN_BOUND
        work = [b[:bound] if len(b) > bound else b for b in bodies]
        ids = self.tokenizer(work, add_special_tokens=False)["input_ids"]
        for i, b in enumerate(bodies):
            if len(b) > bound and len(ids[i]) < budget + _CUT_MARGIN:
                ids[i] = self._bare(b)  # the cut body is not long enough: tokenise it whole
        return [list(x[:budget]) for x in ids]

    def _pair_ids(self, pairs: list[tuple[str, str]]) -> list[list[int]]:
        bound = self.max_input_tokens * CHARS_PER_TOKEN_BOUND
        queries = [q[:bound] for q, _ in pairs]
        docs = [d[:bound] for _, d in pairs]
        enc = self.tokenizer(queries, docs, truncation="longest_first", max_length=self.max_input_tokens)
        return [list(x) for x in enc["input_ids"]]


def qwen3_chat_template(instruction: str = DEFAULT_RERANK_INSTRUCTION) -> str:
    """A chat template that makes a sentence-transformers ``CrossEncoder`` build the same Qwen3-Reranker
    inputs (``CrossEncoder(path, processor_kwargs={"chat_template": qwen3_chat_template()})``):
    its pairs arrive as ``query``/``document`` messages. Jinja drops one trailing newline, hence
    the extra one."""
    pick = '{{{{ (messages | selectattr("role", "eq", "{}") | first)["content"] }}}}'
    head = f"<Instruct>: {instruction}\n" if instruction else ""
    literal = (QWEN3_PREFIX + head).replace("{", "{{ '{' }}")
    return literal + "<Query>: " + pick.format("query") + "\n<Document>: " + pick.format("document") \
        + QWEN3_SUFFIX + "\n"

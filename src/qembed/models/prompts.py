"""Instruction formats of instruction-tuned embedding models (Qwen3-Embedding first)."""

from __future__ import annotations

#: The query task Qwen3-Embedding was trained with for retrieval.
DEFAULT_QUERY_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)
#: The instruction both sides of a symmetric task (pair similarity, clustering, dedup) get.
SYMMETRIC_INSTRUCTION = "Retrieve semantically similar text"
#: Qwen3-Embedding's query template: no space after ``Query:``.
QWEN_TEMPLATE = "Instruct: {instruction}\nQuery:"


def qwen_prefix(instruction: str) -> str:
    """``Instruct: {instruction}\\nQuery:`` — prepend to the text with no separator."""
    return QWEN_TEMPLATE.format(instruction=instruction)


def format_qwen(text: str, instruction: str) -> str:
    """Format one query the way Qwen3-Embedding expects."""
    return qwen_prefix(instruction) + text


def is_instruct_prompt(prompt: str) -> bool:
    """True when a sentence-transformers prompt follows the ``Instruct: …\\nQuery:`` pattern."""
    return prompt.startswith("Instruct:") and prompt.rstrip().endswith("Query:")

"""Request and response bodies of the OpenAI-compatible endpoints (they also shape ``/docs``).

Request fields are strict: a string field takes a JSON string of valid Unicode (:data:`Text`:
no unpaired surrogate such as ``"\\ud800"``), an integer field a JSON integer (:data:`Integer`:
``41.0`` too, as JSON Schema has it), a boolean field
``true`` or ``false`` (never ``"no"`` or ``0``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)

from qembed.errors import InputError

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def unpaired_surrogate(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (an unpaired UTF-16 surrogate), or ``None``."""
    if text.isascii():
        return None
    m = _SURROGATE.search(text)
    if m is None:
        return None
    return (f"holds an unpaired surrogate (U+{ord(m.group()):04X}) at position {m.start()}; "
            "text must be valid Unicode")


def _valid_unicode(text: str) -> str:
    why = unpaired_surrogate(text)
    if why:
        raise ValueError(why)
    return text


#: A request string: a JSON string (no coercion) of valid Unicode.
Text = Annotated[StrictStr, AfterValidator(_valid_unicode)]


def _whole_number(value: Any) -> Any:
    """``41.0`` → ``41``: JSON Schema counts a number without a fraction as an integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: A request integer: a JSON integer, or a number without a fraction (``41.0``, which JSON Schema's
#: ``integer`` includes); never a string or a boolean.
Integer = Annotated[StrictInt, BeforeValidator(_whole_number)]

_INPUT_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 2048},
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
        {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0},
                                    "minItems": 1}, "minItems": 1, "maxItems": 2048},
    ]
}


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: OpenAI's fields plus qembed's ``instruction`` and ``input_type``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"model": "Qwen3-Embedding-0.6B", "input": "今天天气真不错,适合出去散步"},
                     {"input": ["how do I reset my password"], "input_type": "query", "dimensions": 256}]
    })

    input: Any = Field(..., description="A string, a list of strings, a list of token ids, or a list "
                                        "of token-id lists.", json_schema_extra=_INPUT_SCHEMA)
    model: Text | None = Field(None, description="The served model name (see GET /v1/models).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`float` (JSON numbers) or `base64` (little-endian float32 bytes).")
    dimensions: Integer | None = Field(
        None, description="Matryoshka size: the first N values, re-normalised (32 up to the model size).")
    user: Text | None = Field(None, description="End-user id (accepted and logged at debug level).")
    instruction: Text | None = Field(
        None, description="qembed extension: query instruction applied to every text input "
                          "(`Instruct: {instruction}\\nQuery:{text}` for Qwen3-Embedding).")
    input_type: Literal["query", "document"] | None = Field(
        None, description="qembed extension: `query` applies the default retrieval instruction, "
                          "`document` none. `instruction` takes precedence.")
    embedding_types: list[Literal["float", "int8", "uint8", "binary", "ubinary"]] | None = Field(
        None, min_length=1, max_length=5, json_schema_extra={"uniqueItems": True},
        description="Cohere's `embedding_types`: the vector types to return. One type: `embedding` is that "
                    "vector (int8 -127..127 scaled per vector, uint8 = int8 + 128, binary/ubinary = the signs "
                    "packed 8 per byte, signed/unsigned). Several: `embedding` is `{type: vector}`. "
                    "Leave it out (or `[\"float\"]`) for OpenAI's float vectors.")


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | list[int] | str | dict[str, list[float] | list[int] | str]
    index: int


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class TokenizeRequest(BaseModel):
    """``POST /tokenize`` (the vLLM/SGLang shape)."""

    model_config = ConfigDict(extra="ignore")

    prompt: Text = Field(..., description="The text to tokenise.")
    model: Text | None = None
    add_special_tokens: StrictBool = Field(True, description="Include the end token the model appends.")


class TokenizeResponse(BaseModel):
    tokens: list[int]
    count: int
    max_model_len: int | None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "qembed"
    kind: Literal["embedding", "reranker"] = Field(
        "embedding", description="What the model does: `embedding` (POST /v1/embeddings and the task routes) "
                                 "or `reranker` (POST /v1/rerank).")
    root: str | None = None
    max_model_len: int | None = None
    dim: int | None = None
    device: str | None = Field(None, description="Where the model runs (cpu, cuda:0 …), when known.")
    dtype: str | None = Field(None, description="The weights' precision (bfloat16, float32 …), when known.")
    parent: str | None = Field(None, description="For a LoRA adapter: the served model it runs over.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def parse_input(value: Any, max_items: int) -> tuple[str, list]:
    """Classify ``input``: ``("text", [str, …])`` or ``("ids", [[int, …], …])``.

    Raises :class:`InputError` (400) for empty strings or lists, mixed or wrong types, and more
    than ``max_items`` inputs.
    """
    if isinstance(value, str):
        if value == "":
            raise InputError("input is an empty string", param="input")
        why = unpaired_surrogate(value)
        if why:
            raise InputError(f"input {why}", param="input")
        return "text", [value]
    if not isinstance(value, list):
        raise InputError(
            "input must be a string, a list of strings, a list of token ids or a list of token-id "
            f"lists, got {_json_type(value)}", param="input")
    if not value:
        raise InputError("input is an empty list: pass at least one input", param="input")
    value = [_whole_number(x) if isinstance(x, float) else
             [_whole_number(t) for t in x] if isinstance(x, list) else x for x in value]  # 350.0 is 350
    if all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        kind, items = "ids", [value]
    elif all(isinstance(x, str) for x in value):
        kind, items = "text", value
        for i, t in enumerate(items):
            if t == "":
                raise InputError(f"input[{i}] is an empty string", param="input")
            why = unpaired_surrogate(t)
            if why:
                raise InputError(f"input[{i}] {why}", param="input")
    elif all(isinstance(x, list) for x in value):
        kind, items = "ids", value
        for i, seq in enumerate(items):
            if not seq:
                raise InputError(f"input[{i}] is an empty list of token ids", param="input")
            bad = next((t for t in seq if not isinstance(t, int) or isinstance(t, bool)), None)
            if bad is not None:
                raise InputError(f"input[{i}] holds {_json_type(bad)} {bad!r}; token ids are integers",
                                 param="input")
    else:
        first = _kind(value[0])
        bad = 0 if first is None else next(i for i, x in enumerate(value) if _kind(x) != first)
        raise InputError(
            f"input[{bad}] is {_json_type(value[bad])}: input must be all strings, all token ids, or "
            "all lists of token ids", param="input")
    if len(items) > max_items:
        raise InputError(f"input has {len(items)} items, more than the limit of {max_items} "
                         "(max_client_batch_size); split the request", param="input", code="too_many_inputs")
    return kind, items


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (str, int, list)):
        return type(value).__name__
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__

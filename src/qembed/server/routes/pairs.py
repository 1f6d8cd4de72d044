"""``POST /v1/similarity``, ``POST /v1/classify`` (zero-shot) and ``POST /v1/dedup``.

All three embed through the server's batching queue (``request.app.state.encoder``) from a
worker thread. Input sizes are bounded by ``max_client_batch_size`` (pairs, texts) and
:data:`MAX_LABELS`; bad input answers 400 with an OpenAI-shaped error. Zero-shot label
embeddings are cached per label set, so routing a stream of tickets against the same queues
embeds the labels once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from qembed import deprecated
from qembed.envelope import classify_body, dedup_body, similarity_body
from qembed.errors import InputError
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.server.routes import served_name, task_encoder
from qembed.server.schemas import Integer, Text

router = APIRouter(tags=["Tasks"])

#: Most label specs in one /v1/classify request.
MAX_LABELS = 256
#: Label sets whose embeddings are kept (least recently used dropped first).
LABEL_CACHE_SIZE = 32
#: ``min_similarity`` of /v1/dedup when none is given.
DEFAULT_MIN_SIMILARITY = 0.9

Number = StrictFloat | StrictInt


class SimilarityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"pairs": [["借呗能分期吗?", "我可以分几个月还借呗?"], ["花呗逾期会怎样?", "今天天气怎么样"]],
         "min_similarity": 0.8}]})

    pairs: list[list[Text]] = Field(..., description="Text pairs, each a list of two strings.")
    min_similarity: Number | None = Field(
        None, description="Cosine in [-1, 1] at or above which a pair is 'same'; with it each result has `same`.")
    threshold: Number | None = Field(None, deprecated=True,
                                     description=deprecated.rest_field_description("/v1/similarity", "threshold"))
    instruction: Text | None = Field(None, description="Instruction both sides get (default "
                                             f"'{SYMMETRIC_INSTRUCTION}'; \"\" for none).")
    dimensions: Integer | None = Field(None, description="Matryoshka size.")
    model: Text | None = Field(None, description="The served model name (optional).")


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"input": ["I was charged twice for my order"],
         "labels": ["billing: invoices, charges, refunds", "shipping: delivery and tracking",
                    "login: passwords and sign-in"]}]})

    input: Text | list[Text] = Field(..., description="A text or a list of texts.")
    labels: list[Text] = Field(..., description="Label names or 'name: description' (a name may "
                                                     "repeat with other descriptions).")
    top_k: Integer | None = Field(None, description="Labels listed per text (default all).")
    temperature: Number = Field(0.05, description="Softmax temperature of `probability`.")
    instruction: Text | None = Field(None, description="Instruction for the texts (default "
                                             f"'{SYMMETRIC_INSTRUCTION}'; \"\" for none).")
    label_instruction: Text | None = Field(None, description="Instruction for the labels "
                                                   "(default: `instruction`).")
    dimensions: Integer | None = None
    model: Text | None = None


class DedupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"input": ["How do I reset my password?", "how do i reset my password", "Where is my parcel?"],
         "min_similarity": 0.9}]})

    input: list[Text] = Field(..., description="Texts to deduplicate.")
    min_similarity: Number | None = Field(None, description="Cosine in [-1, 1] at or above which two texts "
                                                               "are near-duplicates (default 0.9).")
    threshold: Number | None = Field(None, deprecated=True,
                                     description=deprecated.rest_field_description("/v1/dedup", "threshold"))
    k: Integer | None = Field(None, deprecated=True, description=deprecated.rest_field_description("/v1/dedup", "k"))
    return_texts: StrictBool = Field(False, description="Include each member's text in the groups.")
    instruction: Text | None = Field(None, description="Instruction both sides get (default "
                                             f"'{SYMMETRIC_INSTRUCTION}'; \"\" for none).")
    dimensions: Integer | None = None
    model: Text | None = None


def _min_similarity(route: str, body: Any, default: float | None) -> float | None:
    """``min_similarity``, or its older name (:data:`qembed.deprecated.REST_FIELDS`; not both)."""
    value = deprecated.rest_old_value(route, body, "min_similarity")
    return default if value is None else value


def _instruction(value: str | None) -> str:
    """The request's instruction: ``None`` = the symmetric default, ``""`` = none."""
    return SYMMETRIC_INSTRUCTION if value is None else value


def _check_size(n: int, limit: int, what: str, param: str) -> None:
    if n == 0:
        raise InputError(f"{param} is empty: pass at least one {what}", param=param)
    if n > limit:
        raise InputError(f"{param} has {n} {what}s, more than this server's limit of {limit} per request",
                         param=param, code="too_many_inputs")


@router.post("/v1/similarity", summary="Cosine similarity of text pairs")
async def similarity(body: SimilarityRequest, request: Request) -> dict[str, Any]:
    """Score each pair; with ``min_similarity`` also a same/different verdict per pair."""
    from qembed.pairs.scoring import check_threshold, score_pairs

    encoder, dimensions = task_encoder(request, body.model, body.dimensions)
    _check_size(len(body.pairs), request.app.state.settings.max_client_batch_size, "pair", "pairs")
    for i, pair in enumerate(body.pairs):
        if len(pair) != 2:
            raise InputError(f"pairs[{i}] has {len(pair)} texts; each pair needs exactly two", param="pairs")
        for j, text in enumerate(pair):
            if not text.strip():
                raise InputError(f"pairs[{i}][{j}] is empty", param="pairs")
    min_similarity = _min_similarity("/v1/similarity", body, None)
    if min_similarity is not None:
        min_similarity = check_threshold(min_similarity, param="min_similarity")
    scores = await run_in_threadpool(
        score_pairs, encoder, [p[0] for p in body.pairs], [p[1] for p in body.pairs],
        instruction=_instruction(body.instruction), dimensions=dimensions)
    return similarity_body(scores.tolist(), model=served_name(request),
                           min_similarity=min_similarity)


_cache_lock = threading.Lock()


def _zero_shot(app: Any, encoder: Any, body: ClassifyRequest, dimensions: int | None):
    """A cached :class:`ZeroShotClassifier` for this label set (built in a worker thread)."""
    from qembed.pairs.classify import ZeroShotClassifier

    key = (tuple(body.labels), body.instruction, body.label_instruction, dimensions, id(encoder))
    with _cache_lock:
        cache: OrderedDict = getattr(app.state, "zero_shot_cache", None) or OrderedDict()
        app.state.zero_shot_cache = cache
        clf = cache.get(key)
        if clf is not None:
            cache.move_to_end(key)
    if clf is None:
        clf = ZeroShotClassifier(encoder, body.labels, instruction=_instruction(body.instruction),
                                 label_instruction=body.label_instruction, dimensions=dimensions)
        with _cache_lock:
            cache[key] = clf
            while len(cache) > LABEL_CACHE_SIZE:
                cache.popitem(last=False)
    return clf


@router.post("/v1/classify", summary="Zero-shot classification against labels")
async def classify(body: ClassifyRequest, request: Request) -> dict[str, Any]:
    """Nearest label for each text, with cosine scores and softmax probabilities."""
    encoder, dimensions = task_encoder(request, body.model, body.dimensions)
    texts = [body.input] if isinstance(body.input, str) else body.input
    _check_size(len(texts), request.app.state.settings.max_client_batch_size, "text", "input")
    _check_size(len(body.labels), MAX_LABELS, "label", "labels")
    if not body.temperature > 0:
        raise InputError(f"temperature must be positive, got {body.temperature}", param="temperature")
    if body.top_k is not None and body.top_k < 1:
        raise InputError(f"top_k must be at least 1, got {body.top_k}", param="top_k")
    for i, text in enumerate(texts):
        if not text.strip():
            raise InputError(f"input[{i}] is empty", param="input")
    clf = await run_in_threadpool(_zero_shot, request.app, encoder, body, dimensions)
    preds = await run_in_threadpool(clf.predict, texts, top_k=body.top_k, temperature=float(body.temperature))
    return classify_body(preds, model=served_name(request), labels=clf.names)


@router.post("/v1/dedup", summary="Groups of near-duplicate texts")
async def dedup(body: DedupRequest, request: Request) -> dict[str, Any]:
    """Groups (representative = earliest text, first) and the indices a deduplicated list keeps."""
    from qembed.pairs.dedup import find_duplicates
    from qembed.pairs.scoring import check_threshold

    encoder, dimensions = task_encoder(request, body.model, body.dimensions)
    _check_size(len(body.input), request.app.state.settings.max_client_batch_size, "text", "input")
    min_similarity = check_threshold(_min_similarity("/v1/dedup", body, DEFAULT_MIN_SIMILARITY),
                                     param="min_similarity")
    for i, text in enumerate(body.input):
        if not text.strip():
            raise InputError(f"input[{i}] is empty", param="input")
    result = await run_in_threadpool(find_duplicates, encoder, body.input, min_similarity=min_similarity,
                                     instruction=_instruction(body.instruction), dimensions=dimensions)
    return dedup_body(result, model=served_name(request),
                      texts=body.input if body.return_texts else None)

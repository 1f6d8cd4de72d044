"""``POST /v1/summarize``: the sentences that best cover a text or a set of texts.

The sentences (:func:`qembed.summarize.sentences.split_sentences`) are embedded through the
server's batching queue and chosen by :func:`qembed.summarize.extractive.summarize` in a worker
thread. The answer (:func:`qembed.envelope.summary_body`, the body ``qembed summarize --json``
prints) holds the chosen sentences under ``data`` in input order, and ``summary`` joins them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from qembed.envelope import summary_body
from qembed.errors import InputError
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.server.routes import served_name, task_encoder
from qembed.server.schemas import Integer, Text

router = APIRouter(tags=["Tasks"])

#: Most sentences one summary may hold.
MAX_SUMMARY_SENTENCES = 100


class SummarizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"input": "花呗还款总是失败。客服说系统在升级。今天天气很好。升级后还款恢复正常了。", "sentences": 2}]})

    input: Text | list[Text] = Field(..., description="One long text, or a list of texts summarized together.")
    sentences: Integer = Field(3, description=f"Sentences in the summary (1..{MAX_SUMMARY_SENTENCES}).")
    method: Text = Field("centroid", description="centroid (closest to the whole) or mmr (closest, then "
                                                 "least redundant).")
    diversity: StrictFloat | Integer = Field(0.3, description="mmr: weight of novelty against closeness (0..1).")
    max_similarity: StrictFloat | Integer = Field(0.95, description="Skip a sentence at least this similar "
                                                                    "(cosine) to one already chosen (0..1].")
    instruction: Text | None = Field(None, description=f"Instruction for the sentences (default "
                                                       f"'{SYMMETRIC_INSTRUCTION}'; \"\" for none).")
    dimensions: Integer | None = Field(None, description="Matryoshka size.")
    model: Text | None = Field(None, description="The served model name (optional).")


@router.post("/v1/summarize", summary="Extractive summary of a text or a set of texts")
async def summarize_texts(body: SummarizeRequest, request: Request) -> dict[str, Any]:
    from qembed.summarize.extractive import summarize

    if not 1 <= body.sentences <= MAX_SUMMARY_SENTENCES:
        raise InputError(f"sentences must be from 1 to {MAX_SUMMARY_SENTENCES}, got {body.sentences}",
                         param="sentences")
    if isinstance(body.input, list):
        limit = request.app.state.settings.max_client_batch_size
        if len(body.input) > limit:
            raise InputError(f"input has {len(body.input)} texts, more than the limit of {limit}", param="input",
                             code="too_many_inputs")
    encoder, dimensions = task_encoder(request, body.model, body.dimensions)
    result = await run_in_threadpool(summarize, encoder, body.input, body.sentences, method=body.method,
                                     diversity=float(body.diversity), max_similarity=float(body.max_similarity),
                                     instruction=body.instruction, dimensions=dimensions)
    return summary_body(result, model=served_name(request))

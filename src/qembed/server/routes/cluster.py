"""``POST /v1/cluster``: cluster texts and name the clusters (K-Means or HDBSCAN, c-TF-IDF keywords).

The texts are embedded through the server's batching queue (``request.app.state.encoder``) and
clustered by :func:`qembed.clustering.pipeline.cluster`, all in a worker thread. A request holds at
most :data:`MAX_CLUSTER_TEXTS` texts (and the server's request-size limit applies); bad input
answers 400 with an OpenAI-shaped error. The answer (:func:`qembed.envelope.cluster_body`, the
same body ``qembed cluster --json`` prints) holds ``object``, ``model``, ``method``, ``params``,
``n_clusters``, ``n_outliers``, ``data`` (one row per input in order: ``index``, ``text``,
``cluster``, ``label``, ``distance``) and ``clusters`` (``cluster``, ``label``, ``keywords``,
``size``, ``examples``).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from qembed import deprecated
from qembed.envelope import cluster_body
from qembed.errors import InputError
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.server.routes import served_name, task_encoder
from qembed.server.schemas import Integer, Text

router = APIRouter(tags=["Tasks"])

#: Most texts one /v1/cluster request may hold.
MAX_CLUSTER_TEXTS = 10_000
#: Most extra jieba words a request may carry.
MAX_WORDS = 10_000
#: Most keywords / examples per cluster a request may ask for.
MAX_PER_CLUSTER = 50


class ClusterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"input": ["花呗还款总是失败", "每次还花呗都提示系统错误", "建议优化花呗支付通道",
                   "My payment failed again", "Mi pago falló otra vez", "Where is my package?"],
         "method": "kmeans", "clusters": 2}]})

    input: list[Text] = Field(..., description=f"Texts to cluster (2..{MAX_CLUSTER_TEXTS}).")
    method: Text = Field("kmeans", description="kmeans or hdbscan.")
    clusters: Integer | Literal["auto"] | None = Field(
        None, description="kmeans: number of clusters (≥ 2) or 'auto' (best silhouette; the default).")
    k: Integer | Literal["auto"] | None = Field(
        None, deprecated=True, description=deprecated.rest_field_description("/v1/cluster", "k"))
    n_init: Integer = Field(10, ge=1, le=100, description="kmeans: initialisations tried; the one with "
                                                           "the lowest inertia is kept.")
    min_cluster_size: Integer | None = Field(None, description="hdbscan: smallest cluster.")
    min_samples: Integer | None = Field(None, description="hdbscan: neighbourhood size for density.")
    reassign_outliers: StrictBool = Field(False, description="hdbscan: move outliers to the nearest cluster.")
    seed: Integer = Field(0, ge=0, le=2**32 - 1,
                            description="Random seed (0 to 2^32 - 1); the same seed gives the same result.")
    top_keywords: Integer = Field(10, description="Keywords per cluster.")
    examples: Integer = Field(3, description="Representative texts per cluster.")
    words: list[Text] | None = Field(None, description="Extra Chinese words for jieba.")
    projection: Literal["pca"] | None = Field(
        None, description="`pca`: add map coordinates `x`, `y` to every row, the embeddings projected to "
                          "2-D as the HTML report's map draws them (the studio's Explore map). Default: none.")
    instruction: Text | None = Field(None, description="Instruction for the texts (default "
                                             f"'{SYMMETRIC_INSTRUCTION}'; \"\" for none).")
    dimensions: Integer | None = Field(None, description="Matryoshka size.")
    model: Text | None = Field(None, description="The served model name (optional).")


@router.post("/v1/cluster", summary="Cluster texts into named topics")
async def cluster_texts(body: ClusterRequest, request: Request) -> dict[str, Any]:
    """Cluster ``input`` with K-Means or HDBSCAN; each cluster gets keywords, a label, examples."""
    n = len(body.input)
    if n > MAX_CLUSTER_TEXTS:
        raise InputError(f"input has {n} texts, more than this server's limit of {MAX_CLUSTER_TEXTS} "
                         "per /v1/cluster request", param="input", code="too_many_inputs")
    for name in ("top_keywords", "examples"):
        value = getattr(body, name)
        if not 1 <= value <= MAX_PER_CLUSTER:
            raise InputError(f"{name} must be between 1 and {MAX_PER_CLUSTER}, got {value}", param=name)
    # out of range whatever the method (hdbscan reads them, kmeans would ignore them): one rule
    for name, low in (("min_cluster_size", 2), ("min_samples", 1)):
        value = getattr(body, name)
        if value is not None and value < low:
            raise InputError(f"{name} must be at least {low}, got {value}", param=name)
    if body.words is not None and len(body.words) > MAX_WORDS:
        raise InputError(f"words has {len(body.words)} entries, more than the limit of {MAX_WORDS}",
                         param="words")
    encoder, dimensions = task_encoder(request, body.model, body.dimensions)
    instruction = body.instruction  # None: the symmetric default, "": none
    try:
        result = await run_in_threadpool(_run, body, encoder, instruction, dimensions)
    except InputError as exc:
        if exc.param == "texts":  # the API's name for what this endpoint calls `input`
            exc.param = "input"
            exc.message = exc.message.replace("texts[", "input[").replace("texts is", "input is")
        raise
    body_out = cluster_body(result, model=served_name(request))
    if body.projection is not None:
        used = await run_in_threadpool(_add_coordinates, body_out["data"], result, body.projection, body.seed)
        body_out["projection"] = used
    return body_out


def _add_coordinates(rows: list[dict[str, Any]], result: Any, projection: str, seed: int) -> str:
    """Give each row ``x`` and ``y``: the embeddings projected to 2-D; the projection used."""
    from qembed.clustering.report import project_2d

    import numpy as np

    coords, used = project_2d(result.embeddings, projection, seed)
    coords = np.nan_to_num(coords, nan=0.0, posinf=0.0, neginf=0.0)  # identical texts: no spread, no NaN
    for row, (x, y) in zip(rows, coords.tolist()):
        row["x"], row["y"] = float(x), float(y)
    return used


def _clusters(body: ClusterRequest) -> int | str | None:
    """``clusters``, or its older name (:data:`qembed.deprecated.REST_FIELDS`; not both)."""
    return deprecated.rest_old_value("/v1/cluster", body, "clusters")


def _run(body: ClusterRequest, encoder: Any, instruction: str | None, dimensions: int | None):
    from qembed.clustering.pipeline import cluster

    return cluster(
        encoder, body.input, method=body.method, clusters=_clusters(body), n_init=body.n_init,
        min_cluster_size=body.min_cluster_size,
        min_samples=body.min_samples, seed=body.seed, reassign_outliers=body.reassign_outliers,
        instruction=instruction, dimensions=dimensions, top_keywords=body.top_keywords,
        n_examples=body.examples, words=body.words or (),
    )

"""``/openapi.json`` as the server enforces it: every limit, and every status each operation answers.

FastAPI derives the schema from the request models, which say what type a field has but not the
limits the handlers check (a text must not be blank, ``dimensions`` runs from 32 to the served
model's size, an id holds no control character …). :func:`served_schema` adds them, so a client
or a fuzzer that builds requests from the schema gets them accepted (schemathesis'
``positive_data_acceptance``), and lists for every operation each status the server can answer —
no catch-all ``default`` — each with the OpenAI-shaped error body.

Limits that depend on what is served are filled in when the schema is asked for: the model's vector
size, its vocabulary (token-id input), the request-size limits of the settings, whether a reranker
runs (``rerank: true``), and, for a FAISS knowledge base, the metadata fields a filter may name. The
rules a JSON schema cannot state — two ``documents`` with the same id, ``clusters`` larger than the
number of texts, fewer than two distinct label names — are said in the operations' descriptions
and answered 400.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

#: Control characters no id may hold (C0, DEL, C1), as a JSON-schema (ECMA-262) class.
ID_CONTROLS = r"[\x00-\x1f\x7f-\x9f]"
#: Control characters no metadata or filter string may hold (tab, LF and CR are allowed).
VALUE_CONTROLS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
#: Whitespace as Python's ``str.strip`` has it, spelled out (regex ``\s`` differs between engines:
#: Rust's and ECMA's leave out U+001C..U+001F, ECMA's takes U+FEFF).
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: A string that is not blank: at least one character that is not whitespace.
NOT_BLANK = {"minLength": 1, "pattern": f"[^{WHITESPACE}]"}
INT64 = {"minimum": -(2**63), "maximum": 2**63 - 1}
#: A document id: 1 to 512 characters, not blank, no control character, no '#'.
DOCUMENT_ID = {"minLength": 1, "maxLength": 512, "pattern": NOT_BLANK["pattern"],
               "not": {"pattern": r"[\x00-\x1f\x7f-\x9f#]"}}
#: Metadata field names, stated without ``$`` (which would also match before a final line feed).
FIELD_NAME = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z_]",
              "not": {"pattern": r"[^A-Za-z0-9_\-]"}}

_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_STATUS_TEXT = {
    400: "Bad request: the body, a parameter or the Authorization header is invalid (sent twice)",
    401: "Missing or wrong API key (when the server runs with one)",
    403: "Wrong admin key, or the server runs without one (admin routes)",
    404: "Not found: an unknown model, document, or no knowledge base / reranker / topic model on this server",
    405: "Method not allowed on this path",
    408: "The request body stopped arriving",
    409: "The index is locked by another writer; retry",
    413: "The request body is larger than the server's limit",
    429: "The server is full (queue limit); retry after Retry-After",
    503: "The model is loading, restarting or failed; or the index is damaged",
}
#: Statuses every API operation can answer (the key, the body limits, the method, readiness).
_COMMON = (400, 401, 405, 408, 413, 429, 503)
#: Statuses of the open operations: no key, no body, nothing to queue.
_OPEN = {"/health": (405, 408, 413, 503), "/metrics": (405, 408, 413)}
#: Extra statuses of some operations.
_EXTRA = {"/v1/search": (404, 409), "/v1/documents": (404, 409), "/v1/documents/{doc_id}": (404, 409),
          "/v1/rerank": (404,), "/v1/topics": (404,), "/v1/topics/assign": (404,), "/v1/topics/update": (404,),
          "/v1/topics/fit": (404,), "/v1/adapters": (403, 404, 409), "/v1/adapters/{name}": (403, 404)}
#: Operations that name a served model answer 404 for another.
_NAMES_MODEL = ("/v1/embeddings", "/tokenize", "/v1/similarity", "/v1/classify", "/v1/dedup", "/v1/cluster",
                "/v1/summarize")


def served_schema(base: dict[str, Any], app: Any) -> dict[str, Any]:
    """A copy of FastAPI's ``base`` schema with the limits ``app`` enforces and its statuses."""
    schema = copy.deepcopy(base)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _limits(components, app)
    for item in schema.get("paths", {}).values():  # path ids: the document-id rule of the bodies
        for operation in item.values():
            for param in operation.get("parameters", ()) if isinstance(operation, dict) else ():
                if param.get("in") == "path" and param.get("name") == "doc_id":
                    param["schema"] = {"type": "string", "title": "Doc Id", **DOCUMENT_ID,
                                       "description": "A document id (never a chunk id), percent-encoded."}
    _statuses(schema)
    if getattr(app.state.settings, "api_key", None):  # the key the middleware asks for, as a scheme
        from qembed.server.middleware import open_paths

        components_root = schema["components"]
        components_root["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        open_ = open_paths(app.state.settings)
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                if isinstance(operation, dict):
                    operation["security"] = [] if path in open_ else [{"bearer": []}]
    return schema


# ---------------------------------------------------------------------- statuses
def _statuses(schema: dict[str, Any]) -> None:
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            responses.pop("default", None)
            codes = set(_OPEN.get(path, _COMMON)) | set(_EXTRA.get(path, ()))
            if path in _NAMES_MODEL:
                codes.add(404)
            for code in sorted(codes):
                if path in _OPEN:
                    responses.setdefault(str(code), {"description": _STATUS_TEXT[code]})
                else:
                    responses[str(code)] = {"description": _STATUS_TEXT[code], "content": _ERROR_BODY}
            if path == "/health":
                responses["503"] = {"description": "loading, restarting, or the model failed to load",
                                    "content": {"application/json": {"schema": {"type": "object"}}}}


# ---------------------------------------------------------------------- limits
def _branches(prop: dict[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    """``prop`` and its ``anyOf`` branches (recursively) whose ``type`` is ``kind``."""
    if prop.get("type") == kind:
        yield prop
    for key in ("anyOf", "oneOf"):
        for branch in prop.get(key, ()):
            yield from _branches(branch, kind)


def _strings(prop: dict[str, Any], **rules: Any) -> None:
    for branch in _branches(prop, "string"):
        if "const" not in branch and "enum" not in branch:
            branch.update(rules)


def _integers(prop: dict[str, Any], **rules: Any) -> None:
    for branch in _branches(prop, "integer"):
        branch.update(rules)


def _numbers(prop: dict[str, Any], **rules: Any) -> None:
    for branch in [*_branches(prop, "number"), *_branches(prop, "integer")]:
        branch.update(rules)


def _arrays(prop: dict[str, Any], **rules: Any) -> list[dict[str, Any]]:
    found = list(_branches(prop, "array"))
    for branch in found:
        branch.update(rules)
    return found


def _texts(prop: dict[str, Any], low: int, high: int | None) -> None:
    """An array of non-blank texts, ``low`` to ``high`` of them (a lone string: non-blank too)."""
    _strings(prop, **NOT_BLANK)
    for array in _arrays(prop, minItems=low, **({"maxItems": high} if high else {})):
        _strings(array.setdefault("items", {"type": "string"}), **NOT_BLANK)


def _metadata_value() -> dict[str, Any]:
    """Any JSON value the metadata rule takes (strings without control characters, int64 …)."""
    return {"anyOf": [
        {"type": "string", "not": {"pattern": VALUE_CONTROLS}},
        {"type": "integer", **INT64}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/MetadataValue"}},
        {"type": "object", "propertyNames": {"not": {"pattern": VALUE_CONTROLS}},
         "additionalProperties": {"$ref": "#/components/schemas/MetadataValue"}},
    ], "description": "JSON; strings without control characters other than tab, LF, CR; integers in "
                      "int64; at most 16 nested levels and 64 KiB per document"}


def _limits(c: dict[str, Any], app: Any) -> None:
    state = getattr(app.state, "server", None)
    settings = app.state.settings
    encoder = getattr(state, "encoder", None)
    dim = getattr(encoder, "dim", None)
    registry = getattr(app.state, "registry", None)
    dims = sorted({m.dim for m in registry.of_kind("embedding") if m.dim}) if registry is not None else []
    if len(dims) > 1:  # several embedding models: up to the largest (each request is checked against its own)
        dim = dims[-1]
    batch = settings.max_client_batch_size

    def dimensions(model: str) -> None:
        prop = c.get(model, {}).get("properties", {}).get("dimensions")
        if prop is None:
            return
        if dim:
            _integers(prop, minimum=min(32, dim), maximum=dim)
            prop["description"] = f"Matryoshka size: {min(32, dim)} to {dim} (the served model's size)."
        else:
            _integers(prop, minimum=1)
            prop["description"] = "Matryoshka size: 32 up to the served model's size (GET /v1/models `dim`)."

    for name in ("EmbeddingRequest", "SimilarityRequest", "ClassifyRequest", "DedupRequest", "ClusterRequest",
                 "SummarizeRequest"):
        dimensions(name)

    # POST /v1/embeddings: texts, token ids (below the vocabulary size), a served model's example
    emb = c.get("EmbeddingRequest")
    if emb:
        vocab = getattr(getattr(encoder, "inputs", None), "vocab_size", None) if encoder is not None else None
        token = {"type": "integer", "minimum": 0, **({"maximum": vocab - 1} if vocab else {})}
        emb["properties"]["input"] = {
            "description": emb["properties"]["input"].get("description", ""),
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": batch},
                {"type": "array", "items": token, "minItems": 1},
                {"type": "array", "items": {"type": "array", "items": token, "minItems": 1},
                 "minItems": 1, "maxItems": batch},
            ]}
        # token-id input takes no instruction (and a proxy takes no token ids)
        text_only = {"properties": {"input": {"anyOf": [
            {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}
        plain = {"properties": {"instruction": {"type": "null"}, "input_type": {"enum": ["document", None]}}}
        emb["anyOf"] = [text_only, plain] if getattr(encoder, "batched", True) else [text_only]
        example = {"input": ["how do I reset my password"], "input_type": "query"}
        if dim:
            example["dimensions"] = min(256, dim)
        emb["examples"] = [emb.get("examples", [{}])[0], example]

    tok = c.get("TokenizeRequest")
    if tok:
        _strings(tok["properties"]["prompt"], minLength=1)

    # POST /v1/search and the documents
    search = c.get("SearchRequest")
    if search:
        p = search["properties"]
        _strings(p["query"], **NOT_BLANK, maxLength=32_768)
        _integers(p["top_k"], minimum=1, maximum=1000)
        _integers(p["candidates"], minimum=1, maximum=1000)
        p["mode"] = {**p["mode"], "enum": ["dense", "bm25", "hybrid"]}
        if getattr(app.state, "reranker", None) is None:
            p["rerank"] = {**p["rerank"], "enum": [False], "description": p["rerank"]["description"]
                           + " This server runs without a reranker: only false."}
        scalar = {"anyOf": [{"type": "string", "not": {"pattern": VALUE_CONTROLS}}, {"type": "boolean"},
                            {"type": "integer", **INT64}, {"type": "number"}, {"type": "null"}]}
        names: dict[str, Any] = dict(FIELD_NAME)
        fields = _known_fields(app)
        if fields is not None:
            names = {"enum": sorted(fields)} if fields else {"enum": []}
        flt = {"type": "object", "maxProperties": 32, "propertyNames": names,
               "additionalProperties": {"anyOf": [*scalar["anyOf"], {"type": "array", "items": scalar,
                                                                     "minItems": 1, "maxItems": 1024}]}}
        if fields is not None and not fields:
            flt["maxProperties"] = 0
        p["filter"] = {"anyOf": [flt, {"type": "null"}], "description": p["filter"].get("description", "")
                       + " Field names: those the stored documents have (an unknown field is a 400)."}
        for array in _arrays(p["like"], minItems=1, maxItems=64):
            _strings(array.setdefault("items", {"type": "string"}), **NOT_BLANK, maxLength=32_768)
        _numbers(p["diversity"], minimum=0, maximum=1)
        search["anyOf"] = [  # a query (no diversity), or like (dense only)
            {"required": ["query"], "properties": {"query": {"type": "string"}, "diversity": {"type": "null"}}},
            {"required": ["like"], "properties": {"like": {"type": "array"}, "mode": {"enum": ["dense"]}}}]
        search["not"] = _both("query", "like")
        search["description"] = "Give `query` (a search) or `like` (more like given documents), not both."
    like_doc = c.get("LikeDocument")
    if like_doc:
        _strings(like_doc["properties"]["id"], **DOCUMENT_ID)
    docs = c.get("DocumentsRequest")
    if docs:
        prop = docs["properties"]["documents"]
        prop.update(minItems=1, maxItems=batch, uniqueItems=True)
        _strings(prop["items"], **NOT_BLANK)
        docs["description"] = ("Documents to add or replace; each id (given or the hash of the text) "
                               "once per request.")
    doc_in = c.get("DocumentIn")
    if doc_in:
        p = doc_in["properties"]
        _strings(p["text"], **NOT_BLANK)
        _strings(p["id"], **DOCUMENT_ID)
        _strings(p["title"], **{"not": {"pattern": VALUE_CONTROLS}})
        reserved = {"not": {"enum": ["doc_id", "chunk"]}}
        p["metadata"] = {"type": "object", "propertyNames": {"allOf": [FIELD_NAME, reserved]},
                         "additionalProperties": {"$ref": "#/components/schemas/MetadataValue"},
                         "description": p["metadata"].get("description", "")
                         + " Field names as filters use them; doc_id and chunk are reserved."}
        c["MetadataValue"] = _metadata_value()

    # task routes
    sim = c.get("SimilarityRequest")
    if sim:
        p = sim["properties"]
        pairs = p["pairs"]
        pairs.update(minItems=1, maxItems=batch)
        pairs["items"] = {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string", **NOT_BLANK}}
        _numbers(p["min_similarity"], minimum=-1, maximum=1)
        _numbers(p["threshold"], minimum=-1, maximum=1)
        sim["not"] = _both("min_similarity", "threshold")
    cls = c.get("ClassifyRequest")
    if cls:
        p = cls["properties"]
        _texts(p["input"], 1, batch)
        labels = p["labels"]
        labels.update(minItems=2, maxItems=256)
        labels["items"] = {"type": "string", "pattern": f"^[^:]*[^:{WHITESPACE}]"}
        _integers(p["top_k"], minimum=1)
        _numbers(p["temperature"], exclusiveMinimum=0)
        cls["description"] = "The labels must name at least two distinct names (the part before ':')."
    ded = c.get("DedupRequest")
    if ded:
        p = ded["properties"]
        _texts(p["input"], 1, batch)
        _numbers(p["min_similarity"], minimum=-1, maximum=1)
        _numbers(p["threshold"], minimum=-1, maximum=1)
        ded["not"] = _both("min_similarity", "threshold")
    clu = c.get("ClusterRequest")
    if clu:
        p = clu["properties"]
        _texts(p["input"], 2, 10_000)
        p["method"] = {**p["method"], "enum": ["kmeans", "hdbscan"]}
        for name in ("clusters", "k"):
            _integers(p[name], minimum=2)
        _integers(p["min_cluster_size"], minimum=2)
        _integers(p["min_samples"], minimum=1)
        for name in ("top_keywords", "examples"):
            _integers(p[name], minimum=1, maximum=50)
        _arrays(p["words"], maxItems=10_000)
        clu["not"] = _both("clusters", "k")
        automatic = {"enum": [None, "auto"]}
        clu["allOf"] = [
            {"if": {"properties": {"method": {"const": "hdbscan"}}, "required": ["method"]},  # no clusters
             "then": {"properties": {"clusters": automatic, "k": automatic}}},
            {"if": {"properties": {"method": {"const": "kmeans"}, "clusters": automatic, "k": automatic}},
             "then": {"properties": {"input": {"minItems": 3}}}},  # 'auto' tries 2..n-1 clusters
        ]
        clu["description"] = ("kmeans: `clusters` at most the number of texts ('auto' needs 3 texts or more); "
                              "hdbscan: no `clusters`, `min_cluster_size` and `min_samples` at most the "
                              "number of texts.")
    # topics and summaries
    for name in ("TopicTextsRequest", "TopicUpdateRequest"):
        req = c.get(name)
        if req:
            _texts(req["properties"]["input"], 1, batch)
    fit = c.get("TopicFitRequest")
    if fit:
        p = fit["properties"]
        _texts(p["input"], 2, 10_000)
        p["method"] = {**p["method"], "enum": ["kmeans", "hdbscan"]}
        _integers(p["clusters"], minimum=2)
        _integers(p["min_cluster_size"], minimum=2)
        _numbers(p["outlier_quantile"], minimum=0.5, maximum=1)
    summ = c.get("SummarizeRequest")
    if summ:
        p = summ["properties"]
        _texts(p["input"], 1, batch)
        _integers(p["sentences"], minimum=1, maximum=100)
        p["method"] = {**p["method"], "enum": ["centroid", "mmr"]}
        _numbers(p["diversity"], minimum=0, maximum=1)
        _numbers(p["max_similarity"], exclusiveMinimum=0, maximum=1)
    rr = c.get("RerankRequest")
    if rr:
        p = rr["properties"]
        _strings(p["query"], **NOT_BLANK)
        docs_prop = p["documents"]
        docs_prop.update(minItems=1, maxItems=batch)
        _strings(docs_prop["items"], **NOT_BLANK)
        _integers(p["top_n"], minimum=1)
    rdoc = c.get("RerankDocument")
    if rdoc:
        _strings(rdoc["properties"]["text"], **NOT_BLANK)


def _both(a: str, b: str) -> dict[str, Any]:
    """The schema of an object giving both ``a`` and ``b`` non-null (to be negated with ``not``)."""
    given = {"not": {"type": "null"}}
    return {"required": [a, b], "properties": {a: given, b: given}}


def _known_fields(app: Any) -> set[str] | None:
    """The metadata fields of the served knowledge base, when its store can list them cheaply
    (FAISS); ``None`` otherwise (no knowledge base, or Milvus)."""
    kb = getattr(app.state, "knowledge_base", None)
    fields = getattr(getattr(kb, "store", None), "fields", None)
    if kb is None or not callable(fields):
        return None
    try:
        return set(fields())
    except Exception:  # noqa: BLE001 - the schema still answers; the handler refuses unknown fields
        return None

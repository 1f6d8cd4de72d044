"""An :class:`~qembed.models.encoder.Encoder` over any OpenAI-compatible ``/v1/embeddings`` endpoint.

Works against qembed's own server, SGLang, vLLM, TEI and OpenAI. Instructions are applied on the
client as text (``Instruct: …\\nQuery:…``), so servers that know nothing of instructions give the
same vectors qembed's local encoder gives.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from typing import Any, Sequence

import httpx
import numpy as np
from tqdm.auto import tqdm

from qembed.deprecated import old_keywords
from qembed.errors import InputError, RemoteError
from qembed.io import is_http_url
from qembed.models.encoder import check_dimensions, check_finite, truncate_dimensions, validate_texts
from qembed.models.prompts import qwen_prefix

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class RemoteEncoder:
    """Encode through an OpenAI-compatible embeddings endpoint.

    Args:
        base_url: the API root, e.g. ``http://localhost:30000/v1``.
        model: the served model name; default: the first model ``GET /models`` lists.
        api_key: sent as ``Authorization: Bearer …`` (default ``EMPTY``).
        batch_size: inputs per request; larger inputs are split.
        max_retries: retries of 408/409/429/5xx answers and connection errors, with exponential
            backoff (``Retry-After`` respected).
        timeout: seconds per request.
        instruction_template: how an instruction is put in front of a query text.
        max_input_tokens: the server's limit, if known (reported as is).
        send_dimensions: pass ``dimensions`` to the server (vectors are sliced and re-normalised
            here either way, so servers that ignore it still give the asked size).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        batch_size: int = 256,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 0.5,
        instruction_template: str | None = None,
        max_input_tokens: int | None = None,
        send_dimensions: bool = True,
        client: httpx.Client | None = None,
    ) -> None:
        if not is_http_url(base_url):
            raise InputError(f"base_url must start with http:// or https://, got {base_url!r}")
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.model_source = self.base_url  # what an index records to reach this encoder again
        self.batch_size = int(batch_size)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.instruction_template = instruction_template
        self.send_dimensions = send_dimensions
        self._max_input_tokens = max_input_tokens
        headers = {"Authorization": f"Bearer {api_key or 'EMPTY'}"}
        self._client = client or httpx.Client(timeout=timeout, headers=headers)
        self.name = model or self._first_model()
        self._dim: int | None = None

    # ------------------------------------------------------------------ http
    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise RemoteError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from None
                delay = self.backoff * 2**attempt
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUS or attempt >= self.max_retries:
                    raise self._error(response, url)
                retry_after = response.headers.get("retry-after")
                try:
                    delay = float(retry_after) if retry_after else self.backoff * 2**attempt
                except ValueError:
                    delay = self.backoff * 2**attempt
            delay = min(delay, 30.0) * (1 + 0.1 * random.random())
            logger.warning("%s %s: retrying in %.1fs (attempt %d)", method, url, delay, attempt + 1)
            time.sleep(delay)
            attempt += 1

    @staticmethod
    def _error(response: httpx.Response, url: str) -> RemoteError:
        try:
            body = response.json()
            message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) \
                else body.get("error") or body.get("detail") or body
        except ValueError:
            message = response.text[:500]
        error = RemoteError(f"{url} answered {response.status_code}: {message}")
        if 400 <= response.status_code < 500:
            error.status_code = response.status_code
        return error

    def _first_model(self) -> str:
        data = self._request("GET", f"{self.base_url}/models").json().get("data") or []
        if not data:
            raise RemoteError(f"{self.base_url}/models lists no model; pass model=")
        return str(data[0]["id"])

    # ------------------------------------------------------------------ Encoder
    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._embed_batch(["dimension probe"], None).shape[1])
        return self._dim

    @property
    def max_input_tokens(self) -> int | None:
        return self._max_input_tokens

    @property
    def supports_instructions(self) -> bool:
        return True

    def format(self, texts: str | Sequence[str], instruction: str | None = None) -> list[str]:
        texts = validate_texts(texts)
        if not instruction:
            return texts
        prefix = (self.instruction_template.format(instruction=instruction)
                  if self.instruction_template else qwen_prefix(instruction))
        return [prefix + t for t in texts]

    def _embed_batch(self, texts: list[str], dimensions: int | None) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.name, "input": texts, "encoding_format": "base64"}
        if dimensions is not None and self.send_dimensions:
            payload["dimensions"] = dimensions
        body = self._request("POST", f"{self.base_url}/embeddings", json=payload).json()
        rows = sorted(body["data"], key=lambda d: d["index"])
        if len(rows) != len(texts):
            raise RemoteError(f"server returned {len(rows)} embeddings for {len(texts)} inputs")
        vectors = []
        for row in rows:
            emb = row["embedding"]
            if isinstance(emb, str):
                vectors.append(np.frombuffer(base64.b64decode(emb), dtype="<f4"))
            else:
                vectors.append(np.asarray(emb, dtype=np.float32))
        return np.vstack(vectors).astype(np.float32)

    @old_keywords
    def encode(
        self,
        texts: str | Sequence[str],
        instruction: str | None = None,
        dimensions: int | None = None,
        *,
        progress: bool = False,
    ) -> np.ndarray:
        """Same contract as :meth:`LocalEncoder.encode`; requests of ``batch_size`` inputs."""
        formatted = self.format(texts, instruction)
        if dimensions is not None:
            dimensions = check_dimensions(dimensions, self.dim)
        parts = []
        bar = tqdm(total=len(formatted), desc="embedding", unit="text", disable=not progress)
        for start in range(0, len(formatted), self.batch_size):
            chunk = formatted[start:start + self.batch_size]
            parts.append(self._embed_batch(chunk, dimensions))
            bar.update(len(chunk))
        bar.close()
        vectors = np.vstack(parts)
        check_finite(vectors)
        if self._dim is None and dimensions is None:
            self._dim = vectors.shape[1]
        return truncate_dimensions(vectors, dimensions)

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Token counts from the server's ``POST /tokenize`` (qembed, SGLang and vLLM have one)."""
        texts = validate_texts(texts)
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        counts = []
        for t in texts:
            body = self._request("POST", f"{root}/tokenize", json={"model": self.name, "prompt": t}).json()
            counts.append(int(body["count"]) if "count" in body else len(body["tokens"]))
        return counts

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RemoteEncoder(base_url={self.base_url!r}, name={self.name!r})"

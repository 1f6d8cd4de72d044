"""Configuration in one place: defaults < ``QEMBED_*`` environment variables < explicit values.

:class:`Settings` holds every knob of the encoder and the server. ``Settings()`` reads the
environment (``QEMBED_PORT=8080`` sets ``port``); keyword arguments override it
(``Settings(port=9000)``). Every numeric or enumerated value is checked by its pydantic ``Field``
constraint, so a bad value (``QEMBED_PORT=70000``, ``engine="gpu"``) raises a
``pydantic.ValidationError`` that names the setting, whether it came from the environment or a
flag. Only the command line (``qembed.commands``), the server's entry point and ``cli.py`` read
the environment; library functions take their values as parameters.

This module also holds two conventions every task function follows:
:func:`resolve_instruction` (``None`` = the task's default instruction, ``""`` = none) and
:func:`want_progress` (``progress=None``: a bar when stderr is a terminal and the work has more
than one batch).
"""

from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qembed.errors import InputError
from qembed.models.resolve import DEFAULT_MODEL
from qembed.models.runtimes import BACKENDS, DTYPES, canonical_backend, canonical_dtype

#: ``--dtype`` values after :func:`~qembed.models.runtimes.canonical_dtype` (which also takes the short
#: spellings, e.g. ``bf16``).
Dtype = Literal[DTYPES]  # type: ignore[valid-type]
#: ``--backend`` values after :func:`~qembed.models.runtimes.canonical_backend` (``ov``, ``ort`` … too).
Backend = Literal[BACKENDS]  # type: ignore[valid-type]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace",
                   "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE"]


class Settings(BaseSettings):
    """Every knob of the encoder and the server. ``QEMBED_MODEL=…`` sets ``model`` and so on."""

    model_config = SettingsConfigDict(env_prefix="QEMBED_", extra="ignore", protected_namespaces=(),
                                      validate_assignment=True)

    # encoder
    model: str = Field(DEFAULT_MODEL, min_length=1,
                       description="model folder, Hub id, or http(s) URL of an endpoint")
    use_modelscope: bool = Field(
        False, description="download Hub ids from ModelScope instead of the Hugging Face Hub (needs "
                           "the modelscope extra; HF_ENDPOINT points the Hugging Face client at a mirror)")
    device: str | None = Field(None, pattern=r"^(auto|cpu|mps|xpu|cuda(:\d+)?)$",
                               description="auto, cpu, cuda, cuda:N, mps or xpu")
    dtype: Dtype | None = Field(None, description="auto, bfloat16, float16 or float32 (bf16, fp16, "
                                                  "fp32 … accepted); int8 (int8 products on the CPU: "
                                                  "torch's packed passes, or openvino/onnx exports)")
    backend: Backend | None = Field(
        None, description="runtime of a local model: torch (default), openvino or onnx (exported once "
                          "and cached; int8 weights by default; ov, ort … accepted)")
    max_input_tokens: int | None = Field(None, ge=1, description="longest input in tokens")
    truncate: bool = Field(True, description="truncate long inputs instead of rejecting them")
    max_batch_tokens: int | None = Field(
        None, ge=1,
        description="tokens per forward pass: real tokens for packed Qwen3 passes, inputs x longest "
                    "for padded ones (default by device: 4096 CPU, 16384 CUDA)")
    max_batch_size: int | None = Field(
        None, ge=1,
        description="inputs per forward pass (default: 256 for packed Qwen3 passes; padded ones "
                    "32 CPU, 256 CUDA)")
    compile: Literal["auto"] | bool = Field(
        "auto", description="fuse the packed Qwen3 passes' element-wise ops with torch.compile: auto "
                            "(on CPU and CUDA, in a server at start-up, elsewhere once one call brings "
                            "enough tokens to repay it; see qembed.models.compile), true or false")

    # server
    host: str = Field("127.0.0.1", min_length=1, description="address the server listens on")
    port: int = Field(30000, ge=0, le=65535, description="TCP port (0: any free port)")
    served_model_name: str | None = Field(None, description="model name the API reports and accepts")
    api_key: str | None = Field(None, description="require 'Authorization: Bearer <key>'")
    admin_key: str | None = Field(None, description="key of the admin routes (POST/DELETE /v1/adapters), sent as "
                                                    "'Authorization: Bearer <key>'; without one they are closed")
    api_docs: bool = Field(True, description="serve the API docs (/docs, /redoc, /openapi.json), open "
                                             "without the key; false closes them")
    studio: bool = Field(True, description="serve the studio, a web page for trying the server's tasks, at / "
                                           "(open without the key: the page asks for it)")
    max_client_batch_size: int = Field(2048, ge=1, description="most inputs in one request")
    max_queued_requests: int = Field(512, ge=1, description="requests waiting for the model before 429")
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1, description="largest request body in bytes")
    index: str | None = Field(None, description="knowledge base (folder or Milvus URI) for /v1/search")
    topic_model: str | None = Field(None, description="topic model folder served by /v1/topics (made by "
                                                      "'qembed cluster --save-model' or POST /v1/topics/fit)")
    reranker: str | None = Field(
        None, description="reranker model (folder, Hub id or http(s) URL of a /rerank endpoint) served "
                          "by /v1/rerank and used by /v1/search with rerank=true")
    log_level: LogLevel = Field("info", description="critical, error, warning, info, debug or trace")
    upstream_model: str | None = Field(None, description="model name at the upstream endpoint (proxy mode)")
    upstream_api_key: str | None = Field(None, description="API key of the upstream endpoint (proxy mode)")
    graceful_timeout: float = Field(30.0, ge=0, description="seconds to finish in-flight requests on SIGTERM")
    access_log: bool = Field(False, description="log every HTTP request (uvicorn access log)")
    engine: Literal["process", "thread"] = Field(
        "process", description="where the model runs: an engine process of its own (default), or a "
                               "thread of the server process")
    api_workers: int = Field(
        1, ge=1, le=64, description="front processes (HTTP, JSON, tokenisation) sharing the port and one "
                                    "engine per model, with one admission limit, one /metrics and one "
                                    "/health across them (needs engine=process)")
    engine_threads: int | None = Field(
        None, ge=1, description="torch threads of the engine (default: torch's, one per core)")
    batch_linger_ms: float = Field(
        2.0, ge=0, le=1000, description="under load, how long a batch that is not full waits for "
                                        "more inputs before it runs (milliseconds)")
    omp_wait_policy: Literal["PASSIVE", "ACTIVE"] | None = Field(
        None, description="OpenMP wait policy of the engine process (OMP_WAIT_POLICY)")
    engine_restart_limit: int = Field(
        3, ge=0, description="restarts tried in a row when the engine process dies, before the "
                             "server exits with an error")
    engine_start_timeout: float = Field(
        1800.0, gt=0, description="seconds the engine may take to load the model")

    @field_validator("dtype", "backend", mode="before")
    @classmethod
    def _canonical_name(cls, value: Any, info: ValidationInfo) -> Any:
        """The one spelling of a dtype or backend (``bf16`` → ``bfloat16``, ``ov`` → ``openvino``)."""
        try:
            return (canonical_dtype if info.field_name == "dtype" else canonical_backend)(value)
        except InputError as exc:
            raise ValueError(exc.message) from None


def resolve_instruction(instruction: str | None, default: str | None) -> str | None:
    """The instruction to encode with: ``None`` → ``default`` (the task's), ``""`` → none (``None``)."""
    if instruction is None:
        return default
    return instruction or None


def want_progress(progress: bool | None, n: int, batch: int = 64) -> bool:
    """Whether to show a progress bar: ``progress`` when given; otherwise when stderr is a
    terminal and the ``n`` items take more than one ``batch``."""
    if progress is not None:
        return bool(progress)
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and n > batch

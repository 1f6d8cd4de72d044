"""Configuration in one place: defaults, ``QEMBED_*`` environment variables, then CLI flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from qembed.models.resolve import DEFAULT_MODEL


class Settings(BaseSettings):
    """Every knob of the encoder and the server. ``QEMBED_MODEL=…`` sets ``model`` and so on."""

    model_config = SettingsConfigDict(env_prefix="QEMBED_", extra="ignore", protected_namespaces=())

    # encoder
    model: str = Field(DEFAULT_MODEL, description="model folder, Hub id, or http(s) URL of an endpoint")
    device: str | None = Field(None, description="auto, cpu, cuda, cuda:N, mps")
    dtype: str | None = Field(None, description="auto, bfloat16, float32, float16")
    max_input_tokens: int | None = Field(None, description="longest input in tokens")
    truncate: bool = Field(True, description="truncate long inputs instead of rejecting them")
    max_batch_tokens: int | None = Field(
        None, description="tokens per forward pass: real tokens for packed Qwen3 passes, inputs x longest "
                          "for padded ones (default by device: 4096 CPU, 16384 CUDA)")
    max_batch_size: int | None = Field(
        None, description="inputs per forward pass (default: 256 for packed Qwen3 passes; padded ones "
                          "32 CPU, 256 CUDA)")
    compile: bool | None = Field(
        None, description="fuse the packed Qwen3 passes' element-wise ops with torch.compile "
                          "(default: on for CPU and CUDA)")

    # server
    host: str = "127.0.0.1"
    port: int = 30000
    served_model_name: str | None = None
    api_key: str | None = None
    max_client_batch_size: int = 2048
    max_queued_requests: int = 512
    max_request_bytes: int = 16 * 1024 * 1024
    index: str | None = Field(None, description="knowledge base (folder or Milvus URI) for /v1/search")
    log_level: str = "info"
    upstream_model: str | None = Field(None, description="model name at the upstream endpoint (proxy mode)")
    upstream_api_key: str | None = Field(None, description="API key of the upstream endpoint (proxy mode)")
    graceful_timeout: float = Field(30.0, description="seconds to finish in-flight requests on SIGTERM")
    access_log: bool = Field(False, description="log every HTTP request (uvicorn access log)")
    engine: Literal["process", "thread"] = Field(
        "process", description="where the model runs: an engine process of its own (default), or a "
                               "thread of the server process")
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

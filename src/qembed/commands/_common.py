"""Options and helpers every CLI command shares: model loading, --json output, error reporting."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Optional

import numpy as np
import typer


logger = logging.getLogger("qembed")

ModelOpt = typer.Option(
    None, "--model", "-m",
    help="Model folder, Hub id (default Qwen/Qwen3-Embedding-0.6B, or $QEMBED_MODEL), "
         "or the http(s)://…/v1 URL of an OpenAI-compatible endpoint.",
)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout (logs go to stderr).")
DeviceOpt = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps.")
DtypeOpt = typer.Option(None, "--dtype", help="auto, bfloat16, float32 or float16.")
ApiKeyOpt = typer.Option(None, "--api-key", envvar="QEMBED_API_KEY",
                         help="Key for a remote endpoint given as --model URL.")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr; INFO by default, DEBUG with ``--verbose``."""
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("qembed").setLevel(level)


def open_encoder(
    model: Optional[str] = None,
    *,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    api_key: Optional[str] = None,
    **kwargs: Any,
):
    """Load the encoder named on the command line (or by ``QEMBED_MODEL``)."""
    from qembed.config import Settings
    from qembed.io import is_http_url
    from qembed.models import load_encoder

    settings = Settings()
    target = model or settings.model
    if is_http_url(target):
        return load_encoder(target, api_key=api_key, **kwargs)
    return load_encoder(
        target,
        device=device or settings.device,
        dtype=dtype or settings.dtype,
        max_batch_tokens=kwargs.pop("max_batch_tokens", settings.max_batch_tokens),
        max_batch_size=kwargs.pop("max_batch_size", settings.max_batch_size),
        **kwargs,
    )


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, set):
        return sorted(obj)
    return str(obj)


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=_default))
    sys.stdout.write("\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)

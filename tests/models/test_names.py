"""Backend and dtype names are defined once (``qembed.models.runtimes``): the command line, the
settings (so the server and ``QEMBED_*``) and the loaders accept and refuse exactly the same names."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from qembed.commands._common import check_backend as cli_backend
from qembed.commands._common import normalize_dtype as cli_dtype
from qembed.config import Settings
from qembed.errors import InputError
from qembed.models.runtimes import (
    BACKEND_ALIASES,
    BACKENDS,
    DTYPE_ALIASES,
    DTYPES,
    canonical_backend,
    canonical_dtype,
    check_backend,
    check_precision,
)

BAD = ["tensorflow", "gpu", "jax", "int4", "fp8", "torch.float32", "bfloat", "o n n x", "openvino2", "16"]
BACKEND_NAMES = [*BACKENDS, *BACKEND_ALIASES, "OpenVINO", " ORT ", "Torch", *BAD]
DTYPE_NAMES = [*DTYPES, *DTYPE_ALIASES, "BF16", " Float32 ", "AUTO", *BAD]


def _cli(check, value):
    try:
        return check(value)
    except InputError as exc:  # `fail(...)`: `error: …` on stderr, exit 2
        assert exc.exit_code == 2
        return "refused"


def _settings(name: str, value: str):
    try:
        return getattr(Settings(**{name: value}), name)
    except ValidationError:
        return "refused"


def _library(check, value):
    try:
        return check(value)
    except InputError:
        return "refused"


@pytest.mark.parametrize("value", BACKEND_NAMES)
def test_backend_names_mean_the_same_everywhere(value, monkeypatch):
    expected = _library(canonical_backend, value)
    assert _cli(cli_backend, value) == expected
    assert _settings("backend", value) == expected
    monkeypatch.setenv("QEMBED_BACKEND", value)  # the server's settings come from the environment
    try:
        from_env = Settings().backend
    except ValidationError:
        from_env = "refused"
    assert from_env == expected
    assert _library(check_backend, value) == expected  # what load_encoder checks
    assert (expected == "refused") == (value in BAD)


@pytest.mark.parametrize("value", DTYPE_NAMES)
def test_dtype_names_mean_the_same_everywhere(value):
    expected = _library(canonical_dtype, value)
    assert _cli(cli_dtype, value) == expected
    assert _settings("dtype", value) == expected
    assert (expected == "refused") == (value in BAD)
    # the compiled backends take every name and refuse what they cannot run by precision, not by name
    for backend in ("openvino", "onnx"):
        try:
            check_precision(backend, value)
        except InputError as exc:
            assert ("unknown dtype" in exc.message) == (expected == "refused"), exc.message


def test_the_torch_loader_takes_the_same_dtype_names(tiny_model_path: Path):
    from qembed.models import load_encoder
    from qembed.models.local import pick_dtype

    for value in DTYPE_NAMES:
        expected = _library(canonical_dtype, value)
        try:
            pick_dtype(value, "cpu")
            got = "accepted"
        except InputError as exc:
            got = "refused" if "unknown dtype" in exc.message else "not on torch"
        assert got == ("refused" if expected == "refused" else "not on torch" if expected in ("int8", "w8a8")
                       else "accepted")
    with pytest.raises(InputError, match="unknown dtype 'fp8'"):
        load_encoder(str(tiny_model_path), dtype="fp8")
    encoder = load_encoder(str(tiny_model_path), backend="PyTorch", dtype="FP32", device="cpu")
    assert str(encoder.dtype) == "torch.float32"


def test_the_cli_accepts_the_short_names_and_refuses_the_same_bad_ones(tiny_model_path: Path, capsys):
    from qembed.cli import main

    assert main(["embed", "hi", "--model", str(tiny_model_path), "--backend", "pytorch", "--dtype", "fp32",
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["embed", "hi", "--model", str(tiny_model_path), "--backend", "jax"]) == 2
    assert "error: unknown backend 'jax'; use one of torch, openvino, onnx" in capsys.readouterr().err
    assert main(["embed", "hi", "--model", str(tiny_model_path), "--dtype", "fp8"]) == 2
    assert "error: unknown dtype 'fp8'; use one of auto, bfloat16, float16, float32, w8a8, int8" in capsys.readouterr().err

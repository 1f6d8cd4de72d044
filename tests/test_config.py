"""Settings: defaults < QEMBED_* environment variables < explicit values; bad values are refused by name."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from qembed.config import Settings, resolve_instruction, want_progress


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No QEMBED_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith("QEMBED_"):
            monkeypatch.delenv(name)


def test_defaults():
    s = Settings()
    assert (s.model, s.host, s.port) == ("Qwen/Qwen3-Embedding-0.6B", "127.0.0.1", 30000)
    assert s.truncate is True and s.engine == "process" and s.api_key is None
    assert (s.max_client_batch_size, s.max_queued_requests, s.batch_linger_ms) == (2048, 512, 2.0)


def test_environment_variables_set_every_kind_of_value(monkeypatch):
    monkeypatch.setenv("QEMBED_MODEL", "/models/qwen")
    monkeypatch.setenv("QEMBED_PORT", "8080")
    monkeypatch.setenv("QEMBED_TRUNCATE", "false")
    monkeypatch.setenv("QEMBED_ENGINE", "thread")
    monkeypatch.setenv("QEMBED_DTYPE", "bfloat16")
    monkeypatch.setenv("QEMBED_MAX_BATCH_TOKENS", "8192")
    monkeypatch.setenv("QEMBED_BATCH_LINGER_MS", "0.5")
    monkeypatch.setenv("QEMBED_DEVICE", "cuda:1")
    s = Settings()
    assert s.model == "/models/qwen" and s.port == 8080 and s.truncate is False
    assert s.engine == "thread" and s.dtype == "bfloat16" and s.device == "cuda:1"
    assert s.max_batch_tokens == 8192 and s.batch_linger_ms == 0.5


def test_precedence_defaults_then_environment_then_explicit_values(monkeypatch):
    assert Settings().port == 30000  # default
    monkeypatch.setenv("QEMBED_PORT", "8080")
    monkeypatch.setenv("QEMBED_API_KEY", "from-env")
    assert Settings().port == 8080  # the environment beats the default
    s = Settings(port=9000)  # an explicit value (a CLI flag) beats the environment
    assert s.port == 9000 and s.api_key == "from-env"  # what is not given explicitly still comes from it
    # unrelated variables and other prefixes are ignored
    monkeypatch.setenv("QEMBED_NOT_A_SETTING", "x")
    monkeypatch.setenv("PORT", "1")
    assert Settings().port == 8080


@pytest.mark.parametrize("name, value, message", [
    ("port", "70000", "less than or equal to 65535"),
    ("port", "-1", "greater than or equal to 0"),
    ("port", "eighty", "valid integer"),
    ("max_batch_tokens", "0", "greater than or equal to 1"),
    ("max_batch_size", "-4", "greater than or equal to 1"),
    ("max_client_batch_size", "0", "greater than or equal to 1"),
    ("max_queued_requests", "0", "greater than or equal to 1"),
    ("max_request_bytes", "0", "greater than or equal to 1"),
    ("max_input_tokens", "0", "greater than or equal to 1"),
    ("batch_linger_ms", "5000", "less than or equal to 1000"),
    ("graceful_timeout", "-1", "greater than or equal to 0"),
    ("engine_start_timeout", "0", "greater than 0"),
    ("engine_threads", "0", "greater than or equal to 1"),
    ("engine_restart_limit", "-1", "greater than or equal to 0"),
    ("engine", "gpu", "'process' or 'thread'"),
    ("dtype", "int4", "unknown dtype 'int4'; use one of auto, bfloat16"),
    ("log_level", "loud", "'info'"),
    ("omp_wait_policy", "SPIN", "'PASSIVE' or 'ACTIVE'"),
    ("device", "gpu0", "should match pattern"),
    ("truncate", "maybe", "valid boolean"),
])
def test_bad_values_are_refused_naming_the_setting(monkeypatch, name, value, message):
    monkeypatch.setenv(f"QEMBED_{name.upper()}", value)
    with pytest.raises(ValidationError) as err:
        Settings()
    first = err.value.errors()[0]
    assert first["loc"] == (name,) and message in first["msg"]
    monkeypatch.delenv(f"QEMBED_{name.upper()}")
    with pytest.raises(ValidationError, match=name):  # the same rule for explicit values
        Settings(**{name: value})


def test_assignment_is_validated_too():
    s = Settings()
    with pytest.raises(ValidationError, match="port"):
        s.port = 123456


def test_serve_reports_a_bad_environment_value_as_a_usage_error(monkeypatch, capsys):
    from qembed.cli import main

    monkeypatch.setenv("QEMBED_PORT", "70000")
    code = main(["serve", "--model", "/nonexistent/model"])
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "port" in err and "65535" in err


def test_instruction_and_progress_conventions(monkeypatch):
    assert resolve_instruction(None, "default task") == "default task"
    assert resolve_instruction("", "default task") is None
    assert resolve_instruction("mine", "default task") == "mine"
    assert want_progress(True, 1) is True and want_progress(False, 10_000) is False

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    assert want_progress(None, 65, batch=64) is True and want_progress(None, 64, batch=64) is False
    monkeypatch.setattr("sys.stderr", open(os.devnull, "w"))
    assert want_progress(None, 10_000) is False

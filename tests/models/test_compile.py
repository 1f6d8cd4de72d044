"""The compile rule (``compile`` auto/true/false): a one-shot run stays eager, a server compiles at
start-up, a call large enough to repay compiling compiles first; the setting's spellings."""

from __future__ import annotations

import pytest

from qembed.config import Settings
from qembed.errors import InputError
from qembed.models import compile as rule
from qembed.models.compile import (
    BREAK_EVEN_TOKENS,
    compile_setting,
    inductor_cache_dir,
    parse_compile,
    server_compile,
    should_compile,
)


def test_auto_stays_eager_for_a_one_text_run_and_compiles_in_a_server(monkeypatch):
    monkeypatch.delenv("QEMBED_COMPILE", raising=False)  # the default a user gets (the suite sets false)
    one_text = 12  # tokens of a one-text `qembed embed`
    assert should_compile("auto", "cpu") is False  # at load, before any call
    assert should_compile("auto", "cpu", tokens=one_text) is False
    assert should_compile("auto", "cpu", serving=True) is True
    assert should_compile("auto", "cuda:0", serving=True) is True
    assert server_compile("auto") is True and server_compile(None) is True


def test_auto_compiles_from_the_break_even_on_and_only_on_cpu_and_cuda():
    n = BREAK_EVEN_TOKENS["cpu"]
    assert should_compile("auto", "cpu", tokens=n - 1) is False
    assert should_compile("auto", "cpu", tokens=n) is True
    assert should_compile("auto", "cuda:1", tokens=BREAK_EVEN_TOKENS["cuda"]) is True
    assert should_compile("auto", "mps", tokens=10**9) is False
    assert should_compile("auto", "xpu", serving=True) is False


def test_explicit_settings_win_over_auto():
    assert should_compile(True, "cpu") is True and should_compile(False, "cpu", serving=True) is False
    assert server_compile(False) is False and server_compile(True) is True


def test_setting_spellings_and_the_environment(monkeypatch):
    for text, value in [("auto", "auto"), ("", "auto"), ("TRUE", True), ("1", True), ("on", True),
                        ("false", False), ("0", False), ("no", False), ("off", False)]:
        assert parse_compile(text) == value
    with pytest.raises(InputError, match="auto, true or false"):
        parse_compile("sometimes")
    monkeypatch.delenv("QEMBED_COMPILE", raising=False)
    assert compile_setting(None) == "auto" and Settings().compile == "auto"
    monkeypatch.setenv("QEMBED_COMPILE", "0")
    assert compile_setting(None) is False and Settings().compile is False
    assert should_compile(None, "cpu", serving=True) is False
    assert compile_setting(True) is True  # an explicit value wins over the environment
    monkeypatch.setenv("QEMBED_COMPILE", "auto")
    assert Settings().compile == "auto" and Settings(compile=True).compile is True


def test_the_inductor_cache_lives_in_the_qembed_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("QEMBED_CACHE", str(tmp_path))
    assert inductor_cache_dir() == tmp_path / "torchinductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert inductor_cache_dir() == tmp_path / "mine"  # the user's choice is kept


def test_auto_encoder_compiles_once_a_call_brings_enough_tokens(tiny_model_path, tiny_encoder, monkeypatch):
    from qembed.models.local import LocalEncoder

    monkeypatch.delenv("QEMBED_COMPILE", raising=False)
    enc = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32")  # compile auto
    assert enc.info()["compiled"] is False  # loaded eagerly
    one = enc.encode("one text")
    assert enc.info()["compiled"] is False  # a one-text call stays eager
    texts = [f"text number {i} of a larger call" for i in range(40)]
    tokens = sum(enc.count_tokens(texts))
    monkeypatch.setitem(rule.BREAK_EVEN_TOKENS, "cpu", tokens)  # a small break-even for the test
    big = enc.encode(texts)
    assert enc.info()["compiled"] is True  # this call repaid compiling: compiled before it ran
    assert abs(enc.encode("one text") - one).max() < 1e-5
    assert abs(big - tiny_encoder.encode(texts)).max() < 1e-5

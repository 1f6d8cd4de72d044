"""``qembed doctor``: what it reports is true of this machine and this installation."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading

import pytest

from qembed.cli import main


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["doctor", "--json", *args]) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # JSON alone on stdout


def test_json_reports_versions_extras_backends_cpu(capsys, monkeypatch) -> None:
    import torch

    import qembed

    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    body = doctor(capsys, "--no-network")
    assert body["object"] == "doctor"
    assert body["versions"]["qembed"] == qembed.__version__
    assert body["versions"]["torch"] == torch.__version__
    assert body["extras"]["umap"] == {"installed": False, "missing": ["umap-learn"],
                                      "enables": body["extras"]["umap"]["enables"],
                                      "packages": body["extras"]["umap"]["packages"]}
    assert body["extras"]["milvus"]["installed"] is True
    assert body["backends"]["torch"]["imports"] is True
    assert body["models"]["hub"] == {"checked": False, "reason": "--no-network"}


def test_cpu_flags_match_proc_cpuinfo(capsys) -> None:
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((set(l.split(":", 1)[1].split()) for l in f if l.startswith("flags")), set())
    except OSError:
        pytest.skip("no /proc/cpuinfo on this platform")
    cpu = doctor(capsys, "--no-network")["cpu"]
    assert cpu["instruction_sets"]["AVX2"] == ("avx2" in flags)
    assert cpu["instruction_sets"]["AMX"] == ("amx_tile" in flags)
    assert cpu["instruction_sets"]["AVX-512-BF16"] == ("avx512_bf16" in flags)
    fast_bf16 = bool(flags & {"amx_bf16", "avx512_bf16"})
    assert cpu["dtype"] == ("bfloat16" if fast_bf16 else "float32")


def test_default_model_follows_qembed_model(capsys, monkeypatch, tiny_model_path) -> None:
    monkeypatch.setenv("QEMBED_MODEL", str(tiny_model_path))
    models = doctor(capsys, "--no-network")["models"]
    assert models["default_model"] == str(tiny_model_path)
    assert models["source"] == "folder" and models["cached"] is True


class _Hub(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_hub_check_against_a_mirror(capsys, monkeypatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("QEMBED_MODEL", "Qwen/Qwen3-Embedding-0.6B")
        hub = doctor(capsys)["models"]
        assert hub["source"] == "mirror"
        assert hub["hub"]["checked"] and hub["hub"]["reachable"] and hub["hub"]["status"] == 200
    finally:
        server.shutdown()
    with socket.socket() as s:  # a port nobody listens on: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    hub = doctor(capsys)["models"]["hub"]
    assert hub["checked"] and hub["reachable"] is False and "ConnectError" in hub["error"]


def test_text_output(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["doctor", "--no-network"]) == 0
    out = capsys.readouterr().out
    assert "extras:" in out and "backends:" in out and "cpu:" in out
    assert "pip install 'qembed[ray]'" in out

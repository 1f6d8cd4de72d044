"""The compiled CPU backends (OpenVINO, ONNX Runtime): export, parity with torch, reuse, serving, errors.

Exports are shared per module (they take seconds each); the cache goes to a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

from qembed.errors import InputError
from qembed.models import load_encoder
from qembed.models.backends import CompiledEncoder
from qembed.models.export import export_model
from qembed.models.resolve import read_manifest

BACKENDS = ("openvino", "onnx")
ROOT = Path(__file__).resolve().parents[2]


#: exports made on first use go to a temporary cache (tests/models/conftest.py), not the user's
pytestmark = pytest.mark.usefixtures("export_cache")


@pytest.fixture(scope="module")
def tiny_exports(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory, export_cache) -> dict[str, Path]:
    """The tiny Qwen3 exported in float32 for each backend, into folders named by the caller."""
    root = tmp_path_factory.mktemp("exports")
    return {b: export_model(tiny_model_path, b, "float32", root / f"tiny-{b}") for b in BACKENDS}


def _afqmc(shared: Path, n: int) -> list[str]:
    texts: list[str] = []
    with open(shared / "data" / "afqmc" / "dev.json", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts += [row["sentence1"], row["sentence2"]]
            if len(texts) >= n:
                break
    return texts[:n]


TEXTS = ["hello world", "一个测试句子，比较长一点的那种", "short", "花呗 " * 40, "x"]


# ---------------------------------------------------------------- parity (fp32 equals torch)
@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_export_equals_torch(backend: str, tiny_exports: dict[str, Path], tiny_encoder) -> None:
    enc = load_encoder(str(tiny_exports[backend]))  # the folder brings its backend
    assert isinstance(enc, CompiledEncoder)
    assert (enc.backend, enc.precision, enc.packed) == (backend, "float32", False)
    assert enc.dim == tiny_encoder.dim and enc.pooling == "lasttoken"
    assert enc.instruct_style and enc.max_input_tokens == tiny_encoder.max_input_tokens
    for instruction, dims in ((None, None), ("Find the answer", 32)):
        ours = enc.encode(TEXTS, instruction=instruction, dimensions=dims)
        ref = tiny_encoder.encode(TEXTS, instruction=instruction, dimensions=dims)
        assert ours.dtype == np.float32 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-4)
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # batched equals single, and the token-id path equals the text path
    batched = enc.encode(TEXTS)
    single = np.stack([enc.encode(t)[0] for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(enc.embed_token_ids(enc.tokenize(TEXTS)), batched, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncation_keeps_the_end_token(backend: str, tiny_exports: dict[str, Path], tiny_model_path: Path) -> None:
    from qembed.models.local import LocalEncoder

    enc = load_encoder(str(tiny_exports[backend]), max_input_tokens=8)
    ref = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", max_input_tokens=8)
    long = "这是一个很长的句子，" * 20
    ids = enc.tokenize([long])[0]
    assert len(ids) == 8 and ids[-1] == enc.inputs.end_ids[-1]
    np.testing.assert_allclose(enc.encode(long), ref.encode(long), atol=1e-4)
    strict = load_encoder(str(tiny_exports[backend]), max_input_tokens=8, truncate=False)
    with pytest.raises(InputError, match="more than the limit of 8"):
        strict.encode(long)


# ---------------------------------------------------------------- int8 on a real model
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_minilm_keeps_meaning(backend: str, minilm_path: Path, minilm_encoder, shared: Path) -> None:
    enc = load_encoder(str(minilm_path), backend=backend, dtype="int8")  # exported on first use, cached
    assert enc.precision == "int8" and enc.pooling == "mean"
    texts = _afqmc(shared, 600)
    ours = enc.encode(texts)
    ref = minilm_encoder.encode(texts)
    worst = float(np.min(np.sum(ours * ref, axis=1)))
    assert worst >= 0.99, f"worst cosine to torch fp32 {worst:.4f}"
    query, para, other = enc.encode(["How do I reset my password?", "What are the steps to change my password?",
                                     "The weather in Paris is sunny today."])
    assert float(query @ para) > float(query @ other) + 0.2
    # a second load reuses the cached export
    manifest = read_manifest(enc.path)
    again = load_encoder(str(minilm_path), backend=backend, dtype="int8")
    assert again.path == enc.path and read_manifest(again.path) == manifest
    np.testing.assert_allclose(again.encode(texts[:16]), enc.encode(texts[:16]), atol=1e-5)


# ---------------------------------------------------------------- export, reuse, folders
def test_export_folder_and_manifest(tiny_exports: dict[str, Path], tiny_model_path: Path) -> None:
    for backend, folder in tiny_exports.items():
        manifest = read_manifest(folder)
        assert manifest is not None
        assert (manifest["backend"], manifest["precision"], manifest["pooling"]) == (backend, "float32", "lasttoken")
        assert manifest["source_path"] == str(tiny_model_path.resolve())
        assert (folder / manifest["graph"]).is_file() and (folder / "tokenizer.json").is_file()
        assert not list(folder.glob("*.safetensors"))  # no torch weights travel with the export
        # exporting again into the same folder reuses it; another precision is refused
        assert export_model(tiny_model_path, backend, "float32", folder) == folder
        with pytest.raises(InputError, match="already holds another export"):
            export_model(tiny_model_path, backend, "int8", folder)


def test_exported_folder_refuses_other_backend_and_precision(tiny_exports: dict[str, Path]) -> None:
    folder = str(tiny_exports["onnx"])
    with pytest.raises(InputError, match="is a onnx export"):
        load_encoder(folder, backend="openvino")
    with pytest.raises(InputError, match="exported onnx model"):
        load_encoder(folder, backend="torch")
    with pytest.raises(InputError, match="holds a float32 export"):
        load_encoder(folder, dtype="int8")
    with pytest.raises(InputError, match="already an exported model"):
        export_model(folder, "openvino")


def test_bad_names_give_clear_errors(tiny_model_path: Path) -> None:
    with pytest.raises(InputError, match="unknown backend 'tensorflow'; use one of torch, openvino, onnx"):
        load_encoder(str(tiny_model_path), backend="tensorflow")
    with pytest.raises(InputError, match="dtype 'float16' is not available on the onnx backend"):
        load_encoder(str(tiny_model_path), backend="onnx", dtype="float16")
    with pytest.raises(InputError, match="runs on the CPU"):
        load_encoder(str(tiny_model_path), backend="openvino", device="cuda")
    with pytest.raises(InputError, match="w8a8' runs on the openvino backend, not on torch"):
        load_encoder(str(tiny_model_path), dtype="w8a8")
    with pytest.raises(InputError, match="not to an endpoint URL"):
        load_encoder("http://127.0.0.1:9/v1", backend="onnx")


# ---------------------------------------------------------------- missing runtime packages
@pytest.mark.parametrize(("backend", "module"), [("openvino", "openvino"), ("onnx", "onnxruntime")])
def test_missing_runtime_package_says_what_to_install(backend: str, module: str, tiny_model_path: Path,
                                                      tmp_path: Path) -> None:
    """The runtime's import is blocked in a fresh interpreter, as if the package were absent."""
    script = (f"import sys; sys.modules[{module!r}] = None\n"
              "from qembed.errors import MissingExtraError\nfrom qembed.models import load_encoder\n"
              f"try:\n    load_encoder({str(tiny_model_path)!r}, backend={backend!r})\n"
              "except MissingExtraError as exc:\n    print('MissingExtraError', exc.message)\n"
              "from qembed.cli import main\n"
              f"sys.exit(main(['embed', 'hello', '--model', {str(tiny_model_path)!r}, '--backend', "
              f"{backend!r}, '--json']))\n")
    env = dict(os.environ, QEMBED_CACHE=str(tmp_path), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    # the Python API: a MissingExtraError (not an ImportError) that names the extra and the package
    assert done.stdout.startswith(f"MissingExtraError the {backend} backend needs the 'cpu' extra: "
                                  "pip install 'qembed[cpu]'"), done.stdout + done.stderr
    assert module.split(".")[0] in done.stdout
    # the command line: one `error: …` line on stderr, exit 2 (fixable by the caller), no traceback
    assert done.returncode == 2, done.stderr
    assert f"error: the {backend} backend needs the 'cpu' extra: pip install 'qembed[cpu]'" in done.stderr
    assert done.stderr.count("error:") == 1 and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())  # nothing was exported


# ---------------------------------------------------------------- command line
def test_cli_export_then_embed(tiny_model_path: Path, tiny_encoder, tmp_path: Path, capsys) -> None:
    from qembed.cli import main

    out = tmp_path / "tiny-onnx"
    code = main(["export", str(tiny_model_path), "--backend", "onnx", "--dtype", "float32", "--output", str(out),
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    body = json.loads(captured.out)
    assert (body["object"], body["backend"], body["precision"], body["output"]) == ("export", "onnx", "float32",
                                                                                    str(out))
    assert body["bytes"] > 0 and body["pooling"] == "lasttoken"
    code = main(["embed", "hello world", "--model", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    vector = np.array(json.loads(captured.out)["data"][0]["embedding"], dtype=np.float32)
    np.testing.assert_allclose(vector, tiny_encoder.encode("hello world")[0], atol=1e-4)
    for args, message in (
        (["export", str(tiny_model_path), "--backend", "tensorflow"], "error: unknown backend 'tensorflow'"),
        (["export", str(tiny_model_path), "--backend", "onnx", "--dtype", "bfloat16"],
         "error: dtype 'bfloat16' is not available on the onnx backend"),
        (["embed", "hi", "--model", str(tiny_model_path), "--backend", "tensorflow"],
         "error: unknown backend 'tensorflow'; use one of"),
        (["embed", "hi", "--model", str(out), "--backend", "openvino"], "error: "),
    ):
        code = main(args)
        captured = capsys.readouterr()
        assert code == 2, (args, captured.err)
        assert message in captured.err and "Traceback" not in captured.err
        assert captured.out == ""


# ---------------------------------------------------------------- served
@pytest.mark.slow
def test_served_by_the_engine_process(tiny_exports: dict[str, Path], tiny_model_path: Path, tiny_encoder) -> None:
    """``qembed serve --backend openvino``: the engine process loads the backend; clients see torch's vectors."""
    import httpx
    from openai import OpenAI

    from qembed.config import Settings
    from qembed.server.testing import running_server

    # the source folder with backend=openvino: exported on first use (into the module's cache)
    settings = Settings(model=str(tiny_model_path), backend="openvino", dtype="float32", engine="process")
    with running_server(settings, timeout=300) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused")
        result = client.embeddings.create(model=client.models.list().data[0].id, input=TEXTS, dimensions=48)
        served = np.array([d.embedding for d in result.data], dtype=np.float32)
        np.testing.assert_allclose(served, tiny_encoder.encode(TEXTS, dimensions=48), atol=1e-4)
        info = httpx.get(f"{url}/v1/models", timeout=30).json()
        assert info["data"]
    # an exported folder served without naming a backend, on a thread engine
    with running_server(Settings(model=str(tiny_exports["onnx"]), engine="thread"), timeout=300) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS[:3]}, timeout=60)
        assert response.status_code == 200, response.text
        served = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
        np.testing.assert_allclose(served, tiny_encoder.encode(TEXTS[:3]), atol=1e-4)

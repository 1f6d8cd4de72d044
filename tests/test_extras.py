"""Each optional feature, without its extra, ends in one line naming the extra — before any model loads.

The packages of an extra are hidden by putting ``None`` in ``sys.modules`` (what Python's import
system then reports as "not installed"); the model named is a folder that does not exist, so an
error about the extra proves the check ran before the model was looked for.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

import qembed
from qembed.cli import main
from qembed.errors import MissingExtraError
from qembed.extras import EXTRAS, available, missing, require

ROOT = Path(__file__).resolve().parents[1]
NO_MODEL = "/nonexistent/qembed-model-folder"


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    return code, err


def test_pyproject_declares_every_extra_of_the_table() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["optional-dependencies"]
    for name, extra in EXTRAS.items():
        dists = {req.split(">")[0].split("=")[0].split("[")[0].strip().lower() for req in declared[name]}
        assert {dist for _, dist in extra.modules} <= dists, name
    assert "qembed[" in declared["all"][0]
    inside_all = declared["all"][0].split("[", 1)[1].rstrip("]").split(",")
    assert set(inside_all) == set(EXTRAS) - {"docs"}


def test_require_names_the_extra_and_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "pyarrow")
    assert missing("ray") == ["pyarrow"]
    assert not available("ray")
    with pytest.raises(MissingExtraError) as info:
        require("ray", "--from-embeddings", modules=("pyarrow",))
    err = info.value
    assert str(err) == "--from-embeddings needs the 'ray' extra: pip install 'qembed[ray]' (missing: pyarrow)"
    assert (err.status_code, err.exit_code, err.code, err.extra) == (400, 2, "missing_extra", "ray")
    require("ray", "Ray alone", modules=("ray",))  # ray itself is installed in the test environment


CLI_CASES = [
    ("milvus", ("pymilvus",), ["index", "add", "-i", "{docs}", "--index", "{tmp}/kb.db", "--model", NO_MODEL]),
    ("milvus", ("pymilvus",), ["search", "hello", "--index", "{tmp}/kb.db"]),
    ("milvus", ("pymilvus",), ["serve", "--model", NO_MODEL, "--index", "{tmp}/kb.db"]),
    ("train", ("peft",), ["finetune", "classifier", "-i", "{pairs}", "--dev", "{pairs}", "--model", NO_MODEL]),
    ("train", ("datasets",), ["finetune", "embedding", "-i", "{pairs}", "--model", NO_MODEL]),
    ("train", ("peft",), ["classify-pairs", "-i", "{pairs}", "--adapter", "{tmp}"]),
    ("umap", ("umap",), ["cluster", "-i", "{docs}", "--report", "{tmp}/r.html", "--map", "umap",
                         "--model", NO_MODEL]),
    ("ray", ("ray",), ["embed", "--ray", "local", "-i", "{docs}", "-o", "{tmp}/out", "--model", NO_MODEL]),
    ("ray", ("pyarrow",), ["index", "add", "--from-embeddings", "{tmp}", "--index", "{tmp}/kb",
                           "--model", NO_MODEL]),
    ("cpu", ("openvino",), ["embed", "hello", "--backend", "openvino", "--model", NO_MODEL]),
    ("cpu", ("onnxruntime",), ["embed", "hello", "--backend", "onnx", "--model", NO_MODEL]),
    ("cpu", ("openvino",), ["serve", "--model", NO_MODEL, "--backend", "openvino"]),
]


@pytest.mark.parametrize(("extra", "hidden", "argv"), CLI_CASES,
                         ids=[f"{c[0]}-{' '.join(c[2][:2])}" for c in CLI_CASES])
def test_cli_without_extra_says_which_extra(extra, hidden, argv, tmp_path, monkeypatch, capsys) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("first document\nsecond document\nthird one\n", encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "label": "1"}) + "\n", encoding="utf-8")
    hide(monkeypatch, *hidden)
    args = [a.format(tmp=tmp_path, docs=docs, pairs=pairs) for a in argv]
    code, err = run_cli(capsys, *args)
    assert code == 2
    assert len(err) == 1, err
    assert f"pip install 'qembed[{extra}]'" in err[0]
    assert hidden[0].replace("_", "-") in err[0] or extra == "umap"


def test_modelscope_without_its_extra(monkeypatch, capsys) -> None:
    hide(monkeypatch, "modelscope")
    monkeypatch.setenv("QEMBED_USE_MODELSCOPE", "true")
    code, err = run_cli(capsys, "embed", "hello", "--model", "Qwen/Qwen3-Embedding-0.6B")
    assert code == 2 and len(err) == 1
    assert "pip install 'qembed[modelscope]'" in err[0]


def test_python_api_without_extra(monkeypatch, tmp_path) -> None:
    hide(monkeypatch, "pymilvus")
    with pytest.raises(MissingExtraError, match=r"qembed\[milvus\]"):
        qembed.open_store(str(tmp_path / "kb.db"), dim=8)
    hide(monkeypatch, "umap")
    from qembed.clustering.pipeline import reduce_vectors

    with pytest.raises(MissingExtraError, match=r"qembed\[umap\]"):
        reduce_vectors(__import__("numpy").ones((5, 4), dtype="float32"), 2, method="umap")

"""Where models come from: folders, the Hugging Face cache, ModelScope's cache; what a folder holds."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qembed.errors import ModelNotFoundError
from qembed.models.resolve import model_kind, resolve_model_path

MODEL_ID = "Qwen/Qwen3-Embedding-0.6B"


def modelscope_cache(root, model_path):
    """ModelScope's cache layout, as `modelscope download` leaves it: models/ORG--NAME/snapshots/REV."""
    folder = root / "models" / MODEL_ID.replace("/", "--")
    shutil.copytree(model_path, folder / "snapshots" / "rev0")
    (folder / "refs").mkdir()
    (folder / "refs" / "master").write_text("rev0")
    return folder / "snapshots" / "rev0"


def test_modelscope_cache_offline(tmp_path, monkeypatch, tiny_model_path, tiny_encoder):
    pytest.importorskip("modelscope")  # the modelscope extra (part of all, so of the test install)
    snapshot = modelscope_cache(tmp_path, tiny_model_path)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path))
    monkeypatch.setenv("QEMBED_USE_MODELSCOPE", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_path(MODEL_ID) == snapshot
    import qembed

    enc = qembed.load_encoder(MODEL_ID, dtype="float32")
    np.testing.assert_allclose(enc.encode(["怎么还花呗"]), tiny_encoder.encode(["怎么还花呗"]), atol=1e-5)


def test_modelscope_miss_says_how_to_fetch_once(tmp_path, monkeypatch):
    pytest.importorskip("modelscope")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path))
    monkeypatch.setenv("QEMBED_USE_MODELSCOPE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"not available from ModelScope.*modelscope download --model"):
        resolve_model_path("Qwen/Qwen3-Embedding-8B")  # in no cache (modelscope reads its cache folder once)


def test_hub_miss_offline_says_how_to_fetch_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("QEMBED_USE_MODELSCOPE", raising=False)
    with pytest.raises(ModelNotFoundError, match=r"hf download Qwen/Qwen3-Embedding-0.6B --local-dir DIR"):
        resolve_model_path(MODEL_ID)


def test_model_kind(tiny_model_path, minilm_path, tmp_path):
    assert model_kind(tiny_model_path) == "embedding"
    assert model_kind(minilm_path) == "embedding"
    (tmp_path / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    assert model_kind(tmp_path) == "classifier"
    (tmp_path / "config.json").write_text('{"architectures": ["Qwen3ForCausalLM"]}')
    assert model_kind(tmp_path) == "other"
    (tmp_path / "modules.json").write_text("not json")
    assert model_kind(tmp_path) == "other"


def test_a_local_path_that_is_no_model_folder_is_bad_input(tmp_path):
    """A mistyped folder, a file, or a folder without config.json: exit 2 (the caller fixes the
    argument), still a ModelNotFoundError for code that catches that."""
    from qembed.errors import ModelPathError
    from qembed.models.resolve import resolve_model_path

    (tmp_path / "weights.bin").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    for name, words in ((str(tmp_path / "no-such-model"), "does not exist"),
                        (str(tmp_path / "weights.bin"), "is a file"),
                        (str(tmp_path / "empty"), "no config.json")):
        with pytest.raises(ModelPathError, match=words) as info:
            resolve_model_path(name)
        assert isinstance(info.value, ModelNotFoundError) and info.value.exit_code == 2

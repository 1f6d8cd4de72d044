"""Fixtures for the documentation tests: the tiny models in a Hugging Face cache under the names the
docs use, and the environment every example runs in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .workspace import build_hf_cache


@pytest.fixture(scope="session")
def tiny_reranker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3 reranker (Qwen3ForCausalLM, 2 layers, real tokenizer)."""
    from qembed.rerank.testing import build_random_reranker

    return build_random_reranker(tmp_path_factory.mktemp("rerankers") / "tiny-qwen3-reranker", seed=1,
                                 head_scale=8.0)


#: the docs ask for 256 dimensions (Matryoshka) in places; the shared tiny model has 64
DOC_MODEL = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 64, "max_window_layers": 2}


@pytest.fixture(scope="session")
def doc_model_path(tmp_path_factory: pytest.TempPathFactory, qwen_reference: Path) -> Path:
    """A small random Qwen3 embedding model (2 layers, hidden 256, the real tokenizer)."""
    import json
    import os

    from qembed.testing import build_random_qwen

    source = tmp_path_factory.mktemp("doc-model-source")
    for item in qwen_reference.iterdir():
        if item.name not in {"config.json", "model.safetensors"}:
            os.symlink(item, source / item.name)
    config = json.loads((qwen_reference / "config.json").read_text(encoding="utf-8"))
    (source / "config.json").write_text(json.dumps({**config, **DOC_MODEL}), encoding="utf-8")
    return build_random_qwen(tmp_path_factory.mktemp("models") / "doc-qwen3-embedding", tiny=False, seed=0,
                             source=source)


@pytest.fixture(scope="module")
def doc_environment(tmp_path_factory: pytest.TempPathFactory, doc_model_path: Path, tiny_reranker_path: Path,
                    minilm_path: Path):
    """``HF_HUB_CACHE`` pointing at a cache that holds the tiny models as Qwen/Qwen3-Embedding-0.6B,
    Qwen/Qwen3-Reranker-0.6B and sentence-transformers/all-MiniLM-L6-v2, offline; qembed's own cache
    in a temporary folder; ``QEMBED_COMPILE=false`` (compiling pays back only on long runs)."""
    import huggingface_hub.constants

    root = tmp_path_factory.mktemp("hf-home")
    hub = build_hf_cache(root / "hub", {"embedding": doc_model_path, "reranker": tiny_reranker_path,
                                        "minilm": minilm_path})
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("QEMBED_") and k != "QEMBED_SHARED"] + ["HF_ENDPOINT"]:
            mp.delenv(key, raising=False)  # a user's fresh shell: no qembed settings
        for key, value in {"HF_HOME": str(root), "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1",
                           "TRANSFORMERS_OFFLINE": "1", "QEMBED_CACHE": str(root / "qembed-cache"),
                           "QEMBED_COMPILE": "false", "TOKENIZERS_PARALLELISM": "false"}.items():
            mp.setenv(key, value)
        # huggingface_hub reads HF_HUB_CACHE once, at import; this process imported it already (a
        # user's process sets the variable before starting; the servers started here see it)
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield hub

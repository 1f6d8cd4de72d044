"""LoRA adapters over one loaded base (qembed.models.adapters): two adapters trained with
`qembed finetune embedding`'s own code on different data, served in one packed pass with base rows,
against the merged models (peft ``merge_and_unload``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from qembed.errors import InputError, ModelNotServedError
from qembed.models.adapters import ADAPTER_WEIGHTS, TUNE_MANIFEST, AdapterNotLoadedError

pytest.importorskip("peft")

TEXTS = ["怎么还花呗", "如何归还蚂蚁花呗", "今天天气真不错,适合出去散步", "how do I reset my password?",
         "花呗分期怎么取消", "借呗额度为什么降低了", "the cat sat on the mat"]
#: one pass: base, adapter 1 and adapter 2 rows interleaved
NAMES = [None, "a1", "a2", "a1", None, "a2", "a2"]


def _train(base: Path, data: Path, out: Path, *, labels: str, targets: list[str] | None, rank: int,
           seed: int) -> Path:
    from qembed.train.contrastive import EmbeddingTuneConfig, tune_embeddings
    from qembed.train.data import load_pairs

    pairs = load_pairs(data, labels=labels, limit=16)
    cfg = EmbeddingTuneConfig(model=str(base), batch_size=8, max_length=32, lr=2e-2, device="cpu",
                              precision="fp32", target_modules=targets, lora_r=rank, lora_alpha=2 * rank,
                              seed=seed, lora_dropout=0.0)
    tune_embeddings(pairs, out, cfg, progress=False)
    return out


def _trained_pair(base: Path, shared: Path, folder: Path, targets: tuple[list[str] | None, list[str]]) -> dict:
    """Adapter a1 on AFQMC pairs, a2 on STS-B pairs (other targets and rank)."""
    data = shared / "data"
    return {
        "a1": _train(base, data / "afqmc" / "train.json", folder / "a1", labels="binary", targets=targets[0],
                     rank=8, seed=1),
        "a2": _train(base, data / "stsb_zh" / "STS-B.train.data", folder / "a2", labels="score",
                     targets=targets[1], rank=4, seed=2),
    }


def _references(base: Path, folders: dict[str, Path]):
    """The reference: sentence-transformers over the base (None) and over each adapter merged into a
    copy of the base weights by peft (``merge_and_unload``)."""
    import copy

    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(base), device="cpu", model_kwargs={"dtype": torch.float32}).eval()
    weights = {None: model[0].auto_model}
    for name, folder in folders.items():
        weights[name] = PeftModel.from_pretrained(copy.deepcopy(weights[None]), str(folder)).merge_and_unload()
    return model, weights


@pytest.fixture(scope="module", params=["qwen3", pytest.param("minilm", marks=pytest.mark.slow)])
def served(request, tiny_model_path: Path, minilm_path: Path, shared: Path, tmp_path_factory):
    """(base folder, adapter folders, encoder with a1 and a2 loaded, merged references)."""
    from qembed.models.local import LocalEncoder

    if request.param == "qwen3":
        base = tiny_model_path
        targets = (None, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    else:
        base = minilm_path
        targets = (["query", "key", "value", "dense"], ["query", "value"])
    folders = _trained_pair(base, shared, tmp_path_factory.mktemp(f"adapters-{request.param}"), targets)
    encoder = LocalEncoder(str(base), device="cpu", dtype="float32")
    for name, folder in folders.items():
        encoder.load_adapter(name, folder)
    return base, folders, encoder, _references(base, folders)


def _reference(served, texts, names) -> np.ndarray:
    model, weights = served[3]
    rows = []
    for text, name in zip(texts, names):
        model[0].model = weights[name]
        rows.append(model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0])
    model[0].model = weights[None]
    return np.stack(rows)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_mixed_pass_equals_the_merged_models(served) -> None:
    _, _, encoder, _ = served
    encoder.set_adapter_mode("mixed")
    want = _reference(served, TEXTS, NAMES)
    ids = encoder.tokenize(TEXTS)
    got = encoder.forward_batch(ids, NAMES)  # one pass: base, a1 and a2 rows together
    assert _cosines(got, want).min() >= 0.9999
    # the adapters change the vectors, and differently from each other
    base = encoder.encode(TEXTS)
    assert _cosines(encoder.encode(TEXTS, adapter="a1"), base).min() < 0.999
    assert _cosines(encoder.encode(TEXTS, adapter="a1"), encoder.encode(TEXTS, adapter="a2")).min() < 0.999
    # encode with one adapter per text (batches planned over all of them) gives the same rows
    np.testing.assert_allclose(encoder.encode(TEXTS, adapter=NAMES), got, atol=1e-5)


def test_grouped_passes_equal_mixed(served) -> None:
    _, _, encoder, _ = served
    ids = encoder.tokenize(TEXTS)
    mixed = encoder.forward_batch(ids, NAMES)
    try:
        encoder.set_adapter_mode("grouped")
        np.testing.assert_allclose(encoder.forward_batch(ids, NAMES), mixed, atol=1e-5)
        np.testing.assert_allclose(encoder.encode(TEXTS, adapter=NAMES), mixed, atol=1e-5)
    finally:
        encoder.set_adapter_mode("mixed")
    with pytest.raises(InputError, match="adapter mode must be one of mixed, grouped"):
        encoder.set_adapter_mode("fast")


def test_unordered_rows_are_gathered_per_adapter(served) -> None:
    """A pass whose adapters are not contiguous (the runner called directly) gathers rows."""
    _, _, encoder, _ = served
    ids = encoder.tokenize(TEXTS)
    lora = encoder._adapter_set.plan(NAMES, [len(s) for s in ids])
    assert any(not isinstance(rows, slice) for _, rows in lora.token_groups)
    with torch.inference_mode():
        hidden = encoder._packed(ids, lora=lora)
    got = torch.nn.functional.normalize(hidden.float(), dim=-1).numpy()
    np.testing.assert_allclose(got, encoder.forward_batch(ids, NAMES), atol=1e-5)


def test_load_and_unload_at_run_time(served) -> None:
    _, folders, encoder, _ = served
    before = encoder.encode(TEXTS)
    info = encoder.load_adapter("tmp", folders["a1"])
    assert info["rank"] == 8 and info["parameters"] > 0 and info["bytes"] > 0
    assert [a["name"] for a in encoder.adapters()] == ["a1", "a2", "tmp"]
    np.testing.assert_allclose(encoder.encode(TEXTS, adapter="tmp"), encoder.encode(TEXTS, adapter="a1"), atol=1e-6)
    with pytest.raises(InputError, match="already loaded"):
        encoder.load_adapter("tmp", folders["a2"])
    encoder.load_adapter("tmp", folders["a2"], replace=True)
    np.testing.assert_allclose(encoder.encode(TEXTS, adapter="tmp"), encoder.encode(TEXTS, adapter="a2"), atol=1e-6)
    encoder.unload_adapter("tmp")
    assert [a["name"] for a in encoder.adapters()] == ["a1", "a2"]
    with pytest.raises(AdapterNotLoadedError, match=r"adapter 'tmp' is not loaded \(loaded adapters: a1, a2\)") as err:
        encoder.encode(TEXTS, adapter=[None, "tmp", None, None, None, None, None])
    assert isinstance(err.value, ModelNotServedError) and err.value.status_code == 404
    assert err.value.code == "model_not_found"
    with pytest.raises(AdapterNotLoadedError):
        encoder.unload_adapter("tmp")
    # the base weights were never touched
    np.testing.assert_array_equal(encoder.encode(TEXTS), before)


def test_bad_adapter_folders(served, tmp_path: Path, minilm_path: Path) -> None:
    base, folders, encoder, _ = served

    def copy(name: str) -> Path:
        return Path(shutil.copytree(folders["a1"], tmp_path / name))

    def refused(path: Path, match: str, **kwargs) -> None:
        with pytest.raises(InputError, match=match) as err:
            encoder.load_adapter("bad", path, **kwargs)
        assert err.value.code == "invalid_adapter" and err.value.status_code == 400

    refused(tmp_path / "nowhere", "no such folder")
    missing = copy("missing")
    (missing / ADAPTER_WEIGHTS).unlink()
    refused(missing, "no adapter_model.safetensors")
    no_config = copy("no-config")
    (no_config / "adapter_config.json").unlink()
    refused(no_config, "no adapter_config.json: not a PEFT adapter folder")

    other = copy("other-base")
    manifest = json.loads((other / TUNE_MANIFEST).read_text())
    (other / TUNE_MANIFEST).write_text(json.dumps({**manifest, "base_model": "someone/other-model"}))
    refused(other, "was trained on base model 'someone/other-model'")
    encoder.load_adapter("unchecked", other, check_base=False)  # shapes fit: loads when asked to
    encoder.unload_adapter("unchecked")

    from safetensors.torch import load_file, save_file

    shapes = copy("shapes")
    tensors = load_file(str(shapes / ADAPTER_WEIGHTS))
    key = next(k for k in sorted(tensors) if k.endswith("lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 3)
    save_file(tensors, str(shapes / ADAPTER_WEIGHTS))
    refused(shapes, "do not fit the base layer")

    for change, match in (({"r": 0}, "rank r must be a positive integer"), ({"use_dora": True}, "uses DoRA"),
                          ({"bias": "all"}, "trains biases")):
        folder = copy("config-" + next(iter(change)))
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, **change}))
        refused(folder, match)

    with pytest.raises(InputError, match="adapter name 'base:a1' is not valid"):
        encoder.load_adapter("base:a1", folders["a1"])
    with pytest.raises(InputError, match="adapter lists 2 names for 7 inputs"):
        encoder.encode(TEXTS, adapter=["a1", None])
    assert [a["name"] for a in encoder.adapters()] == ["a1", "a2"]


def test_adapter_of_another_architecture_is_refused(served, tiny_model_path: Path, request) -> None:
    base, folders, _, _ = served
    # the session's shared encoders: a refused load leaves them as they were (no adapter)
    other_encoder = request.getfixturevalue("minilm_encoder" if base == tiny_model_path else "tiny_encoder")
    with pytest.raises(InputError, match="was trained on base model"):
        other_encoder.load_adapter("a1", folders["a1"])
    with pytest.raises(InputError, match="does not have"):  # the modules themselves do not exist
        other_encoder.load_adapter("a1", folders["a1"], check_base=False)
    assert other_encoder.adapters() == []


def test_padded_passes_refuse_adapters(tiny_model_path: Path) -> None:
    from qembed.models.local import LocalEncoder

    padded = LocalEncoder(str(tiny_model_path), device="cpu", dtype="float32", packed=False)
    with pytest.raises(InputError, match="runs padded passes; LoRA adapters are served on packed passes"):
        padded.load_adapter("a1", tiny_model_path)
    with pytest.raises(AdapterNotLoadedError, match="adapter 'a1' is not loaded"):
        padded.encode(["x"], adapter="a1")

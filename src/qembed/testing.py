"""Random-weight Qwen3 models with the real tokenizer, for tests and speed figures.

The published Qwen3-Embedding weights cannot be downloaded everywhere; its tokenizer and
configuration can be shipped. :func:`build_random_qwen` writes a complete sentence-transformers
folder (tokenizer, configuration, ``modules.json``, last-token pooling, random weights) that
:func:`qembed.load_encoder` loads like the real model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "config_sentence_transformers.json",
    "modules.json",
    "generation_config.json",
)

TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_window_layers": 2,
}


def shared_dir() -> Path:
    """The project's ``shared`` folder: ``$QEMBED_SHARED`` or ``../shared`` beside the repository."""
    env = os.environ.get("QEMBED_SHARED")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared"
        if (parent / "pyproject.toml").exists() and candidate.exists():
            return candidate
    return Path.cwd().parent / "shared"


def afqmc_sentences(n: int, skip: int = 0) -> list[str]:
    """AFQMC dev sentences (sentence1, sentence2 of each pair in turn), ``n`` of them after ``skip``:
    the sentences the benchmarks time."""
    out: list[str] = []
    with open(shared_dir() / "data" / "afqmc" / "dev.json", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out += [row["sentence1"], row["sentence2"]]
            if len(out) >= n + skip:
                break
    return out[skip:skip + n]


def qwen_reference_dir() -> Path:
    """The folder with the published Qwen3-Embedding-0.6B tokenizer and configuration."""
    path = shared_dir() / "models" / "Qwen3-Embedding-0.6B"
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path} not found: set QEMBED_SHARED to the folder holding models/Qwen3-Embedding-0.6B"
        )
    return path


def build_random_qwen(
    out_dir: str | os.PathLike[str],
    *,
    tiny: bool = True,
    seed: int = 0,
    dtype: str = "float32",
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a random-weight Qwen3 embedding model folder and return its path.

    ``tiny=True``: 2 layers, hidden size 64 (fast tests). ``tiny=False``: the real architecture
    of ``config.json`` (Qwen3-Embedding-0.6B: 28 layers, hidden 1024). The real tokenizer and the
    sentence-transformers files are copied from ``source`` (default: :func:`qwen_reference_dir`).
    """
    import torch
    from transformers import Qwen3Config, Qwen3Model

    src = Path(source) if source else qwen_reference_dir()
    out = Path(out_dir)
    if (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    config_dict = json.loads((src / "config.json").read_text(encoding="utf-8"))
    if tiny:
        config_dict.update(TINY)
    config_dict["architectures"] = ["Qwen3Model"]
    config = Qwen3Config(**{k: v for k, v in config_dict.items() if k not in {"transformers_version"}})
    torch.manual_seed(seed)
    torch_dtype = getattr(torch, dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        model = Qwen3Model(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()

    def sentence_transformers_files(tmp: Path) -> None:
        (tmp / "1_Pooling").mkdir(exist_ok=True)
        pooling = json.loads((src / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        pooling["word_embedding_dimension"] = config.hidden_size
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2), encoding="utf-8")
        (tmp / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": 8192, "do_lower_case": False}), encoding="utf-8"
        )

    return save_model_folder(model, src, out, TOKENIZER_FILES, extra=sentence_transformers_files)


def save_model_folder(model, src: Path, out: Path, files: Sequence[str],
                      extra: Callable[[Path], None] | None = None) -> Path:
    """Save ``model`` with the ``files`` of ``src`` (and whatever ``extra`` writes) into ``out``.

    Written into a ``.partial`` folder first and moved in file by file, so a crash never leaves a
    folder that looks complete.
    """
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for name in files:
        if (src / name).exists():
            shutil.copy(src / name, tmp / name)
    if extra is not None:
        extra(tmp)
    for item in tmp.iterdir():
        target = out / item.name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.move(str(item), target)
    tmp.rmdir()
    return out

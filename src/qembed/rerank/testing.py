"""Random-weight rerankers with the real Qwen3 tokenizer, for tests and speed figures.

Qwen3-Reranker-0.6B has the architecture and vocabulary of Qwen3-Embedding-0.6B, whose
configuration and tokenizer ship in ``shared/models``; :func:`build_random_reranker` writes a
``Qwen3ForCausalLM`` folder (or a one-label ``Qwen3ForSequenceClassification``) from them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qembed.testing import TINY, qwen_reference_dir, save_model_folder

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                    "generation_config.json")


def build_random_reranker(
    out_dir: str | os.PathLike[str],
    *,
    tiny: bool = True,
    seed: int = 0,
    dtype: str = "float32",
    seq_cls: bool = False,
    head_scale: float = 1.0,
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a random-weight Qwen3 reranker folder and return its path (kept when it exists).

    ``tiny=True``: 2 layers, hidden size 64; ``tiny=False``: the full configuration (0.6B).
    ``seq_cls=True`` writes the converted form: a one-label classifier whose head is
    ``w_yes - w_no`` of the causal model with the same seed. ``head_scale`` multiplies the
    "yes"/"no" rows (tiny random models otherwise score everything close to 0.5).
    """
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen3Config,
        Qwen3ForCausalLM,
        Qwen3ForSequenceClassification,
    )

    src = Path(source) if source else qwen_reference_dir()
    out = Path(out_dir)
    if (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    config_dict = json.loads((src / "config.json").read_text(encoding="utf-8"))
    config_dict.pop("transformers_version", None)
    config_dict.pop("torch_dtype", None)
    config_dict["dtype"] = dtype  # the weights are made (and saved) in this precision
    if tiny:
        config_dict.update(TINY)
    config_dict["architectures"] = ["Qwen3ForCausalLM"]
    if head_scale != 1.0:
        config_dict["tie_word_embeddings"] = False
    config = Qwen3Config(**config_dict)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        model = Qwen3ForCausalLM(config)
        if head_scale != 1.0:
            with torch.no_grad():
                model.lm_head.weight[[yes, no]] *= head_scale
        if seq_cls:
            config.architectures = ["Qwen3ForSequenceClassification"]
            config.num_labels = 1
            config.pad_token_id = tokenizer.pad_token_id
            classifier = Qwen3ForSequenceClassification(config)
            with torch.no_grad():
                classifier.model.load_state_dict(model.model.state_dict())
                head = model.lm_head.weight
                classifier.score.weight.copy_((head[yes] - head[no]).unsqueeze(0))
            model = classifier
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    return save_model_folder(model, src, out, _TOKENIZER_FILES)
